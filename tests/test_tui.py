"""Pilot tests that drive keys and assert on screen state, and snapshots of each screen at two sizes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import screen_of, send_burst, stand_in_worker, wait_until

from lorastudio.app import StudioApp
from lorastudio.paths import package_recipes_dir

if TYPE_CHECKING:
    from lorastudio.screens.recipes import RecipesScreen

SIZES = [(80, 24), (120, 40)]


def screen_text(app) -> str:
    """The text of every Static/Label on the current screen, rendered as plain text."""
    import io

    from rich.console import Console
    from textual.widgets import Static

    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    for widget in app.screen.query(Static):
        content = getattr(widget, "content", None)
        if content is not None and content != "":
            console.print(content)
    return console.export_text()


def text_of(widget) -> str:
    import io

    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


def current_recipe_name(screen: RecipesScreen) -> str | None:
    """The name of the recipe under the picker's cursor (None with none there)."""
    entry = screen.current
    return None if entry is None else entry.file.name


# -- recorded run for the Monitor ---------------------------------------------------------------
def write_recorded_run(root: Path) -> Path:
    run = root / "tiny-pirate-recorded"
    run.mkdir(parents=True)
    (run / "run.json").write_text(
        json.dumps({"format": 1, "name": run.name, "recipe": "tiny-pirate", "created": 1_790_000_000.0})
    )
    (run / "recipe.yaml").write_text("name: tiny-pirate\nmodel:\n  name: tiny\ndata:\n  source: x.jsonl\n")
    (run / "worker.log").write_text("loading tiny model\ntraining 12 steps\nsaved adapter\n")
    t0 = 1_790_000_000.0
    events: list[dict[str, Any]] = [
        {"kind": "status", "status": "queued"},
        {"kind": "status", "status": "starting"},
        {"kind": "status", "status": "loading model", "backend": "hf", "device": "cpu"},
        {"kind": "status", "status": "training", "max_steps": 12},
    ]
    for step in range(1, 13):
        events.append(
            {
                "kind": "metrics",
                "step": step,
                "max_steps": 12,
                "epoch": step / 12,
                "loss": 12.0 / step**0.7,
                "learning_rate": 0.003 * (1 - step / 13),
                "grad_norm": 2.5 / step,
                "tokens_per_s": 8000.0,
                "tokens_seen": 280 * step,
                "eta_s": (12 - step) * 0.05,
            }
        )
        events.append(
            {
                "kind": "telemetry",
                "gpus": [],
                "gpu_note": "no NVIDIA GPU found",
                "rss_mb": 612.0,
                "cpu_pct": 180.0,
                "host_ram_used_mb": 4096.0,
                "host_ram_total_mb": 24576.0,
                "torch_peak_reserved_mb": None,
            }
        )
    events += [
        {"kind": "status", "status": "saving"},
        {"kind": "status", "status": "done", "adapter": "adapter"},
    ]
    with (run / "events.jsonl").open("w") as handle:
        for i, event in enumerate(events):
            handle.write(json.dumps({"v": 1, "t": t0 + i * 0.25, **event}) + "\n")
    return run


@pytest.fixture
def recorded_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("TZ", "UTC")
    return write_recorded_run(tmp_path / "data" / "studio" / "runs")


# -- Pilot ----------------------------------------------------------------------------------------
async def test_picker_move_filter_select(tiny_model: Path) -> None:
    from textual.widgets import OptionList

    from lorastudio.screens.preview import PreviewScreen
    from lorastudio.screens.recipes import RecipesScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, RecipesScreen)
        await wait_until(pilot, lambda: screen.entries)
        options = screen.query_one(OptionList)
        shipped = len(list(package_recipes_dir().glob("*.yaml")))
        assert options.option_count == shipped and current_recipe_name(screen) == "smollm2-pirate"
        await pilot.press("j", "j", "j")
        assert current_recipe_name(screen) == "llama2-medical"
        assert "aboonaji/llama2finetune-v2" in screen_text(app)
        await pilot.press("k")
        assert current_recipe_name(screen) == "falcon7b-guanaco"
        await pilot.press("slash", *"qwen")
        assert [e.file.name for e in screen.shown] == [
            "qwen-csv-concepts",
            "qwen1.5-0.5b-qlora",
            "qwen3-0.6b-tools",
        ]
        await pilot.press("escape")
        assert options.option_count == shipped
        await pilot.press("slash", *"tiny-pirate")
        assert [e.file.name for e in screen.shown][:2] == ["tiny-pirate", "tiny-pirate-grpo"]
        await pilot.press(
            "escape", "slash", *"tiny-pirate-grpo"
        )  # named exactly: first, though listed second
        assert [e.file.name for e in screen.shown][0] == "tiny-pirate-grpo"
        await pilot.press(
            "escape", "slash", *"tiny-pirate", "enter"
        )  # two match; Enter opens the one named so
        assert isinstance(app.screen, PreviewScreen) and app.screen.recipe.name == "tiny-pirate"


async def test_user_recipes_added_edited_or_removed_while_running_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lorastudio.screens.recipes import RecipesScreen

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    folder = tmp_path / "config" / "studio" / "recipes"  # not there yet: made while the TUI runs
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, RecipesScreen)
        await wait_until(pilot, lambda: screen.entries)
        names = lambda: [e.file.name for e in screen.entries]  # noqa: E731
        assert "my-pirate" not in names()
        await pilot.press("j")  # the highlighted recipe stays highlighted through a re-read
        highlighted = current_recipe_name(screen)
        folder.mkdir(parents=True)
        recipe = folder / "my-pirate.yaml"
        recipe.write_text(
            "name: my-pirate\nextends: tiny-pirate\ndescription: first words\n", encoding="utf-8"
        )
        await wait_until(pilot, lambda: "my-pirate" in names(), timeout=10)
        assert current_recipe_name(screen) == highlighted
        recipe.write_text(
            "name: my-pirate\nextends: tiny-pirate\ndescription: edited words\n", encoding="utf-8"
        )
        entry = lambda: next(e for e in screen.entries if e.file.name == "my-pirate")  # noqa: E731
        await wait_until(
            pilot,
            lambda: (edited := entry().recipe) is not None and edited.description == "edited words",
            timeout=10,
        )
        await pilot.press("ctrl+r")  # away from the picker; back on it, the removal shows at once
        await wait_until(pilot, lambda: type(app.screen).__name__ == "RunsScreen")
        recipe.unlink()
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen and "my-pirate" not in names(), timeout=10)


@pytest.mark.parametrize(("gpu", "label"), [(False, "est. RAM"), (True, "est. VRAM")])
async def test_the_recipes_pane_names_the_memory_it_estimates_as_launch_does(
    gpu: bool, label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lorastudio.models.estimate import memory_label
    from lorastudio.screens.recipes import RecipesScreen
    from lorastudio.train.trainer import telemetry

    monkeypatch.setattr(telemetry, "has_gpu", lambda: gpu)
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: screen_of(app, RecipesScreen).entries)
        text = screen_text(app)
        line = next(line for line in text.splitlines() if line.startswith("est. "))
        assert line.split("~")[0].strip() == label and ("est. VRAM" in text) is gpu
        assert memory_label(gpu, detail=True).startswith(label if gpu else "est. host RAM")


async def test_preview_shows_masked_and_trained_tokens(tiny_model: Path) -> None:
    from lorastudio import registry
    from lorastudio.screens.preview import PreviewScreen
    from lorastudio.widgets.token_view import TokenView

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(PreviewScreen(registry.load("tiny-pirate")))
        screen = screen_of(app, PreviewScreen)
        await wait_until(pilot, lambda: screen.loaded and screen.query_one(TokenView).items)
        view = screen.query_one(TokenView)
        trained = "".join(p.text for p in view.items if p.trained)
        assert trained == "Arr, the pearl be white, matey!<|eot_id|>"
        assert any(not p.trained for p in view.items)
        assert "sample 1/225" in text_of(screen.query_one("#sample-header"))
        await pilot.press("n")
        assert "sample 2/225" in text_of(screen.query_one("#sample-header"))
        await pilot.press("g", *"10", "enter")
        assert screen.index == 9
        await pilot.press("i")
        assert view.show_ids and f"({view.items[0].token_id})" in text_of(view)
        await pilot.press("slash", *"spider", "enter")
        await wait_until(pilot, lambda: "spider" in json.dumps(screen.prepared.rows.rows[screen.index]))
        await wait_until(
            pilot,
            lambda: (
                "225" in text_of(screen.query_one("#stats-panel"))
                and "computing" not in text_of(screen.query_one("#stats-panel"))
            ),
        )
        stats = text_of(screen.query_one("#stats-panel"))
        assert "dolly" in stats and "p50" in stats


async def test_search_and_recipe_text_with_brackets_are_text_not_markup(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Searching the Preview for Llama-2's "[/INST]" crashed the app (markup with no opening tag), and a
    recipe description holding "[INST] ... [/INST]" lost its brackets in the details pane."""
    from lorastudio import registry
    from lorastudio.screens.preview import PreviewScreen
    from lorastudio.screens.recipes import RecipesScreen

    user = tmp_path / "config" / "studio" / "recipes"
    user.mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (user / "aaa-brackets.yaml").write_text(
        "extends: tiny-pirate\nname: aaa-brackets\ndescription: 'Llama-2 turns: [INST] question [/INST] answer'\n"
    )
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: screen_of(app, RecipesScreen).entries)
        await pilot.press("slash", *"aaa-brackets")
        await wait_until(
            pilot, lambda: "[INST] question [/INST] answer" in " ".join(screen_text(app).split())
        )
        await app.push_screen(PreviewScreen(registry.load("tiny-pirate")))
        screen = screen_of(app, PreviewScreen)
        await wait_until(pilot, lambda: screen.loaded)
        await pilot.press("slash", *"[/INST]", "enter")
        await wait_until(pilot, lambda: any("'[/INST]' not found" in n.message for n in app._notifications))
        assert app.is_running and app.screen is screen and app.return_code is None


async def test_monitor_shows_recorded_run(recorded_run: Path) -> None:
    from lorastudio.screens.monitor import MonitorScreen
    from lorastudio.widgets.chart import LineChart

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(MonitorScreen(recorded_run))
        screen = screen_of(app, MonitorScreen)
        await wait_until(pilot, lambda: screen.snapshot is not None and screen.snapshot.state.finished)
        text = screen_text(app)
        assert "status: done" in text and "step 12/12" in text
        assert "no NVIDIA GPU found" in text and "8,000" in text
        assert len(screen.query_one("#chart-loss", LineChart).series["train"].store) == 12
        await pilot.press("d")
        assert not isinstance(app.screen, MonitorScreen)
        assert not app._notifications  # a finished run: nothing goes on


def _unfinished(run_dir: Path, pid: int | None = None) -> None:
    """The recorded run cut before its last two events, its worker the process ``pid`` (a live stand-in
    worker when None)."""
    lines = (run_dir / "events.jsonl").read_text().splitlines()[:-2]
    (run_dir / "events.jsonl").write_text("\n".join(lines) + "\n")
    if pid is None:
        stand_in_worker(run_dir)
        return
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "pid": pid}))


async def test_detaching_from_a_live_run_says_it_goes_on(recorded_run: Path) -> None:
    from lorastudio.screens.monitor import MonitorScreen

    _unfinished(recorded_run)  # a live "worker": a stand-in process
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(MonitorScreen(recorded_run))
        screen = screen_of(app, MonitorScreen)
        await wait_until(pilot, lambda: screen.snapshot is not None)
        assert "status: training" in screen_text(app)
        await pilot.press("d")
        assert not isinstance(app.screen, MonitorScreen)
        assert [n.message for n in app._notifications] == [
            f"{recorded_run.name} goes on training; Ctrl+R lists runs to re-attach"
        ]


async def test_monitor_shows_died_for_dead_worker(recorded_run: Path) -> None:
    from lorastudio.screens.monitor import MonitorScreen

    _unfinished(recorded_run, pid=999_999_999)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(MonitorScreen(recorded_run))
        screen = screen_of(app, MonitorScreen)
        await wait_until(pilot, lambda: screen.snapshot is not None)
        assert "status: died" in screen_text(app)


async def test_runs_screen_lists_and_attaches(recorded_run: Path) -> None:
    from textual.widgets import DataTable

    from lorastudio.screens.monitor import MonitorScreen
    from lorastudio.screens.runs import RunsScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+r")
        screen = screen_of(app, RunsScreen)
        await wait_until(pilot, lambda: screen.query_one(DataTable).row_count == 1)
        assert screen.runs[0].status == "done"
        await pilot.press("enter")
        assert isinstance(app.screen, MonitorScreen)


async def test_chat_streams_toggles_and_compares(trained_run: Path) -> None:
    from textual.widgets import Input

    from lorastudio.screens.chat import ChatScreen
    from lorastudio.widgets.chat_message import ChatMessage

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(ChatScreen(str(trained_run)))
        screen = screen_of(app, ChatScreen)
        await wait_until(pilot, lambda: screen.engine is not None)
        assert "tuned (adapter on)" in screen_text(app)
        await pilot.press("f2")
        assert not screen.query_one("#thinking-row").display  # ChatML has no thinking switch
        await pilot.press("escape")

        async def ask(question: str) -> None:
            await pilot.press(*question, "enter")
            await wait_until(pilot, lambda: not screen.generating and screen.query(ChatMessage).last().stats)

        await ask("What colour is the sky?")
        tuned = screen.query(ChatMessage).last()
        assert tuned.label == "tuned" and tuned.text.lower().startswith("arr") and "tok/s" in tuned.stats
        await pilot.press("ctrl+t")
        await ask("What colour is the sky?")
        base = screen.query(ChatMessage).last()
        assert base.label == "base" and "arr" not in base.text.lower()
        await pilot.press("ctrl+t", "ctrl+o")
        assert "compare" in screen_text(app)
        await ask("What does a cow say?")
        labels = [m.label for m in screen.query(ChatMessage)][-2:]
        assert labels == ["tuned", "base"]
        await pilot.press("up")
        assert screen.query_one("#chat-input", Input).value == "What does a cow say?"
        await pilot.press("ctrl+s")
        # Down past the newest, Up, then Enter in one burst sends the prompt recalled, not what the box held
        await pilot.press("ctrl+u", *"draft")
        before = len(screen.query(ChatMessage))
        send_burst(app, "down", "down", "down", "up", "enter")
        await wait_until(pilot, lambda: len(screen.query(ChatMessage)) > before)
        await wait_until(pilot, lambda: not screen.generating and screen.query(ChatMessage).last().stats)
        asked = [m.text for m in screen.query(ChatMessage) if m.role == "user"]
        assert asked[-1] == "What does a cow say?" and "draft" not in asked
        saved = list((trained_run / "transcripts").glob("*.jsonl"))
        assert saved and "What colour is the sky?" in saved[0].read_text()


async def test_chat_on_a_run_without_an_adapter_offers_the_base_model(
    recorded_run: Path, tiny_model: Path
) -> None:
    """The run saved no adapter: Chat says so and how to go on, and Ctrl+T loads the base model there."""
    from lorastudio.screens.chat import ChatScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.push_screen(ChatScreen(str(recorded_run)))
        screen = screen_of(app, ChatScreen)
        await wait_until(pilot, lambda: screen.load_failed, timeout=60.0)
        status = " ".join(screen_text(app).split())
        assert "has no adapter yet" in status and "Ctrl+T in Chat" in status
        assert screen.query_one("#chat-input").disabled
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: screen.engine is not None, timeout=60.0)
        assert not screen.engine.has_adapter and "Chat · tiny-pirate · base" in screen_text(app)
        assert not screen.query_one("#chat-input").disabled


async def test_help_lists_keys() -> None:
    from lorastudio.screens.help import HelpScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        assert "Filter" in text and "Preview" in text and "Runs" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


# -- snapshots ------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_recipes(snap_compare, size, monkeypatch: pytest.MonkeyPatch) -> None:
    from lorastudio.train.trainer import telemetry

    monkeypatch.setattr(telemetry, "has_gpu", lambda: False)  # the same on every machine: est. RAM

    async def run_before(pilot) -> None:
        await wait_until(pilot, lambda: pilot.app.screen.entries)
        await pilot.pause()

    assert snap_compare(StudioApp(), terminal_size=size, run_before=run_before)


async def test_preview_shows_the_first_sample_before_the_whole_file_is_read(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big file's first sample comes from its first lines; the count and stats follow the whole load."""
    import threading

    from lorastudio.data import prepare as prepare_module
    from lorastudio.recipe import Recipe
    from lorastudio.screens.preview import PreviewScreen
    from lorastudio.widgets.token_view import TokenView

    data = tmp_path / "big.jsonl"
    data.write_text(
        "".join(
            json.dumps({"instruction": f"Question {i}?", "context": "", "response": f"Arr {i}."}) + "\n"
            for i in range(300)
        )
    )
    release = threading.Event()
    whole = prepare_module.prepare

    def slow_prepare(*args, **kwargs):
        release.wait(30)  # the whole load waits until the test has seen the head's sample
        return whole(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "prepare", slow_prepare)
    recipe = Recipe.model_validate({"name": "big", "model": {"name": "tiny"}, "data": {"source": str(data)}})
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(PreviewScreen(recipe))
        screen = screen_of(app, PreviewScreen)
        await wait_until(pilot, lambda: screen.query_one(TokenView).items)
        header = text_of(screen.query_one("#sample-header"))
        assert screen.partial and "sample 1/… (reading the file)" in header
        first = [(p.text, p.trained) for p in screen.query_one(TokenView).items]
        assert any(trained and "Arr" in text for text, trained in first)
        release.set()
        await wait_until(pilot, lambda: screen.loaded and "300" in text_of(screen.query_one("#stats-panel")))
        assert "sample 1/300" in text_of(screen.query_one("#sample-header"))
        assert [(p.text, p.trained) for p in screen.query_one(TokenView).items] == first


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_preview(snap_compare, size, tiny_model: Path) -> None:
    async def run_before(pilot) -> None:
        await wait_until(pilot, lambda: pilot.app.screen.entries)
        await pilot.press(
            "/", *"tiny-pirate", "enter"
        )  # the default is smollm2-pirate; this shows the tiny one
        await wait_until(
            pilot,
            lambda: (
                getattr(pilot.app.screen, "prepared", None) is not None
                and "computing" not in text_of(pilot.app.screen.query_one("#stats-panel"))
                and "225" in text_of(pilot.app.screen.query_one("#stats-panel"))
            ),
        )

    assert snap_compare(StudioApp(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_monitor(snap_compare, size, recorded_run: Path) -> None:
    async def run_before(pilot) -> None:
        await wait_until(
            pilot,
            lambda: (
                getattr(pilot.app.screen, "snapshot", None) is not None
                and pilot.app.screen.snapshot.state.finished
            ),
        )
        await pilot.pause(0.3)

    assert snap_compare(StudioApp(attach=recorded_run), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_runs(snap_compare, size, recorded_run: Path) -> None:
    async def run_before(pilot) -> None:
        await wait_until(pilot, lambda: pilot.app.screen.entries)
        await pilot.press("ctrl+r")
        await wait_until(
            pilot,
            lambda: (
                pilot.app.screen.query("DataTable") and pilot.app.screen.query_one("DataTable").row_count == 1
            ),
        )

    assert snap_compare(StudioApp(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_chat(snap_compare, size, tiny_model: Path) -> None:
    async def run_before(pilot) -> None:
        await wait_until(pilot, lambda: getattr(pilot.app.screen, "engine", None) is not None)
        await pilot.press("f2")
        await pilot.pause(0.2)

    assert snap_compare(
        StudioApp(chat=str(tiny_model), chat_base=True), terminal_size=size, run_before=run_before
    )


async def test_a_replys_think_block_is_dimmed_as_it_streams() -> None:
    """A reasoning model's reply (Qwen3 opens with ``<think>…</think>``): the reasoning is dimmed while it streams
    and after it closes; the answer, and a reply that does not open with it, are plain."""
    from rich.text import Text
    from textual.app import App

    from lorastudio.widgets.chat_message import ChatMessage, reply_body

    def dimmed(text: Text) -> str:
        return "".join(text.plain[s.start : s.end] for s in text.spans if "dim" in str(s.style)) + (
            text.plain if "dim" in str(text.style) else ""
        )

    class One(App[None]):
        def compose(self):
            yield ChatMessage("assistant", "tuned")

    async with One().run_test(size=(60, 12)) as pilot:
        bubble = pilot.app.query_one(ChatMessage)
        for piece in ["<think>", "\nTwo cities", ": compare.\n"]:
            bubble.append(piece)
        assert dimmed(reply_body(bubble.text)) == "<think>\nTwo cities: compare.\n"
        bubble.append("</think>\n\nLisbon is warmer.")
        await pilot.pause()
        body = reply_body(bubble.text)
        assert dimmed(body) == "<think>\nTwo cities: compare.\n</think>" and body.plain.endswith(
            "Lisbon is warmer."
        )
        assert "Lisbon is warmer." in str(bubble.render())
    assert dimmed(reply_body("Plain answer, no <think> here.")) == ""
    assert dimmed(reply_body("\n<think>\n\n</think>\n\nHi")) == "\n<think>\n\n</think>"
