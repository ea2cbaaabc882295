"""`studio train` worker on the tiny model vs a bare TRL script doing the same steps (goal: ratio <= 1.03),
and the Monitor's refresh cost on a 100k-line events file.

Like for like (``likeforlike.py``): studio runs with evaluation and samples off, as the bare script has
none; both trainers report their batch, lengths, evaluation, sample callbacks and torch threads, which must be
equal, and the tokens each processed, which are printed.

    python benchmarks/train_overhead.py [--steps N] [--repeat K]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # likeforlike.py beside this script

BARE = """
import os, sys, time, torch
torch.set_num_threads(len(os.sched_getaffinity(0)))  # what studio's worker uses alone on a CPU box
from lorastudio import registry
from lorastudio.data.prepare import prepare
from lorastudio.data.encode import encode_all
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model
from trl import SFTConfig, SFTTrainer
from datasets import Dataset
r = registry.load('tiny-pirate', sys.argv[1:])
p = prepare(r)
rows = [{'input_ids': s.input_ids, 'labels': s.labels} for s in encode_all(p.encoder, p.rows.rows, 'x')]
from lorastudio.models.tiny import ensure_tiny_model
m = AutoModelForCausalLM.from_pretrained(ensure_tiny_model())
m = get_peft_model(m, LoraConfig(r=r.lora.r, lora_alpha=r.lora.alpha, target_modules=r.lora.target_modules, task_type='CAUSAL_LM'))
cfg = SFTConfig(output_dir='OUT', per_device_train_batch_size=r.train.batch_size, learning_rate=r.train.learning_rate,
    max_steps=r.train.max_steps, warmup_steps=r.train.warmup_steps, logging_steps=1, save_steps=r.train.save_steps,
    report_to=[], disable_tqdm=True, bf16=False, gradient_checkpointing=False, seed=r.train.seed,
    dataset_kwargs={'skip_prepare_dataset': True}, remove_unused_columns=False, max_length=None,
    include_num_input_tokens_seen=True)
from transformers import TrainerCallback
marks = {}
class Mark(TrainerCallback):
    def on_train_begin(self, *a, **k): marks['begin'] = time.time()
    def on_train_end(self, *a, **k): marks['end'] = time.time()
t = SFTTrainer(model=m, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=p.tokenizer, callbacks=[Mark()])
t.train(); print(f"bare_train_s={marks['end'] - marks['begin']:.2f}")
likeforlike_report(t, 'OUT/likeforlike.json')
"""

OVERRIDES = ["data.eval_fraction=0", "train.samples=[]"]
"""Studio's evaluation and samples off: the bare script has neither."""


def studio_train_seconds(overrides: list[str]) -> tuple[float, dict[str, Any]]:
    from likeforlike import REPORT_FILE, read_report, run_probed_worker

    from lorastudio import registry
    from lorastudio.train.launch import runs
    from lorastudio.train.run.eventlog import read_all

    run_dir = runs.create_run(registry.load("tiny-pirate", overrides))
    done = run_probed_worker(run_dir)
    if done.returncode != 0:
        sys.exit(f"studio worker failed:\n{done.stderr[-3000:]}")
    events = read_all(run_dir / "events.jsonl")
    begin = next(e["t"] for e in events if e.get("status") == "training")
    end = next(e["t"] for e in events if e.get("status") == "saving")
    return end - begin, read_report(run_dir / REPORT_FILE)


def monitor_refresh_cost() -> None:
    from lorastudio.train.run.eventlog import EventTail
    from lorastudio.train.run.runstate import RunState

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        with path.open("w") as handle:
            for i in range(100_000):
                handle.write(
                    json.dumps({"v": 1, "t": i, "kind": "metrics", "step": i, "loss": 1.0 / (i + 1)}) + "\n"
                )
        tail, state = EventTail(path), RunState()
        start = time.perf_counter()
        for e in tail.read_new():
            state.apply(e)
        print(f"monitor_initial_read_100k_s={time.perf_counter() - start:.3f}")
        with path.open("a") as handle:
            handle.write(json.dumps({"v": 1, "t": 0, "kind": "metrics", "step": 100_001, "loss": 0.1}) + "\n")
        start = time.perf_counter()
        for e in tail.read_new():
            state.apply(e)
        print(f"monitor_incremental_refresh_ms={(time.perf_counter() - start) * 1000:.3f}")


def bare_train_seconds(overrides: list[str]) -> tuple[float, dict[str, Any]]:
    from likeforlike import REPORT_CODE, REPORT_FILE, read_report

    with tempfile.TemporaryDirectory() as tmp:
        code = REPORT_CODE + BARE.replace("OUT", tmp)
        out = subprocess.run([sys.executable, "-c", code, *overrides], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"bare TRL failed:\n{out.stderr[-3000:]}")
        return float(out.stdout.split("bare_train_s=")[1].split()[0]), read_report(Path(tmp) / REPORT_FILE)


def main() -> None:
    from likeforlike import assert_alike, tokens_line

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=None, help="train.max_steps (default: the recipe's)")
    parser.add_argument("--repeat", type=int, default=3, help="best of K runs on each side")
    args = parser.parse_args()
    overrides = OVERRIDES + ([f"train.max_steps={args.steps}"] if args.steps else [])
    # Both spans run from the trainer's train-begin callback to the end of training; best of K each.
    studio_runs = [studio_train_seconds(overrides) for _ in range(args.repeat)]
    bare_runs = [bare_train_seconds(overrides) for _ in range(args.repeat)]
    assert_alike("train_overhead", studio_runs[0][1], bare_runs[0][1])
    studio, bare = min(s for s, _ in studio_runs), min(b for b, _ in bare_runs)
    print(f"like for like: {json.dumps(studio_runs[0][1]['settings'], sort_keys=True)}")
    print(tokens_line(studio_runs[0][1], bare_runs[0][1]))
    print(f"studio_train_s={studio:.2f} bare_trl_s={bare:.2f} ratio={studio / bare:.3f}")
    monitor_refresh_cost()


if __name__ == "__main__":
    main()
