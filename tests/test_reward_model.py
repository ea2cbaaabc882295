"""Reward models (``train.method: reward``) and the SFT -> RM -> GRPO pipeline (``grpo.rewards: [{model: RUN}]``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_worker

from lorastudio import registry
from lorastudio.data.preference import EncodedPair
from lorastudio.errors import DataError, RecipeError
from lorastudio.recipe import Recipe
from lorastudio.train.run.eventlog import read_all
from lorastudio.train.run.runstate import fold

ROOT = Path(__file__).resolve().parent.parent
PAIRS_FILE = ROOT / "recipes" / "data" / "smollm2_pirate_dpo.jsonl"
TRAINED_ROWS = 96
"""The reward run trains on the file's first rows; the pairs after them are held out entirely."""


def _recipe(name: str, **sections: Any) -> dict[str, Any]:
    return {"name": name, "model": {"name": "tiny", "max_seq_length": 128}, **sections}


def new_run(tmp_path: Path, recipe: dict[str, Any]) -> Path:
    from lorastudio.train.launch import runs

    path = tmp_path / f"{recipe['name']}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return runs.create_run(registry.load(str(path)))


@pytest.fixture(scope="module")
def reward_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reward model on the tiny base, trained by the worker on the first pirate pairs."""
    run_dir = new_run(
        tmp_path_factory.mktemp("rm"),
        _recipe(
            "rm-check",
            data={"source": str(PAIRS_FILE), "limit": TRAINED_ROWS, "eval_fraction": 0.2},
            lora={"r": 16, "alpha": 32},
            train={
                "method": "reward",
                "batch_size": 8,
                "max_steps": 16,
                "learning_rate": 0.001,
                "precision": "fp32",
                "save_steps": 8,
                "logging_steps": 1,
            },
            reward={"center_rewards_coefficient": 0.01},
        ),
    )
    result = run_worker(run_dir, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


def _held_out_pairs(count: int) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in PAIRS_FILE.open()]
    return rows[TRAINED_ROWS : TRAINED_ROWS + count]


@pytest.mark.slow
def test_a_reward_run_trains_to_done_its_accuracy_rising_and_loss_falling(reward_run: Path) -> None:
    state = fold(read_all(reward_run / "events.jsonl"))
    assert state.status == "done", state.cause
    accuracy = [v for _, v in state.method_metrics["accuracy"]]
    margin = [v for _, v in state.method_metrics["margin"]]
    assert len(accuracy) == len(margin) == 16
    assert sum(accuracy[-4:]) / 4 >= max(0.9, sum(accuracy[:2]) / 2), accuracy
    assert sum(margin[-4:]) / 4 > sum(margin[:2]) / 2 + 0.3, margin
    losses = [v for _, v in state.loss]
    assert sum(losses[-4:]) / 4 < sum(losses[:2]) / 2 - 0.1, losses
    assert {"min_reward", "mean_reward", "max_reward"} <= set(state.method_metrics)
    config = json.loads((reward_run / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and "score" in config["modules_to_save"]
    assert not [
        e for e in read_all(reward_run / "events.jsonl") if e["kind"] == "sample"
    ]  # it scores, never replies


@pytest.mark.slow
def test_the_reward_model_scores_held_out_chosen_above_rejected(reward_run: Path) -> None:
    """Pairs it never saw: the pirate reply outscores the plain one, read as the RM was trained (its scored text
    tokenizes to exactly the ids training gave that pair)."""
    from lorastudio.data.preference import make_method_encoder
    from lorastudio.train.trainer.rewardmodel import RewardModelScorer, find_reward_model

    found = find_reward_model(reward_run.name)
    scorer = RewardModelScorer(found, threads=1)
    scorer.load()
    pairs = _held_out_pairs(32)
    encoder = make_method_encoder(
        scorer._tokenizer, found.recipe, ["prompt", "chosen", "rejected"], pairs, str(PAIRS_FILE)
    )
    prompts = [encoder.render_prompt([{"role": "user", "content": p["prompt"]}]) for p in pairs]
    first = encoder.encode_row(pairs[0])
    assert isinstance(first, EncodedPair)
    text = scorer.texts(prompts[:1], [pairs[0]["chosen"]])[0]
    assert (
        scorer._tokenizer(text, add_special_tokens=False)["input_ids"] == first.prompt_ids + first.chosen_ids
    )
    chosen = scorer(prompts, [p["chosen"] for p in pairs])
    rejected = scorer(prompts, [p["rejected"] for p in pairs])
    wins = sum(c > r for c, r in zip(chosen, rejected, strict=True))
    assert wins >= 28, (wins, chosen, rejected)
    # batched scoring is each reply's own score (padding changes nothing)
    assert scorer(prompts[:1], [pairs[0]["chosen"]])[0] == pytest.approx(chosen[0], abs=1e-4)


@pytest.mark.slow
def test_grpo_scored_by_the_reward_model_carries_its_scores(reward_run: Path, tmp_path: Path) -> None:
    from lorastudio.train.trainer.rewardmodel import RewardModelScorer, find_reward_model

    steps = 6
    run_dir = new_run(
        tmp_path,
        _recipe(
            "grpo-rm-check",
            data={"source": str(ROOT / "recipes" / "data" / "pirate_prompts.jsonl"), "limit": 48},
            lora={"r": 16, "alpha": 32},
            train={
                "method": "grpo",
                "batch_size": 8,
                "max_steps": steps,
                "learning_rate": 0.003,
                "scheduler": "constant",
                "precision": "fp32",
                "save_steps": 100,
            },
            grpo={
                "num_generations": 4,
                "max_completion_length": 16,
                "log_completions": 8,
                "rewards": [{"model": reward_run.name}],
            },
        ),
    )
    result = run_worker(run_dir, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    state = fold(read_all(run_dir / "events.jsonl"))
    assert state.status == "done", state.cause
    name = f"model {reward_run.name}"
    rewards = [v for _, v in state.method_metrics["reward"]]
    assert len(rewards) == steps
    assert [v for _, v in state.method_metrics[f"rewards/{name}/mean"]] == pytest.approx(rewards, abs=1e-4)
    # the completions panel's scores are the reward model's own scores of those replies
    scorer = RewardModelScorer(find_reward_model(reward_run.name), threads=1)
    samples = [s for s in state.completions if len(s["prompt"]) < 300 and len(s["completion"]) < 400]
    assert samples, state.completions
    again = scorer([s["prompt"] for s in samples], [s["completion"] for s in samples])
    assert [s["rewards"][name] for s in samples] == pytest.approx(again, abs=2e-3)


# -- bad input -----------------------------------------------------------------------------------------------
def _pairs_recipe(tmp_path: Path, rows: list[dict[str, Any]], **train: Any) -> Recipe:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Recipe.model_validate(
        _recipe("rm", data={"source": str(path)}, train={"method": "reward", **train})
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"prompt": "Hi", "completion": "Arr", "label": True}],
            "train.method reward needs the columns prompt, chosen, rejected",
        ),
        ([{"prompt": "Hi"}], "train.method reward needs the columns prompt, chosen, rejected"),
        (
            [{"prompt": "Hi", "chosen": "Arr", "rejected": "Arr"}] * 2,
            "no usable rows for train.method reward (2 chosen equals rejected (first: row 0))",
        ),
        (
            [
                {"prompt": "Hi", "chosen": "Arr", "rejected": None},
                {"prompt": "", "chosen": "a", "rejected": "b"},
            ],
            "no usable rows for train.method reward (1 missing rejected (first: row 0), 1 empty prompt",
        ),
    ],
    ids=["kto rows", "prompt only", "chosen equals rejected", "missing and empty"],
)
def test_data_that_is_not_pairs_is_refused_before_a_run_exists(
    tmp_path: Path, rows: list[dict[str, Any]], message: str
) -> None:
    from lorastudio.paths import runs_dir
    from lorastudio.train.launch import runs

    recipe = _pairs_recipe(tmp_path, rows)
    before = set(runs_dir().glob("*")) if runs_dir().exists() else set()
    with pytest.raises(DataError) as err:
        runs.start_run(recipe, start=False)
    assert message in str(err.value) and str(tmp_path / "rows.jsonl") in str(err.value)
    assert (set(runs_dir().glob("*")) if runs_dir().exists() else set()) == before


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["reward.center_rewards_coefficient=0"], "reward.center_rewards_coefficient"),
        (["train.method=dpo", "reward.max_prompt_length=8"], "this section is for train.method: reward"),
        (
            ["grpo.rewards=[{model: some-run, regex: arr}]"],
            "a reward needs exactly one of regex, length, match, keywords, python, model, all (got regex, model)",
        ),
    ],
    ids=["coefficient zero", "section of another method", "model and regex"],
)
def test_a_bad_reward_setting_is_refused_naming_it(override: list[str], message: str) -> None:
    base = "tiny-pirate-grpo" if override[0].startswith("grpo.") else "tiny-pirate-reward"
    with pytest.raises(RecipeError) as err:
        registry.load(base, override)
    assert message in str(err.value)


@pytest.fixture
def sft_run(studio_home: Path) -> Path:
    """An SFT run with an adapter (the events-format fixture), in this session's runs folder."""
    from lorastudio.paths import runs_dir

    target = runs_dir() / "sft-not-rm"
    if not target.exists():
        shutil.copytree(ROOT / "tests" / "fixtures" / "run-v1-tiny", target)
    return target


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("sft-not-rm", "grpo.rewards.0.model: sft-not-rm is a train.method: sft run, not a reward model"),
        ("no-such-run-here", "grpo.rewards.0.model: no such run: 'no-such-run-here'"),
        ("sft-not-rm@checkpoint-999", "grpo.rewards.0.model: run sft-not-rm has no adapter in checkpoints"),
    ],
    ids=["an sft run", "no run", "no such checkpoint"],
)
def test_a_grpo_reward_model_that_is_not_a_reward_run_is_refused_by_name(
    sft_run: Path, tiny_model: Path, reference: str, message: str
) -> None:
    from lorastudio.paths import runs_dir
    from lorastudio.train.launch import runs
    from lorastudio.train.trainer.rewards import RewardError, check_rewards

    recipe = registry.load("tiny-pirate-grpo", [f"grpo.rewards=[{{model: {reference}}}]"])
    count = len(list(runs_dir().iterdir()))
    with pytest.raises(RecipeError) as err:
        runs.start_run(recipe, start=False)
    assert message in str(err.value)
    assert len(list(runs_dir().iterdir())) == count  # refused before a run directory exists
    with pytest.raises(RewardError) as host_err:  # and by the reward process, should the run be gone since
        check_rewards(recipe.grpo.rewards if recipe.grpo else [])
    assert message in str(host_err.value)


def test_a_reward_run_refuses_to_start_from_an_sft_adapter(sft_run: Path, tiny_model: Path) -> None:
    from lorastudio.paths import runs_dir
    from lorastudio.train.launch import runs
    from lorastudio.train.trainer.backend import Hardware
    from lorastudio.train.trainer.rewardmodel import load_reward_model

    recipe = registry.load("tiny-pirate-reward", ["model.adapter=sft-not-rm"])
    count = len(list(runs_dir().iterdir()))
    with pytest.raises(RecipeError) as err:
        runs.start_run(recipe, start=False)
    assert str(err.value).startswith("model.adapter: sft-not-rm is not a reward model's adapter")
    assert len(list(runs_dir().iterdir())) == count
    with pytest.raises(RecipeError) as err:  # and by the worker, should the run's adapter change since
        load_reward_model(recipe, Hardware(cuda=False, bf16=False, device_name="cpu"))
    assert str(err.value).startswith("model.adapter: sft-not-rm is not a reward model's adapter")


# -- the one encode path, the charts -------------------------------------------------------------------------
def test_reward_rows_are_the_dpo_pairs_and_the_trainer_reads_prompt_then_reply(tiny_tokenizer: Any) -> None:
    from lorastudio.data.preference import encode_rows, make_method_encoder
    from lorastudio.train.trainer.rewardmodel import reward_row

    pairs = _held_out_pairs(6)
    encoded = {}
    for method in ("dpo", "reward"):
        recipe = registry.load("tiny-pirate-reward", [f"train.method={method}", "reward=null"])
        encoder = make_method_encoder(tiny_tokenizer, recipe, ["prompt", "chosen", "rejected"], pairs, "rows")
        encoded[method] = [s.row() for s in encode_rows(encoder, pairs)[0]]
    assert encoded["reward"] == encoded["dpo"] and len(encoded["reward"]) == 6
    row = encoded["reward"][0]
    assert reward_row(row) == {
        "chosen_ids": row["prompt_ids"] + row["chosen_ids"],
        "rejected_ids": row["prompt_ids"] + row["rejected_ids"],
    }


def test_the_monitor_charts_a_reward_runs_accuracy_and_margin() -> None:
    from lorastudio.train.run.events import parse_event
    from lorastudio.widgets.method_charts import charts_for, method_chart_points

    state = fold(
        [
            parse_event(
                {
                    "kind": "method_metrics",
                    "step": 3,
                    "values": {"accuracy": 0.75, "margin": 0.5, "mean_reward": 0.1, "min_reward": -1.0},
                }
            )
        ]
    )
    assert [key for key, _, _ in charts_for("reward")] == ["accuracy", "margin", "scores"]
    assert sorted(method_chart_points(state, {}, "reward")) == [
        ("accuracy", "accuracy", (3.0, 0.75)),
        ("margin", "margin", (3.0, 0.5)),
        ("scores", "mean", (3.0, 0.1)),
        ("scores", "min", (3.0, -1.0)),
    ]


def test_chat_and_export_refuse_a_reward_model(tmp_path: Path) -> None:
    from lorastudio.chat.engine import ChatEngine
    from lorastudio.errors import StudioError
    from lorastudio.export.merge import load_merged
    from lorastudio.export.origin import ExportSource
    from lorastudio.export.staging import ExportError

    recipe = registry.load("tiny-pirate-reward")
    adapter = tmp_path / "rm-run" / "adapter"
    with pytest.raises(StudioError) as err:
        ChatEngine(recipe, adapter).load()
    assert str(err.value).startswith(f"{adapter}: a reward model (train.method: reward) scores replies")
    with pytest.raises(ExportError) as export_err:
        load_merged(ExportSource(tmp_path / "rm-run", recipe, adapter, None), None, None)
    assert str(export_err.value).startswith("rm-run: a reward model (train.method: reward) has a score head")
