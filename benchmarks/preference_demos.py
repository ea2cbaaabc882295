"""The preference and RL demos and their speed against bare TRL (issue 23).

    python benchmarks/preference_demos.py dpo              # train smollm2-pirate-dpo (timed), evaluate held-out
    python benchmarks/preference_demos.py dpo --run NAME   # evaluate an existing run
    python benchmarks/preference_demos.py grpo [--from RUN] [key=value…]   # tiny-pirate-grpo: reward first/last
    python benchmarks/preference_demos.py speed [--steps N]                # step time: studio vs bare TRL

``dpo`` prints the whole-run time (goal <= 300 s) and, over the held-out questions with greedy decoding,
how often the tuned and the base model answer in pirate style (goals >= 80% and <= 10%) and how often the
tuned replies end by themselves (goal >= 90%). ``grpo`` prints the mean reward over the first and the last
five steps. ``speed`` trains DPO and GRPO on the tiny model for the same steps through studio's worker and
through a bare TRL script with the same settings, and prints the mean step time of each (goal: studio's
throughput >= 0.97 of bare). Like for like (``likeforlike.py``): studio's evaluation and samples are off, as
the bare script has none; both trainers report their batch, lengths, truncation, generations, evaluation,
sample callbacks and torch threads, which must be equal, and the tokens each processed, which are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # likeforlike.py beside this script


def run_worker(
    recipe_name: str, overrides: list[str], probe: bool = False
) -> tuple[Path, list[dict[str, Any]], float]:
    """Train in studio's worker; ``probe`` also writes its trainer's like-for-like report into the run."""
    from lorastudio import registry
    from lorastudio.models.resolve import resolve_model_path
    from lorastudio.train.launch.runs import create_run

    recipe = registry.load(recipe_name, overrides)
    resolve_model_path(recipe.model)  # a one-time fetch or build is not part of the run
    run_dir = create_run(recipe)
    started = time.monotonic()
    if probe:
        from likeforlike import run_probed_worker

        result = run_probed_worker(run_dir)
    else:
        result = subprocess.run(
            [sys.executable, "-m", "lorastudio.worker", str(run_dir)], capture_output=True, text=True
        )
    wall = time.monotonic() - started
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    if result.returncode != 0:
        sys.exit(f"training failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return run_dir, events, wall


def step_times(events: list[dict[str, Any]]) -> list[float]:
    """Seconds between consecutive logged steps (the first step, with its warm-up, is left out)."""
    stamps = [e["t"] for e in events if e["kind"] == "metrics" and e.get("loss") is not None]
    return [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]


def cmd_dpo(args: argparse.Namespace) -> None:
    from lorastudio.chat.engine import engine_for
    from lorastudio.chat.heldout import evaluate

    run = args.run
    if run is None:
        run_dir, events, wall = run_worker("smollm2-pirate-dpo", args.overrides)
        at = {e["status"]: e["t"] for e in events if e["kind"] == "status"}
        metrics = [e for e in events if e["kind"] == "method_metrics"]
        first, last = metrics[0]["values"], metrics[-1]["values"]
        print(
            f"run={run_dir.name} whole_run_s={wall:.1f} (goal <= 300) train_s={at['saving'] - at['training']:.1f} "
            f"margin first={first.get('rewards/margins', 0):.3f} last={last.get('rewards/margins', 0):.3f} "
            f"accuracy last={last.get('rewards/accuracies', 0):.2f}",
            flush=True,
        )
        run = str(run_dir)
    engine = engine_for(run)
    engine.load()

    def show(question: str, tuned: Any, base: Any) -> None:
        if args.verbose:
            print(
                f"Q: {question}\n  tuned [{tuned.finish_reason}]: {tuned.text}\n  base: {base.text}",
                flush=True,
            )

    result = evaluate(engine, on_reply=show)
    print(
        f"held_out={len(result.questions)} tuned_pirate_rate={result.tuned_style_rate:.0%} (goal >= 80%) "
        f"base_pirate_rate={result.base_style_rate:.0%} (goal <= 10%) "
        f"tuned_ends_by_itself_rate={result.tuned_stop_rate:.0%} (goal >= 90%)"
    )


def cmd_grpo(args: argparse.Namespace) -> None:
    overrides = list(args.overrides)
    if args.start_from:
        from lorastudio.train.trainer.methods import resolve_start_adapter

        overrides.append(f"model.adapter={resolve_start_adapter(args.start_from)}")
    run_dir, events, wall = run_worker("tiny-pirate-grpo", overrides)
    rewards = [
        e["values"]["reward"] for e in events if e["kind"] == "method_metrics" and "reward" in e["values"]
    ]
    k = min(5, len(rewards) // 2)
    first, last = sum(rewards[:k]) / k, sum(rewards[-k:]) / k
    print(
        f"run={run_dir.name} whole_run_s={wall:.1f} steps={len(rewards)} mean_reward_first_{k}={first:.3f} "
        f"mean_reward_last_{k}={last:.3f} (goal: last clearly above first)"
    )


BARE_SCRIPT = r"""
import json, sys, time
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
method, model_path, data_path, steps, report = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
import os
torch.manual_seed(3407)
torch.set_num_threads(len(os.sched_getaffinity(0)))  # what studio's worker uses alone on a CPU box
tok = AutoTokenizer.from_pretrained(model_path)
model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32),
                       LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                  "gate_proj", "up_proj", "down_proj"], task_type="CAUSAL_LM"))
rows = [json.loads(l) for l in open(data_path)]
stamps = []
class Stamp(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        stamps.append(time.monotonic())
common = dict(output_dir="/tmp/bare-trl-out", per_device_train_batch_size=8, max_steps=steps, learning_rate=3e-3,
              logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, seed=3407, use_cpu=True,
              include_num_input_tokens_seen=True,
              # TRL's own defaults are gradient checkpointing and bf16 (autocast even on CPU); studio's worker
              # resolves both off on CPU: without these the bare script did other work (likeforlike caught it)
              gradient_checkpointing=False, bf16=False)
if method == "dpo":
    from trl import DPOConfig, DPOTrainer
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                               "chosen": [{"role": "assistant", "content": r["chosen"]}],
                               "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows])
    trainer = DPOTrainer(model=model, args=DPOConfig(**common, beta=0.1, max_length=None), train_dataset=data,
                         processing_class=tok, callbacks=[Stamp()])
else:
    from trl import GRPOConfig, GRPOTrainer
    def reward(prompts, completions, **kw):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [1.0 if "arr" in t.lower() and len(t.split()) <= 20 else 0.0 for t in texts]
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}]} for r in rows])
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], train_dataset=data, processing_class=tok,
                          args=GRPOConfig(**common, num_generations=8, max_completion_length=24, temperature=0.7),
                          callbacks=[Stamp()])
trainer.train()
likeforlike_report(trainer, report)
gaps = [b - a for a, b in zip(stamps[1:], stamps[2:])]
print(json.dumps({"step_s": sum(gaps) / len(gaps)}))
"""


def cmd_speed(args: argparse.Namespace) -> None:
    from lorastudio.models.tiny import ensure_tiny_model

    root = Path(__file__).resolve().parent.parent / "recipes" / "data"
    tiny = ensure_tiny_model()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cases = {
        "dpo": (
            "tiny-pirate",
            [
                f"data.source={root / 'smollm2_pirate_dpo.jsonl'}",
                "data.format=auto",
                "train.method=dpo",
                "data.eval_fraction=0",
                "train.learning_rate=0.003",
            ],
            root / "smollm2_pirate_dpo.jsonl",
        ),
        "grpo": (
            "tiny-pirate-grpo",
            [
                "grpo.rewards=[{name: arr, all: [{keywords: [arr]}, {length: {max_words: 20}}]}]",
                "data.eval_fraction=0",
            ],
            root / "pirate_prompts.jsonl",
        ),
    }
    from likeforlike import REPORT_CODE, REPORT_FILE, assert_alike, read_report, tokens_line

    for method, (recipe, overrides, data) in cases.items():
        if args.only and method != args.only:
            continue
        run_dir, events, _ = run_worker(
            recipe,
            [
                *overrides,
                f"train.max_steps={args.steps}",
                "train.scheduler=constant",
                f"train.save_steps={args.steps}",
                "train.warmup_steps=0",
                "train.samples=[]",  # the bare script answers no sample prompts
            ],
            probe=True,
        )
        gaps = step_times(events)
        studio = sum(gaps) / len(gaps)
        bare_report = run_dir / f"bare-{REPORT_FILE}"
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                REPORT_CODE + BARE_SCRIPT,
                method,
                str(tiny),
                str(data),
                str(args.steps),
                str(bare_report),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if out.returncode != 0:
            print(f"{method}: bare TRL failed: {out.stderr[-2000:]}")
            continue
        bare = json.loads(out.stdout.strip().splitlines()[-1])["step_s"]
        studio_side, bare_side = read_report(run_dir / REPORT_FILE), read_report(bare_report)
        assert_alike(method, studio_side, bare_side)
        print(f"{method}: like for like: {json.dumps(studio_side['settings'], sort_keys=True)}")
        print(f"{method}: {tokens_line(studio_side, bare_side)}")
        print(
            f"{method}: studio_step_s={studio:.3f} bare_trl_step_s={bare:.3f} "
            f"studio/bare throughput={bare / studio:.2f} (goal >= 0.97) steps={args.steps}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dpo")
    p.add_argument("--run")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=cmd_dpo)
    p = sub.add_parser("grpo")
    p.add_argument("--from", dest="start_from")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=cmd_grpo)
    p = sub.add_parser("speed")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--only", choices=("dpo", "grpo"), help="one method only")
    p.set_defaults(func=cmd_speed)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
