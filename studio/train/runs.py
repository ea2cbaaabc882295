"""Run directories: create one, start its detached worker, find and summarise runs.

Layout of a run directory (format ``RUN_FORMAT``)::

    run.json        format version, name, recipe name, creation time, worker pid
    recipe.yaml     the fully resolved recipe the worker trains
    events.jsonl    append-only events (see events.py)
    worker.log      the worker's stdout and stderr
    checkpoints/    trainer checkpoints (checkpoint-N)
    adapter/        the final (or stop-time) LoRA adapter, tokenizer and recipe
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio import registry
from lorastudio.errors import RunError
from lorastudio.paths import runs_dir
from lorastudio.recipe import Recipe
from lorastudio.train.events import EVENTS_FILE, EventWriter, RunState, fold, read_all

RUN_FORMAT = 1
RUN_FILE = "run.json"
RECIPE_FILE = "recipe.yaml"
LOG_FILE = "worker.log"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


def create_run(recipe: Recipe, root: Path | None = None) -> Path:
    """Make the run directory, snapshot the recipe and write a first status. Refuses unwritable roots."""
    root = root or runs_dir()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{_slug(recipe.name)}-{stamp}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = root / f"{_slug(recipe.name)}-{stamp}-{suffix}"
        path.mkdir()
        (path / RECIPE_FILE).write_text(registry.dump(recipe), encoding="utf-8")
        write_meta(path, {"format": RUN_FORMAT, "name": path.name, "recipe": recipe.name, "created": time.time()})
        writer = EventWriter(path / EVENTS_FILE)
        writer.status("queued")
        writer.close()
    except OSError as exc:
        raise RunError(f"cannot create a run directory under {root}: {exc.strerror or exc}") from None
    return path


def read_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    tmp = path / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(path / RUN_FILE)


def update_meta(path: Path, **fields: Any) -> None:
    meta = read_meta(path)
    meta.update(fields)
    write_meta(path, meta)


def start_worker(path: Path, resume: bool = False, env: dict[str, str] | None = None,
                 devices: int | str | None = None) -> int:
    """Start ``python -m lorastudio.worker RUN_DIR`` in its own session, detached from this terminal.

    With more than one device (``train.devices``, or ``devices`` here) the session's leader is the launch
    supervisor instead (see ``train/launch.py``), which starts the workers under ``accelerate launch``.
    """
    from lorastudio.train.launch import needs_launcher, supervisor_command

    log = (path / LOG_FILE).open("ab")
    cmd = [sys.executable, "-m", "lorastudio.worker", str(path)]
    if needs_launcher(devices if devices is not None else load_run_recipe(path).train.devices):
        cmd = supervisor_command(path, devices=devices)
    if resume:
        cmd.append("--resume")
    child_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env=child_env, close_fds=True,
    )
    log.close()
    update_meta(path, pid=proc.pid, pid_started=_create_time(proc.pid))
    return proc.pid


def _create_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def worker_alive(meta: dict[str, Any]) -> bool:
    """The recorded worker still runs (same pid *and* start time, so a reused pid does not count)."""
    if meta.get("slurm"):  # its supervisor may run on another machine: Slurm knows (slurm.py)
        from lorastudio.train.slurm import job_alive

        return job_alive(meta)
    pid = meta.get("pid")
    if not pid:
        return False
    try:
        import psutil

        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        started = meta.get("pid_started")
        return started is None or abs(proc.create_time() - float(started)) < 1.0
    except Exception:
        return False


DIED_CAUSE = "the worker exited without a final status (killed or out of memory?)"


def effective_status(state: RunState, meta: dict[str, Any]) -> str:
    """The logged status, or ``died`` when a non-final status has no live worker behind it."""
    if meta.get("slurm"):
        from lorastudio.train.slurm import slurm_status

        return slurm_status(state.status, state.cause, state.finished, meta)[0]
    if state.finished or state.status == "unknown":
        return state.status
    if state.status == "queued" and not meta.get("pid"):
        return "queued"
    return state.status if worker_alive(meta) else "died"


@dataclass(frozen=True)
class RunSummary:
    """One line of ``studio runs``."""

    name: str
    path: Path
    recipe: str
    status: str
    step: int
    max_steps: int
    last_loss: float | None
    started: float | None
    cause: str | None
    best_checkpoint: str | None = None
    """The checkpoint with the lowest eval loss, relative to the run directory (``checkpoints/checkpoint-N``)."""
    best_eval_loss: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "recipe": self.recipe, "status": self.status,
                "step": self.step, "max_steps": self.max_steps, "last_loss": self.last_loss,
                "started": self.started, "cause": self.cause, "best_checkpoint": self.best_checkpoint,
                "best_eval_loss": self.best_eval_loss}


def summarise(path: Path) -> RunSummary:
    meta = read_meta(path)
    state = fold(read_all(path / EVENTS_FILE))
    status = effective_status(state, meta)
    cause = state.cause if status != "died" else DIED_CAUSE
    if meta.get("slurm"):  # the job's state in Slurm: pending reason, time limit, node failure (slurm.py)
        from lorastudio.train.slurm import slurm_status

        status, cause = slurm_status(state.status, state.cause, state.finished, meta)
    return RunSummary(path.name, path, meta.get("recipe", "?"), status, state.step, state.max_steps,
                      state.last_loss, meta.get("created", state.started), cause,
                      best_checkpoint=state.best_checkpoint, best_eval_loss=state.best_eval_loss)


def list_runs(root: Path | None = None) -> list[RunSummary]:
    root = root or runs_dir()
    if not root.is_dir():
        return []
    runs = [summarise(p) for p in root.iterdir() if (p / RUN_FILE).exists()]
    return sorted(runs, key=lambda r: r.started or 0, reverse=True)


def find_run(name_or_path: str, root: Path | None = None) -> Path:
    candidate = Path(name_or_path).expanduser()
    if (candidate / RUN_FILE).exists():
        return candidate.resolve()
    root = root or runs_dir()
    if (root / name_or_path / RUN_FILE).exists():
        return root / name_or_path
    if name_or_path == "latest":
        runs = list_runs(root)
        if runs:
            return runs[0].path
    matches = sorted(p for p in root.glob(f"{name_or_path}*") if (p / RUN_FILE).exists()) if root.is_dir() else []
    if matches:
        return matches[-1]
    raise RunError(f"no such run: {name_or_path!r} (see `studio runs`)")


def load_run_recipe(path: Path) -> Recipe:
    return registry.load_file(path / RECIPE_FILE, files=registry.discover())


def stop_run(path: Path) -> bool:
    """Ask the worker to save and stop (SIGTERM). False when no live worker is found."""
    meta = read_meta(path)
    if meta.get("slurm"):  # scancel --signal=TERM to the job's steps (slurm.py)
        from lorastudio.train.slurm import stop_job

        return stop_job(path, meta)
    if not worker_alive(meta):
        return False
    try:
        os.kill(int(meta["pid"]), signal.SIGTERM)
    except OSError:
        return False
    return True


def latest_checkpoint(path: Path) -> Path | None:
    folder = path / "checkpoints"
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    return max(found)[1] if found else None
