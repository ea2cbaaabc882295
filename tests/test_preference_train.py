"""Preference and RL training through the worker: the DPO loss it logs, GRPO's reward, broken reward files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_worker

from lorastudio.recipe import RewardSpec
from lorastudio.train.events import fold, read_all
from lorastudio.train.rewards import RewardError, build_rewards, score

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
    from lorastudio.train import runs

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
    from lorastudio.train.runs import load_run_recipe

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
    from lorastudio.train.runs import summarise

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


@pytest.mark.slow
@pytest.mark.parametrize("case", ["syntax", "missing", "raises"])
def test_a_broken_reward_file_fails_the_run_with_its_message(
    tmp_path: Path, tiny_model: Path, case: str
) -> None:
    source = {
        "syntax": "def score(:\n",
        "missing": "x = 1\n",
        "raises": "def score(prompts, completions, **kw):\n    raise ValueError('no score today')\n",
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
    }[case]
    assert expected in (state.cause or ""), state.cause
    assert str(tmp_path / "rewards.py") in (state.cause or "")


@pytest.mark.slow
@pytest.mark.parametrize(("method", "section"), [("kto", {}), ("orpo", {}), ("dpo", {"loss_type": "simpo"})])
def test_every_pair_method_trains_on_studio_ids(
    tmp_path: Path, tiny_model: Path, method: str, section: dict
) -> None:
    """KTO, ORPO and SimPO get exactly the ids the Preview shows, and train (their figures logged)."""
    from lorastudio.data.preference import prepare_method_data
    from lorastudio.recipe import Recipe
    from lorastudio.train.backend import detect_hardware, load_for_training
    from lorastudio.train.methods import build_method_trainer, method_metrics

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
    from lorastudio.train.methods import method_metrics

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
    from lorastudio.train.backend import detect_hardware, load_for_training
    from lorastudio.train.methods import build_method_trainer

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
    from lorastudio.train import trackers

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
    from lorastudio.train.backend import detect_hardware, load_for_training
    from lorastudio.train.methods import build_method_trainer

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
