"""The GPU kit's dry run (benchmarks/gpu_truth.py --dry-run): every step's CPU part runs here, so the script that
a device call runs cannot rot between the tasks that are lent a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["real_model", "shape_8b", "preference", "estimate", "oom", "chat_beside"]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the whole GPU script's steps, dry, in one test
def test_dry_run_writes_a_record_per_step(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_truth.py"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    report = json.loads((out / "gpu_truth.json").read_text())
    steps = report["steps"]
    assert list(steps) == STEPS, done.stdout + done.stderr
    failed = {name: r.get("error") for name, r in steps.items() if not r["ok"]}
    assert done.returncode == 0, f"{failed}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    assert not failed, f"{failed}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    # one line of figures per step, in order
    lines = [line for line in done.stdout.splitlines() if line.split(":")[0] in STEPS]
    assert [line.split(":")[0] for line in lines] == STEPS
    assert report["dry_run"] is True
    assert report["cuda"] is False
    assert report["versions"]["torch"]
    assert report["versions"]["trl"]
    # what needs CUDA says so, per step; the rest ran and has its figures
    for name in ("real_model", "shape_8b", "preference", "oom"):
        assert any("needs CUDA" in reason for reason in steps[name]["skipped"]), name
    hf = steps["real_model"]["runs"]["hf"]
    assert hf["status"] == "done"
    assert hf["loss_last"] < hf["loss_first"]
    assert hf["tokens_per_s"] > 0
    assert hf["peak_rss_mb"] > 0
    assert hf["telemetry"]["kind"] == "telemetry"
    assert hf["chat"]["ok"]
    assert hf["chat"]["first_token_s"] > 0
    assert hf["chat"]["tokens"] > 0
    assert steps["shape_8b"]["runs"]["hf"]["status"] == "done"
    assert {m: r["status"] for m, r in steps["preference"]["runs"].items()} == {"dpo": "done", "grpo": "done"}
    assert steps["preference"]["dpo_rewards/margins"][1] is not None
    assert steps["preference"]["grpo_reward"][1] is not None
    rows = steps["estimate"]["rows"]
    assert len(rows) == 4
    assert all(r["estimate_mb"] and r["measured_mb"] for r in rows)
    resume = steps["oom"]["resume"]
    assert resume["stopped_status"] == "stopped"
    assert resume["final_status"] == "done"
    assert resume["final_step"] > resume["stopped_at_step"] >= 2
    assert resume["resumed_batch"] == [2, 2]  # continued from its checkpoint with half the batch, accumulated
    beside = steps["chat_beside"]
    assert beside["chat_outcome"] == "admitted"
    assert beside["training_status"] == "done"
    assert beside["admission"]["device"] == "CPU"
    assert beside["admission"]["need_mb"] > 0


def test_oom_numbers_are_read_from_torchs_message() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gpu_truth import _oom_numbers
    finally:
        sys.path.pop(0)
    text = (
        "CUDA out of memory. Tried to allocate 31.31 GiB. GPU 0 has a total capacity of 79.19 GiB of which "
        "12.50 GiB is free. Including non-PyTorch memory, this process has 66.68 GiB memory in use."
    )
    assert _oom_numbers(text) == {"asked": "31.31 GiB", "total": "79.19 GiB", "free": "12.50 GiB"}
    assert _oom_numbers("CUDA error: an illegal memory access") is None
