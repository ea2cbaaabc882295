"""Which runs are still going, and how to come back to them (printed when the TUI closes)."""

from __future__ import annotations

import shlex
from pathlib import Path

from lorastudio.train.launch.runs import RunSummary, list_runs, read_meta, worker_alive
from lorastudio.train.run.damage import DAMAGED
from lorastudio.train.run.events import TERMINAL_STATUSES, Status

FINAL: frozenset[Status] = TERMINAL_STATUSES | {"unknown"}
"""Statuses with no worker to come back to (``unknown``: a run with no status yet)."""


def live_runs(root: Path | None = None) -> list[RunSummary]:
    """Runs whose worker is alive (training, loading or waiting in the queue), newest first."""
    # "queued" with no pid is a run directory whose worker was never started: nothing to attach to; a
    # damaged run's status says nothing about its worker, so ask the process itself
    return [
        r
        for r in list_runs(root)
        if r.status not in FINAL
        and (r.status != "queued" or _has_pid(r.path))
        and (r.status != DAMAGED or worker_alive(read_meta(r.path), r.path))
    ]


def _has_pid(path: Path) -> bool:
    from lorastudio.train.launch.runs import read_meta

    return bool(read_meta(path).get("pid"))


def reattach_message(runs: list[RunSummary]) -> str:
    """The lines printed after the TUI closes; empty when nothing is running."""
    if not runs:
        return ""
    lines = [
        f"{'1 run is' if len(runs) == 1 else f'{len(runs)} runs are'} still going "
        "(the worker does not need studio open):"
    ]
    for r in runs:
        progress = f"step {r.step}/{r.max_steps or '?'}"
        lines.append(f"  {r.name}  {r.status}, {progress}")
        lines.append(f"    studio attach {shlex.quote(r.name)}")
    return "\n".join(lines)
