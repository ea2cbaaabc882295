"""A run directory's own files: their names and ``run.json``, the metadata beside the event log.

Everything that starts, supervises or reads a run (``runs``, ``launch``, ``nodes``, ``slurm``) names the files
through here, so none of them has to import another for a file name (which made import cycles).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"
RECIPE_FILE = "recipe.yaml"
LOG_FILE = "worker.log"
"""The worker's (or supervisor's) stdout and stderr: tracebacks, anything printed outside the event log."""


def read_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    tmp = path / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(path / RUN_FILE)  # a reader sees the old file or the new one, never half of one


def update_meta(path: Path, **fields: Any) -> None:
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
