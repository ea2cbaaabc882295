"""Like-for-like checks for the benchmarks that time studio against a bare TRL script.

Both sides report what their trainer actually ran with (read from the trainer object after ``train()``, not
from the recipe): batch, accumulation, lengths, truncation, generations, evaluation, the callbacks that add
work (studio's samples), the torch threads, and the tokens the trainer saw. :func:`assert_alike` refuses a
comparison where a setting that changes the work differs; :func:`tokens_line` prints both token counts.

The studio side runs the real worker (``python -m lorastudio.worker RUN``) through :data:`WORKER_PROBE`, which
only wraps ``Trainer.train`` to write that report beside the run; the bare script calls :data:`REPORT_CODE`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPORT_FILE = "likeforlike.json"
"""Written in the run directory (studio) or where the bare script is told (bare TRL)."""

REPORT_CODE = r"""
def likeforlike_report(trainer, path):
    import json, torch
    args = trainer.args
    names = ("per_device_train_batch_size", "gradient_accumulation_steps", "max_steps", "max_length",
             "max_prompt_length", "max_completion_length", "truncation_mode", "num_generations",
             "eval_strategy", "gradient_checkpointing", "packing", "padding_free", "bf16", "fp16",
             "include_num_input_tokens_seen")
    settings = {n: (str(getattr(args, n)) if n == "eval_strategy" else getattr(args, n)) for n in names
                if hasattr(args, n)}
    settings["eval_data"] = trainer.eval_dataset is not None
    settings["threads"] = torch.get_num_threads()
    extra = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    settings["sample_callbacks"] = sorted(n for n in extra if "ample" in n)
    logged = [e.get("num_tokens") for e in trainer.state.log_history if e.get("num_tokens") is not None]
    report = {"settings": settings, "steps": trainer.state.global_step,
              "input_tokens_seen": int(trainer.state.num_input_tokens_seen or 0),
              "num_tokens_logged": int(max(logged)) if logged else None}
    with open(path, "w") as handle:
        json.dump(report, handle, default=str)
"""
"""Defines ``likeforlike_report(trainer, path)``; the bare scripts exec it and call it after ``train()``."""

WORKER_PROBE = (
    REPORT_CODE
    + r"""
import os, runpy, sys
import transformers
_train = transformers.Trainer.train
def _probed(self, *args, **kwargs):
    out = _train(self, *args, **kwargs)
    likeforlike_report(self, os.path.join(sys.argv[1], "likeforlike.json"))
    return out
transformers.Trainer.train = _probed
runpy.run_module("lorastudio.worker", run_name="__main__", alter_sys=True)
"""
)
"""Runs the worker as ``python -m lorastudio.worker RUN`` does, writing the trainer's report into RUN."""

MUST_MATCH = (
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_steps",
    "max_length",
    "max_prompt_length",
    "max_completion_length",
    "truncation_mode",
    "num_generations",
    "eval_strategy",
    "eval_data",
    "gradient_checkpointing",
    "bf16",
    "fp16",
    "threads",
    "sample_callbacks",
)
"""Settings that change how much work a step is: equal on both sides, or the comparison is refused."""


def run_probed_worker(run_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The worker on ``run_dir``, its trainer's report written to ``run_dir/likeforlike.json``."""
    return subprocess.run(
        [sys.executable, "-c", WORKER_PROBE, str(run_dir)], capture_output=True, text=True, env=env
    )


def read_report(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def differences(studio: dict[str, Any], bare: dict[str, Any]) -> list[str]:
    """``name: studio X, bare Y`` for each setting of :data:`MUST_MATCH` that differs."""
    a, b = studio["settings"], bare["settings"]
    return [f"{n}: studio {a.get(n)!r}, bare {b.get(n)!r}" for n in MUST_MATCH if a.get(n) != b.get(n)]


def assert_alike(label: str, studio: dict[str, Any], bare: dict[str, Any]) -> None:
    """Exit naming every setting that differs: a timing of unlike work is not a figure."""
    diff = differences(studio, bare)
    if diff:
        sys.exit(f"{label}: not like for like, nothing compared:\n  " + "\n  ".join(diff))


def tokens(report: dict[str, Any]) -> int | None:
    """Tokens the trainer processed: its input-token count, else TRL's own logged ``num_tokens``."""
    return report["input_tokens_seen"] or report["num_tokens_logged"]


def tokens_line(studio: dict[str, Any], bare: dict[str, Any]) -> str:
    s, b = tokens(studio), tokens(bare)
    same = "same" if s == b else "DIFFERENT"
    return f"tokens studio={s} bare={b} ({same}) steps studio={studio['steps']} bare={bare['steps']}"
