"""Starting the worker on more than one device: ``accelerate launch`` under a small supervisor.

``runs.start_worker`` starts ``python -m lorastudio.train.launch.supervisor RUN_DIR --devices N --distributed D`` in its own
session when the recipe asks for more than one device (the starter parsed the recipe; this does not read it
again, and never imports ``runs``: ``runs`` imports this module). The supervisor is the run's recorded pid. It

* settles ``train.devices`` (``all`` = every visible GPU) and starts
  ``python -m accelerate.commands.launch --multi_gpu|--use_fsdp --num_processes N ... -m lorastudio.worker RUN_DIR``
  (the venv's accelerate, whatever ``accelerate`` is on PATH); accelerate hands the processes to torchrun, which
  watches them: when one dies it stops the others (SIGTERM, SIGKILL after 30 s) and exits non-zero;
* forwards SIGTERM/SIGINT (``studio stop``) to the training processes themselves, which agree through one
  all-reduce on the step to stop at; rank 0 saves the adapter once;
* when the launcher ends without a final status from rank 0, writes ``failed`` with the root cause torchrun
  reported (which rank, which exit code or signal), so a run never stays "training" with nobody behind it.

Without a GPU, N > 1 runs N CPU processes over gloo (``ACCELERATE_USE_CPU``; accelerate's own ``--cpu`` flag would
pick its single-process/mpirun launcher instead), which is how the tests exercise all of this on two cores.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from lorastudio.errors import StudioError
from lorastudio.settings import read_settings, variable
from lorastudio.train.launch import nodes
from lorastudio.train.launch.nodes import NodeSpec
from lorastudio.train.run.events import TERMINAL_STATUSES, StatusEvent
from lorastudio.train.run.rundir import LOG_FILE

FSDP_DEFAULTS = [
    "--fsdp_version",
    "1",
    "--fsdp_sharding_strategy",
    "FULL_SHARD",
    "--fsdp_auto_wrap_policy",
    "TRANSFORMER_BASED_WRAP",
    "--fsdp_backward_prefetch",
    "BACKWARD_PRE",
    "--fsdp_state_dict_type",
    "SHARDED_STATE_DICT",
    "--fsdp_use_orig_params",
    "true",  # LoRA mixes frozen and trained weights inside one wrapped layer
    "--fsdp_cpu_ram_efficient_loading",
    "true",
    "--fsdp_sync_module_states",
    "true",
]
"""accelerate's FSDP settings studio uses unless ``STUDIO_ACCELERATE_CONFIG`` names a config file of your own."""

POLL_S = 0.5


class LaunchError(StudioError):
    """The recipe asks for devices this machine cannot give."""


def resolve_devices(setting: int | str, cuda_count: int) -> int:
    """``all`` -> every visible GPU (1 without a GPU); N -> N, refused when more than the visible GPUs."""
    if setting == "all":
        return max(cuda_count, 1)
    count = int(setting)
    if cuda_count and count > cuda_count:
        raise LaunchError(
            f"train.devices: {count}, but only {cuda_count} CUDA device"
            f"{'s are' if cuda_count > 1 else ' is'} visible (CUDA_VISIBLE_DEVICES)"
        )
    return count


def check_distributed(distributed: str, devices: int, cuda_count: int) -> None:
    """FSDP shards over GPUs only (accelerate has no CPU FSDP): refuse it up front instead of failing in the trainer."""
    if distributed == "fsdp" and devices > 1 and not cuda_count:
        raise LaunchError(
            "train.distributed: fsdp needs CUDA GPUs (accelerate's FSDP does not run on CPU); "
            "use train.distributed: ddp to test several processes on CPU"
        )


def check_devices(setting: int | str, distributed: str, cuda_count: int | None = None) -> int:
    """The number of processes a run with these settings gets; refuses what this machine cannot give.

    Called before a run directory is created, so a recipe asking for FSDP without CUDA (or more GPUs than are
    visible) fails with one line and leaves nothing behind. One device needs no look at the GPUs.
    """
    if not needs_launcher(setting):
        return 1
    gpus = visible_gpus() if cuda_count is None else cuda_count
    devices = resolve_devices(setting, gpus)
    check_distributed(distributed, devices, gpus)
    return devices


def visible_gpus(env: Mapping[str, str] | None = None) -> int:
    """GPUs this run may use: NVML's count, narrowed by ``CUDA_VISIBLE_DEVICES`` (no torch import needed)."""
    from lorastudio.train.trainer.telemetry import Nvml

    env = os.environ if env is None else env
    nvml = Nvml()
    count = len(nvml.sample()) if nvml.available else 0
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None or not count:
        return count
    wanted = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
    return min(len(wanted), count)


def needs_launcher(setting: int | str) -> bool:
    """Whether a run with this ``train.devices`` starts under the supervisor rather than as one worker."""
    return setting != 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accelerate_command(
    run_dir: Path,
    devices: int,
    distributed: str = "ddp",
    resume: bool = False,
    *,
    port: int | None = None,
    config_file: str | None = None,
    python: str = sys.executable,
    node: NodeSpec | None = None,
) -> list[str]:
    """``python -m accelerate.commands.launch ... -m lorastudio.worker RUN_DIR``: N processes on this machine
    (``devices``), on each of ``node.nodes`` machines when ``node`` says so (see nodes.py)."""
    machines = node.nodes if node is not None and node.multi else 1
    cmd = [python, "-m", "accelerate.commands.launch"]
    if config_file:
        cmd += ["--config_file", config_file]
    cmd += ["--use_fsdp"] if distributed == "fsdp" else ["--multi_gpu"]
    if distributed == "fsdp" and not config_file:
        cmd += FSDP_DEFAULTS
    cmd += [
        "--num_processes",
        str(devices * machines),
        "--num_machines",
        str(machines),
        "--mixed_precision",
        "no",  # the trainer sets bf16/fp16 from the recipe
        "--dynamo_backend",
        "no",
    ]
    if node is not None and node.multi:  # torchrun's static rendezvous, hosted by node 0
        cmd += [
            "--machine_rank",
            str(node.node_rank),
            "--main_process_ip",
            node.main_host,
            "--main_process_port",
            str(node.main_port),
        ]
    else:
        cmd += ["--main_process_port", str(port or free_port())]
    cmd += [
        "--max_restarts",
        "0",  # a failed rank fails the run; it is not restarted from scratch
        "--monitor_interval",
        "1",
        "-m",
        "lorastudio.worker",
        str(run_dir),
    ]
    if resume:
        cmd.append("--resume")
    return cmd


def launch_env(cuda: bool, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    env[variable("supervisor_pid")] = str(os.getpid())  # the run's recorded pid stays the supervisor's
    if not cuda:
        env["ACCELERATE_USE_CPU"] = "true"  # each process joins gloo on the CPU
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def supervisor_command(
    run_dir: Path,
    resume: bool = False,
    devices: int | str | None = None,
    python: str = sys.executable,
    distributed: str | None = None,
) -> list[str]:
    cmd = [python, "-m", "lorastudio.train.launch.supervisor", str(run_dir)]
    if devices is not None:
        cmd += ["--devices", str(devices)]
    if distributed is not None:
        cmd += ["--distributed", distributed]
    if resume:
        cmd.append("--resume")
    return cmd


_FAILURE = re.compile(r"rank\s*:\s*(\d+)[^\n]*\n\s*exitcode\s*:\s*(-?\d+)(?:\s*\(pid:\s*(\d+)\))?")


def root_cause(log_text: str) -> str | None:
    """torchrun's failure report as one line: which rank, which exit code or signal.

    torchrun calls the earliest failure the root cause, but a peer killed by a signal and rank 0 leaving on the
    broken connection are often seen in the same poll; a death by signal is then the cause, not its echo.
    """
    block = log_text[log_text.rfind("Failures:") :] if "Failures:" in log_text else ""
    failures = [(int(m.group(1)), int(m.group(2)), m.group(3)) for m in _FAILURE.finditer(block)]
    if not failures:
        return None
    # the reported root cause comes last; a death by a signal torchrun itself does not send wins over it
    stopped_by_launcher = (-signal.SIGTERM, -signal.SIGINT)
    rank, code, pid = next(
        (f for f in failures if f[1] < 0 and f[1] not in stopped_by_launcher), failures[-1]
    )
    where = f" (pid {pid})" if pid else ""
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    return f"training process rank {rank}{where} {how}; the launcher stopped the others"


class Supervisor:
    """Runs the launcher, forwards stop signals to the training processes, and reports a launcher failure."""

    def __init__(
        self,
        run_dir: Path,
        resume: bool,
        devices: int | str | None,
        distributed: str | None = None,
        node: NodeSpec | None = None,
    ) -> None:
        self.node = node or NodeSpec()
        self.run_dir = run_dir
        self.resume = resume
        self.devices = devices
        self.distributed = distributed
        self.stop_signal: int | None = None
        self.signalled: set[int] = set()
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()  # the signal handler may interrupt forward()

    def install(self) -> None:
        def handler(signum: int, _frame: object) -> None:
            self.stop_signal = signum
            self.forward()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def training_pids(self) -> list[int]:
        if self.proc is None:
            return []
        try:
            import psutil

            return [
                p.pid
                for p in psutil.Process(self.proc.pid).children(recursive=True)
                if "lorastudio.worker" in " ".join(p.cmdline())
            ]
        except Exception:
            return []

    def forward(self) -> None:
        """Send the stop signal to every training process not yet told (not to torchrun: it would kill them)."""
        if self.stop_signal is None:
            return
        with self._lock:
            for pid in self.training_pids():
                if pid not in self.signalled:
                    try:
                        os.kill(pid, self.stop_signal)
                        self.signalled.add(pid)
                    except OSError:
                        pass

    def run(self) -> int:
        from lorastudio.train.run.eventlog import EVENTS_FILE
        from lorastudio.train.run.runstate import RunReader
        from lorastudio.train.run.summaries import SummarizingWriter

        try:
            setting, distributed = self.devices, self.distributed
            train_nodes: int | None = None
            if (
                setting is None or distributed is None or self.node.multi
            ):  # by hand, or a node: read the snapshot
                from lorastudio import registry

                train = registry.load_snapshot(self.run_dir / "recipe.yaml").train
                setting = train.devices if setting is None else setting
                distributed = train.distributed if distributed is None else distributed
                train_nodes = train.nodes
            gpus = visible_gpus()
            cuda = gpus > 0
            devices = resolve_devices(setting, gpus)
            check_distributed(distributed, devices, gpus)
            if train_nodes is not None and train_nodes != self.node.nodes:
                raise nodes.NodeError(
                    f"train.nodes: {train_nodes}, but this supervisor was started for "
                    f"{self.node.nodes} node{'s' if self.node.nodes > 1 else ''}: start one on "
                    "each node with --nodes N --node-rank R --main-address HOST:PORT"
                )
        except StudioError as exc:
            return self._fail(str(exc))
        if devices == 1 and not self.node.multi:
            cmd = [sys.executable, "-m", "lorastudio.worker", str(self.run_dir)] + (
                ["--resume"] if self.resume else []
            )
        else:
            cmd = accelerate_command(
                self.run_dir,
                devices,
                distributed,
                self.resume,
                config_file=str(read_settings().accelerate_config or "") or None,
                node=self.node,
            )
        launched = time.time()
        if self.node.multi:
            nodes.redirect_output(
                nodes.node_log(self.run_dir, self.node.node_rank)
            )  # torchrun's report, read below
            launched = nodes.announce(self.run_dir, self.node, devices)
            met = self._meet()  # node 0 waits for every peer at the main address; a peer joins it
            if met is not None:
                return met
        print("launching: " + " ".join(cmd), flush=True)
        reader = RunReader(self.run_dir)
        reader.update()  # a resumed run's log holds an earlier ending: only what this launch adds counts
        log_path = self.run_dir / LOG_FILE
        if self.node.multi:
            log_path = nodes.node_log(self.run_dir, self.node.node_rank)
        log_start = log_path.stat().st_size if log_path.exists() else 0
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=launch_env(cuda))
        except OSError as exc:
            return self._fail(f"cannot start {cmd[0]}: {exc.strerror or exc}")
        while True:
            try:
                code = self.proc.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                self.forward()  # processes started after the signal arrived are told too
        if not self.node.is_main:  # only node 0 writes the run's events: this node reports how it ended
            return self._node_ended(code, log_path, log_start)
        statuses = [e.status for e in reader.update() if isinstance(e, StatusEvent)]
        # This launch's own ending: a resume started after it (while this launcher was still exiting) may
        # already have appended a new `starting`, which must not read as "ended without a status".
        finals = [s for s in statuses if s in TERMINAL_STATUSES]  # `died` is never written
        if finals:
            return 0 if finals[0] in ("done", "stopped") and code == 0 else (code or 1)
        try:
            with log_path.open("rb") as handle:
                handle.seek(max(log_start, log_path.stat().st_size - 20000))
                tail = handle.read().decode(errors="replace")
        except OSError:
            tail = ""
        cause = root_cause(tail) or f"the launcher exited with code {code} before the run finished"
        said = re.findall(r"^studio rank (\d+) failed: (.*)$", tail, re.M)
        if said:
            cause += f" (rank {said[0][0]}: {said[0][1][:160]})"
        if self.node.multi:  # a peer node that went away is the cause, not rank 0 leaving on the broken link
            cause = nodes.lost_node_cause(self.run_dir, self.node, devices, launched, cause)
        writer = SummarizingWriter(self.run_dir / EVENTS_FILE)
        writer.emit(StatusEvent(status="failed", cause=cause, world_size=devices * self.node.nodes))
        writer.close()
        return code or 1

    def _meet(self) -> int | None:
        """Before torchrun: node 0 publishes the run and waits for its peers to join, a peer joins (see
        rendezvous.py). None to go on; else the exit code (stopped while waiting, or the time-out's failure)."""
        from lorastudio.train.launch import rendezvous

        timeout = rendezvous.wait_s()

        def stopped() -> bool:
            return self.stop_signal is not None

        try:
            if self.node.is_main:
                host = rendezvous.Host.of(self.run_dir, self.node)
                if not rendezvous.serve_until_joined(
                    host, rendezvous.listen(self.node), timeout, self._waiting, stopped
                ):
                    return self._stopped_waiting()
                print(
                    f"studio: all {self.node.nodes} nodes joined at {rendezvous.address(self.node)}",
                    flush=True,
                )
            else:
                print("studio: " + rendezvous.waiting_line(self.node, timeout), flush=True)
                rendezvous.ask(self.node, {"want": "join", "run": self.run_dir.name}, timeout, stopped)
        except StudioError as exc:
            return self._stopped_waiting() if stopped() else self._fail(str(exc))
        return None

    def _waiting(self, cause: str) -> None:
        """Node 0's status while it waits for its peers says for what: the Runs screen and `studio runs` show it."""
        from lorastudio.train.run.eventlog import EVENTS_FILE
        from lorastudio.train.run.summaries import SummarizingWriter

        print(f"studio: {cause}", flush=True)
        writer = SummarizingWriter(self.run_dir / EVENTS_FILE)
        writer.emit(StatusEvent(status="queued", cause=cause))
        writer.close()

    def _stopped_waiting(self) -> int:
        from lorastudio.train.run.eventlog import EVENTS_FILE
        from lorastudio.train.run.summaries import SummarizingWriter

        cause = "stopped while the nodes were meeting; it never started"
        if not self.node.is_main:
            nodes.write_report(self.run_dir, self.node.node_rank, ended=time.time(), code=0, cause=cause)
            return 0
        writer = SummarizingWriter(self.run_dir / EVENTS_FILE)
        writer.emit(StatusEvent(status="stopped", cause=cause))
        writer.close()
        return 0

    def _node_ended(self, code: int, log_path: Path, log_start: int) -> int:
        cause = None
        if code:
            try:
                with log_path.open("rb") as handle:
                    handle.seek(max(log_start, log_path.stat().st_size - 20000))
                    tail = handle.read().decode(errors="replace")
            except OSError:
                tail = ""
            cause = root_cause(tail) or f"its launcher exited with code {code}"
        nodes.write_report(self.run_dir, self.node.node_rank, ended=time.time(), code=code, cause=cause)
        return code

    def _fail(self, cause: str) -> int:
        from lorastudio.train.run.eventlog import EVENTS_FILE
        from lorastudio.train.run.summaries import SummarizingWriter

        if not self.node.is_main:
            nodes.write_report(self.run_dir, self.node.node_rank, ended=time.time(), code=1, cause=cause)
            print(cause, file=sys.stderr)
            return 1
        writer = SummarizingWriter(self.run_dir / EVENTS_FILE)
        writer.emit(StatusEvent(status="failed", cause=cause))
        writer.close()
        print(cause, file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lorastudio.train.launch.supervisor")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--devices", help="override train.devices (N or all), per node")
    parser.add_argument("--distributed", choices=("ddp", "fsdp"), help="override train.distributed")
    parser.add_argument("--nodes", type=int, help="override train.nodes: machines in the run (see nodes.py)")
    parser.add_argument(
        "--node-rank", type=int, help="this machine's place, 0 .. nodes-1 (node 0 writes the run)"
    )
    parser.add_argument("--main-address", metavar="HOST:PORT", help="node 0's address for the rendezvous")
    args = parser.parse_args(argv)
    devices: int | str | None = args.devices
    if devices is not None and devices != "all":
        devices = int(devices)
    run_dir = args.run_dir.resolve()
    node = None
    if args.nodes is not None or args.node_rank or args.main_address:
        from lorastudio import registry
        from lorastudio.train.launch.nodes import node_spec

        try:
            recipe_nodes = registry.load_snapshot(run_dir / "recipe.yaml").train.nodes
            node = node_spec(args.nodes, args.node_rank, args.main_address, recipe_nodes)
        except StudioError as exc:
            print(f"studio: {exc}", file=sys.stderr)
            return 2
    supervisor = Supervisor(run_dir, args.resume, devices, args.distributed, node)
    supervisor.install()
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
