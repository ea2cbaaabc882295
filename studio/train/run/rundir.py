"""A run directory's own files: their names and ``run.json``, the metadata beside the event log.

Everything that starts, supervises or reads a run (``runs``, ``launch``, ``nodes``, ``slurm``) names the files
through here, so none of them has to import another for a file name (which made import cycles). Which live
process is a run's worker is decided here too (``worker_process``), for everything that signals one or judges
whether a run is alive.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lorastudio import registry
from lorastudio.errors import RunError
from lorastudio.recipe import Recipe

RUN_FILE = "run.json"
RECIPE_FILE = "recipe.yaml"
LOG_FILE = "worker.log"
"""The worker's (or supervisor's) stdout and stderr: tracebacks, anything printed outside the event log."""
META_LOCK = ".run.json.lock"
"""Held while ``run.json`` is read and rewritten: the supervisor, the worker and the TUI (a note) all update it."""
NOTE_FILE = "note.txt"
"""One line of free text per run, kept beside run.json (never inside it: the worker rewrites run.json)."""
CHECKPOINTS_DIR = "checkpoints"

_NUMBER = (int, float)
META_FIELDS: dict[str, tuple[str, tuple[type, ...]]] = {
    "format": ("a whole number", (int,)),
    "name": ("text", (str,)),
    "recipe": ("text", (str,)),
    "extends": ("text or null", (str, type(None))),
    "created": ("a time in seconds", _NUMBER),
    "pid": ("a process id", (int, type(None))),
    "pid_started": ("a time in seconds or null", (*_NUMBER, type(None))),
    "nodes": ("a whole number", (int,)),
    "slurm": ("an object", (dict, type(None))),
    "sweep": ("an object", (dict, type(None))),
}
"""run.json's fields that readers use -> (what it must be, the JSON types it may have). A field of another type
is left out of :func:`read_meta` and named by :func:`inspect_meta`; fields not named here are kept as they are."""

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "true/false", type(None): "null"}

RECIPE_CHECKS: list[Any] = []
"""More checks ``create_run`` makes of a recipe before its run directory exists, each ``check(recipe)``
raising a StudioError: those of stages above this one, installed by the faces (``evaluate/intraining.py``
``install``: ``train.eval_tasks``). Here, not in ``runs``, so that installing one costs a face no imports."""


def _well_typed(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON's true/false is no number, whatever Python says
        return bool in types
    if isinstance(value, float) and not math.isfinite(value):  # Python's json reads NaN and Infinity
        return False
    return isinstance(value, types)


def _load(path: Path) -> tuple[Any, str | None]:
    """(run.json as JSON gives it, None), or (None, what is wrong with the file as a whole)."""
    file = path / RUN_FILE
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return None, f"{RUN_FILE} is missing"
    except OSError as exc:
        return None, f"{RUN_FILE} cannot be read ({exc.strerror or exc})"
    if not data.strip():
        return None, f"{RUN_FILE} is empty"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"{RUN_FILE} is not text (binary data at byte {exc.start})"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return (
            None,
            f"{RUN_FILE} is not valid JSON (cut off?): {exc.msg} at line {exc.lineno} column {exc.colno}",
        )
    except RecursionError:  # arrays or objects nested thousands deep: Python's reader gives up
        return None, f"{RUN_FILE} is not valid JSON: nested too deep"


def inspect_meta(path: Path) -> tuple[dict[str, Any], str | None]:
    """(the fields of ``run.json`` a reader can use, what is wrong with the file or None).

    A file that is not a JSON object gives no fields; a known field of the wrong type (:data:`META_FIELDS`) is
    left out. The problem is one line naming the file and the field, for the run listing's ``damaged`` status.
    """
    data, problem = _load(path)
    if problem is not None:
        return {}, problem
    if not isinstance(data, dict):
        kind = _JSON_TYPES.get(type(data), "a number")
        return {}, f"{RUN_FILE} holds {kind}, not an object of the run's fields"
    meta, wrong = {}, []
    for key, value in data.items():
        expected = META_FIELDS.get(key)
        if expected is not None and not _well_typed(value, expected[1]):
            wrong.append(f"{key} is {json.dumps(value)[:40]}, not {expected[0]}")
        else:
            meta[key] = value
    return meta, (f"{RUN_FILE}: " + "; ".join(wrong)) if wrong else None


def read_meta(path: Path) -> dict[str, Any]:
    """``run.json``'s usable fields (see :func:`inspect_meta`); empty when the file is missing or damaged."""
    return inspect_meta(path)[0]


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
        meta, problem = _load(path)
        if meta is None and (path / RUN_FILE).exists():  # damaged: rewriting it would lose what it held
            raise RunError(f"{path.name}: {problem}; not rewritten")
        if meta is not None and not isinstance(meta, dict):
            raise RunError(f"{path.name}: {RUN_FILE} is not an object of the run's fields; not rewritten")
        meta = meta or {}
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
    """The RUN_DIR after ``-m lorastudio.worker`` / ``-m lorastudio.train.launch.supervisor`` in a command line."""
    for i, part in enumerate(cmdline[:-1]):
        if part in WORKER_MODULES and i > 0 and cmdline[i - 1] == "-m":
            return cmdline[i + 1]
    return None


def load_run_recipe(path: Path) -> Recipe:
    """The run's own recipe snapshot; the recipe registry is read only for old runs that still ``extends``."""
    return registry.load_snapshot(path / RECIPE_FILE)


def latest_checkpoint(path: Path) -> Path | None:
    """The newest ``checkpoint-N`` folder of a run (by step), or None."""
    folder = path / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    found = [
        (int(m.group(1)), p) for p in folder.iterdir() if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))
    ]
    return max(found)[1] if found else None
