"""A run directory's own files: their names and ``run.json``, the metadata beside the event log.

Everything that starts, supervises or reads a run (``runs``, ``launch``, ``nodes``, ``slurm``) names the files
through here, so none of them has to import another for a file name (which made import cycles). Which live
process is a run's worker is decided here too (``worker_process``), for everything that signals one or judges
whether a run is alive.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"
RECIPE_FILE = "recipe.yaml"
LOG_FILE = "worker.log"
"""The worker's (or supervisor's) stdout and stderr: tracebacks, anything printed outside the event log."""
META_LOCK = ".run.json.lock"
"""Held while ``run.json`` is read and rewritten: the supervisor, the worker and the TUI (a note) all update it."""


def read_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    # a name of its own per writer: with one shared name a second writer could truncate the file the first
    # was about to rename into place, and a half-written run.json would then look complete
    tmp = path / f".{RUN_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(path / RUN_FILE)  # a reader sees the old file or the new one, never half of one
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _meta_lock(path: Path) -> Iterator[None]:
    with (path / META_LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def update_meta(path: Path, **fields: Any) -> None:
    """Set ``fields`` in ``run.json``, keeping every other writer's fields (read and rewritten under a lock)."""
    with _meta_lock(path):
        meta = read_meta(path)
        meta.update(fields)
        write_meta(path, meta)


def create_time(pid: int) -> float | None:
    """The process's start time, recorded beside its pid so a reused pid is not taken for it."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


WORKER_MODULES = ("lorastudio.worker", "lorastudio.train.launch")
"""The modules a run's recorded process runs (``python -m MODULE RUN_DIR ...``): the worker or its supervisor."""


def worker_process(path: Path, meta: dict[str, Any]) -> Any | None:
    """The live process ``run.json`` records (a ``psutil.Process``), proven to be this run's worker; else None.

    The proof is both its start time, the recorded ``pid_started`` (the system reuses pids: a newer process
    with the same pid starts later), and its command line, which runs a studio worker or supervisor on this very
    directory (compared by inode, so a copied run directory does not claim the original's worker). A run.json
    without ``pid_started`` (an older or hand-made one) proves nothing. Nothing is ever signalled without this
    proof; the run reads ``died`` instead.
    """
    pid, started = meta.get("pid"), meta.get("pid_started")
    if not pid or started is None:
        return None
    try:
        import psutil

        proc = psutil.Process(int(pid))
        if abs(proc.create_time() - float(started)) >= 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        target = _run_dir_argument(proc.cmdline())
        if target is None:
            return None
        if not os.path.isabs(target):
            target = os.path.join(proc.cwd(), target)
        return proc if os.path.samefile(target, path) else None
    except Exception:  # gone, not ours to read (psutil.AccessDenied), a malformed pid: not proven
        return None


def _run_dir_argument(cmdline: list[str]) -> str | None:
    """The RUN_DIR after ``-m lorastudio.worker`` / ``-m lorastudio.train.launch`` in a command line."""
    for i, part in enumerate(cmdline[:-1]):
        if part in WORKER_MODULES and i > 0 and cmdline[i - 1] == "-m":
            return cmdline[i + 1]
    return None
