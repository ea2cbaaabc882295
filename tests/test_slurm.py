"""Runs on Slurm, against a real one-node Slurm on this machine (Debian's slurm-wlm and munge).

The ``slurm`` fixture starts munged, slurmctld and slurmd from a generated ``slurm.conf`` in a temporary folder
(localhost, its own ports, no cgroups: proctrack/linuxproc, task/none; no accounting database, so job causes
come from squeue, ``scontrol show job`` and the jobcomp/filetxt log) and stops them afterwards. Without the
packages (or without root, which slurmd needs) the Slurm scenarios are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import STUDIO_BIN, state_of, wait_for

from lorastudio.train.launch import runs, slurm
from lorastudio.train.launch import supervisor as launch
from lorastudio.train.launch.slurm import JobInfo, SlurmOptions
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all
from lorastudio.train.run.events import Status
from lorastudio.train.run.rundir import RunMeta

DAEMONS = ("munged", "slurmctld", "slurmd")


# -- no cluster needed -------------------------------------------------------------------------------
def test_sbatch_script_reads_as_the_options_say(tmp_path: Path) -> None:
    options = SlurmOptions(
        nodes=2, gpus_per_node=8, partition="gpu", time="4:00:00", account="lab", requeue=True
    )
    script = slurm.sbatch_script(tmp_path, options, python="/venv/bin/python")
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=4:00:00",
        "#SBATCH --account=lab",
        "#SBATCH --requeue",
        f"#SBATCH --output={tmp_path / 'worker.log'}",
    ):
        assert line in script.splitlines(), line
    assert "SLURM_RESTART_COUNT" in script  # a requeued job resumes
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    assert "lorastudio.train.launch.supervisor" in srun
    assert '--node-rank "$SLURM_NODEID"' in srun
    assert "--devices 8" in srun
    plain = slurm.sbatch_script(tmp_path, SlurmOptions())
    assert "#SBATCH --no-requeue" in plain
    assert "--partition" not in plain
    assert "--gpus-per-node" not in plain
    assert "STUDIO_RESUME=--resume" in slurm.sbatch_script(tmp_path, SlurmOptions(), resume=True)


BAD_FIELDS = [
    ({"partition": "gpu\nrm -rf ~"}, "--partition 'gpu\\nrm -rf ~': a Slurm partition name"),
    ({"partition": "gpu debug"}, "--partition 'gpu debug'"),
    ({"partition": "gpu;id"}, "--partition 'gpu;id'"),
    ({"partition": "-gpu"}, "--partition '-gpu'"),
    ({"account": "lab\n#SBATCH --mem=1T"}, "--account 'lab\\n#SBATCH --mem=1T': a Slurm account name"),
    ({"account": "$(id)"}, "--account '$(id)'"),
    ({"time": "soon"}, "--time 'soon': give Slurm's time format: minutes, MM:SS, HH:MM:SS, D-HH"),
    ({"time": "4:00:00:00"}, "--time '4:00:00:00'"),
    ({"time": "1-"}, "--time '1-'"),
    ({"time": "4h"}, "--time '4h'"),
    ({"time": "10\nid"}, "--time '10\\nid'"),
    ({"gpus_per_node": 0}, "--gpus-per-node 0: give a whole number, 1 or more"),
    ({"gpus_per_node": -2}, "--gpus-per-node -2"),
    ({"nodes": 0}, "train.nodes (--nodes N) 0: give a whole number, 1 or more"),
    ({"nodes": "2"}, "train.nodes (--nodes N) '2'"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_FIELDS, ids=[repr(f) for f, _ in BAD_FIELDS])
def test_every_slurm_field_is_checked_before_a_script_is_written(fields: dict, message: str) -> None:
    with pytest.raises(slurm.SlurmError) as caught:
        SlurmOptions(**fields)
    assert str(caught.value).startswith(message)
    with pytest.raises(slurm.SlurmError):  # a run.json edited by hand is refused at resume too
        SlurmOptions.from_json(fields)


@pytest.mark.parametrize(
    "time_limit",
    ["30", "0", "90:00", "4:00:00", "36:00:00", "2-12", "2-12:30", "2-12:30:15", "UNLIMITED", "infinite"],
)
def test_slurms_time_formats_are_accepted(tmp_path: Path, time_limit: str) -> None:
    script = slurm.sbatch_script(tmp_path, SlurmOptions(time=time_limit))
    assert f"#SBATCH --time={time_limit}" in script.splitlines()


def test_the_script_quotes_every_value(tmp_path: Path) -> None:
    import shlex

    run_dir = tmp_path / "my runs" / "tiny-pirate-20261207-101500"
    options = SlurmOptions(nodes=2, gpus_per_node=4, partition="gpu,debug", time="1-00", account="lab.x")
    script = slurm.sbatch_script(run_dir, options)
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH ")]
    for line in directives:  # sbatch reads quotes in #SBATCH lines as a shell does: one word per directive
        assert len(shlex.split(line[len("#SBATCH ") :])) == 1, line
    assert f"#SBATCH --output='{run_dir / 'worker.log'}'" in directives
    assert f"export STUDIO_RUN='{run_dir}'" in script.splitlines()
    with pytest.raises(slurm.SlurmError, match="a line break in its path"):
        slurm.sbatch_script(tmp_path / "a\nrm -rf ~", SlurmOptions())


CLI_REFUSALS = [
    (
        ["--slurm", "--partition", "gpu\nrm -rf ~"],
        "studio: --partition 'gpu\\nrm -rf ~': a Slurm partition name",
    ),
    (["--slurm", "--time", "soon"], "studio: --time 'soon': give Slurm's time format"),
    (["--slurm", "--gpus-per-node", "0"], "studio: --gpus-per-node 0: give a whole number, 1 or more"),
    (["--slurm", "--account", "a b"], "studio: --account 'a b'"),
    (["--partition", "gpu"], "studio: --partition: Slurm settings, for --slurm runs only"),
    (["--time", "10", "--requeue"], "studio: --time, --requeue: Slurm settings, for --slurm runs only"),
    (
        ["--nodes", "0"],
        NODES_0 := "studio: override 'train.nodes=0': 0: give 1 or more machines (train.nodes, or --nodes N)",
    ),
    (["train.nodes=0"], NODES_0),
    (["--slurm", "--nodes", "0"], NODES_0),
    (
        ["--nodes", "-1", "--main-address", "h:1"],
        "studio: override 'train.nodes=-1': -1: give 1 or more machines",
    ),
]


@pytest.mark.parametrize(("flags", "message"), CLI_REFUSALS, ids=[" ".join(f) for f, _ in CLI_REFUSALS])
def test_studio_train_refuses_bad_scheduler_fields_before_making_a_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    from lorastudio import cli

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch: nothing could be submitted anyway
    assert cli.main(["train", "tiny-pirate", *flags, "--detach"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert "Traceback" not in err
    runs_root = tmp_path / "data" / "studio" / "runs"
    assert not runs_root.exists() or not any(runs_root.iterdir())  # no run directory, so no script either


def test_status_of_a_slurm_run_from_its_job() -> None:
    meta = RunMeta.model_validate({"slurm": {"job_id": "7"}})

    def shown(status: Status, cause: str | None, finished: bool, info: JobInfo | None, on: RunMeta = meta):
        return slurm.combine(status, cause, finished, on, info)

    pending = JobInfo("7", "PENDING", "Priority")
    assert shown("queued", None, False, pending) == ("queued (Slurm job 7 pending: Priority)", None)
    assert shown("stopped", "preempted", True, pending)[0].startswith("queued (Slurm job 7")  # requeued
    assert shown("queued", None, False, JobInfo("7", "RUNNING"))[0] == "starting"
    assert shown("training", None, False, JobInfo("7", "RUNNING"))[0] == "training"
    timeout = JobInfo("7", "TIMEOUT", time_limit="00:01:00")
    assert shown("stopped", "stopped by SIGTERM", True, timeout) == (
        "stopped",
        "Slurm job 7 reached its time limit (00:01:00); stopped by SIGTERM",
    )
    assert shown("training", None, False, timeout) == (
        "failed",
        "Slurm job 7 reached its time limit (00:01:00)",
    )
    assert "a node failed" in (shown("training", None, False, JobInfo("7", "NODE_FAIL"))[1] or "")
    cancelled = JobInfo("7", "CANCELLED")
    assert shown("queued", None, False, cancelled) == (
        "stopped",
        "Slurm job 7 was cancelled before it started",
    )
    ours = RunMeta.model_validate(
        {"slurm": {"job_id": "7", "stop_requested": 1.0}}
    )  # `studio stop`: no Slurm cause to add
    assert shown("stopped", "stopped by SIGTERM", True, cancelled, ours) == ("stopped", "stopped by SIGTERM")
    assert shown("done", None, True, JobInfo("7", "COMPLETED")) == ("done", None)
    assert shown("training", None, False, None)[0] == "died"


# -- a real Slurm ------------------------------------------------------------------------------------
def _slurm_conf(root: Path, ctld_port: int, slurmd_port: int) -> str:
    return "\n".join(
        [
            "ClusterName=studiotest",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # cred_expire is also how long a requeued job waits before it may start again: 120 s by
            # default, two thirds of the requeue scenario; 20 s still outlasts a step launch on a loaded box
            f"AuthInfo=socket={root}/munge/munge.socket,cred_expire=20",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={root}/state",
            f"SlurmdSpoolDir={root}/spool",
            f"SlurmctldPidFile={root}/slurmctld.pid",
            f"SlurmdPidFile={root}/slurmd.pid",
            f"SlurmctldLogFile={root}/log/slurmctld.log",
            f"SlurmdLogFile={root}/log/slurmd.log",
            "ProctrackType=proctrack/linuxproc",  # no cgroups in a container
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",  # no slurmdbd: sacct has nothing to say
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={root}/jobcomp.txt",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "SlurmdParameters=config_overrides",
            "MpiDefault=none",
            "ReturnToService=2",
            "MinJobAge=600",
            "KillWait=30",
            "InactiveLimit=0",
            "SchedulerParameters=sched_interval=5",
            "NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=4000 State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[Path]:
    missing = [d for d in DAEMONS if not shutil.which(d)]
    if missing:
        pytest.skip(
            f"Slurm scenarios need {', '.join(missing)} (apt-get install slurm-wlm munge; ./test does it "
            "as root)"
        )
    if os.geteuid() != 0:
        pytest.skip("Slurm scenarios need root: slurmd starts the jobs as their user")
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir()
    root.chmod(0o755)
    (root / "munge").chmod(0o755)  # munged wants others to reach its socket
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, launch.free_port(), launch.free_port()))
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "OMP_NUM_THREADS")}
    os.environ["SLURM_CONF"] = str(conf)
    os.environ["OMP_NUM_THREADS"] = "1"  # the jobs inherit it: one thread each on a shared box
    logs = (root / "log" / "daemons.log").open("ab")
    procs = [
        subprocess.Popen(
            [
                "munged",
                "-F",
                "--force",
                f"--key-file={key}",
                f"--socket={root}/munge/munge.socket",
                f"--pid-file={root}/munge/munged.pid",
                f"--log-file={root}/munge/munged.log",
                f"--seed-file={root}/munge/munged.seed",
            ],
            stdout=logs,
            stderr=logs,
        )
    ]
    try:
        wait_for(lambda: (root / "munge" / "munge.socket").exists(), timeout=30)
        procs.append(
            subprocess.Popen(
                ["nice", "-n", "5", "slurmctld", "-D", "-c", "-i", "-f", str(conf)], stdout=logs, stderr=logs
            )
        )
        procs.append(
            subprocess.Popen(
                ["nice", "-n", "5", "slurmd", "-D", "-N", "localhost", "-f", str(conf)],
                stdout=logs,
                stderr=logs,
            )
        )

        def idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout
            return out.strip() == "idle"

        try:
            wait_for(idle, timeout=60, every=1)
        except AssertionError:
            text = "\n".join(p.read_text(errors="replace")[-1500:] for p in (root / "log").glob("*.log"))
            pytest.fail(f"the test Slurm did not come up:\n{text}")
        yield root
    finally:
        subprocess.run(["scancel", "--full", "--signal=KILL", "--user=root"], capture_output=True)
        subprocess.run(["scancel", "--user=root"], capture_output=True)
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logs.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def studio(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STUDIO_BIN, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def submit(*overrides: str, flags: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Path:
    result = studio("train", "tiny-pirate", *overrides, "--slurm", "--detach", *flags, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return runs.find_run(result.stdout.strip().splitlines()[-1])


def job_id(run_dir: Path) -> str:
    return str(getattr(runs.read_meta(run_dir).slurm, "job_id", None))


def runs_row(run_dir: Path) -> str:
    result = studio("runs")
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith(run_dir.name))


def settled(run_dir: Path, timeout: float = 600) -> runs.RunSummary:
    """The run's summary once its job has left Slurm's queue."""
    wait_for(lambda: not slurm.job_alive(runs.read_meta(run_dir)), timeout=timeout, every=1)
    slurm._cache.clear()
    return runs.summarise(run_dir)


def test_a_job_sbatch_refuses_fails_the_run_saying_why(slurm_cluster: Path) -> None:
    result = studio("train", "tiny-pirate", "--slurm", "--partition", "nosuchpartition", "--detach")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "sbatch refused the job" in result.stderr, result.stderr
    assert "partition" in result.stderr.lower(), result.stderr
    summary = runs.list_runs()[0]
    assert summary.status == "failed"
    assert "sbatch refused the job" in (summary.cause or "")
    assert "#SBATCH --partition=nosuchpartition" in (summary.path / slurm.SCRIPT_FILE).read_text()


def test_sbatch_reads_the_quoted_directives_as_written(slurm_cluster: Path, tmp_path: Path) -> None:
    """The real sbatch takes the script's quoted values as one word each: the output path has a blank."""
    run_dir = tmp_path / "runs with a blank" / "tiny-pirate-20261207-101500"
    run_dir.mkdir(parents=True)
    script = slurm.sbatch_script(run_dir, SlurmOptions(time="5"))
    assert f"#SBATCH --output='{run_dir / 'worker.log'}'" in script.splitlines()
    directives = [line for line in script.splitlines() if line.startswith("#")]
    probe = run_dir / "probe.sbatch"
    probe.write_text("\n".join([*directives, 'echo "ran $SLURM_JOB_NAME"', ""]))
    result = subprocess.run(
        ["sbatch", "--parsable", "--chdir", str(run_dir), str(probe)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    log = run_dir / "worker.log"
    wait_for(
        lambda: log.exists() and "ran studio-tiny-pirate-20261207-101500" in log.read_text(), timeout=120
    )


LIVE = ("starting", "loading model", "loading data", "training", "saving")


@pytest.mark.slow
async def test_submit_pending_then_running_attach_done(slurm_cluster: Path) -> None:
    from lorastudio.app import StudioApp

    # another job holds both of the node's CPUs, so ours waits for resources
    blocker = subprocess.run(
        ["sbatch", "--parsable", "--exclusive", "-o", "/dev/null", "--wrap", "sleep 600"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    wait_for(lambda: slurm.job_info(blocker) and slurm.job_info(blocker).running, timeout=60, every=1)  # type: ignore[union-attr]
    run_dir = submit("train.max_steps=60", "train.save_steps=1000")
    job = job_id(run_dir)
    script = (run_dir / slurm.SCRIPT_FILE).read_text()
    assert "srun " in script
    assert "#SBATCH --nodes=1" in script
    row = runs_row(run_dir)
    assert f"queued (Slurm job {job} pending: Resources)" in row or f"{job} pending: Priority" in row, row

    seen: list[str] = []
    app = StudioApp(attach=run_dir)
    async with app.run_test(size=(120, 40)) as pilot:

        async def shows(predicate, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                snap = getattr(pilot.app.screen, "snapshot", None)
                if snap is not None and (not seen or seen[-1] != snap.status):
                    seen.append(snap.status)
                if snap is not None and predicate(snap.status):
                    return
                await pilot.pause(0.2)
            raise AssertionError(f"the Monitor showed {seen}")

        await shows(lambda s: s.startswith(f"queued (Slurm job {job} pending"), 60)
        subprocess.run(["scancel", blocker], check=True)
        await shows(lambda s: s == "training", 600)
        assert runs.summarise(run_dir).status in LIVE
        row = runs_row(run_dir)
        assert any(status in row for status in (*LIVE, "done")), row
        await shows(lambda s: s == "done", 600)
    print(f"the Monitor showed: {seen}")
    assert seen[0].startswith("queued (Slurm job")
    assert seen[-1] == "done"
    summary = settled(run_dir)
    assert summary.status == "done"
    assert summary.step == 60
    assert (run_dir / "adapter" / "adapter_config.json").exists()
    assert slurm.job_info(job).state == "COMPLETED"  # type: ignore[union-attr]
    assert "studio: Slurm job" in (run_dir / runs.LOG_FILE).read_text()  # the job's output is the run's log
    result = studio("runs", "delete", run_dir.name, "--yes")
    assert result.returncode == 0, result.stderr
    assert not run_dir.exists(), result.stderr


@pytest.mark.slow
def test_stop_mid_run_then_resume_loses_no_step(slurm_cluster: Path) -> None:
    run_dir = submit("train.max_steps=40", "train.save_steps=1000")
    first = job_id(run_dir)
    wait_for(lambda: state_of(run_dir).step >= 3, timeout=600, every=0.5)
    result = studio("stop", run_dir.name)
    assert result.returncode == 0, result.stderr
    summary = settled(run_dir)
    assert summary.status == "stopped", summary
    assert "SIGTERM" in (summary.cause or ""), summary
    stop_step = summary.step
    assert 3 <= stop_step < 40
    checkpoint = runs.latest_checkpoint(run_dir)
    assert checkpoint is not None
    assert checkpoint.name == f"checkpoint-{stop_step}"
    assert slurm.job_info(first).state == "COMPLETED"  # type: ignore[union-attr]  # it ended by itself

    before = len(read_all(run_dir / EVENTS_FILE))
    result = studio("resume", run_dir.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"from checkpoint-{stop_step}" in result.stdout, result.stdout + result.stderr
    meta = runs.read_meta(run_dir)
    assert meta.slurm is not None
    assert meta.slurm.jobs == [first, meta.slurm.job_id]
    assert meta.slurm.job_id != first
    assert "STUDIO_RESUME=--resume" in (run_dir / slurm.SCRIPT_FILE).read_text()
    summary = settled(run_dir)
    assert summary.status == "done", summary
    after = read_all(run_dir / EVENTS_FILE)[before:]
    assert [e["step"] for e in after if e["kind"] == "metrics"] == list(range(stop_step + 1, 41))


def test_stop_cancels_only_a_job_proven_the_runs_own(slurm_cluster: Path, tmp_path: Path) -> None:
    """A run directory copied from a Slurm run (or an old one whose job id Slurm gave out again) records a job
    that is not its own: `studio stop` proves the job is this run's (its name and its log file) before any
    scancel, else reports no live worker and cancels nothing."""
    from runs_fixtures import write_run

    from lorastudio.paths import runs_dir

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for case in ("another-job", "same-job-name"):
        run_name = f"{case}-{tmp_path.name}"
        job_name = "someone-else" if case == "another-job" else f"studio-{run_name}"
        sub = subprocess.run(
            [
                "sbatch",
                "--parsable",
                f"--job-name={job_name}",
                f"--output={elsewhere}/{case}.log",
                "--wrap",
                "sleep 300",
            ],
            capture_output=True,
            text=True,
        )
        assert sub.returncode == 0, sub.stderr
        foreign = sub.stdout.strip().split(";")[0]
        wait_for(lambda: slurm.job_info(foreign) is not None, timeout=30, every=0.5)  # noqa: B023
        run_dir = write_run(runs_dir(), run_name, created=time.time(), final="training")
        meta = json.loads((run_dir / "run.json").read_text())
        (run_dir / "run.json").write_text(json.dumps({**meta, "slurm": {"job_id": foreign}}))
        result = studio("stop", run_dir.name)
        assert result.stderr.strip() == f"{run_dir.name}: no live worker", result.stdout + result.stderr
        slurm._cache.clear()
        info = slurm.job_info(foreign)
        assert info is not None, info
        assert info.pending or info.running, info
        subprocess.run(["scancel", foreign], capture_output=True)
    # the run's own job, as its script names it and points its log, is stopped
    run_dir = write_run(runs_dir(), f"own-{tmp_path.name}", created=time.time(), final="training")
    sub = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--job-name=studio-{run_dir.name}",
            f"--output={run_dir}/worker.log",
            "--wrap",
            "sleep 300",
        ],
        capture_output=True,
        text=True,
    )
    own = sub.stdout.strip().split(";")[0]
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "slurm": {"job_id": own}}))
    wait_for(lambda: slurm.job_info(own) is not None, timeout=30, every=0.5)
    result = studio("stop", run_dir.name)
    assert result.stdout.strip() == f"asked {run_dir.name} to save and stop", result.stdout + result.stderr


@pytest.mark.slow
def test_time_limit_shows_as_the_cause(slurm_cluster: Path) -> None:
    run_dir = submit("train.max_steps=100000", "train.save_steps=100000", flags=("--time", "1"))
    job = job_id(run_dir)
    assert "#SBATCH --time=1" in (run_dir / slurm.SCRIPT_FILE).read_text()
    summary = settled(run_dir, timeout=400)
    print(f"time limit: {summary.status}: {summary.cause}")
    assert summary.status in ("stopped", "failed"), summary
    assert f"Slurm job {job} reached its time limit" in (summary.cause or ""), summary.cause
    row = json.loads(studio("runs", "--json").stdout)
    assert any(r["name"] == run_dir.name and "time limit" in (r["cause"] or "") for r in row)


@pytest.mark.slow
def test_requeued_job_resumes_from_its_checkpoint_by_itself(slurm_cluster: Path) -> None:
    run_dir = submit("train.max_steps=30", "train.save_steps=1000", flags=("--requeue",))
    job = job_id(run_dir)
    assert "#SBATCH --requeue" in (run_dir / slurm.SCRIPT_FILE).read_text()
    wait_for(lambda: state_of(run_dir).step >= 3, timeout=600, every=0.5)
    subprocess.run(["scontrol", "requeue", job], check=True)  # what preemption with PreemptMode=REQUEUE does
    wait_for(lambda: state_of(run_dir).finished, timeout=120, every=0.5)
    state = state_of(run_dir)
    assert state.status == "stopped", state.cause  # SIGTERM: a checkpoint at the step it reached
    saved = state.step
    summary = settled(run_dir, timeout=900)
    assert summary.status == "done", summary
    events = read_all(run_dir / EVENTS_FILE)
    resumed = [i for i, e in enumerate(events) if e.get("status") == "starting" and e.get("resume")]
    assert resumed, "the requeued job did not start with --resume"
    after = [e["step"] for e in events[resumed[-1] :] if e["kind"] == "metrics"]
    assert after == list(range(saved + 1, 31))
    assert getattr(runs.read_meta(run_dir).slurm, "jobs", None) == [job]  # the same job, run again by Slurm
