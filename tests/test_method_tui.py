"""The preference Preview and the method charts: Pilot tests and snapshots at 80x24 and 120x40."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import screen_of, wait_until

from lorastudio.app import StudioApp
from lorastudio.screens.monitor import MonitorScreen

SIZES = [(80, 24), (120, 40)]
PAIRS = [
    {
        "prompt": "Where does a bee live?",
        "chosen": "Arr, a bee be livin' in a hive, matey!",
        "rejected": "In a hive.",
    },
    {"prompt": "What colour is snow?", "chosen": "Arr, snow be white!", "rejected": "Snow is white."},
    {"prompt": "Same?", "chosen": "Aye.", "rejected": "Aye."},
    {"prompt": "Who are you?", "chosen": "Ahoy! I be a pirate.", "rejected": None},
]


def monitor_finished(app: StudioApp) -> bool:
    """The Monitor is up and its run is over."""
    from lorastudio.screens.monitor import MonitorScreen

    screen = app.screen
    return (
        isinstance(screen, MonitorScreen) and screen.snapshot is not None and screen.snapshot.state.finished
    )


def text_of(widget) -> str:
    import io

    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


def dpo_recipe(tmp_path: Path):
    from lorastudio.recipe import Recipe

    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
    return Recipe.model_validate(
        {
            "name": "pairs-demo",
            "model": {"name": "tiny", "max_seq_length": 96},
            "data": {"source": str(source)},
            "train": {"method": "dpo"},
        }
    )


def recorded_method_run(root: Path, method: str) -> Path:
    run = root / f"tiny-{method}-recorded"
    run.mkdir(parents=True)
    (run / "run.json").write_text(
        json.dumps({"format": 1, "name": run.name, "recipe": f"tiny-{method}", "created": 1_790_000_000.0})
    )
    section = "grpo:\n  num_generations: 2\n  rewards:\n    - keywords: [arr]\n" if method == "grpo" else ""
    (run / "recipe.yaml").write_text(
        f"name: tiny-{method}\nmodel:\n  name: tiny\ndata:\n  source: x.jsonl\n"
        f"train:\n  method: {method}\n{section}"
    )
    (run / "worker.log").write_text("")
    t0 = 1_790_000_000.0
    events: list[dict] = [
        {"kind": "status", "status": "starting"},
        {"kind": "status", "status": "training", "max_steps": 10},
    ]
    for step in range(1, 11):
        events.append(
            {
                "kind": "metrics",
                "step": step,
                "max_steps": 10,
                "epoch": step / 10,
                "loss": 0.7 / step,
                "learning_rate": 5e-4,
                "grad_norm": 1.0 / step,
                "tokens_seen": 300 * step,
            }
        )
        if method == "dpo":
            values = {
                "rewards/chosen": 0.3 * step,
                "rewards/rejected": -0.2 * step,
                "rewards/margins": 0.5 * step,
                "rewards/accuracies": min(1.0, 0.5 + step / 20),
            }
        elif method == "reward":  # TRL's RewardTrainer's names
            values = {
                "accuracy": min(1.0, 0.5 + step / 20),
                "margin": 0.2 * step,
                "min_reward": -0.1 * step,
                "mean_reward": 0.05 * step,
                "max_reward": 0.2 * step,
            }
        else:
            values = {
                "reward": min(step, 16 - step) / 10,  # best 0.8 at step 8, final 0.6
                "reward_std": 0.3,
                "rewards/arr/mean": step / 10,
                "completions/mean_length": 20 - step,
            }
        events.append({"kind": "method_metrics", "step": step, "values": values})
    if method == "grpo":
        events.append(
            {
                "kind": "completions",
                "samples": [
                    {  # as the worker writes them now: the rendered prompt's end and the user's question
                        "prompt": "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhere does a bee "
                        "live?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                        "question": "Where does a bee live?",
                        "completion": "Arr, in a hive! \U0001f41d\ufffd\ufffd",  # cut in a character's bytes
                        "rewards": {"arr": 1.0},
                    },
                    {
                        "prompt": "user\nWhat colour is snow?\nassistant\n",
                        "completion": "Snow is white.",
                        "rewards": {"arr": 0.0},
                    },
                ],
            }
        )
    events += [{"kind": "status", "status": "done", "adapter": "adapter"}]
    with (run / "events.jsonl").open("w") as handle:
        for i, event in enumerate(events):
            handle.write(json.dumps({"v": 1, "t": t0 + i * 0.25, **event}) + "\n")
    return run


@pytest.fixture
def runs_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("TZ", "UTC")
    return tmp_path / "data" / "studio" / "runs"


async def test_preference_preview_shows_prompt_once_and_both_replies(
    tmp_path: Path, tiny_model: Path
) -> None:
    from lorastudio.screens.method_preview import MethodPreviewScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(MethodPreviewScreen(dpo_recipe(tmp_path)))
        screen = screen_of(app, MethodPreviewScreen)
        await wait_until(pilot, lambda: screen.encoder is not None)
        await pilot.pause()
        prompt, chosen, rejected = (
            text_of(screen.query_one(f"#method-{n}")) for n in ("prompt", "chosen", "rejected")
        )
        assert "Where does a bee live?" in prompt and "Arr" not in prompt
        assert "⟦Arr, a bee be livin' in a hive, matey!" in chosen
        assert "⟦In a hive." in rejected
        assert screen.query_one("#method-replies").has_class("wide")  # side by side at 120 columns
        stats = text_of(screen.query_one("#method-stats"))
        assert "pairs 2 kept of 4" in stats
        assert "1 chosen equals rejected (row 3)" in stats and "1 missing rejected (row 4)" in stats
        await pilot.press("n", "n")
        assert "skipped: chosen equals rejected" in text_of(screen.query_one("#method-header"))
    narrow = StudioApp()
    async with narrow.run_test(size=(80, 24)) as pilot:
        await narrow.push_screen(MethodPreviewScreen(dpo_recipe(tmp_path)))
        await pilot.pause()
        assert not narrow.screen.query_one("#method-replies").has_class("wide")  # stacked at 80 columns


async def test_preference_preview_says_why_it_cannot_load(tmp_path: Path, tiny_model: Path) -> None:
    """A data file that is not there: the Preview says so (it stayed on 'loading…' with empty panels)."""
    from lorastudio.screens.method_preview import MethodPreviewScreen

    missing = tmp_path / "no-such-pairs.jsonl"
    base = dpo_recipe(tmp_path)
    recipe = base.model_copy(update={"data": base.data.model_copy(update={"source": str(missing)})})
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.push_screen(MethodPreviewScreen(recipe))
        screen = screen_of(app, MethodPreviewScreen)
        header = screen.query_one("#method-header")
        await wait_until(pilot, lambda: "loading" not in text_of(header), timeout=30.0)
        assert "no-such-pairs.jsonl" in text_of(header)
        assert not screen.query_one("#method-scroll").display and screen.encoder is None


async def test_dpo_monitor_charts_rewards_margin_and_accuracy(runs_home: Path) -> None:
    from lorastudio.screens.monitor import MonitorScreen
    from lorastudio.widgets.chart import LineChart

    run = recorded_method_run(runs_home, "dpo")
    app = StudioApp(attach=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: monitor_finished(app))
        screen = screen_of(app, MonitorScreen)
        rewards = screen.query_one("#chart-rewards", LineChart)
        assert set(rewards.series) == {"chosen", "rejected"}
        assert len(rewards.series["chosen"].store) == 10
        assert len(screen.query_one("#chart-accuracy", LineChart).series["accuracy"].store) == 10
        for _ in range(5):
            await pilot.press("m")
        assert screen.selected_chart is rewards
        assert "rewards" in text_of(screen.query_one("#chart-tabs"))


async def test_reward_monitor_charts_accuracy_margin_and_scores(runs_home: Path) -> None:
    from lorastudio.widgets.chart import LineChart

    run = recorded_method_run(runs_home, "reward")
    app = StudioApp(attach=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(
            pilot,
            lambda: getattr(app.screen, "snapshot", None) is not None and monitor_finished(app),
        )
        screen = screen_of(app, MonitorScreen)
        accuracy = screen.query_one("#chart-accuracy", LineChart)
        assert accuracy.series["accuracy"].store.ys[-1] == 1.0
        assert len(screen.query_one("#chart-margin", LineChart).series["margin"].store) == 10
        assert set(screen.query_one("#chart-scores", LineChart).series) == {"min", "mean", "max"}
        for _ in range(5):
            await pilot.press("m")
        assert screen.selected_chart is accuracy
        assert "accuracy" in text_of(screen.query_one("#chart-tabs"))


async def test_grpo_monitor_shows_reward_functions_and_samples(runs_home: Path) -> None:
    from lorastudio.screens.monitor import MonitorScreen
    from lorastudio.widgets.chart import LineChart

    run = recorded_method_run(runs_home, "grpo")
    app = StudioApp(attach=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: monitor_finished(app))
        screen = screen_of(app, MonitorScreen)
        assert set(screen.query_one("#chart-functions", LineChart).series) == {"arr"}
        assert len(screen.query_one("#chart-reward", LineChart).series["mean"].store) == 10
        panel = screen.query_one("#completions-panel")
        samples = text_of(panel)
        assert "Arr, in a hive! \U0001f41d…" in samples and "arr 1.00" in samples
        assert "\ufffd" not in samples  # the cut character's bytes are not shown as �
        assert "? Where does a bee live?" in samples and "<|eot_id|>" not in samples  # the question
        assert "… user What colour is snow? assistant" in samples  # an older event: the prompt's end
        assert panel.size.width >= 45  # the room 120 columns give (36 before)
        # the reward, not GRPO's loss, sums the run up
        summary = text_of(screen.query_one("#summary-line"))
        assert "final mean reward 0.600 (best 0.800)" in summary and "final loss" not in summary
        assert "mean reward 0.600" in text_of(screen.query_one("#progress-label"))
        # the KL chart says why it stays empty (TRL logs no KL at grpo.beta 0) instead of waiting
        await pilot.press(*"m" * 7)
        kl = screen.query_one("#chart-kl", LineChart)
        assert screen.selected_chart is kl
        assert "KL not computed: grpo.beta is 0" in str(kl.render()) and "waiting" not in str(kl.render())


async def test_a_finished_dpo_run_keeps_its_loss_summary(runs_home: Path) -> None:
    run = recorded_method_run(runs_home, "dpo")
    app = StudioApp(attach=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: monitor_finished(app))
        await pilot.pause()
        summary = text_of(app.screen.query_one("#summary-line"))
        assert "final loss 0.0700 (best 0.0700)" in summary and "reward" not in summary


async def test_a_finished_run_says_a_chart_got_nothing(runs_home: Path) -> None:
    """A run that logged no grad norm: its chart says so once the run is over, instead of waiting."""
    from lorastudio.widgets.chart import LineChart

    run = recorded_method_run(runs_home, "dpo")
    app = StudioApp(attach=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: monitor_finished(app))
        await pilot.pause()
        assert app.screen.query_one("#chart-tps", LineChart).empty == "nothing logged"  # no tokens/s logged
        assert app.screen.query_one("#chart-loss", LineChart).series["train"].store.xs != []


@pytest.mark.parametrize(
    ("tokenizer", "template"),
    [
        ("llama3_tokenizer", "tokenizer"),
        ("qwen3_tokenizer", "tokenizer"),
        ("qwen3_tokenizer", "chatml"),
        ("llama2_tokenizer", "llama-2"),
    ],
    ids=["llama3", "qwen3", "chatml", "llama2"],
)
def test_the_completions_question_is_the_users_words(
    tokenizer: str, template: str, request: pytest.FixtureRequest
) -> None:
    """GRPO is given the rendered prompt: the panel gets the user's last words back out of it."""
    from lorastudio.data.encode import Encoder
    from lorastudio.recipe import Recipe
    from lorastudio.train.trainer.methods import Questions

    recipe = Recipe.model_validate(
        {"name": "q", "model": {"name": "tiny", "chat_template": template}, "data": {"source": "x.jsonl"}}
    )
    encoder = Encoder(request.getfixturevalue(tokenizer), recipe, "messages")

    def render(turns):
        return encoder.render(turns, add_generation_prompt=True)

    questions = Questions(render)
    asked = [{"role": "user", "content": "Where does a bee live? 🐝"}]
    assert questions.of(render(asked)) == "Where does a bee live? 🐝"
    if template != "llama-2":  # Llama 2 puts the system prompt inside the first user turn
        system = [{"role": "system", "content": "Talk like a pirate."}, *asked]
        assert questions.of(render(system)) == "Where does a bee live? 🐝"
    longer = [
        *asked,
        {"role": "assistant", "content": "In a hive."},
        {"role": "user", "content": "And ants?"},
    ]
    assert questions.of(render(longer)) == "And ants?"
    assert questions.of("not this template's rendering") is None


@pytest.mark.parametrize(
    ("decoded", "whole"),
    [("Arr \U0001f41d", "Arr \U0001f41d"), ("Arr \ufffd", "Arr "), ("東京\ufffd\ufffd", "東京"), ("", "")],
)
def test_a_completion_cut_in_a_character_loses_its_broken_end(decoded: str, whole: str) -> None:
    from lorastudio.train.trainer.methods import whole_text

    assert whole_text(decoded) == whole


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_preference_preview(snap_compare, size, tmp_path: Path, tiny_model: Path) -> None:
    from lorastudio.screens.method_preview import MethodPreviewScreen

    recipe = dpo_recipe(tmp_path)

    async def run_before(pilot) -> None:
        await pilot.app.push_screen(MethodPreviewScreen(recipe))
        await wait_until(pilot, lambda: pilot.app.screen.encoder is not None)
        await pilot.pause(0.2)

    assert snap_compare(StudioApp(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("method", ["dpo", "grpo"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_method_monitor(snap_compare, size, method: str, runs_home: Path) -> None:
    run = recorded_method_run(runs_home, method)

    async def run_before(pilot) -> None:
        await wait_until(
            pilot,
            lambda: (
                getattr(pilot.app.screen, "snapshot", None) is not None
                and pilot.app.screen.snapshot.state.finished
            ),
        )
        for _ in range(5):
            await pilot.press("m")  # the first method chart
        await pilot.pause(0.3)

    assert snap_compare(StudioApp(attach=run), terminal_size=size, run_before=run_before)
