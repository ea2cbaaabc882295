"""Run directories: create one, start its detached worker, find and summarise runs.

Layout of a run directory (format ``RUN_FORMAT``)::

    run.json        format version, name, recipe name (and the base it extended), creation time, worker pid
    recipe.yaml     the fully resolved recipe the worker trains, without ``extends``: it loads on its own
    events.jsonl    append-only events (see events.py)
    worker.log      the worker's stdout and stderr
    checkpoints/    trainer checkpoints (checkpoint-N)
    adapter/        the final (or stop-time) LoRA adapter, tokenizer and recipe
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastudio import registry
from lorastudio.errors import RunError
from lorastudio.paths import runs_dir
from lorastudio.recipe import Recipe
from lorastudio.train.launch.nodes import NodeSpec, node_log
from lorastudio.train.launch.supervisor import check_devices, needs_launcher, supervisor_command
from lorastudio.train.run.damage import DAMAGED, run_problem
from lorastudio.train.run.eventlog import EVENTS_FILE
from lorastudio.train.run.events import Status, StatusEvent
from lorastudio.train.run.recipehooks import RECIPE_CHECKS
from lorastudio.train.run.rundir import LOG_FILE as LOG_FILE
from lorastudio.train.run.rundir import RECIPE_FILE as RECIPE_FILE
from lorastudio.train.run.rundir import RUN_FILE as RUN_FILE
from lorastudio.train.run.rundir import (
    MetaUpdate,
    RunMeta,
    create_time,
    inspect_meta,
    read_meta,
    update_meta,
    worker_process,
    write_meta,
)
from lorastudio.train.run.rundir import latest_checkpoint as latest_checkpoint
from lorastudio.train.run.rundir import load_run_recipe as load_run_recipe
from lorastudio.train.run.runref import resolve_run
from lorastudio.train.run.runstate import RunState
from lorastudio.train.run.summaries import SummarizingWriter, SummaryCache, summary_cache

RUN_FORMAT = 1
STAMP_FORMAT = "%Y%m%d-%H%M%S"
"""The time in a run's (and a sweep's) name."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


def create_run(recipe: Recipe, root: Path | None = None, stamp: str | None = None) -> Path:
    """Make the run directory, snapshot the recipe and write a first status. Refuses unwritable roots.

    ``stamp`` (``%Y%m%d-%H%M%S``) names it instead of the clock: a sweep's runs carry the sweep's own."""
    from lorastudio.train.trainer.trackers import check_available

    check_available(recipe)  # a tracker named in train.report_to but not installed: no directory at all
    from lorastudio.train.trainer.fulltune import check_freeze, check_memory

    check_freeze(recipe)  # freeze layers or modules the model lacks, and a full or freeze run that will not
    check_memory(recipe)  # fit: refused, no directory either
    for check in RECIPE_CHECKS:  # train.eval_tasks' names (evaluate/intraining.py), before any directory
        check(recipe)
    root = root or runs_dir()
    stamp = stamp or time.strftime(STAMP_FORMAT)
    try:
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{_slug(recipe.name)}-{stamp}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = root / f"{_slug(recipe.name)}-{stamp}-{suffix}"
        path.mkdir()
        # The snapshot is resolved (no `extends`): deleting or changing the base later changes nothing here.
        (path / RECIPE_FILE).write_text(registry.dump_snapshot(recipe), encoding="utf-8")
        write_meta(
            path,
            RunMeta(
                format=RUN_FORMAT,
                name=path.name,
                recipe=recipe.name,
                extends=recipe.extends,
                created=time.time(),
            ),
        )
        writer = SummarizingWriter(path / EVENTS_FILE)
        writer.emit(StatusEvent(status="queued"))
        writer.close()
    except OSError as exc:
        raise RunError(f"cannot create a run directory under {root}: {exc.strerror or exc}") from None
    return path


def start_run(
    recipe: Recipe,
    root: Path | None = None,
    start: bool = True,
    env: dict[str, str] | None = None,
    meta: MetaUpdate | None = None,
    stamp: str | None = None,
) -> Path:
    """The one way a new run starts (``studio train``, the Launch sheet, sweeps and the MCP server call it).

    The devices the recipe asks for are checked first, so a recipe this machine cannot train (FSDP without
    CUDA, more GPUs than are visible) is refused before a run directory exists, as is a preference or RL recipe
    whose (local) data has no usable row, and a ``model.adapter`` that names no run or adapter (one that does is
    pinned to the adapter folder it names now). Then the run directory is created, ``meta`` added to its
    ``run.json`` (before any worker can write there) and, unless ``start`` is false, its worker started with the
    devices and strategy from ``recipe``.
    """
    check_devices(recipe.train.devices, recipe.train.distributed)
    from lorastudio.train.trainer.rewardmodel import check_reward_models

    check_reward_models(recipe)  # a reward model (grpo.rewards model:, a reward run's adapter) that is none
    if recipe.model.adapter is not None:  # a bad reference (even "") is refused before a run directory exists
        from lorastudio.train.trainer.methods import resolve_start_adapter

        model = recipe.model.model_copy(update={"adapter": str(resolve_start_adapter(recipe.model.adapter))})
        recipe = recipe.model_copy(update={"model": model})
    from lorastudio.data.preference import check_method_rows
    from lorastudio.train.trainer.trlneeds import check_trl

    check_trl(recipe)  # a loss the installed TRL lacks: said now, not once the model has loaded
    from lorastudio.train.trainer.loravariants import check_adapter

    check_adapter(recipe)  # a lora module name that matches nothing, DoRA on a format peft cannot combine
    check_method_rows(
        recipe
    )  # dpo/kto/orpo/grpo data with no usable row: said now, not after the model loads
    path = create_run(recipe, root, stamp)
    if meta:
        update_meta(path, **meta)
    if start:
        start_worker(path, env=env, devices=recipe.train.devices, distributed=recipe.train.distributed)
    return path


def start_worker(
    path: Path,
    resume: bool = False,
    env: dict[str, str] | None = None,
    devices: int | str | None = None,
    distributed: str | None = None,
) -> int:
    """Start ``python -m lorastudio.worker RUN_DIR`` in its own session, detached from this terminal.

    With more than one device (``train.devices``, or ``devices`` here) the session's leader is the launch
    supervisor instead (see ``train/launch/supervisor.py``), which starts the workers under ``accelerate launch``. What
    ``devices`` and ``distributed`` leave unsaid is read from the run's recipe, once.
    """
    if devices is None or distributed is None:
        snapshot = load_run_recipe(path)
        devices = snapshot.train.devices if devices is None else devices
        distributed = snapshot.train.distributed if distributed is None else distributed
    log = (path / LOG_FILE).open("ab")
    cmd = [sys.executable, "-m", "lorastudio.worker", str(path)]
    if needs_launcher(devices):
        cmd = supervisor_command(path, devices=devices, distributed=distributed)
    if resume:
        cmd.append("--resume")
    child_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=child_env,
        close_fds=True,
    )
    log.close()
    update_meta(path, pid=proc.pid, pid_started=create_time(proc.pid))
    return proc.pid


def start_node(
    run_dir: Path,
    spec: NodeSpec,
    resume: bool = False,
    devices: int | str | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Start this node's supervisor detached (its own session, output in its node log); node 0 records its pid."""
    cmd = (
        supervisor_command(run_dir, resume=False, devices=devices)
        + spec.args()
        + (["--resume"] if resume else [])
    )
    log_path = node_log(run_dir, spec.node_rank)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
        )
    if spec.is_main:
        update_meta(run_dir, pid=proc.pid, pid_started=create_time(proc.pid), nodes=spec.nodes)
    return proc.pid


def worker_alive(meta: RunMeta, path: Path) -> bool:
    """The recorded worker still runs, proven to be this run's (``rundir.worker_process``: its start time and
    its command line naming this directory), so a reused or copied pid never counts."""
    if meta.slurm:  # its supervisor may run on another machine: Slurm knows (slurm.py)
        from lorastudio.train.launch.slurm import job_alive

        return job_alive(meta)
    return worker_process(path, meta) is not None


DIED_CAUSE = "the worker exited without a final status (killed or out of memory?)"
NOT_STARTED_CAUSE = "created with --no-start, never started: r in Runs (or studio resume RUN) starts it"


def never_started(state: RunState, meta: RunMeta) -> bool:
    """Created but no worker was ever started for it (``studio train --no-start``); a run waiting for a GPU
    or in Slurm's queue has a pid or a job."""
    return state.status == "queued" and not meta.pid and not meta.slurm


def effective_status(state: RunState, meta: RunMeta, path: Path) -> Status:
    """The logged status, or ``died`` when a non-final status has no live worker behind it."""
    if meta.slurm:
        from lorastudio.train.launch.slurm import slurm_status

        return slurm_status(state.status, state.cause, state.finished, meta)[0]
    if state.finished or state.status == "unknown":
        return state.status
    if state.status == "queued" and not meta.pid:
        return "queued"
    return state.status if worker_alive(meta, path) else "died"


Curve = list[tuple[int, float]]


@dataclass(frozen=True)
class RunSummary:
    """What one run is and achieved, from one fold of its events: a line of ``studio runs``, a row of Compare
    and a member of a sweep's ranking (:func:`summarise`, ``compare.run_result``; both through
    :func:`summary_of`, so every reader means the same by each figure)."""

    name: str
    path: Path
    recipe: str
    status: Status
    step: int
    max_steps: int
    last_loss: float | None
    """The latest training loss logged (Compare's and sweeps' ``final_loss``)."""
    started: float | None
    cause: str | None
    best_checkpoint: str | None = None
    """The checkpoint with the lowest eval loss, relative to the run directory (``checkpoints/checkpoint-N``)."""
    best_eval_loss: float | None = None
    """The lowest eval loss logged during the run: what the listing shows, Compare marks and sweeps rank by.
    A run whose log holds only its best checkpoint's figure gives that one; None when it never evaluated."""
    best_eval_step: int | None = None
    """The step of ``best_eval_loss`` (the earliest on a tie)."""
    best_checkpoint_eval_loss: float | None = None
    """The eval loss the trainer recorded for ``best_checkpoint`` (what the adapter's ``@best`` loads). Only
    evaluations at a saved step count for it, so it can be above ``best_eval_loss``."""
    last_reward: float | None = None
    """GRPO's latest mean reward (see ``RunState.last_reward``): shown instead of its loss."""
    eval_loss: float | None = None
    """The last eval loss logged (None when the run never evaluated)."""
    best_loss: float | None = None
    """The lowest training loss logged, and its step."""
    best_loss_step: int | None = None
    tokens_per_s: float | None = None
    """Mean of the throughput the worker reported per logging interval (``RunState.mean_tokens_per_s``)."""
    tokens_seen: int = 0
    duration_s: float | None = None
    """Time spent in the worker, summed over resumes (``RunState.duration_s``)."""
    peak_vram_mb: float | None = None
    peak_rss_mb: float | None = None
    # out of the hash (lists have none): the Runs screen keeps summaries in sets to see what changed
    loss: Curve = field(default_factory=list, hash=False)
    """Training loss by step (Compare's chart); empty where the fold kept no curves (the listing's)."""
    eval: Curve = field(default_factory=list, hash=False)

    @property
    def final_loss(self) -> float | None:
        """``last_loss`` by the name Compare and sweeps give it (their JSON, their ``ranked_by``)."""
        return self.last_loss

    @property
    def progress(self) -> str:
        """The run's latest progress figure for a listing: GRPO's mean reward (``r=0.731``), else the loss."""
        if self.last_reward is not None:
            return f"r={self.last_reward:.3f}"
        return f"{self.last_loss:.4f}" if self.last_loss is not None else "-"

    def to_json(self) -> dict[str, Any]:
        """The run as ``studio runs --json`` (and the MCP server's run list) give it."""
        return {
            "name": self.name,
            "path": str(self.path),
            "recipe": self.recipe,
            "status": self.status,
            "step": self.step,
            "max_steps": self.max_steps,
            "last_loss": self.last_loss,
            "started": self.started,
            "cause": self.cause,
            "best_checkpoint": self.best_checkpoint,
            "best_eval_loss": self.best_eval_loss,
            "best_checkpoint_eval_loss": self.best_checkpoint_eval_loss,
            "last_reward": self.last_reward,
        }

    def results_json(self) -> dict[str, Any]:
        """What the run achieved, as ``studio runs compare --json`` and the sweep ranking give it (rounded)."""

        def r(value: float | None, digits: int = 4) -> float | None:
            return round(value, digits) if value is not None else None

        return {
            "name": self.name,
            "path": str(self.path),
            "recipe": self.recipe,
            "status": self.status,
            "step": self.step,
            "max_steps": self.max_steps,
            "final_loss": r(self.final_loss),
            "best_loss": r(self.best_loss),
            "best_loss_step": self.best_loss_step,
            "eval_loss": r(self.eval_loss),
            "best_eval_loss": r(self.best_eval_loss),
            "best_eval_step": self.best_eval_step,
            "best_checkpoint": self.best_checkpoint,
            "tokens_per_s": r(self.tokens_per_s, 1),
            "tokens_seen": self.tokens_seen,
            "duration_s": r(self.duration_s, 1),
            "peak_vram_mb": r(self.peak_vram_mb, 1),
            "peak_rss_mb": r(self.peak_rss_mb, 1),
        }


def _by_step(points: Curve) -> Curve:
    """One value per step, the latest written winning (a resumed run logs the steps after its checkpoint again)."""
    latest: dict[int, float] = {}
    for step, value in points:
        latest[step] = value
    return sorted(latest.items())


def summary_of(
    path: Path, meta: RunMeta, state: RunState, status: Status, cause: str | None = None
) -> RunSummary:
    """The run's summary from its metadata and its fold: the one place each figure is derived."""
    lowest = state.lowest_eval_loss is not None
    return RunSummary(
        name=path.name,
        path=path,
        recipe=meta.recipe,
        status=status,
        step=state.step,
        max_steps=state.max_steps,
        last_loss=state.last_loss,
        started=meta.created if meta.created is not None else state.started,
        cause=cause,
        best_checkpoint=state.best_checkpoint,
        best_eval_loss=state.lowest_eval_loss if lowest else state.best_eval_loss,
        best_eval_step=state.lowest_eval_step,
        best_checkpoint_eval_loss=state.best_eval_loss,
        last_reward=state.last_reward,
        eval_loss=state.last_eval_loss,
        best_loss=state.best_loss,
        best_loss_step=state.best_loss_step,
        tokens_per_s=state.mean_tokens_per_s,
        tokens_seen=state.tokens_seen,
        duration_s=state.duration_s,
        peak_vram_mb=state.peak_vram_mb,
        peak_rss_mb=state.peak_rss_mb,
        loss=_by_step(state.loss),
        eval=_by_step(state.eval_loss),
    )


def summarise(path: Path, cache: SummaryCache | None = None) -> RunSummary:
    """The run's listing line, folded through the summary cache (see ``summaries.py``)."""
    own = cache is None
    cache = cache or summary_cache()
    meta, meta_problem = inspect_meta(path)
    state = cache.state(path)
    if own:
        cache.save()
    status = effective_status(state, meta, path)
    cause = state.cause if status != "died" else DIED_CAUSE
    if cause is None and never_started(state, meta):
        cause = NOT_STARTED_CAUSE
    if meta.slurm:  # the job's state in Slurm: pending reason, time limit, node failure (slurm.py)
        from lorastudio.train.launch.slurm import slurm_status

        status, cause = slurm_status(state.status, state.cause, state.finished, meta)
    problem = run_problem(path, state, meta_problem, lambda: worker_alive(meta, path))
    if problem is not None:  # listed with the reason; compare, samples and resume refuse it (damage.py)
        status, cause = DAMAGED, problem
    return summary_of(path, meta, state, status, cause)


def list_runs(root: Path | None = None) -> list[RunSummary]:
    root = root or runs_dir()
    if not root.is_dir():
        return []
    cache = summary_cache()
    paths = [p for p in root.iterdir() if (p / RUN_FILE).exists()]
    runs = [_summarise_or_unreadable(p, cache) for p in paths]
    cache.forget_missing(root, paths)
    cache.save()
    return sorted(runs, key=lambda r: r.started or 0, reverse=True)


def _summarise_or_unreadable(path: Path, cache: SummaryCache) -> RunSummary:
    """The run's line; a run directory the system will not let us read (permissions, I/O errors) is listed
    as damaged instead of ending the listing of every other run."""
    try:
        return summarise(path, cache)
    except OSError as exc:
        where = Path(exc.filename).name if exc.filename else path.name
        problem = f"{where} cannot be read ({exc.strerror or exc})"
        return RunSummary(path.name, path, "?", DAMAGED, 0, 0, None, None, problem)


def find_run(name_or_path: str, root: Path | None = None) -> Path:
    """The run directory a reference names: path, exact name, ``latest``, recipe name or unique prefix (the
    rules are ``runref.resolve_run``'s; a destructive command calls that itself, with ``exact``)."""
    return resolve_run(name_or_path, root).path


def stop_run(path: Path) -> bool:
    """Ask the worker to save and stop (SIGTERM). False when no live worker is found: only a process proven to
    be this run's worker (``rundir.worker_process``) is ever signalled."""
    meta = read_meta(path)
    if meta.slurm:  # scancel --signal=TERM to the job's steps (slurm.py)
        from lorastudio.train.launch.slurm import stop_job

        return stop_job(path, meta)
    proc = worker_process(path, meta)
    if proc is None:
        return False
    try:
        proc.send_signal(signal.SIGTERM)  # psutil checks again that the pid is still this process
    except Exception:  # it ended (or its pid moved on) in between
        return False
    return True
