"""One GPU, one run (a queue held by flock), CPU thread shares, checkpoints kept, and the re-attach message."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import stand_in_worker, state_of
from conftest import wait_for as _wait_for

from lorastudio import registry
from lorastudio.train.launch import runs
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all
from lorastudio.train.trainer.queue import (
    CpuSlot,
    DeviceLock,
    device_name,
    fair_threads,
    live_cpu_workers,
    queued_status,
)


def wait_for(predicate, timeout: float = 240, every: float = 0.2):
    return _wait_for(predicate, timeout, every)


HOLD = (
    "import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(600)\n"
)


def hold_in_other_process(path: Path) -> subprocess.Popen[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_device_names() -> None:
    assert device_name(True, {}) == "GPU 0"
    assert device_name(True, {"CUDA_VISIBLE_DEVICES": "3,1"}) == "GPU 3"
    assert device_name(False, {}) is None and device_name(False, {"STUDIO_QUEUE_CPU": "1"}) == "CPU"
    written: str = queued_status("GPU 0")  # a Status beyond the Literal's words: see Status
    assert written == "queued (waiting for GPU 0)"


def test_lock_waits_and_is_freed_when_the_holder_dies(tmp_path: Path) -> None:
    lock = DeviceLock("GPU 0", tmp_path)
    holder = hold_in_other_process(lock.path)
    try:
        assert not lock.try_acquire()
        stop, queued = threading.Event(), []
        got: list[bool] = []
        thread = threading.Thread(target=lambda: got.append(lock.wait(stop, lambda: queued.append(1), 0.05)))
        thread.start()
        wait_for(lambda: queued, timeout=10)
        holder.kill()  # the kernel drops the holder's flock: the waiter goes on by itself
        holder.wait()
        thread.join(10)
        assert got == [True] and lock.held
    finally:
        holder.kill()
        lock.release()
    other = DeviceLock("GPU 0", tmp_path)
    assert other.try_acquire()
    stop = threading.Event()
    stop.set()
    assert DeviceLock("GPU 0", tmp_path).wait(stop, lambda: None, 0.05) is False  # stopped while queued
    other.release()


def test_cpu_slots_count_live_workers(tmp_path: Path) -> None:
    assert fair_threads(2, 2) == 1 and fair_threads(16, 3) == 5 and fair_threads(2, 0) == 2
    mine = CpuSlot(tmp_path)
    assert live_cpu_workers(tmp_path) == 1
    holder = hold_in_other_process(tmp_path / "cpu-slot-7.lock")
    try:
        assert live_cpu_workers(tmp_path) == 2
    finally:
        holder.kill()
        holder.wait()
    assert live_cpu_workers(tmp_path) == 1
    mine.release()
    assert live_cpu_workers(tmp_path) == 0


def queue_env() -> dict[str, str]:
    return {"STUDIO_QUEUE_CPU": "1"}


def test_stopping_a_queued_run_removes_it(tmp_path: Path) -> None:
    from lorastudio.train.trainer.queue import locks_dir

    run_dir = runs.create_run(registry.load("tiny-pirate"))
    holder = hold_in_other_process(locks_dir() / "cpu.lock")
    try:
        runs.start_worker(run_dir, env=queue_env())
        wait_for(lambda: state_of(run_dir).status == queued_status("CPU"))
        assert runs.summarise(run_dir).status == queued_status("CPU")
        assert runs.stop_run(run_dir)
        wait_for(lambda: state_of(run_dir).finished, timeout=60)
        state = state_of(run_dir)
        assert state.status == "stopped" and "queued" in (state.cause or "")
        assert not (run_dir / "adapter").exists()
    finally:
        holder.kill()


@pytest.mark.slow
def test_queued_run_starts_by_itself_and_keeps_n_checkpoints(tiny_model: Path) -> None:
    from lorastudio.train.trainer.queue import locks_dir

    recipe = registry.load(
        "tiny-pirate", ["train.max_steps=5", "train.save_steps=1", "train.save_total_limit=2"]
    )
    run_dir = runs.create_run(recipe)
    holder = hold_in_other_process(locks_dir() / "cpu.lock")
    try:
        runs.start_worker(run_dir, env=queue_env())
        wait_for(lambda: state_of(run_dir).status == "queued (waiting for CPU)")
        time.sleep(1.0)
        assert state_of(run_dir).status == "queued (waiting for CPU)" and state_of(run_dir).step == 0
    finally:
        holder.kill()  # the first "run" ends: the queued one goes on without anyone asking
    wait_for(lambda: state_of(run_dir).finished, timeout=600)
    state = state_of(run_dir)
    assert state.status == "done", (run_dir / "worker.log").read_text()
    statuses = [e["status"] for e in read_all(run_dir / EVENTS_FILE) if e["kind"] == "status"]
    assert statuses.index("queued (waiting for CPU)") < statuses.index("training")
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*"))
    assert kept == ["checkpoint-4", "checkpoint-5"]  # 5 saves, the newest 2 kept
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()  # the final adapter, always


def test_quit_prints_the_reattach_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:

    from lorastudio import app as app_module

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    live = runs.create_run(registry.load("tiny-pirate"))
    with (live / EVENTS_FILE).open("a") as handle:
        handle.write(
            json.dumps({"v": 1, "t": time.time(), "kind": "status", "status": "training", "max_steps": 80})
            + "\n"
        )
    stand_in_worker(live)  # "alive"
    finished = runs.create_run(registry.load("tiny-pirate"))
    with (finished / EVENTS_FILE).open("a") as handle:
        handle.write(json.dumps({"v": 1, "t": time.time(), "kind": "status", "status": "done"}) + "\n")
    monkeypatch.setattr(app_module.StudioApp, "run", lambda self, *a, **kw: None)  # the TUI opens and closes
    app_module.run_app()
    out = capsys.readouterr().out
    assert "1 run is still going" in out and f"studio attach {live.name}" in out
    assert finished.name not in out
