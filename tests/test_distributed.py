"""Training on more than one device: accelerate launch, rank 0 writes, collective stop, a dead rank fails the run.

The end-to-end tests run two CPU processes over gloo on the tiny model (what CI has); the launch commands
for GPUs and FSDP are checked as commands.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import STUDIO_BIN, state_of
from conftest import wait_for as _wait_for

from lorastudio import registry
from lorastudio.errors import StudioError
from lorastudio.models.estimate import estimate_vram_gb
from lorastudio.train.launch import runs
from lorastudio.train.launch import supervisor as launch
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all
from lorastudio.train.run.events import StatusEvent
from lorastudio.train.trainer.backend import Hardware, choose_backend
from lorastudio.train.trainer.distributed import NullWriter, placement

LOSS_TOLERANCE = 1e-4
"""Largest per-step |loss(2 processes x batch 4) - loss(1 process x batch 8)| allowed. Measured: 2.9e-6 at worst
over 20 steps (float summation order); steps 1-6 agree exactly."""


# -- commands and decisions (no processes) ---------------------------------------------------------
def test_recipe_devices_fields() -> None:
    recipe = registry.load("tiny-pirate")
    assert recipe.train.devices == 1 and recipe.train.distributed == "ddp"
    assert registry.load("tiny-pirate", ["train.devices=all"]).train.devices == "all"
    assert (
        registry.load("tiny-pirate", ["train.devices=4", "train.distributed=fsdp"]).train.distributed
        == "fsdp"
    )
    for bad in ("train.devices=0", "train.devices=many", "train.distributed=zero3"):
        with pytest.raises(StudioError, match=bad.split("=")[0]):
            registry.load("tiny-pirate", [bad])


def test_accelerate_command_for_ddp_and_fsdp(tmp_path: Path) -> None:
    cmd = launch.accelerate_command(tmp_path, 2, "ddp", resume=True, port=29999, python="py")
    assert cmd[:3] == ["py", "-m", "accelerate.commands.launch"]  # the venv's accelerate, not PATH's
    joined = " ".join(cmd)
    assert "--multi_gpu" in cmd and "--num_processes 2" in joined and "--num_machines 1" in joined
    assert "--main_process_port 29999" in joined and "--max_restarts 0" in joined
    assert cmd[-4:] == ["-m", "lorastudio.worker", str(tmp_path), "--resume"]
    assert "--cpu" not in cmd and "--use_fsdp" not in cmd
    fsdp = launch.accelerate_command(tmp_path, 4, "fsdp", port=1)
    assert "--use_fsdp" in fsdp and "--multi_gpu" not in fsdp
    assert "FULL_SHARD" in fsdp and "--fsdp_use_orig_params" in fsdp
    own = launch.accelerate_command(tmp_path, 4, "fsdp", port=1, config_file="mine.yaml")
    assert own[3:5] == ["--config_file", "mine.yaml"] and "FULL_SHARD" not in own  # the user's settings win


def test_devices_resolve_against_visible_gpus() -> None:
    assert launch.resolve_devices("all", 4) == 4
    assert launch.resolve_devices("all", 0) == 1
    assert launch.resolve_devices(2, 0) == 2  # CPU processes over gloo
    with pytest.raises(StudioError, match="train.devices: 8, but only 2 CUDA devices are visible"):
        launch.resolve_devices(8, 2)
    assert launch.needs_launcher(2) and launch.needs_launcher("all") and not launch.needs_launcher(1)
    assert launch.launch_env(cuda=False, base={})["ACCELERATE_USE_CPU"] == "true"
    with pytest.raises(StudioError, match="fsdp needs CUDA GPUs"):
        launch.check_distributed("fsdp", 2, 0)
    launch.check_distributed("fsdp", 2, 2)
    launch.check_distributed("ddp", 2, 0)
    assert "ACCELERATE_USE_CPU" not in launch.launch_env(cuda=True, base={})


def test_unsloth_trains_on_one_device() -> None:
    gpu = Hardware(True, True, "H100")
    assert choose_backend(gpu, unsloth_importable=True, env={}) == "unsloth"
    assert choose_backend(gpu, unsloth_importable=True, env={}, devices=2) == "hf"  # automatic: falls back
    with pytest.raises(StudioError, match="unsloth trains on one device.*train.devices: 1"):
        choose_backend(gpu, unsloth_importable=True, env={"STUDIO_BACKEND": "unsloth"}, devices=2)


def test_vram_estimate_ddp_replicates_fsdp_shards() -> None:
    recipe = registry.load("tiny-pirate", ["model.params_billion=8"])
    one = estimate_vram_gb(recipe)
    assert estimate_vram_gb(recipe, devices=4, distributed="ddp") == one
    four = estimate_vram_gb(recipe, devices=4, distributed="fsdp")
    assert four is not None and one is not None and four < 0.5 * one
    assert (
        estimate_vram_gb(
            registry.load(
                "tiny-pirate", ["model.params_billion=8", "train.devices=4", "train.distributed=fsdp"]
            )
        )
        == four
    )


def test_placement_and_root_cause() -> None:
    assert placement({}).is_main and not placement({}).distributed
    second = placement({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"})
    assert second.distributed and not second.is_main
    done = NullWriter().emit(StatusEvent(status="done"))
    assert isinstance(done, StatusEvent) and done.status == "done"
    log = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
lorastudio.worker FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-24_17:50:01
  host      : box
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 4241)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 4241
[2]:
  time      : 2026-11-24_17:50:01
  host      : box
  rank      : 2 (local_rank: 2)
  exitcode  : 1 (pid: 4243)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-24_17:50:01
  host      : box
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 4242)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 4242
============================================================
"""
    assert launch.root_cause(log) == (
        "training process rank 1 (pid 4242) was killed by SIGKILL; the launcher stopped the others"
    )
    assert launch.root_cause("nothing here") is None
    cause = launch.root_cause(log.replace("-9 (pid: 4242)", "1 (pid: 4242)"))
    assert cause is not None and cause.startswith(
        "training process rank 1 (pid 4242) exited with code 1"
    )  # the root cause, not the echo of SIGTERM


# -- two CPU processes over gloo ------------------------------------------------------------------
def wait_for(predicate, timeout: float = 300, every: float = 0.3):
    return _wait_for(predicate, timeout, every)


def events_of(run_dir: Path) -> list[dict]:
    return read_all(run_dir / EVENTS_FILE)


def rank_processes(run_dir: Path) -> dict[int, int]:
    """rank -> pid of the run's training processes (children of the supervisor recorded in run.json)."""
    import psutil

    supervisor = psutil.Process(int(runs.read_meta(run_dir)["pid"]))
    found = {}
    for proc in supervisor.children(recursive=True):
        try:
            if "lorastudio.worker" in " ".join(proc.cmdline()) and "RANK" in proc.environ():
                found[int(proc.environ()["RANK"])] = proc.pid
        except psutil.Error:
            continue
    return found


def alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture(scope="module")
def two_process_run(tiny_model: Path) -> Path:
    """`studio train tiny-pirate train.max_steps=20 --devices 2`, per-device batch 4."""
    result = subprocess.run(
        [STUDIO_BIN, "train", "tiny-pirate", "train.max_steps=20", "train.batch_size=4", "--devices", "2"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    run_dir = Path(result.stderr.split("run: ", 1)[1].splitlines()[0].strip())
    assert result.returncode == 0, (
        result.stdout + result.stderr + (run_dir / runs.LOG_FILE).read_text()[-3000:]
    )
    return run_dir


@pytest.mark.slow
def test_two_processes_reach_done_with_rank_0_writing_once(two_process_run: Path, tiny_model: Path) -> None:
    events = events_of(two_process_run)
    statuses = [e["status"] for e in events if e["kind"] == "status"]
    assert statuses == ["queued", "starting", "loading model", "loading data", "training", "saving", "done"]
    training = next(e for e in events if e.get("status") == "training")
    assert training["world_size"] == 2 and state_of(two_process_run).world_size == 2
    assert [m["step"] for m in events if m["kind"] == "metrics"] == list(range(1, 21))  # each step once
    assert [e["step"] for e in events if e["kind"] == "checkpoint"] == [20]
    assert [p.name for p in (two_process_run / "checkpoints").glob("checkpoint-*")] == ["checkpoint-20"]
    saved = {p.name for p in (two_process_run / "checkpoints" / "checkpoint-20").iterdir()}
    assert {
        "adapter_model.safetensors",
        "rng_state_0.pth",
        "rng_state_1.pth",
    } <= saved  # each rank's RNG, to resume

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model), two_process_run / "adapter"
    )
    assert any("lora_A" in name for name, _ in model.named_parameters())
    log = (two_process_run / runs.LOG_FILE).read_text()
    assert "accelerate.commands.launch" in log and "--num_processes 2" in log


@pytest.mark.slow
def test_two_processes_match_one_process_with_twice_the_batch(
    two_process_run: Path, tiny_model: Path
) -> None:
    one = runs.create_run(registry.load("tiny-pirate", ["train.max_steps=20", "train.batch_size=8"]))
    # one thread, as each of the two processes has (OMP_NUM_THREADS=1 from the launcher): same kernels, same sums
    result = subprocess.run(
        [sys.executable, "-m", "lorastudio.worker", str(one)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    single = state_of(one).loss
    double = state_of(two_process_run).loss
    assert [s for s, _ in single] == [s for s, _ in double] == list(range(1, 21))
    worst = max(abs(a - b) for (_, a), (_, b) in zip(single, double, strict=True))
    print(
        f"max |loss diff| over 20 steps: {worst:.2e} (first losses {single[0][1]:.4f} / {double[0][1]:.4f})"
    )
    assert worst <= LOSS_TOLERANCE


def _start_two(*overrides: str) -> Path:
    run_dir = runs.create_run(
        registry.load("tiny-pirate", ["train.batch_size=4", "train.devices=2", *overrides])
    )
    runs.start_worker(run_dir)
    return run_dir


@pytest.mark.slow
def test_sigterm_stops_both_at_one_step_saves_once_and_resume_finishes(tiny_model: Path) -> None:
    run_dir = _start_two("train.max_steps=60", "train.save_steps=3")
    wait_for(lambda: state_of(run_dir).step >= 4)
    ranks = rank_processes(run_dir)
    assert sorted(ranks) == [0, 1]
    assert runs.stop_run(run_dir)  # SIGTERM to the supervisor, which tells both ranks
    wait_for(lambda: state_of(run_dir).finished, timeout=120)
    state = state_of(run_dir)
    assert state.status == "stopped" and "SIGTERM" in (state.cause or ""), state.cause
    assert state.step < 60
    events = events_of(run_dir)
    assert [e["status"] for e in events if e["kind"] == "status"].count("saving") == 1
    assert (run_dir / "adapter" / "adapter_config.json").exists()
    wait_for(lambda: not any(alive(pid) for pid in ranks.values()), timeout=60)
    wait_for(lambda: runs.summarise(run_dir).status == "stopped", timeout=30)

    before = len(events)
    last = runs.latest_checkpoint(run_dir)
    assert last is not None
    runs.start_worker(run_dir, resume=True)  # two processes again: the run's recipe says train.devices: 2
    wait_for(lambda: runs.summarise(run_dir).status in ("done", "failed", "died"), timeout=600)
    after = events_of(run_dir)[before:]
    assert after[-1].get("status") == "done", after[-3:]
    steps = [e["step"] for e in after if e["kind"] == "metrics"]
    assert steps == list(range(int(last.name.split("-")[1]) + 1, 61))


@pytest.mark.slow
def test_killing_one_rank_fails_the_run(tiny_model: Path) -> None:
    run_dir = _start_two("train.max_steps=100000", "train.save_steps=100000")
    wait_for(lambda: state_of(run_dir).step >= 2)
    ranks = rank_processes(run_dir)
    killed = time.monotonic()
    os.kill(ranks[1], signal.SIGKILL)
    summary = wait_for(
        lambda: (s := runs.summarise(run_dir)).status in ("failed", "died", "stopped") and s, timeout=90
    )
    took = time.monotonic() - killed
    assert summary.status == "failed", summary
    assert "rank 1" in (summary.cause or "") and "SIGKILL" in summary.cause, summary.cause
    assert not alive(ranks[0])
    print(f"failed {took:.1f} s after rank 1 was killed: {summary.cause}")
    assert json.loads((run_dir / runs.RUN_FILE).read_text())["pid"] not in ranks.values()  # the supervisor's


def test_gpu_panel_lists_each_device() -> None:
    from rich.console import Console

    from lorastudio.widgets.gpu_panel import GpuPanel

    def gpu(index: int, used: float, util: float) -> dict:
        return {
            "index": index,
            "name": "H100",
            "memory_used_mb": used,
            "memory_total_mb": 81559.0,
            "process_memory_mb": used,
            "utilization_pct": util,
            "temperature_c": 60.0,
            "power_w": 500.0,
        }

    from lorastudio.train.run.events import TelemetryEvent

    panel = GpuPanel()
    panel.show(
        TelemetryEvent.from_json(
            {
                "kind": "telemetry",
                "gpus": [gpu(0, 40000.0, 97.0), gpu(1, 20000.0, 55.0)],
                "host_ram_used_mb": 1000.0,
                "host_ram_total_mb": 2000.0,
                "rss_mb": 1.0,
                "cpu_pct": 2.0,
            }
        )
    )
    console = Console(width=40, record=True, file=io.StringIO())
    console.print(getattr(panel, "renderable", None) or panel.content)
    lines = console.export_text().splitlines()
    assert any(line.startswith("GPU 0") and "39.1/79.6 GiB" in line and "97 %" in line for line in lines), (
        lines
    )
    assert any(line.startswith("GPU 1") and "19.5/79.6 GiB" in line and "55 %" in line for line in lines), (
        lines
    )


def test_cli_devices_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from lorastudio.cli import main

    with pytest.raises(SystemExit):
        main(["train", "tiny-pirate", "--devices", "0"])
    assert "give a number of devices (1, 2, ...) or 'all'" in capsys.readouterr().err
    assert main(["train", "tiny-pirate", "--devices", "2", "--no-start"]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert runs.load_run_recipe(run_dir).train.devices == 2
    assert runs.summarise(run_dir).status == "queued" and "pid" not in runs.read_meta(run_dir)
