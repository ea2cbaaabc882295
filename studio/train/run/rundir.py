"""A run directory's own files: their names and ``run.json`` (:class:`RunMeta`), the metadata beside the
event log, read and written here only.

Everything that starts, supervises or reads a run (``runs``, ``launch``, ``nodes``, ``slurm``) names the files
through here, so none of them has to import another for a file name (which made import cycles). Which live
process is a run's worker is decided here too (``worker_process``), for everything that signals one or judges
whether a run is alive.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:  # typing's own from Python 3.11; only ever read by the type checker
    from typing_extensions import Unpack

    from lorastudio.recipe import Recipe

from lorastudio.errors import RunError

RUN_FILE = "run.json"
RECIPE_FILE = "recipe.yaml"
LOG_FILE = "worker.log"
"""The worker's (or supervisor's) stdout and stderr: tracebacks, anything printed outside the event log."""
META_LOCK = ".run.json.lock"
"""Held while ``run.json`` is read and rewritten: the supervisor, the worker and the TUI (a note) all update it."""
NOTE_FILE = "note.txt"
"""One line of free text per run, kept beside run.json (never inside it: the worker rewrites run.json)."""
CHECKPOINTS_DIR = "checkpoints"

META_VERSION = 1
"""``run.json``'s ``schema_version``: the version of :class:`RunMeta` this studio writes and reads. A file
without one (written before the field existed) is version 1; a newer one is refused as damaged, by name."""

_STRICT = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
"""JSON's types as they are: no "7" for 7, no true for a number, no NaN (Python's json reads NaN and Infinity)."""


class SlurmMeta(BaseModel):
    """``run.json``'s ``slurm``: the run's Slurm job, written by ``slurm.submit`` and ``slurm.stop_job``."""

    model_config = _STRICT

    job_id: str
    """The current job (the latest submission: a resume submits a new one)."""
    jobs: list[str] = []
    """Every job this run has had, oldest first."""
    script: str | None = None
    """The sbatch script's file name, in the run directory."""
    options: dict[str, Any] = {}
    """The ``SlurmOptions`` it was submitted with (``SlurmOptions.to_json``), reused by a resume."""
    submitted: float | None = None
    """When the current job was submitted (seconds since the epoch)."""
    stop_requested: float | None = None
    """When studio asked the job to stop, so its CANCELLED state reads as our stop, not Slurm's."""


class SweepMeta(BaseModel):
    """``run.json``'s ``sweep``: the sweep a run belongs to (``sweep.start_sweep``)."""

    model_config = _STRICT

    name: str
    """The sweep's name; every member carries the same."""
    index: int = 0
    """The run's place in the sweep's grid (0-based)."""
    of: int | None = None
    """How many runs the sweep has."""
    fields: dict[str, Any] = {}
    """The swept recipe fields (dotted names) and this run's values."""


class RunMeta(BaseModel):
    """``run.json``: a run's metadata beside its event log, written by everything that starts or manages it.

    Every key any writer writes is a field here, and no other is accepted (``extra="forbid"``): a misspelt
    key is refused when it is written (:func:`update_meta`) and named when it is read (:func:`inspect_meta`).
    Every field has a default, so the files of earlier versions (no ``schema_version``, fewer keys) load.
    """

    model_config = _STRICT

    schema_version: int = 1
    """The version of this schema the file was written with (:data:`META_VERSION`); absent: 1."""
    format: int = 1
    """The run directory's layout version (``runs.RUN_FORMAT``)."""
    name: str = ""
    """The run directory's name when it was created."""
    recipe: str = "?"
    """The recipe's name (for display: the run trains its own snapshot, ``recipe.yaml``)."""
    extends: str | None = None
    """The base recipe the recipe extended, kept for display."""
    created: float | None = None
    """When the run directory was made (seconds since the epoch)."""
    pid: int | None = None
    """The worker's (or supervisor's) process id; with ``pid_started`` it proves which process is the run's."""
    pid_started: float | None = None
    """That process's start time, so a reused pid is not taken for the worker (:func:`worker_process`)."""
    nodes: int | None = None
    """How many machines a multi-node run trains on (node 0 records it with its pid)."""
    slurm: SlurmMeta | None = None
    """The run's Slurm job, for a run submitted with ``--slurm``."""
    sweep: SweepMeta | None = None
    """The sweep the run belongs to, if any."""
    trackers: dict[str, dict[str, Any]] | None = None
    """Experiment tracker -> where it writes (``trackers.Tracking.where``), recorded by the worker."""
    resumed_with: list[str] = []
    """The recipe overrides each ``studio resume`` applied, in order."""


class MetaUpdate(TypedDict, total=False):
    """The keyword arguments :func:`update_meta` takes: :class:`RunMeta`'s fields, so mypy checks each call
    (a test keeps the two in step). At run time every key and value is validated against RunMeta as well."""

    schema_version: int
    format: int
    name: str
    recipe: str
    extends: str | None
    created: float | None
    pid: int | None
    pid_started: float | None
    nodes: int | None
    slurm: SlurmMeta | None
    sweep: SweepMeta | None
    trackers: dict[str, dict[str, Any]] | None
    resumed_with: list[str]


META_FIELDS: dict[str, str] = {
    "schema_version": "a whole number",
    "format": "a whole number",
    "name": "text",
    "recipe": "text",
    "extends": "text or null",
    "created": "a time in seconds",
    "pid": "a process id",
    "pid_started": "a time in seconds or null",
    "nodes": "a whole number",
    "slurm": "a Slurm job object (job_id text, jobs, script, options, submitted, stop_requested)",
    "sweep": "a sweep object (name text, index, of, fields)",
    "trackers": "an object of tracker -> object",
    "resumed_with": "an array of overrides (text)",
}
"""run.json's fields -> what each must be, for the message naming a field of the wrong type."""

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "true/false", type(None): "null"}


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


def inspect_meta(path: Path) -> tuple[RunMeta, str | None]:
    """(``run.json`` as a :class:`RunMeta`, what is wrong with the file or None).

    A file that is not a JSON object gives an empty RunMeta (every field its default); a field of the wrong
    type, or a key RunMeta does not know, is left out. The problem is one line naming the file and the field,
    for the run listing's ``damaged`` status.
    """
    data, problem = _load(path)
    if problem is not None:
        return RunMeta(), problem
    if not isinstance(data, dict):
        kind = _JSON_TYPES.get(type(data), "a number")
        return RunMeta(), f"{RUN_FILE} holds {kind}, not an object of the run's fields"
    try:  # the usual case, at one validation's cost (the listing reads every run's file each refresh)
        meta = RunMeta.model_validate(data)
        wrong: list[str] = []
    except ValidationError:
        meta, wrong = _usable_fields(data)
    if meta.schema_version > META_VERSION:
        wrong.append(f"schema_version {meta.schema_version} is newer than this studio reads ({META_VERSION})")
    return meta, (f"{RUN_FILE}: " + "; ".join(wrong)) if wrong else None


def _usable_fields(data: dict[str, Any]) -> tuple[RunMeta, list[str]]:
    """A RunMeta of ``data``'s well-typed fields, and what is wrong with each of the others."""
    fields, wrong = {}, []
    for key, value in data.items():
        if key not in RunMeta.model_fields:
            wrong.append(f"{key} is not one of its fields")
            continue
        try:
            RunMeta.model_validate({key: value})
        except ValidationError:
            wrong.append(f"{key} is {json.dumps(value)[:40]}, not {META_FIELDS[key]}")
            continue
        fields[key] = value
    return RunMeta.model_validate(fields), wrong


def read_meta(path: Path) -> RunMeta:
    """``run.json``'s usable fields (see :func:`inspect_meta`); all defaults when it is missing or damaged."""
    return inspect_meta(path)[0]


def meta_json(meta: RunMeta) -> dict[str, Any]:
    """``meta`` as ``run.json`` holds it: the keys that were set (and the schema version), nothing more."""
    return {"schema_version": META_VERSION, **meta.model_dump(mode="json", exclude_unset=True)}


def write_meta(path: Path, meta: RunMeta) -> None:
    """Write ``run.json`` whole (a new run's first one; :func:`update_meta` changes fields of one)."""
    _write_json(path, meta_json(meta))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # a name of its own per writer: with one shared name a second writer could truncate the file the first
    # was about to rename into place, and a half-written run.json would then look complete
    tmp = path / f".{RUN_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path / RUN_FILE)  # a reader sees the old file or the new one, never half of one
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _meta_lock(path: Path) -> Iterator[None]:
    with (path / META_LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def update_meta(path: Path, **fields: Unpack[MetaUpdate]) -> None:
    """Set ``fields`` in ``run.json``, keeping every other writer's fields (read and rewritten under a lock).

    Each key must be a :class:`RunMeta` field and each value of its type: anything else is refused, naming
    run.json and the key, before the file is touched."""
    unknown = [key for key in fields if key not in RunMeta.model_fields]
    if unknown:
        known = ", ".join(RunMeta.model_fields)
        raise RunError(
            f"{path.name}: {RUN_FILE} has no field {unknown[0]!r} (its fields: {known}); not rewritten"
        )
    try:
        update = RunMeta.model_validate(dict(fields)).model_dump(mode="json", exclude_unset=True)
    except ValidationError as exc:
        key = str(exc.errors()[0]["loc"][0])
        value = json.dumps(fields.get(key), default=str)[:40]
        raise RunError(
            f"{path.name}: {RUN_FILE} field {key} cannot be {value}: not {META_FIELDS[key]}"
        ) from None
    with _meta_lock(path):
        data, problem = _load(path)
        if data is None and (path / RUN_FILE).exists():  # damaged: rewriting it would lose what it held
            raise RunError(f"{path.name}: {problem}; not rewritten")
        if data is not None and not isinstance(data, dict):
            raise RunError(f"{path.name}: {RUN_FILE} is not an object of the run's fields; not rewritten")
        version = (data or {}).get("schema_version", 1)
        if (
            isinstance(version, int) and version > META_VERSION
        ):  # its other fields may mean what we cannot tell
            raise RunError(
                f"{path.name}: {RUN_FILE} has schema_version {version}, newer than this studio writes "
                f"({META_VERSION}); not rewritten"
            )
        data = {"schema_version": META_VERSION, **(data or {}), **update}
        _write_json(path, data)


def create_time(pid: int) -> float | None:
    """The process's start time, recorded beside its pid so a reused pid is not taken for it."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


# The supervisor's module before the train/ split too, so a run started by an older studio is still found.
WORKER_MODULES = ("lorastudio.worker", "lorastudio.train.launch.supervisor", "lorastudio.train.launch")
"""The modules a run's recorded process runs (``python -m MODULE RUN_DIR ...``): the worker or its supervisor."""


def worker_process(path: Path, meta: RunMeta) -> Any | None:
    """The live process ``run.json`` records (a ``psutil.Process``), proven to be this run's worker; else None.

    The proof is both its start time, the recorded ``pid_started`` (the system reuses pids: a newer process
    with the same pid starts later), and its command line, which runs a studio worker or supervisor on this very
    directory (compared by inode, so a copied run directory does not claim the original's worker). A run.json
    without ``pid_started`` (an older or hand-made one) proves nothing. Nothing is ever signalled without this
    proof; the run reads ``died`` instead.
    """
    pid, started = meta.pid, meta.pid_started
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
    from lorastudio import registry  # the recipe schema costs 0.1-0.2 s: not for those who import rundir

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
