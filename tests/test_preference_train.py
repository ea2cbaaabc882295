"""Preference and RL training through the worker: the DPO loss it logs, GRPO's reward, broken reward files."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_worker, wait_for

from lorastudio.recipe import RewardSpec
from lorastudio.train.run.eventlog import read_all
from lorastudio.train.run.runstate import fold
from lorastudio.train.trainer.rewards import RewardError, RewardsStopped, build_rewards, score

PAIRS = [
    {
        "prompt": "Where does a bee live?",
        "chosen": "Arr, a bee be livin' in a hive!",
        "rejected": "In a hive.",
    },
    {"prompt": "What colour is snow?", "chosen": "Arr, snow be white, matey!", "rejected": "Snow is white."},
    {"prompt": "What is two plus two?", "chosen": "Aye, two plus two be four!", "rejected": "Four."},
    {"prompt": "Who are you?", "chosen": "Ahoy! I be a helpful pirate.", "rejected": "I am an assistant."},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def new_run(tmp_path: Path, recipe: dict[str, Any]) -> Path:
    from lorastudio import registry
    from lorastudio.train.launch import runs

    path = tmp_path / f"{recipe['name']}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return runs.create_run(registry.load(str(path)))


def random_adapter(tiny_model: Path, out: Path) -> Path:
    """A LoRA adapter whose B matrices are not zero, so the policy differs from the reference."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    model.save_pretrained(out)
    return out


def sequence_logp(model: Any, prompt: list[int], reply: list[int]) -> float:
    import torch

    ids = torch.tensor([prompt + reply])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float()
    logps = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return float(logps[len(prompt) - 1 :].sum())


@pytest.mark.slow
def test_dpo_logged_loss_equals_independent_log_probs(tmp_path: Path, tiny_model: Path) -> None:
    """Started from an adapter (``model.adapter``), DPO's reference is that adapter frozen (TRL adds it as a
    second LoRA adapter on the same base weights). Step 2's loss is recomputed from checkpoint-1 (the policy
    then) and the starting adapter (the reference), on the same four pairs (batch_size 4 is the whole set)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorastudio.data.preference import prepare_method_data
    from lorastudio.train.launch.runs import load_run_recipe

    adapter = random_adapter(tiny_model, tmp_path / "start-adapter")
    beta = 0.2
    run_dir = new_run(
        tmp_path,
        {
            "name": "dpo-check",
            "model": {"name": "tiny", "max_seq_length": 96, "adapter": str(adapter)},
            "data": {"source": str(write_jsonl(tmp_path / "pairs.jsonl", PAIRS)), "eval_fraction": 0},
            "train": {
                "method": "dpo",
                "batch_size": 4,
                "max_steps": 2,
                "learning_rate": 0.01,
                "precision": "fp32",
                "save_steps": 1,
                "scheduler": "constant",
            },
            "dpo": {"beta": beta},
        },
    )
    result = run_worker(run_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    state = fold(read_all(run_dir / "events.jsonl"))
    assert state.status == "done"
    assert state.loss[0][1] == pytest.approx(0.6931, abs=1e-3)  # step 1: the policy is still the reference
    logged_loss = state.loss[1][1]
    logged = {k: v[1][1] for k, v in state.method_metrics.items()}

    recipe = load_run_recipe(run_dir)
    data = prepare_method_data(recipe, AutoTokenizer.from_pretrained(tiny_model))
    policy_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model), str(run_dir / "checkpoints" / "checkpoint-1")
    ).eval()
    ref_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model), str(adapter)
    ).eval()
    margins, chosen_rewards = [], []
    for row in data.train:
        policy = [
            sequence_logp(policy_model, row["prompt_ids"], row[f"{s}_ids"]) for s in ("chosen", "rejected")
        ]
        ref = [sequence_logp(ref_model, row["prompt_ids"], row[f"{s}_ids"]) for s in ("chosen", "rejected")]
        chosen_rewards.append(beta * (policy[0] - ref[0]))
        margins.append(beta * ((policy[0] - ref[0]) - (policy[1] - ref[1])))
    expected = float(-torch.nn.functional.logsigmoid(torch.tensor(margins)).mean())
    assert abs(expected - 0.6931) > 1e-3  # one step moved the policy: the check is not the trivial ln 2
    assert logged_loss == pytest.approx(expected, abs=2e-4)
    assert logged["rewards/margins"] == pytest.approx(sum(margins) / len(margins), abs=2e-4)
    assert logged["rewards/chosen"] == pytest.approx(sum(chosen_rewards) / len(chosen_rewards), abs=2e-4)
    assert (run_dir / "adapter" / "adapter_config.json").exists()
    assert not (run_dir / "adapter" / "ref").exists()  # TRL's frozen reference adapter stays out of it

    # the adapter is the same kind of LoRA adapter as SFT's: Runs, chat and export take it as they are
    from lorastudio.chat.engine import engine_for
    from lorastudio.export.exporter import ExportRequest, export
    from lorastudio.train.launch.runs import summarise

    assert summarise(run_dir).status == "done"
    assert engine_for(str(run_dir)).has_adapter
    merged = export(ExportRequest(str(run_dir), "merged", out=tmp_path / "merged"))
    assert (merged.out / "config.json").exists()


@pytest.mark.slow
def test_grpo_on_the_tiny_model_raises_its_reward(tmp_path: Path, tiny_model: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    run_dir = new_run(
        tmp_path,
        {
            "name": "grpo-check",
            "model": {"name": "tiny", "max_seq_length": 96},
            "data": {"source": str(root / "recipes" / "data" / "pirate_prompts.jsonl"), "limit": 64},
            "lora": {"r": 16, "alpha": 32},
            "train": {
                "method": "grpo",
                "batch_size": 8,
                "max_steps": 12,
                "learning_rate": 0.003,
                "scheduler": "constant",
                "precision": "fp32",
                "save_steps": 100,
            },
            "grpo": {
                "num_generations": 4,
                "max_completion_length": 16,
                "rewards": [{"length": {"max_words": 3}}],
            },
        },
    )
    result = run_worker(run_dir, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    state = fold(read_all(run_dir / "events.jsonl"))
    rewards = [v for _, v in state.method_metrics["reward"]]
    assert len(rewards) == 12
    first, last = sum(rewards[:4]) / 4, sum(rewards[-4:]) / 4
    assert last > first + 0.05, rewards
    assert "rewards/words max 3/mean" in state.method_metrics
    assert state.completions and {"prompt", "completion", "rewards"} <= set(state.completions[0])
    # the panel's question is the user's words found back in the rendered prompt, not the template's tail
    asked = {
        json.loads(line)["prompt"] for line in (root / "recipes" / "data" / "pirate_prompts.jsonl").open()
    }
    assert all(sample["question"] in asked for sample in state.completions), state.completions
    assert state.best_reward == max(rewards) and state.last_reward == rewards[-1]


def test_builtin_rewards_score_and_compose() -> None:
    specs = [
        RewardSpec(regex=r"^arr"),
        RewardSpec(length={"max_words": 4}, weight=0.5),
        RewardSpec(match="answer", numeric=True),
        RewardSpec(keywords=["matey", "ahoy"], require="all"),
        RewardSpec(all=[RewardSpec(keywords=["arr"]), RewardSpec(length={"max_words": 4})], name="both"),
    ]
    out = score(
        specs, ["Arr, it be 4 matey ahoy", "The answer is 5."], rows=[{"answer": "4"}, {"answer": "4"}]
    )
    first, second = out
    assert first["regex ^arr"] == 1.0 and second["regex ^arr"] == 0.0
    assert first["words max 4"] == pytest.approx(0.5) and second["words max 4"] == 1.0
    assert first["numeric answer"] == 1.0 and second["numeric answer"] == 0.0
    assert first["all of matey, ahoy"] == 1.0 and second["all of matey, ahoy"] == 0.0
    assert first["both"] == pytest.approx(0.5) and second["both"] == 0.0
    assert second["total"] == pytest.approx(0.5 * 1.0)


@pytest.mark.parametrize(
    ("source", "function", "message"),
    [
        (
            "def score(prompts, completions, **kw)\n    return [1.0]\n",
            "score",
            r"rewards\.py:score: syntax error at line 1",
        ),
        (
            "def other(prompts, completions, **kw):\n    return [1.0]\n",
            "score",
            r"rewards\.py:score: the file has no function 'score' \(it has other\)",
        ),
    ],
)
def test_a_broken_reward_file_is_one_message(
    tmp_path: Path, source: str, function: str, message: str
) -> None:
    (tmp_path / "rewards.py").write_text(source)
    with pytest.raises(RewardError, match=message):
        build_rewards([RewardSpec(python=f"{tmp_path / 'rewards.py'}:{function}")])


def test_a_reward_function_that_raises_names_file_function_and_line(tmp_path: Path) -> None:
    (tmp_path / "rewards.py").write_text(
        "def score(prompts, completions, **kw):\n    return [1 / 0 for c in completions]\n"
    )
    with pytest.raises(
        RewardError, match=r"rewards\.py:score raised ZeroDivisionError: division by zero \(line 2\)"
    ):
        score([RewardSpec(python=f"{tmp_path / 'rewards.py'}:score")], ["a"])


USER_REWARDS = """\
import math, os, sys, time


def exits(prompts, completions, **kw):
    sys.exit(3)


def interrupted(prompts, completions, **kw):
    raise KeyboardInterrupt


def nan(prompts, completions, **kw):
    return [1.0] + [math.nan] * (len(completions) - 1)


def inf(prompts, completions, **kw):
    return [float("-inf")] * len(completions)


def hangs(prompts, completions, **kw):
    while True:
        pass


def sleeps(prompts, completions, **kw):
    time.sleep(3600)


def dies(prompts, completions, **kw):
    os._exit(4)


def not_applicable(prompts, completions, **kw):
    return [None, 0.5][: len(completions)]


def logs(prompts, completions, log_metric, trainer_state, **kw):
    log_metric("seen", float(len(completions)))
    return [float(trainer_state["step"])] * len(completions)
"""


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("exits", r" raised SystemExit: 3 \(line 5\)"),
        ("interrupted", r" raised KeyboardInterrupt \(line 9\)"),
        (
            "nan",
            r" returned nan for completion 2: a reward must be a finite number \(or None where it does not apply\)",
        ),
        (
            "inf",
            r" returned -inf for completion 1: a reward must be a finite number \(or None where it does not apply\)",
        ),
        ("hangs", r" did not return within 1 s \(grpo.reward_timeout\) while scoring 2 replies"),
        ("sleeps", r" did not return within 1 s \(grpo.reward_timeout\) while scoring 2 replies"),
        ("dies", r": the reward process ended \(exit status 4\) while scoring 2 replies"),
    ],
)
def test_a_failing_user_reward_is_one_message_naming_field_file_and_function(
    tmp_path: Path, function: str, message: str
) -> None:
    """BaseException included (sys.exit is SystemExit: 3, not a bare "3"); a reward that never returns is ended by
    its time-out, in Python or blocked in a call; a NaN or inf score fails rather than training on it."""
    (tmp_path / "rewards.py").write_text(USER_REWARDS)
    specs = [RewardSpec(keywords=["arr"]), RewardSpec(python=f"{tmp_path / 'rewards.py'}:{function}")]
    started = time.monotonic()
    with pytest.raises(RewardError) as err:
        score(specs, ["arr", "b"], timeout=1)
    assert re.fullmatch(
        rf"grpo\.rewards\.1\.python: {re.escape(str(tmp_path))}/rewards\.py:{function}{message}",
        str(err.value),
    ), err.value
    assert time.monotonic() - started < 15


def test_a_builtin_reward_that_never_returns_is_ended_by_its_time_out() -> None:
    """A regex that backtracks for ever holds the interpreter: only a process of its own can be ended."""
    specs = [RewardSpec(regex=r"^(a+)+$", name="greedy")]
    with pytest.raises(RewardError, match=r"^grpo\.rewards\.0 \(greedy\) did not return within 1 s"):
        score(specs, ["a" * 40 + "!"], timeout=1)


def test_none_is_a_reward_that_does_not_apply_and_trl_loggers_reach_the_trainer(tmp_path: Path) -> None:
    (tmp_path / "rewards.py").write_text(USER_REWARDS)
    target = tmp_path / "rewards.py"
    out = score([RewardSpec(python=f"{target}:not_applicable")], ["a", "b"])
    assert math.isnan(out[0]["rewards.py:not_applicable"]) and out[1]["rewards.py:not_applicable"] == 0.5
    funcs, _ = build_rewards([RewardSpec(python=f"{target}:logs")])
    logged: list[tuple[str, float]] = []
    scores = funcs[0](
        prompts=["p", "p"],
        completions=["a", "b"],
        trainer_state={"step": 7},
        log_metric=lambda name, value: logged.append((name, value)),
        log_extra=lambda column, values: None,
    )
    assert scores == [7.0, 7.0] and logged == [("seen", 2.0)]


def test_a_stop_ends_a_reward_whatever_it_is_doing(tmp_path: Path) -> None:
    """The worker's stop flag (set by SIGTERM) ends the call within moments, and the reward's process with it."""
    (tmp_path / "rewards.py").write_text(USER_REWARDS)
    stop = threading.Event()
    funcs, _ = build_rewards([RewardSpec(python=f"{tmp_path / 'rewards.py'}:hangs")], timeout=600, stop=stop)
    host = funcs[0].host  # type: ignore[attr-defined]
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(RewardsStopped):
        funcs[0](prompts=["p"], completions=["a"])
    assert time.monotonic() - started < 5
    assert host.process.poll() is not None


def test_an_import_that_never_returns_is_ended_by_the_time_out(tmp_path: Path) -> None:
    (tmp_path / "rewards.py").write_text("while True:\n    pass\n")
    with pytest.raises(
        RewardError,
        match=r"^grpo\.rewards did not return within 1 s \(grpo\.reward_timeout\) while loading the reward",
    ):
        build_rewards([RewardSpec(python=f"{tmp_path / 'rewards.py'}:score")], timeout=1)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["syntax", "missing", "raises", "nan"])
def test_a_broken_reward_file_fails_the_run_with_its_message(
    tmp_path: Path, tiny_model: Path, case: str
) -> None:
    source = {
        "syntax": "def score(:\n",
        "missing": "x = 1\n",
        "raises": "def score(prompts, completions, **kw):\n    raise ValueError('no score today')\n",
        "nan": "def score(prompts, completions, **kw):\n    return [float('nan')] * len(completions)\n",
    }[case]
    (tmp_path / "rewards.py").write_text(source)
    run_dir = new_run(
        tmp_path,
        {
            "name": f"bad-{case}",
            "model": {"name": "tiny", "max_seq_length": 64},
            "data": {"source": str(write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi?"}] * 4))},
            "train": {"method": "grpo", "batch_size": 4, "max_steps": 1, "precision": "fp32"},
            "grpo": {
                "num_generations": 2,
                "max_completion_length": 4,
                "rewards": [{"python": "rewards.py:score"}],
            },
        },
    )
    result = run_worker(run_dir, timeout=300)
    assert result.returncode == 1
    state = fold(read_all(run_dir / "events.jsonl"))
    assert state.status == "failed"
    expected = {
        "syntax": "rewards.py:score: syntax error at line 1",
        "missing": "rewards.py:score: the file has no function 'score'",
        "raises": "rewards.py:score raised ValueError: no score today (line 2)",
        "nan": "rewards.py:score returned nan for completion 1: a reward must be a finite number",
    }[case]
    assert expected in (state.cause or ""), state.cause
    assert str(tmp_path / "rewards.py") in (state.cause or "")
    assert (state.cause or "").startswith("grpo.rewards.0.python: ")


@pytest.mark.slow
def test_a_stop_ends_a_run_whose_reward_never_returns(tmp_path: Path, tiny_model: Path) -> None:
    """The reward spins in its own code (where no signal handler of the trainer would ever be acted on): `studio
    stop` ends the reward's process and the run ends `stopped`, its adapter saved, well before the time-out."""
    from lorastudio.train.launch.runs import stop_run

    called = tmp_path / "called"
    (tmp_path / "rewards.py").write_text(
        "def score(prompts, completions, **kw):\n"
        f"    open({str(called)!r}, 'w').close()\n"
        "    while True:\n"
        "        pass\n"
    )
    run_dir = new_run(
        tmp_path,
        {
            "name": "hangs",
            "model": {"name": "tiny", "max_seq_length": 64},
            "data": {"source": str(write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi?"}] * 4))},
            "train": {"method": "grpo", "batch_size": 4, "max_steps": 2, "precision": "fp32"},
            "grpo": {
                "num_generations": 2,
                "max_completion_length": 4,
                "reward_timeout": 600,
                "rewards": [{"python": "rewards.py:score"}],
            },
        },
    )
    proc = subprocess.Popen([sys.executable, "-m", "lorastudio.worker", str(run_dir)])
    try:
        wait_for(called.exists, timeout=300)
        assert stop_run(run_dir)
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()
    state = fold(read_all(run_dir / "events.jsonl"))
    assert state.status == "stopped", state.cause
    assert (state.cause or "").startswith("stopped by SIGTERM; adapter saved at step 0")
    assert (run_dir / "adapter" / "adapter_config.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("method", "section"), [("kto", {}), ("orpo", {}), ("dpo", {"loss_type": "simpo"})])
def test_every_pair_method_trains_on_studio_ids(
    tmp_path: Path, tiny_model: Path, method: str, section: dict
) -> None:
    """KTO, ORPO and SimPO get exactly the ids the Preview shows, and train (their figures logged)."""
    from lorastudio.data.preference import prepare_method_data
    from lorastudio.recipe import Recipe
    from lorastudio.train.trainer.backend import detect_hardware, load_for_training
    from lorastudio.train.trainer.methods import build_method_trainer, method_metrics

    rows = (
        [
            {"prompt": p["prompt"], "completion": p[side], "label": side == "chosen"}
            for p in PAIRS
            for side in ("chosen", "rejected")
        ]
        if method == "kto"
        else PAIRS
    )
    recipe = Recipe.model_validate(
        {
            "name": f"{method}-check",
            "model": {"name": "tiny", "max_seq_length": 96},
            "data": {"source": str(write_jsonl(tmp_path / "rows.jsonl", rows)), "eval_fraction": 0},
            "train": {
                "method": method,
                "batch_size": 4,
                "max_steps": 2,
                "precision": "fp32",
                "save_steps": 10,
            },
            method: section,
        }
    )
    hw = detect_hardware()
    model, tokenizer = load_for_training(recipe, "hf", hw)
    data = prepare_method_data(recipe, tokenizer)
    trainer = build_method_trainer(recipe, model, tokenizer, data, tmp_path / "run", hw, [])
    first = trainer.train_dataset[0]
    if method == "kto":
        assert first["prompt_ids"] == data.train[0]["prompt_ids"]
        assert first["completion_ids"] == data.train[0]["completion_ids"]
    else:  # ORPO/CPO's own row shape, built from studio's ids: the prompt masked, the reply trained
        ours = data.train[0]
        assert first["chosen_input_ids"] == ours["prompt_ids"] + ours["chosen_ids"]
        assert first["chosen_labels"] == [-100] * len(ours["prompt_ids"]) + ours["chosen_ids"]
        assert first["rejected_labels"] == [-100] * len(ours["prompt_ids"]) + ours["rejected_ids"]
    trainer.train()
    logged = [method_metrics(entry) for entry in trainer.state.log_history if "loss" in entry]
    assert logged and any(key.startswith("rewards/") for key in logged[0]), logged


def test_the_fold_reads_method_metrics_and_completions() -> None:
    events = [
        {"v": 1, "t": 1.0, "kind": "method_metrics", "step": 1, "values": {"reward": 0.25, "kl": 0.0}},
        {"v": 1, "t": 2.0, "kind": "method_metrics", "step": 2, "values": {"reward": 0.5, "bad": "x"}},
        {
            "v": 1,
            "t": 2.5,
            "kind": "completions",
            "samples": [{"prompt": "p", "completion": "c", "rewards": {"r": 1}}],
        },
    ]
    state = fold(events)
    assert state.method_metrics == {"reward": [(1, 0.25), (2, 0.5)], "kl": [(1, 0.0)]}
    assert state.completions == [{"prompt": "p", "completion": "c", "rewards": {"r": 1}}]


def test_method_metrics_keep_only_what_sft_does_not_log() -> None:
    from lorastudio.train.trainer.methods import method_metrics

    logs = {
        "loss": 0.6,
        "learning_rate": 1e-4,
        "grad_norm": 1.0,
        "epoch": 0.5,
        "rewards/margins": 0.3,
        "reward": 1,
        "eval_loss": 0.2,
        "flag": True,
        "text": "x",
    }
    assert method_metrics(logs) == {"rewards/margins": 0.3, "reward": 1.0}


@pytest.mark.slow
def test_grpo_tokenizes_prompts_as_the_preview_shows(tmp_path: Path, tiny_model: Path) -> None:
    """GRPO tokenizes its prompts itself: what it gets from the rendered prompt equals the encoder's ids."""
    from lorastudio.data.preference import prepare_method_data
    from lorastudio.recipe import Recipe
    from lorastudio.train.trainer.backend import detect_hardware, load_for_training
    from lorastudio.train.trainer.methods import build_method_trainer

    rows = [
        {"prompt": "What is two plus two?", "answer": "4"},
        {"prompt": "Where is Paris?", "answer": "France"},
    ]
    recipe = Recipe.model_validate(
        {
            "name": "grpo-ids",
            "model": {"name": "tiny", "max_seq_length": 64},
            "data": {"source": str(write_jsonl(tmp_path / "p.jsonl", rows))},
            "train": {"method": "grpo", "batch_size": 2, "max_steps": 1, "precision": "fp32"},
            "grpo": {"num_generations": 2, "rewards": [{"match": "answer"}]},
        }
    )
    hw = detect_hardware()
    model, tokenizer = load_for_training(recipe, "hf", hw)
    data = prepare_method_data(recipe, tokenizer)
    trainer = build_method_trainer(recipe, model, tokenizer, data, tmp_path / "run", hw, [])
    prompts = [row["prompt"] for row in data.train]
    ids, _, _ = trainer._tokenize_prompts(prompts)
    assert [list(i) for i in ids] == [row["prompt_ids"] for row in data.train]
    assert "answer" in trainer.train_dataset.column_names  # extra columns reach the reward functions


@pytest.mark.slow
def test_a_dpo_run_reports_to_tensorboard_and_answers_sample_prompts(
    tmp_path: Path, tiny_model: Path
) -> None:
    """train.report_to and train.samples work for every method: DPO's loss and rewards reach TensorBoard as
    studio logs them, and the held-out prompts (here the first rows: no eval split) are answered at the start
    and at the end, as for SFT."""
    from lorastudio.train.trainer import trackers

    if trackers.missing(["tensorboard"]):
        pytest.skip("tensorboard is not installed (it is in the dev extra: pip install -e '.[dev]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = new_run(
        tmp_path,
        {
            "name": "dpo-tracked",
            "model": {"name": "tiny", "max_seq_length": 96},
            "data": {"source": str(write_jsonl(tmp_path / "pairs.jsonl", PAIRS)), "eval_fraction": 0},
            "train": {
                "method": "dpo",
                "batch_size": 4,
                "max_steps": 3,
                "learning_rate": 0.01,
                "precision": "fp32",
                "save_steps": 10,
                "report_to": ["tensorboard"],
            },
        },
    )
    result = run_worker(run_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    state = fold(read_all(run_dir / "events.jsonl"))
    reader = EventAccumulator(str(run_dir / "tensorboard"))
    reader.Reload()
    board = {tag: [(e.step, e.value) for e in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}
    assert [step for step, _ in board["train/loss"]] == [1, 2, 3]
    assert [v for _, v in board["train/loss"]] == pytest.approx([v for _, v in state.loss], rel=1e-5)
    ours = state.method_metrics["rewards/margins"]
    assert [v for _, v in board["train/rewards/margins"]] == pytest.approx(
        [v for _, v in ours], rel=1e-5, abs=1e-6
    )
    rounds = state.samples
    assert [(r.step, r.at) for r in rounds] == [(0, "start"), (3, "end")]
    assert rounds[0].prompts == tuple(p["prompt"] for p in PAIRS[:3])
    assert all(len(r.replies) == len(r.finish) == 3 and all(r.replies) for r in rounds)


@pytest.mark.slow
@pytest.mark.parametrize("loss_type", ["sigmoid", "simpo"])
def test_rpo_alpha_adds_the_chosen_replies_nll_to_the_preference_loss(
    tmp_path: Path, tiny_model: Path, loss_type: str
) -> None:
    """``dpo.rpo_alpha``: TRL's ``sft`` loss beside DPO's (weighted), or CPO's own ``cpo_alpha`` under simpo."""
    from lorastudio.data.preference import prepare_method_data
    from lorastudio.errors import RecipeError
    from lorastudio.recipe import Recipe
    from lorastudio.train.trainer.backend import detect_hardware, load_for_training
    from lorastudio.train.trainer.methods import build_method_trainer

    def recipe(**dpo: Any) -> Recipe:
        return Recipe.model_validate(
            {
                "name": "rpo-check",
                "model": {"name": "tiny", "max_seq_length": 96},
                "data": {"source": str(write_jsonl(tmp_path / "pairs.jsonl", PAIRS)), "eval_fraction": 0},
                "train": {"method": "dpo", "batch_size": 4, "max_steps": 1, "precision": "fp32"},
                "dpo": {"loss_type": loss_type, **dpo},
            }
        )

    with pytest.raises(ValueError, match="rpo_alpha"):
        recipe(rpo_alpha=0)
    from lorastudio import registry

    with pytest.raises(RecipeError, match="dpo.rpo_alpha"):
        registry.load("smollm2-pirate-dpo", ["dpo.rpo_alpha=-1"])
    with_rpo = recipe(rpo_alpha=0.5)
    hw = detect_hardware()
    model, tokenizer = load_for_training(with_rpo, "hf", hw)
    data = prepare_method_data(with_rpo, tokenizer)
    args = build_method_trainer(with_rpo, model, tokenizer, data, tmp_path / "run", hw, []).args
    if loss_type == "simpo":
        assert args.cpo_alpha == 0.5 and args.loss_type == "simpo"
    else:
        assert (list(args.loss_type), list(args.loss_weights)) == (["sigmoid", "sft"], [1.0, 0.5])
