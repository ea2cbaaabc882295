"""Training across machines: the same supervisor on every node, node 0 owning the run directory.

Each node runs ``python -m lorastudio.train.launch.supervisor RUN_DIR --nodes N --node-rank R --main-address HOST:PORT``
(``studio train --slurm`` writes that line under ``srun``). Its supervisor starts accelerate with
``--num_machines N --machine_rank R --main_process_ip HOST --main_process_port PORT`` once the nodes have met at
node 0's address (rendezvous.py: node 0 names its run there and waits for every peer); torchrun's static
rendezvous, hosted by node 0 at that address, joins the nodes into one process group of ``nodes x devices``
ranks, global rank ``R x devices + local rank``. Global rank 0 (on node 0) writes events, checkpoints and the
adapter exactly as on one machine, and the stop vote is one all-reduce over every rank, so a SIGTERM that
reaches any node stops all of them after the same step.

The run directory must be on storage every node sees. Besides the trainer's per-rank ``rng_state_K.pth`` in
checkpoints, a node other than 0 writes only its own ``nodes/node-R.json``: where it runs and, when its
launcher ends, how it ended. When node 0's launcher fails because a peer went away, its supervisor waits a
little for such a report and names the node and rank that failed; with no report (the machine itself is gone)
it names the nodes that never reported.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.errors import StudioError
from lorastudio.train.run.rundir import LOG_FILE

NODES_DIR = "nodes"
REPORT_WAIT_S = 20.0
"""How long node 0 waits for a failed peer's report: its torchrun needs a few polls to notice the dead rank."""


class NodeError(StudioError):
    """Bad multi-node settings (node rank, main address)."""


@dataclass(frozen=True)
class NodeSpec:
    """This machine's place among the run's machines."""

    nodes: int = 1
    node_rank: int = 0
    main_host: str = "127.0.0.1"
    main_port: int = 29500

    @property
    def multi(self) -> bool:
        return self.nodes > 1

    @property
    def is_main(self) -> bool:
        """Node 0: hosts the rendezvous; its global rank 0 writes the run directory."""
        return self.node_rank == 0

    def args(self) -> list[str]:
        """The supervisor's command-line flags for this node."""
        if not self.multi:
            return []
        return [
            "--nodes",
            str(self.nodes),
            "--node-rank",
            str(self.node_rank),
            "--main-address",
            f"{self.main_host}:{self.main_port}",
        ]


_HOST = re.compile(r"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?\]")
"""A host name or IPv4 address, or an IPv6 address in brackets (with its zone): what every node and torchrun
can read back, with no blank or line break to end a command line or a script line."""


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if (
        not sep
        or not _HOST.fullmatch(host)
        or not re.fullmatch(r"[0-9]{1,5}", port)
        or not 0 < int(port) < 65536
    ):
        raise NodeError(f"--main-address {text!r}: give node 0's HOST:PORT (e.g. node001:29500)")
    return host.strip("[]"), int(port)


def node_spec(
    nodes: int | None, node_rank: int | None, address: str | None, recipe_nodes: int = 1
) -> NodeSpec:
    """The flags (or the recipe's ``train.nodes``) checked against each other."""
    count = nodes if nodes is not None else recipe_nodes
    rank = node_rank or 0
    if count < 1:
        raise NodeError(f"--nodes {count}: give 1 or more")
    if not 0 <= rank < count:
        raise NodeError(
            f"--node-rank {rank}: must be between 0 and {count - 1} for {count} node"
            f"{'s' if count > 1 else ''} (train.nodes / --nodes)"
        )
    if count == 1:
        return NodeSpec()
    if not address:
        raise NodeError(
            f"train.nodes: {count} needs --main-address HOST:PORT (node 0's address, the same on every node)"
        )
    host, port = parse_address(address)
    return NodeSpec(count, rank, host, port)


def ranks_of(node_rank: int, devices: int) -> range:
    """The global ranks torchrun gives one node (static rendezvous: nodes in node-rank order)."""
    return range(node_rank * devices, (node_rank + 1) * devices)


def describe_ranks(ranks: range) -> str:
    return f"rank {ranks.start}" if len(ranks) == 1 else f"ranks {ranks.start}-{ranks.stop - 1}"


# -- node reports -----------------------------------------------------------------------------------
def report_path(run_dir: Path, node_rank: int) -> Path:
    return run_dir / NODES_DIR / f"node-{node_rank}.json"


def node_log(run_dir: Path, node_rank: int) -> Path:
    """Where ``--log`` sends a supervisor's output: node 0 appends to the run's log, the others to their own."""
    return run_dir / LOG_FILE if node_rank == 0 else run_dir / NODES_DIR / f"node-{node_rank}.log"


def write_report(run_dir: Path, node_rank: int, **fields: Any) -> None:
    """Merge ``fields`` into this node's report (atomic: a reader never sees half of it)."""
    path = report_path(run_dir, node_rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    report = read_report(path)
    report.update(fields)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)


def read_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def announce(run_dir: Path, spec: NodeSpec, devices: int) -> float:
    """A node's first report for this launch; returns the launch time its ending is compared against."""
    started = time.time()
    write_report(
        run_dir,
        spec.node_rank,
        host=socket.gethostname(),
        pid=os.getpid(),
        started=started,
        ranks=[ranks_of(spec.node_rank, devices).start, ranks_of(spec.node_rank, devices).stop - 1],
        ended=None,
        code=None,
        cause=None,
    )
    return started


def lost_node_cause(
    run_dir: Path, spec: NodeSpec, devices: int, started: float, own_cause: str, wait_s: float = REPORT_WAIT_S
) -> str:
    """Node 0's launcher failed: the other node that failed in this launch, or the ones that never reported."""
    deadline = time.monotonic() + wait_s
    while True:
        failed, silent = [], []
        for rank in range(1, spec.nodes):
            report = read_report(report_path(run_dir, rank))
            if (report.get("ended") or 0) >= started and report.get("code"):
                failed.append((rank, report))
            elif not report.get("ended") or report["ended"] < started:
                silent.append(rank)
        if failed or not silent or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if failed:
        rank, report = failed[0]
        host = f" ({report['host']})" if report.get("host") else ""
        return f"node {rank}{host} failed: {report.get('cause') or 'its launcher exited with code ' + str(report['code'])}"
    if silent:
        names = ", ".join(f"node {r} ({describe_ranks(ranks_of(r, devices))})" for r in silent)
        return f"lost contact with {names}: no report from it; on node 0, {own_cause}"
    return own_cause


def redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (and so its children's) to the end of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
