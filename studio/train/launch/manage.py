"""Managing finished and live runs: notes, delete, resume, checkpoints to chat with, sort orders.

Everything here works on a run directory (see runs.py) and never touches a live worker's files
except through its pid: a run whose worker is alive cannot be deleted or resumed.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from lorastudio.errors import RunError
from lorastudio.train.launch.runs import (
    RUN_FILE,
    RunSummary,
    read_meta,
    start_worker,
    summarise,
    update_meta,
    worker_alive,
)
from lorastudio.train.run.damage import DAMAGED, check_intact
from lorastudio.train.run.events import Status, status_word
from lorastudio.train.run.rundir import NOTE_FILE as NOTE_FILE
from lorastudio.train.run.runstate import RunState

SORT_KEYS = ("time", "loss", "status")
"""The orders the Runs screen cycles through (and ``studio runs --sort`` accepts)."""

# Live runs first (most urgent to look at), then the ones that need attention, then the settled ones.
_STATUS_ORDER: tuple[Status, ...] = (
    "training",
    "saving",
    "loading data",
    "loading model",
    "starting",
    "queued",
    "failed",
    "died",
    DAMAGED,
    "stopped",
    "done",
)
RESUMABLE: frozenset[Status] = frozenset({"stopped", "failed", "died"})


def read_note(path: Path) -> str:
    """The run's note; empty when it has none, or when ``note.txt`` is not text (the listing says so:
    ``damage.note_problem``)."""
    try:
        return (path / NOTE_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def intact_state(path: Path, curves: bool = True) -> RunState:
    """The run's fold for compare and samples; a damaged run is refused naming the file (``damage.py``)."""
    return check_intact(path, lambda: is_live(path), curves)


def write_note(path: Path, text: str) -> str:
    """Store ``text`` (newlines folded to spaces) as the run's note; an empty text removes it."""
    if not (path / RUN_FILE).exists():
        raise RunError(f"{path} is not a run directory (no {RUN_FILE})")
    note = " ".join(text.split())
    target = path / NOTE_FILE
    try:
        if not note:
            target.unlink(missing_ok=True)
            return ""
        tmp = path / (NOTE_FILE + ".tmp")
        tmp.write_text(note + "\n", encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:
        raise RunError(f"cannot write the note of {path.name}: {exc.strerror or exc}") from None
    return note


def is_live(path: Path) -> bool:
    """A worker process of this run is alive (training, loading, queued or still saving)."""
    return worker_alive(read_meta(path), path)


def _settled(path: Path, status: str, wait_s: float = 15.0) -> bool:
    """No live worker; a worker that already wrote its final status gets ``wait_s`` to exit."""
    import time

    from lorastudio.train.run.events import TERMINAL_STATUSES

    deadline = time.monotonic() + (wait_s if status in TERMINAL_STATUSES else 0.0)
    while is_live(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def delete_run(path: Path) -> str:
    """Remove the run directory; what was deleted, as a line. Refuses a live run and anything that is not a
    run directory. A run linked into the runs folder loses only its link: the folder it points to is kept."""
    if not (path / RUN_FILE).exists():
        raise RunError(f"{path} is not a run directory (no {RUN_FILE}); nothing deleted")
    if not _settled(path, summarise(path).status):
        raise RunError(f"run {path.name} is still running; stop it first (`studio stop {path.name}`)")
    if path.is_symlink():  # rmtree refuses a link, and the run.json unlinked below is the folder's own
        target = path.resolve()
        try:
            path.unlink()
        except OSError as exc:
            raise RunError(f"cannot delete the link {path.name}: {exc.strerror or exc}") from None
        return f"deleted the link {path.name} (its folder {target} is kept)"
    # Rename first, so a half-removed folder never looks like a run (no run.json) nor keeps its name.
    doomed = path.with_name(f".{path.name}.deleting")
    try:
        path.rename(doomed)
        (doomed / RUN_FILE).unlink(missing_ok=True)
        shutil.rmtree(doomed)
    except OSError as exc:
        raise RunError(f"cannot delete {path.name}: {exc.strerror or exc}") from None
    return f"deleted {path.name}"


@dataclass(frozen=True)
class Checkpoint:
    """Something to chat with: a trainer checkpoint or the final adapter."""

    label: str
    path: Path
    step: int | None


def checkpoints(path: Path) -> list[Checkpoint]:
    """The final adapter first (when saved), then checkpoint-N, newest first; only ones holding an adapter."""
    found: list[Checkpoint] = []
    from lorastudio.train.trainer.adapters import final_weights, holds_weights

    final = final_weights(path)
    if final is not None:
        found.append(Checkpoint(f"{final.name} (final)", final, None))
    folder = path / "checkpoints"
    steps = []
    if folder.is_dir():
        for child in folder.iterdir():
            match = re.fullmatch(r"checkpoint-(\d+)", child.name)
            if match and holds_weights(child):
                steps.append((int(match.group(1)), child))
    found += [Checkpoint(child.name, child, step) for step, child in sorted(steps, reverse=True)]
    return found


RESUME_FIELDS = ("train.batch_size", "train.gradient_accumulation", "train.gradient_checkpointing")
"""What ``studio resume RUN FIELD=VALUE`` may change: how a step's batch is split and held in memory (a run that
ran out of memory continues with a smaller batch and more accumulation), never what or how long it learns."""


def resume_overrides(path: Path, overrides: list[str]) -> list[str]:
    """Rewrite the run's recipe with ``overrides`` (only :data:`RESUME_FIELDS`), whole or not at all; returns
    the overrides as ``run.json`` records them. Anything else, or a value the recipe refuses, is named."""
    import os

    from lorastudio import registry
    from lorastudio.train.run.rundir import RECIPE_FILE

    for text in overrides:
        key = text.split("=", 1)[0].strip()
        if key not in RESUME_FIELDS:
            raise RunError(
                f"override {text!r}: a resume may change only {', '.join(RESUME_FIELDS)} (the run's recipe "
                "is what it trained with; start a new run with --from to change the rest)"
            )
    snapshot = path / RECIPE_FILE
    recipe = registry.load_snapshot(snapshot)
    data = registry.apply_overrides(recipe.model_dump(mode="json"), overrides)
    data.pop("extends", None)
    changed = registry.validate_data(data, snapshot, overrides=overrides)
    tmp = snapshot.with_name(f".{RECIPE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(registry.dump_snapshot(changed), encoding="utf-8")
    os.replace(tmp, snapshot)
    return list(overrides)


def resume_run(
    path: Path, devices: int | str | None = None, overrides: list[str] | None = None
) -> tuple[int, Path | None]:
    """Start the worker again from the latest checkpoint; returns (pid, checkpoint or None). A run created
    with ``--no-start`` is started from the beginning. ``overrides`` (only :data:`RESUME_FIELDS`) change the
    run's recipe first, once the run is known to be resumable."""
    from lorastudio.train.launch.runs import NOT_STARTED_CAUSE, latest_checkpoint

    summary = summarise(path)
    if summary.status == DAMAGED:
        raise RunError(f"run {path.name} is damaged: {summary.cause}; nothing to resume")
    if summary.cause == NOT_STARTED_CAUSE and not is_live(path):
        return start_worker(path, devices=devices), None
    if not _settled(path, summary.status):
        raise RunError(f"run {path.name} is still running ({summary.status}); nothing to resume")
    if summary.status not in RESUMABLE:
        raise RunError(
            f"run {path.name} is {summary.status}; only a stopped, failed or died run can be resumed"
        )
    checkpoint = latest_checkpoint(path)
    if overrides:
        done = resume_overrides(path, overrides)
        update_meta(path, resumed_with=[*read_meta(path).get("resumed_with", []), *done])
    if read_meta(path).get(
        "slurm"
    ):  # a new job from the latest checkpoint (slurm.py); its id in place of a pid
        from lorastudio.train.launch.slurm import resubmit

        return int(resubmit(path)), checkpoint
    return start_worker(path, resume=True, devices=devices), checkpoint


def sort_runs(runs: list[RunSummary], key: str) -> list[RunSummary]:
    """``time``: newest first; ``loss``: lowest last loss first, then GRPO runs by highest mean reward (their
    loss is no progress figure), then runs with neither; ``status``: live first."""
    by_time = sorted(runs, key=lambda r: r.started or 0, reverse=True)
    if key == "loss":

        def by_figure(r: RunSummary) -> tuple[int, float]:
            if r.last_reward is not None:
                return 1, -r.last_reward
            return (0, r.last_loss) if r.last_loss is not None else (2, 0.0)

        return sorted(by_time, key=by_figure)
    if key == "status":
        rank = {s: i for i, s in enumerate(_STATUS_ORDER)}
        return sorted(by_time, key=lambda r: rank.get(status_word(r.status), len(rank)))
    if key != "time":
        raise RunError(f"unknown sort order {key!r}; choose one of {', '.join(SORT_KEYS)}")
    return by_time


def next_sort(key: str) -> str:
    return SORT_KEYS[(SORT_KEYS.index(key) + 1) % len(SORT_KEYS)] if key in SORT_KEYS else SORT_KEYS[0]
