"""An evaluation as a job: its own directory and its own process, like a training run.

The directory (``RUN/evals/ID/`` when a target is a run, else ``DATA/evals/ID/``) holds ``spec.json`` (the
resolved :class:`EvalSpec`), ``events.jsonl`` (typed events through the one contract in
``train/run/events.py``: statuses, ``eval_task``, ``eval_progress``, ``eval_result``, ``eval_judge``),
``results.json``, ``samples.jsonl``, the judged generations' ``answers.jsonl`` and ``verdicts.jsonl``
(``judged.py``), ``job.json`` (its process) and ``eval.log``. The process
(``python -m lorastudio.evaluate.job DIR``) runs in its own session, so closing the terminal does not end it,
and always ends with a status: ``done``, ``failed`` with its cause, or ``stopped`` (SIGTERM) with the tasks it
finished kept.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from lorastudio.errors import StudioError
from lorastudio.evaluate.spec import SPEC_FILE, EvalSpec

if TYPE_CHECKING:
    from lorastudio.evaluate.judged import Plan
    from lorastudio.evaluate.runner import Results
from lorastudio.paths import data_dir, runs_dir
from lorastudio.train.run.eventlog import EVENTS_FILE, EventWriter
from lorastudio.train.run.events import (
    EvalJudgeEvent,
    EvalProgressEvent,
    EvalResultEvent,
    EvalTaskEvent,
    StatusEvent,
)
from lorastudio.train.run.runstate import RunState, load_state

JOB_FILE = "job.json"
LOG_FILE = "eval.log"
DIED_CAUSE = "the evaluation's process exited without a final status (killed or out of memory?)"


def evals_home(spec: EvalSpec) -> Path:
    """Where the evaluation's folder goes: its first run target's ``evals/``, else the data dir's."""
    from lorastudio.chat.targets import run_of_target

    for target in spec.targets:
        if target == "base":
            continue
        run = run_of_target(target)
        if run is not None:
            return run / "evals"
    return data_dir() / "evals"


def create_eval(spec: EvalSpec, home: Path | None = None) -> Path:
    """A new evaluation folder holding the spec and its first status (``queued``)."""
    home = home or evals_home(spec)
    folder = home / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    folder.mkdir(parents=True)
    (folder / SPEC_FILE).write_text(spec.model_dump_json(indent=2), encoding="utf-8")
    writer = EventWriter(folder / EVENTS_FILE)
    writer.emit(StatusEvent(status="queued"))
    writer.close()
    return folder


def start_eval(folder: Path) -> int:
    """Start ``python -m lorastudio.evaluate.job DIR`` in its own session, detached from this terminal."""
    from lorastudio.train.run.rundir import create_time

    with (folder / LOG_FILE).open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lorastudio.evaluate.job", str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    (folder / JOB_FILE).write_text(json.dumps({"pid": proc.pid, "pid_started": create_time(proc.pid)}))
    return proc.pid


def check_and_start(spec: EvalSpec) -> Path:
    """Refuse an unknown or malformed task and a target that cannot load (no folder made), then create the
    evaluation's folder and start its process: what ``studio eval``, the Eval screen and MCP's start_eval do."""
    from lorastudio.evaluate.runner import resolve_targets
    from lorastudio.evaluate.tasks import resolve_tasks

    if spec.tasks:
        resolve_tasks(spec.tasks)  # an unknown or malformed task is said now, before a process starts
    resolve_targets(spec)  # so is a run with no adapter
    if spec.judged is not None:
        from lorastudio.evaluate.judged import plan

        plan(spec)  # and bad prompts, a scorer that does not load, a judge that cannot be found
    folder = create_eval(spec)
    start_eval(folder)
    return folder


def job_alive(folder: Path) -> bool:
    """The recorded process still runs and is this evaluation's (its start time and command line)."""
    try:
        meta = json.loads((folder / JOB_FILE).read_text())
        import psutil

        proc = psutil.Process(int(meta["pid"]))
        if meta.get("pid_started") is not None and abs(proc.create_time() - float(meta["pid_started"])) > 1:
            return False
        return "lorastudio.evaluate.job" in proc.cmdline() and str(folder) in proc.cmdline()
    except Exception:
        return False


@dataclass(frozen=True)
class EvalSummary:
    """One evaluation as listings show it."""

    id: str
    path: Path
    spec: EvalSpec | None
    status: str
    cause: str | None
    state: RunState


def summarise(folder: Path) -> EvalSummary:
    state = load_state(folder)
    status, cause = state.status, state.cause
    try:
        spec: EvalSpec | None = EvalSpec.model_validate_json((folder / SPEC_FILE).read_text())
    except (OSError, ValueError):
        spec, status, cause = None, "damaged", f"{folder / SPEC_FILE} is missing or not an evaluation spec"
    if spec is not None and not state.finished and status != "queued" and not job_alive(folder):
        status, cause = "died", DIED_CAUSE
    return EvalSummary(folder.name, folder, spec, status, cause, state)


def list_evals() -> list[EvalSummary]:
    """Every evaluation, newest first: those under each run and those in the data dir."""
    homes = [data_dir() / "evals", *sorted(runs_dir().glob("*/evals"))]
    folders = [f for home in homes if home.is_dir() for f in home.iterdir() if (f / EVENTS_FILE).exists()]
    return [summarise(f) for f in sorted(folders, key=lambda f: f.name, reverse=True)]


class Stopped(BaseException):
    """SIGTERM arrived: finish with ``stopped``, keeping the tasks already written (a BaseException, so no
    library's ``except Exception`` swallows it)."""


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise Stopped()


def run_job(folder: Path) -> int:
    """The job's body: evaluate the folder's spec, writing events; returns the exit code."""
    from lorastudio.evaluate import runner
    from lorastudio.evaluate.judged import plan
    from lorastudio.evaluate.judged import steps as judged_steps
    from lorastudio.evaluate.tasks import hub_offline, local_tasks, offline_hint

    writer = EventWriter(folder / EVENTS_FILE)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal closing is not a reason to stop
    writer.emit(StatusEvent(status="starting", pid=os.getpid()))
    current = {"task": ""}
    try:
        spec = EvalSpec.model_validate_json((folder / SPEC_FILE).read_text())
        total = len(spec.targets) * len(spec.tasks) + judged_steps(spec)
        the_plan = plan(spec) if spec.judged is not None else None  # its bad input before any model loads

        def on_task(target: str, task: str, done: int, _total: int) -> None:
            current["task"] = task
            writer.emit(EvalProgressEvent(done=done, total=total))
            writer.emit(EvalTaskEvent(target=target, task=task))

        def on_loading(target: str) -> None:
            writer.emit(StatusEvent(status="loading model", model=target))

        def on_result(target: str, task: str, figures: dict[str, float]) -> None:
            writer.emit(EvalResultEvent(target=target, task=task, values=figures))

        results = runner.evaluate(
            spec,
            folder,
            on_task=on_task,
            on_result=on_result,
            on_loading=on_loading,
        )
        if the_plan is not None:
            judged_part(spec, folder, the_plan, results, writer, current, total)
        writer.emit(EvalProgressEvent(done=total, total=total))
        results.write()
        writer.emit(StatusEvent(status="done"))
        return 0
    except Stopped:
        writer.emit(
            StatusEvent(
                status="stopped", cause="asked to stop; the tasks it finished are kept in results.json"
            )
        )
        return 0
    except StudioError as exc:
        writer.emit(StatusEvent(status="failed", cause=str(exc)))
        return 2
    except Exception as exc:
        cause = f"{type(exc).__name__}: {exc}".splitlines()[0]
        task = current["task"]
        if task and hub_offline() and task in spec.tasks and task not in local_tasks():
            cause = f"{offline_hint(task)} ({cause})"  # lm-eval's own task: its data set is on the hub
        writer.emit(
            StatusEvent(status="failed", cause=cause, traceback="".join(traceback.format_exc(limit=-8)))
        )
        return 1
    finally:
        writer.close()


def judged_part(
    spec: EvalSpec,
    folder: Path,
    the_plan: Plan,
    results: Results,
    writer: EventWriter,
    current: dict[str, str],
    total: int,
) -> None:
    """The judged generations after the lm-eval tasks: their events, and their rows in ``results``."""
    from lorastudio.evaluate.judged import JudgedRun, run_judged
    from lorastudio.evaluate.runner import resolve_targets

    done = {"n": len(spec.targets) * len(spec.tasks)}

    def on_step(target: str, what: str) -> None:
        current["task"] = ""  # not an lm-eval task: no offline hint for its failures
        writer.emit(EvalProgressEvent(done=done["n"], total=total))
        writer.emit(EvalTaskEvent(target=target, task=what))
        done["n"] += 1

    def on_update(run: JudgedRun) -> None:
        results.judged_rows, results.judged = run.rows(), run.summary()
        results.write()

    run_judged(
        spec,
        folder,
        [(t.label, t.engine) for t in resolve_targets(spec)],
        the_plan,
        on_step=on_step,
        on_loading=lambda target: writer.emit(StatusEvent(status="loading model", model=target)),
        on_result=lambda target, values: writer.emit(
            EvalResultEvent(target=target, task="judged", values=values)
        ),
        on_judged=lambda target, figures: writer.emit(
            EvalJudgeEvent.from_json({"target": target, **figures})
        ),
        on_update=on_update,
    )


def stop_eval(folder: Path) -> bool:
    """Ask a live evaluation to stop (SIGTERM); False when it is not running."""
    if not job_alive(folder):
        return False
    os.kill(int(json.loads((folder / JOB_FILE).read_text())["pid"]), signal.SIGTERM)
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not (Path(args[0]) / SPEC_FILE).is_file():
        print(
            "usage: python -m lorastudio.evaluate.job EVAL_DIR (a folder holding spec.json)", file=sys.stderr
        )
        return 2
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # before the slow imports: a hang-up then is ignored too
    from lorastudio.quiet import quiet_libraries

    quiet_libraries()
    return run_job(Path(args[0]).resolve())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
