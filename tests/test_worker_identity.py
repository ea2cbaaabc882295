"""Stop signals only a run's own worker: the pid in run.json is proven to be it (start time and command line).

Every place that signals a run or judges whether it is alive goes through ``rundir.worker_process``: ``studio
stop``, ``runs.stop_run``, ``studio sweep stop``, the MCP ``stop_run`` tool, delete's live-run refusal, the Runs
screen's ``s``. An unrelated process (``sleep 300``, started here) whose pid a run.json names, with or without
``pid_started``, must survive all of them, and the run must read ``died``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from conftest import STUDIO_BIN, stand_in_worker, wait_until

from lorastudio import registry
from lorastudio.errors import StudioError
from lorastudio.train.launch import manage, runs, sweep
from lorastudio.train.run.eventlog import EVENTS_FILE
from lorastudio.train.run.rundir import update_meta, worker_process

SWEEP = "lr-grid"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data" / "studio" / "runs"


@pytest.fixture
def unrelated() -> Iterator[subprocess.Popen[bytes]]:
    """A process that has nothing to do with studio."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def training_run(root: Path, in_sweep: bool = True) -> Path:
    """A run that says it is training, in a sweep (so ``sweep stop`` reaches it); its pid is set by each test."""
    run = runs.create_run(registry.load("tiny-pirate"), root)
    if in_sweep:
        update_meta(run, sweep={"name": SWEEP, "index": 0})
    with (run / EVENTS_FILE).open("a") as handle:
        handle.write(json.dumps({"v": 1, "t": time.time(), "kind": "status", "status": "training"}) + "\n")
    return run


def _studio_stop(run: Path) -> bool:
    result = subprocess.run([STUDIO_BIN, "stop", str(run)], capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    if result.returncode == 1:
        assert f"{run.name}: no live worker" in result.stderr
    return result.returncode == 0


def _mcp_stop(run: Path) -> bool:
    from lorastudio import mcpserver

    try:
        mcpserver.stop_run(str(run))
    except StudioError as exc:
        assert "no live worker" in str(exc)
        return False
    return True


STOPPERS: dict[str, Callable[[Path], bool]] = {
    "studio stop": _studio_stop,
    "runs.stop_run": runs.stop_run,
    "sweep stop": lambda run: bool(sweep.stop_sweep(SWEEP, run.parent)[0]),
    "mcp stop_run": _mcp_stop,
}


def gone(proc: subprocess.Popen[bytes], wait_s: float = 10.0) -> bool:
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        return False
    return True


@pytest.mark.parametrize("recorded_start", [True, False], ids=["with pid_started", "without pid_started"])
@pytest.mark.parametrize("stopper", list(STOPPERS))
def test_an_unrelated_process_is_never_signalled(
    root: Path, unrelated: subprocess.Popen[bytes], stopper: str, recorded_start: bool
) -> None:
    run = training_run(root)
    started = psutil.Process(unrelated.pid).create_time()  # its real start time: the pid alone is not proof
    update_meta(run, pid=unrelated.pid, **({"pid_started": started} if recorded_start else {}))
    assert STOPPERS[stopper](run) is False
    assert not gone(unrelated, wait_s=0.5)  # no SIGTERM reached it
    assert unrelated.poll() is None
    assert runs.summarise(run).status == "died"
    assert runs.summarise(run).cause == runs.DIED_CAUSE
    assert not manage.is_live(run)
    manage.delete_run(run)  # a died run is not refused as live; the unrelated process lives on
    assert not run.exists() and unrelated.poll() is None


@pytest.mark.parametrize("stopper", list(STOPPERS))
def test_the_runs_own_worker_is_stopped(root: Path, stopper: str) -> None:
    run = training_run(root)
    worker = stand_in_worker(run)
    assert runs.summarise(run).status == "training" and manage.is_live(run)
    assert STOPPERS[stopper](run) is True
    assert gone(worker)


def test_a_copied_run_does_not_claim_the_originals_worker(root: Path) -> None:
    original = training_run(root)
    worker = stand_in_worker(original)
    copy = root / (original.name + "-copy")
    shutil.copytree(original, copy)  # run.json names the original's live worker, pid and start time alike
    assert worker_process(copy, runs.read_meta(copy)) is None
    assert runs.summarise(copy).status == "died"
    assert runs.stop_run(copy) is False and not gone(worker, wait_s=0.5)
    manage.delete_run(copy)
    assert runs.summarise(original).status == "training"
    with pytest.raises(StudioError, match="still running"):
        manage.delete_run(original)  # its own worker still proves it live
    assert runs.stop_run(original) and gone(worker)


async def test_runs_screen_s_never_signals_an_unrelated_process(
    root: Path, unrelated: subprocess.Popen[bytes]
) -> None:
    from lorastudio.app import StudioApp
    from lorastudio.screens.runs import RunsScreen

    run = training_run(root, in_sweep=False)  # a sweep's row would stop the sweep
    update_meta(run, pid=unrelated.pid, pid_started=psutil.Process(unrelated.pid).create_time())
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and bool(app.screen.runs))
        await pilot.press("s")
        await wait_until(pilot, lambda: bool(app._notifications))
        assert [n.message for n in app._notifications] == [f"{run.name} has no live worker (died)"]
        assert isinstance(app.screen, RunsScreen)  # no confirmation asked: nothing to stop
    assert unrelated.poll() is None
