"""Runs on a Slurm cluster: an sbatch script in the run directory, Slurm's own commands for everything else.

``studio train RECIPE --slurm`` creates the run directory as usual (it must be on storage the nodes see), writes
``slurm.sbatch`` into it (readable: edit it and ``sbatch`` it yourself if the cluster needs more), submits it
and records the job in ``run.json`` (``slurm.job_id``, every job in ``slurm.jobs``). The job runs the same
supervisor as a local run, once per node under ``srun`` (see nodes.py), its output going to ``worker.log``.

Reading a Slurm run asks Slurm, in this order, what became of its job: ``squeue`` (live jobs), ``scontrol show
job`` (kept ``MinJobAge`` after the end), ``sacct`` (when the cluster keeps accounting) and the job completion
log (``JobCompType=jobcomp/filetxt``). A pending job shows as ``queued (Slurm job N pending: REASON)``; a job
Slurm ended (time limit, node failure, cancelled, preempted) adds that cause to the run's own last status, or
fails the run with it when the worker never wrote one.

``studio stop`` sends SIGTERM to the job's steps (``scancel --signal=TERM``, not to the batch shell, so the job
lives on until the supervisor has saved and exited); a job still pending is cancelled. ``studio resume`` submits
a new job that starts from the latest checkpoint. With ``--requeue``, a job Slurm requeues (preemption, node
failure) starts again with ``--resume`` by itself (``SLURM_RESTART_COUNT`` > 0).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lorastudio.errors import RunError, StudioError
from lorastudio.train.run.events import Status, StatusEvent, queued_with

SCRIPT_FILE = "slurm.sbatch"
CACHE_S = 2.0
"""How long one answer from Slurm is reused: the Monitor and the Runs screen read runs several times a second."""

PENDING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "STOPPED"})
RUNNING = frozenset({"RUNNING", "CONFIGURING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT"})


class SlurmError(StudioError):
    """A Slurm command failed or is missing."""


NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
"""A Slurm partition or account name: no blanks, quotes, ``#`` or line breaks (``--partition`` may list several,
comma-separated). Nothing that could end a ``#SBATCH`` line or start a shell one gets into the script."""
TIME = re.compile(r"\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}|(?i:unlimited|infinite)")
"""``--time`` as Slurm reads it: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or UNLIMITED."""
TIME_FORMATS = "minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED (e.g. 4:00:00, 2-00)"


@dataclass(frozen=True)
class SlurmOptions:
    """What ``studio train --slurm`` asks Slurm for; unset fields are left to the cluster's defaults.

    Every field is checked against Slurm's own syntax when the options are made (from the flags, or from a
    run.json at ``studio resume``), so no script is ever written from a value Slurm would refuse or a shell
    would run."""

    nodes: int = 1
    gpus_per_node: int | None = None
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    requeue: bool = False

    def __post_init__(self) -> None:
        check_count("train.nodes (--nodes N)", self.nodes)
        if self.gpus_per_node is not None:
            check_count("--gpus-per-node", self.gpus_per_node)
        if self.partition is not None and not all(
            NAME.fullmatch(part) for part in str(self.partition).split(",")
        ):
            raise SlurmError(
                f"--partition {self.partition!r}: a Slurm partition name is letters, digits, '_', '.', '+' "
                "and '-' (several: comma-separated, no blanks)"
            )
        if self.account is not None and not NAME.fullmatch(str(self.account)):
            raise SlurmError(
                f"--account {self.account!r}: a Slurm account name is letters, digits, '_', '.', '+' and '-'"
            )
        if self.time is not None and not TIME.fullmatch(str(self.time)):
            raise SlurmError(f"--time {self.time!r}: give Slurm's time format: {TIME_FORMATS}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SlurmOptions:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def check_count(flag: str, value: object) -> None:
    """A count Slurm takes (nodes, GPUs per node) is a whole number of 1 or more."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SlurmError(f"{flag} {value!r}: give a whole number, 1 or more")


@dataclass(frozen=True)
class JobInfo:
    """What Slurm says about one job."""

    job_id: str
    state: str
    reason: str | None = None
    exit_code: str | None = None
    time_limit: str | None = None
    source: str = "squeue"

    @property
    def pending(self) -> bool:
        return self.state in PENDING

    @property
    def running(self) -> bool:
        return self.state in RUNNING


# -- the script -------------------------------------------------------------------------------------
def sbatch_script(
    run_dir: Path, options: SlurmOptions, resume: bool = False, python: str = sys.executable
) -> str:
    """The batch script: one task per node, each running the run's supervisor for its node."""
    if any(c in str(run_dir) for c in "\r\n"):  # would end a #SBATCH or comment line: the rest, a shell line
        raise SlurmError(
            f"run directory {str(run_dir)!r}: a line break in its path cannot go into a Slurm script"
        )
    name = run_dir.name
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"# studio run {name}: written by `studio train --slurm`. Edit it if your cluster needs more",
        f"# (modules, --constraint, --mem) and submit it yourself: sbatch {q(str(run_dir / SCRIPT_FILE))}",
        f"#SBATCH --job-name={q('studio-' + name)}",
        f"#SBATCH --nodes={q(str(options.nodes))}",
        "#SBATCH --ntasks-per-node=1",  # one supervisor per node; it starts one training process per device
    ]
    # Values were checked when the options were made (SlurmOptions); quoted all the same, as sbatch reads
    # quotes in #SBATCH lines as a shell does
    if options.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={q(str(options.gpus_per_node))}")
    if options.partition:
        lines.append(f"#SBATCH --partition={q(options.partition)}")
    if options.time:
        lines.append(f"#SBATCH --time={q(options.time)}")
    if options.account:
        lines.append(f"#SBATCH --account={q(options.account)}")
    lines += [
        "#SBATCH --requeue" if options.requeue else "#SBATCH --no-requeue",
        f"#SBATCH --output={q(str(run_dir / 'worker.log'))}",
        "#SBATCH --open-mode=append",
        "",
        "set -euo pipefail",
        f"export STUDIO_RUN={q(str(run_dir))}",
        f"export STUDIO_PYTHON={q(python)}",
        "# node 0 hosts torchrun's rendezvous; every node's supervisor is told the same address",
        'export STUDIO_MAIN_ADDRESS="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):'
        '$((20000 + SLURM_JOB_ID % 20000))"',
        f"export STUDIO_RESUME={'--resume' if resume else ''}",
    ]
    if options.requeue:
        lines += [
            "# requeued (preempted, node failure): start again from the latest checkpoint",
            'if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then export STUDIO_RESUME=--resume; fi',
        ]
    devices = f" --devices {int(options.gpus_per_node)}" if options.gpus_per_node else ""
    lines += [
        'echo "studio: Slurm job $SLURM_JOB_ID on $SLURM_JOB_NODELIST (restart ${SLURM_RESTART_COUNT:-0})"',
        'srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c \'exec "$STUDIO_PYTHON" -m lorastudio.train.launch.supervisor '
        f'"$STUDIO_RUN"{devices} --nodes "$SLURM_NNODES" --node-rank "$SLURM_NODEID" '
        '--main-address "$STUDIO_MAIN_ADDRESS" $STUDIO_RESUME\'',
        "",
    ]
    return "\n".join(lines)


def _run(cmd: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SlurmError(
            f"`{cmd[0]}` is not installed here (Slurm's client commands are needed for --slurm runs)"
        ) from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"`{' '.join(cmd[:2])}` did not answer within {timeout:.0f} s") from None


def submit(run_dir: Path, options: SlurmOptions, resume: bool = False) -> str:
    """Write the script, ``sbatch`` it, record the job in run.json; returns the job id."""
    from lorastudio.train.run.rundir import read_meta, update_meta

    script = run_dir / SCRIPT_FILE
    tmp = script.with_suffix(".tmp")
    try:
        tmp.write_text(sbatch_script(run_dir, options, resume))
        tmp.chmod(0o755)
        tmp.replace(script)
        result = _run(["sbatch", "--parsable", "--chdir", str(run_dir), str(script)])
        if result.returncode != 0:
            raise SlurmError(f"sbatch refused the job: {(result.stderr or result.stdout).strip()[:300]}")
        job_id = result.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise SlurmError(f"sbatch answered {result.stdout.strip()!r}, not a job id")
    except SlurmError as exc:
        if not read_meta(run_dir).get("slurm"):  # a new run that never reached Slurm must not look queued
            from lorastudio.train.run.eventlog import EVENTS_FILE
            from lorastudio.train.run.summaries import SummarizingWriter

            writer = SummarizingWriter(run_dir / EVENTS_FILE)
            writer.emit(StatusEvent(status="failed", cause=str(exc)))
            writer.close()
        raise
    previous = read_meta(run_dir).get("slurm") or {}
    update_meta(
        run_dir,
        slurm={
            "job_id": job_id,
            "jobs": [*previous.get("jobs", []), job_id],
            "script": SCRIPT_FILE,
            "options": options.to_json(),
            "submitted": time.time(),
        },
    )
    _cache.pop(job_id, None)
    return job_id


def resubmit(run_dir: Path) -> str:
    """``studio resume`` of a Slurm run: a new job with the same options, from the latest checkpoint."""
    from lorastudio.train.run.rundir import read_meta

    options = SlurmOptions.from_json((read_meta(run_dir).get("slurm") or {}).get("options", {}))
    return submit(run_dir, options, resume=True)


# -- what Slurm says --------------------------------------------------------------------------------
_cache: dict[str, tuple[float, JobInfo | None]] = {}
_jobcomp: list[str | None] = []


def _fields(line: str) -> dict[str, str]:
    """``Key=Value Key=Value`` (scontrol -o, jobcomp/filetxt) as a dict."""
    return {m.group(1): m.group(2) for m in re.finditer(r"(\w+)=(\S*)", line)}


def _from_squeue(job_id: str) -> JobInfo | None:
    result = _run(["squeue", "-h", "-j", job_id, "-o", "%T|%r|%l"])
    line = result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else ""
    if not line:
        return None
    state, reason, limit = (line.split("|") + ["", ""])[:3]
    return JobInfo(job_id, state, reason or None, None, limit or None, "squeue")


def _from_scontrol(job_id: str) -> JobInfo | None:
    result = _run(["scontrol", "show", "job", "-o", job_id])
    if result.returncode != 0 or "JobState=" not in result.stdout:
        return None
    f = _fields(result.stdout)
    return JobInfo(job_id, f["JobState"], f.get("Reason"), f.get("ExitCode"), f.get("TimeLimit"), "scontrol")


def _from_sacct(job_id: str) -> JobInfo | None:
    result = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,Reason,ExitCode,Timelimit"])
    line = result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else ""
    if not line:
        return None
    state, reason, code, limit = (line.split("|") + ["", "", ""])[:4]
    return JobInfo(job_id, state.split()[0], reason or None, code or None, limit or None, "sacct")


def _from_jobcomp(job_id: str) -> JobInfo | None:
    if not _jobcomp:
        result = _run(["scontrol", "show", "config"])
        conf = (
            dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", result.stdout, re.M)) if result.returncode == 0 else {}
        )
        _jobcomp.append(conf.get("JobCompLoc") if conf.get("JobCompType") == "jobcomp/filetxt" else None)
    path = _jobcomp[0]
    if not path:
        return None
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    for line in reversed(text.splitlines()):
        if line.startswith(f"JobId={job_id} "):
            f = _fields(line)
            return JobInfo(
                job_id, f.get("JobState", "UNKNOWN"), None, f.get("ExitCode"), f.get("TimeLimit"), "jobcomp"
            )
    return None


def job_info(job_id: str) -> JobInfo | None:
    """The job's state from the first source that knows it; None when none does (or Slurm is not here)."""
    now = time.monotonic()
    cached = _cache.get(job_id)
    if cached and now - cached[0] < CACHE_S:
        return cached[1]
    info = None
    try:
        for source in (_from_squeue, _from_scontrol, _from_sacct, _from_jobcomp):
            info = source(job_id)
            if info is not None:
                break
    except SlurmError:
        info = None
    _cache[job_id] = (now, info)
    return info


def job_of(meta: dict[str, Any]) -> str | None:
    slurm = meta.get("slurm")
    return str(slurm["job_id"]) if isinstance(slurm, dict) and slurm.get("job_id") else None


def job_alive(meta: dict[str, Any]) -> bool:
    """The run's job is pending or running (its supervisor may be on another machine: no pid to look at)."""
    job_id = job_of(meta)
    info = job_info(job_id) if job_id else None
    return info is not None and (info.pending or info.running)


def ended_cause(info: JobInfo) -> str | None:
    """Why Slurm ended the job, when it was Slurm (None for a job that simply completed)."""
    job = f"Slurm job {info.job_id}"
    state = info.state
    if state == "TIMEOUT":
        return f"{job} reached its time limit" + (f" ({info.time_limit})" if info.time_limit else "")
    if state == "NODE_FAIL":
        return f"{job} ended: a node failed"
    if state == "CANCELLED":
        return f"{job} was cancelled (scancel)"
    if state == "PREEMPTED":
        return f"{job} was preempted"
    if state == "OUT_OF_MEMORY":
        return f"{job} ran out of memory (Slurm's memory limit)"
    if state == "BOOT_FAIL":
        return f"{job} ended: its node failed to boot"
    if state == "DEADLINE":
        return f"{job} reached its deadline"
    if state == "FAILED":
        return f"{job} failed" + (f" (exit code {info.exit_code})" if info.exit_code else "")
    return None


def slurm_status(
    status: Status, cause: str | None, finished: bool, meta: dict[str, Any]
) -> tuple[Status, str | None]:
    """The status and cause to show for a Slurm run, from its events' last status and its job's state."""
    job_id = job_of(meta)
    return combine(status, cause, finished, meta, job_info(job_id) if job_id else None)


def combine(
    status: Status, cause: str | None, finished: bool, meta: dict[str, Any], info: JobInfo | None
) -> tuple[Status, str | None]:
    """What the events say, corrected by what Slurm says about the job (``info``; None: Slurm knows nothing)."""
    job_id = job_of(meta)
    if info is None:
        if finished:
            return status, cause
        return (
            "died",
            f"Slurm job {job_id} is gone (not in squeue, scontrol, sacct or the job completion log) "
            "and the run wrote no final status",
        )
    if info.pending:
        why = info.reason if info.reason and info.reason != "None" else info.state.lower()
        return queued_with(f"Slurm job {job_id} pending: {why}"), None
    if info.running:
        # node 0's supervisor, waiting for its peers, says so in its queued status's cause (rendezvous.py)
        return ("starting", cause) if status == "queued" else (status, cause)
    slurm_cause = ended_cause(info)
    if finished:
        stopped_by_us = info.state == "CANCELLED" and (meta.get("slurm") or {}).get("stop_requested")
        if slurm_cause and not stopped_by_us:
            return status, f"{slurm_cause}; {cause}" if cause else slurm_cause
        return status, cause
    if status == "queued" and info.state == "CANCELLED":
        return "stopped", f"Slurm job {job_id} was cancelled before it started"
    return (
        "failed",
        slurm_cause or f"Slurm job {job_id} ended ({info.state}) before the run wrote a final status",
    )


def job_is_the_runs(job_id: str, run_dir: Path) -> bool:
    """Whether the live job ``job_id`` is this run's, as its script made it: named ``studio-RUN`` and logging
    to this run directory's ``worker.log`` (a copied run directory records the original's job)."""
    result = _run(["scontrol", "-o", "show", "job", job_id])
    if result.returncode != 0:
        return False
    name = re.search(r"(?:^|\s)JobName=(\S*)", result.stdout)
    log = re.search(r"(?:^|\s)StdOut=(.*?)(?=\s[A-Za-z][\w:/]*=|$)", result.stdout, re.M)
    if name is None or log is None or name.group(1) != f"studio-{run_dir.name}":
        return False
    try:
        return Path(log.group(1)).resolve() == (run_dir / "worker.log").resolve()
    except (OSError, RuntimeError):
        return False


def stop_job(run_dir: Path, meta: dict[str, Any]) -> bool:
    """SIGTERM to the job's steps (the supervisors save and stop); a job not yet training is cancelled."""
    from lorastudio.train.run.eventlog import EVENTS_FILE, read_all
    from lorastudio.train.run.rundir import update_meta
    from lorastudio.train.run.runstate import fold

    job_id = job_of(meta)
    info = job_info(job_id) if job_id else None
    if job_id is None or info is None or not (info.pending or info.running):
        return False
    if not job_is_the_runs(job_id, run_dir):  # a copied run's, or a job id Slurm gave out again
        return False
    started = fold(read_all(run_dir / EVENTS_FILE)).status != "queued"
    cmd = ["scancel", "--signal=TERM", job_id] if info.running and started else ["scancel", job_id]
    result = _run(cmd)
    if result.returncode != 0:
        raise RunError(f"scancel refused: {(result.stderr or result.stdout).strip()[:300]}")
    update_meta(run_dir, slurm={**(meta.get("slurm") or {}), "stop_requested": time.time()})
    _cache.pop(job_id, None)
    return True
