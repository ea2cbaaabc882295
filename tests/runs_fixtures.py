"""Recorded run directories (no training) for the Runs and Compare tests."""

from __future__ import annotations

import json
from pathlib import Path

RECIPE = """name: tiny-pirate
model:
  name: tiny
  max_seq_length: 128
data:
  source: /srv/data/tiny_pirate.jsonl
  format: dolly
train:
  learning_rate: {lr}
  max_steps: {steps}
  batch_size: {batch}
"""


def write_run(
    root: Path,
    name: str,
    *,
    created: float,
    steps: int = 12,
    lr: float = 0.003,
    batch: int = 8,
    final: str = "done",
    loss_scale: float = 12.0,
    eval_every: int = 0,
    stop_at: int | None = None,
    vram_mb: float | None = None,
    recipe: str = "tiny-pirate",
) -> Path:
    """A finished run's directory as the worker leaves it: run.json, recipe.yaml, events.jsonl."""
    run = root / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(
        json.dumps({"format": 1, "name": name, "recipe": recipe, "created": created})
    )
    (run / "recipe.yaml").write_text(RECIPE.format(lr=lr, steps=steps, batch=batch))
    (run / "worker.log").write_text("")
    events: list[dict] = [
        {"kind": "status", "status": "queued"},
        {"kind": "status", "status": "starting"},
        {"kind": "status", "status": "training", "max_steps": steps},
    ]
    last = stop_at or steps
    for step in range(1, last + 1):
        metrics = {
            "kind": "metrics",
            "step": step,
            "max_steps": steps,
            "loss": loss_scale / step**0.7,
            "learning_rate": lr * (1 - step / (steps + 1)),
            "tokens_per_s": 8000.0 + step,
            "tokens_seen": 280 * step,
        }
        events.append(metrics)
        if eval_every and step % eval_every == 0:
            events.append(
                {
                    "kind": "metrics",
                    "step": step,
                    "max_steps": steps,
                    "eval_loss": loss_scale / 2 / step**0.5 + (0.5 if step == last else 0),
                }
            )
        gpus = [{"index": 0, "memory_used_mb": vram_mb + step, "process_memory_mb": None}] if vram_mb else []
        events.append(
            {"kind": "telemetry", "gpus": gpus, "rss_mb": 600.0 + step, "torch_peak_reserved_mb": None}
        )
    events.append(
        {"kind": "status", "status": final, "cause": "stopped by SIGTERM" if final == "stopped" else None}
    )
    with (run / "events.jsonl").open("w") as handle:
        for i, event in enumerate(events):
            handle.write(json.dumps({"v": 1, "t": created + i * 0.5, **event}) + "\n")
    return run


def write_runs(root: Path) -> list[Path]:
    """Three runs: two that differ in learning rate and batch size, one stopped early with a note."""
    t0 = 1_790_000_000.0
    a = write_run(root, "tiny-pirate-20260922-101500", created=t0, lr=0.003, eval_every=4)
    b = write_run(
        root,
        "tiny-pirate-20260922-113000",
        created=t0 + 3600,
        lr=0.001,
        batch=4,
        loss_scale=9.0,
        eval_every=4,
    )
    c = write_run(
        root,
        "qwen-csv-concepts-long-experiment-20260922-120000",
        created=t0 + 7200,
        steps=40,
        final="stopped",
        stop_at=7,
        loss_scale=20.0,
        recipe="qwen-csv-concepts",
    )
    (c / "note.txt").write_text("lr sweep, stopped to free the GPU\n")
    return [a, b, c]


def write_queued_run(root: Path, name: str, *, created: float) -> Path:
    """A run whose live worker waits on the device queue: its status carries the cause, its pid a stand-in
    worker (conftest.stand_in_worker: alive, with a worker's command line), so it lists as queued, not died."""
    from conftest import stand_in_worker

    run = root / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(
        json.dumps(
            {
                "format": 1,
                "name": name,
                "recipe": "tiny-pirate",
                "created": created,
            }
        )
    )
    stand_in_worker(run)
    (run / "recipe.yaml").write_text(RECIPE.format(lr=0.003, steps=12, batch=8))
    (run / "worker.log").write_text("")
    events = [
        {"kind": "status", "status": "queued"},
        {"kind": "status", "status": "starting"},
        {"kind": "status", "status": "queued (waiting for CPU)"},
    ]
    with (run / "events.jsonl").open("w") as handle:
        for i, event in enumerate(events):
            handle.write(json.dumps({"v": 1, "t": created + i * 0.5, **event}) + "\n")
    return run
