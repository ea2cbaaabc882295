"""Nodes started in any order: node 0 publishes its run at the main address and waits there for its peers.

Users start one command line on every machine at once (pdsh, an ssh loop, a cluster launcher), so a node other
than 0 may start before node 0 has created the run, and an older run of the same recipe may lie in the runs
folder. Nothing is looked up by recipe name. Instead node 0's supervisor, before torchrun's rendezvous, listens
on the main address itself (``HOST:PORT``, the port torchrun takes over once every peer has joined) and answers
one JSON line per connection:

* ``{"want": "run", ...}``: "which run?" from ``studio train RECIPE --node-rank R`` on a peer. It carries the
  peer's resolved recipe (or the run name it was given), which must be node 0's; the answer is the run node 0
  created at this launch: its name and path. The peer then starts its supervisor on that directory.
* ``{"want": "join", "run": NAME, ...}``: a peer's supervisor (started by the above, by ``srun`` or by any
  launcher) is ready. When all ``nodes - 1`` peers have joined, node 0 closes its socket and starts torchrun; the
  peers start theirs at once after the answer (torchrun's clients retry until node 0's store is up).

Both sides wait with a stated time-out (``STUDIO_NODE_WAIT_S``, 600 s by default) and say what they wait for:
node 0 writes it as its ``queued`` status's cause (which address, how many peers, since when, time-out), a peer
prints it. A peer whose recipe differs from node 0's, a node rank given twice, or a different ``--nodes`` is
refused with a message naming what differs; a peer that meets something else at the address (an older run's
torchrun) keeps trying until its time-out and then says so.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.train.launch.nodes import NodeError, NodeSpec

WAIT_S = 600.0
"""How long node 0 waits for its peers, and a peer for node 0 (``STUDIO_NODE_WAIT_S``)."""
PROTOCOL = "studio-nodes/1"
IO_TIMEOUT_S = 5.0
"""How long one side waits for the other's line once connected."""
RETRY_S = 1.0


def wait_s(env: dict[str, str] | None = None) -> float:
    """The time-out both sides use: ``STUDIO_NODE_WAIT_S`` seconds (600 by default)."""
    from lorastudio.settings import read_settings

    return read_settings(env).node_wait_s


def address(spec: NodeSpec) -> str:
    return f"{spec.main_host}:{spec.main_port}"


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(at))


# -- one line each way ------------------------------------------------------------------------------
def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall((json.dumps(message) + "\n").encode())


def _receive(sock: socket.socket, limit: int = 1 << 20) -> dict[str, Any] | None:
    """One JSON line from ``sock``; None for anything else (silence, garbage, another protocol)."""
    data = b""
    try:
        while b"\n" not in data and len(data) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        message = json.loads(data.split(b"\n", 1)[0])
    except (OSError, ValueError):
        return None
    return message if isinstance(message, dict) and message.get("protocol") == PROTOCOL else None


# -- node 0 ---------------------------------------------------------------------------------------------
@dataclass
class Host:
    """Node 0's side: the run it created, and the peers that joined (node rank -> host)."""

    run_dir: Path
    spec: NodeSpec
    snapshot: str
    """Node 0's ``recipe.yaml``: a peer naming a recipe must have resolved it to this very text."""
    joined: dict[int, str]

    @classmethod
    def of(cls, run_dir: Path, spec: NodeSpec) -> Host:
        from lorastudio.train.run.rundir import RECIPE_FILE

        return cls(run_dir, spec, (run_dir / RECIPE_FILE).read_text(encoding="utf-8"), {})

    @property
    def missing(self) -> list[int]:
        return [rank for rank in range(1, self.spec.nodes) if rank not in self.joined]

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The reply to one peer's request (never raises: a refusal is a reply the peer prints)."""
        rank, nodes = request.get("node_rank"), request.get("nodes")
        who = f"node {rank}" + (f" ({request['host']})" if request.get("host") else "")
        if nodes != self.spec.nodes:
            return _refuse(f"{who} was started with --nodes {nodes}, node 0 with --nodes {self.spec.nodes}")
        if not isinstance(rank, int) or not 0 < rank < self.spec.nodes:
            return _refuse(f"{who}: --node-rank must be between 1 and {self.spec.nodes - 1} beside node 0")
        named = request.get("run")
        if named is not None and named != self.run_dir.name:
            return _refuse(f"{who} names run {named!r}, but node 0 runs {self.run_dir.name!r}")
        if named is None and request.get("recipe") != self.snapshot:
            return _refuse(
                f"{who}'s recipe differs from node 0's ({_first_difference(self.snapshot, request)})"
            )
        if request.get("want") == "join":
            host = str(request.get("host") or "?")
            if self.joined.get(rank, host) != host:
                return _refuse(
                    f"--node-rank {rank} was given twice: {self.joined[rank]} joined as node {rank}"
                )
            self.joined[rank] = host
        return {"protocol": PROTOCOL, "ok": True, "run": self.run_dir.name, "path": str(self.run_dir)}

    def waiting_for(self, since: float, timeout_s: float) -> str:
        """The status cause while node 0 waits: which address, how many peers, since when, the time-out."""
        missing = self.missing
        names = ", ".join(f"node {rank}" for rank in missing)
        return (
            f"waiting for {len(missing)} of {self.spec.nodes - 1} peer node{'s' if self.spec.nodes > 2 else ''} "
            f"({names}) to join at {address(self.spec)} since {_clock(since)} "
            f"(time-out {timeout_s:.0f} s, STUDIO_NODE_WAIT_S)"
        )


def _refuse(error: str) -> dict[str, Any]:
    return {"protocol": PROTOCOL, "ok": False, "error": error + ": give every node the same command line"}


def _first_difference(snapshot: str, request: dict[str, Any]) -> str:
    """The first recipe field that differs, by its dotted name: ``lora.r: node 0 has 16, node 1 has 32``."""
    import yaml

    theirs = request.get("recipe")
    if not isinstance(theirs, str):
        return "it sent none"
    try:
        ours_flat, theirs_flat = _flatten(yaml.safe_load(snapshot)), _flatten(yaml.safe_load(theirs))
    except yaml.YAMLError:
        return "its recipe does not read as YAML"
    for key in sorted(set(ours_flat) | set(theirs_flat)):
        if ours_flat.get(key, "(unset)") != theirs_flat.get(key, "(unset)"):
            return (
                f"{key}: node 0 has {ours_flat.get(key, '(unset)')!r}, node {request.get('node_rank')} has "
                f"{theirs_flat.get(key, '(unset)')!r}"
            )
    return "they differ"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def listen(spec: NodeSpec) -> socket.socket:
    """Node 0's socket on the main address's port (every interface: HOST is how the peers reach it)."""
    family = socket.AF_INET6 if ":" in spec.main_host else socket.AF_INET
    try:
        server = socket.create_server(("", spec.main_port), family=family, backlog=64)
    except OSError as exc:
        raise NodeError(
            f"node 0 cannot listen on port {spec.main_port} (--main-address {address(spec)}): "
            f"{exc.strerror or exc}; is another run using it?"
        ) from None
    server.settimeout(RETRY_S / 2)
    return server


def serve_until_joined(
    host: Host,
    server: socket.socket,
    timeout_s: float,
    on_wait: Callable[[str], None],
    stopped: Callable[[], bool] = lambda: False,
) -> bool:
    """Answer peers until every one has joined (True) or ``stopped()`` (False); NodeError at the time-out.

    ``on_wait`` is told what node 0 waits for, first and after each peer joins. The socket is closed on return,
    so torchrun can take the port.
    """
    since = time.time()
    deadline = time.monotonic() + timeout_s
    told = -1
    try:
        while host.missing:
            if len(host.joined) != told:
                told = len(host.joined)
                on_wait(host.waiting_for(since, timeout_s))
            if stopped():
                return False
            if time.monotonic() >= deadline:
                missing = ", ".join(f"node {rank}" for rank in host.missing)
                raise NodeError(
                    f"node 0 waited {timeout_s:.0f} s at {address(host.spec)} for {missing}, which never joined: "
                    "start the same command line on every node (with its --node-rank), or give them longer "
                    "(STUDIO_NODE_WAIT_S)"
                )
            try:
                conn, _ = server.accept()
            except OSError:  # no one this half second (TimeoutError), or a connection that failed at once
                continue
            with conn:
                conn.settimeout(IO_TIMEOUT_S)
                request = _receive(conn)
                if request is None:
                    continue
                try:
                    _send(conn, host.answer(request))
                    conn.recv(1)  # the peer closes first, so this side keeps no TIME_WAIT on the port
                except OSError:
                    continue
        return True
    finally:
        server.close()


# -- a peer -------------------------------------------------------------------------------------------
def ask(
    spec: NodeSpec,
    request: dict[str, Any],
    timeout_s: float,
    stopped: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Send ``request`` to node 0 at the main address, trying until it answers; its answer when it says yes.

    NodeError when node 0 refuses (names what differs), or when nothing answered within ``timeout_s``.
    """
    message = {"protocol": PROTOCOL, "node_rank": spec.node_rank, "nodes": spec.nodes, **request}
    message.setdefault("host", socket.gethostname())
    deadline = time.monotonic() + timeout_s
    other = False
    while not stopped():
        try:
            with socket.create_connection((spec.main_host, spec.main_port), timeout=IO_TIMEOUT_S) as sock:
                sock.settimeout(IO_TIMEOUT_S)
                _send(sock, message)
                reply = _receive(sock)
        except OSError:
            reply = None
        else:
            other = other or reply is None
        if reply is not None:
            if not reply.get("ok"):
                raise NodeError(
                    f"node 0 at {address(spec)} refused node {spec.node_rank}: {reply.get('error')}"
                )
            return reply
        if time.monotonic() >= deadline:
            break
        time.sleep(RETRY_S)
    if stopped():
        raise NodeError(f"node {spec.node_rank} stopped while waiting for node 0 at {address(spec)}")
    something = "; something else answers there (another run's rendezvous?)" if other else ""
    raise NodeError(
        f"node {spec.node_rank}: no studio node 0 answered at {address(spec)} within {timeout_s:.0f} s"
        f"{something}: start the same command line with --node-rank 0 on {spec.main_host}, "
        "or give it longer (STUDIO_NODE_WAIT_S)"
    )


def hosting_line(spec: NodeSpec) -> str:
    """What ``studio train --node-rank 0`` prints once node 0's supervisor is started."""
    peers = spec.nodes - 1
    return (
        f"node 0 waits for {peers} peer node{'s' if peers > 1 else ''} at {address(spec)} (time-out "
        f"{wait_s():.0f} s, STUDIO_NODE_WAIT_S): start the same command line on the other machines with "
        f"--node-rank {'1' if peers == 1 else f'1..{peers}'}"
    )


def waiting_line(spec: NodeSpec, timeout_s: float) -> str:
    """What a peer prints while it waits for node 0."""
    return (
        f"node {spec.node_rank}: waiting for node 0 at {address(spec)} to name its run "
        f"(since {_clock(time.time())}, time-out {timeout_s:.0f} s, STUDIO_NODE_WAIT_S)"
    )


def find_published(reply: dict[str, Any], runs_root: Path, wait_s: float = 10.0) -> Path:
    """The run directory node 0 named, as this machine sees it: under this machine's runs folder by name, or at
    node 0's path; shared storage may show it a moment late."""
    from lorastudio.train.run.rundir import RUN_FILE

    name, path = str(reply.get("run") or ""), Path(str(reply.get("path") or ""))
    deadline = time.monotonic() + wait_s
    while True:
        for candidate in (runs_root / name, path):
            if name and candidate.name == name and (candidate / RUN_FILE).exists():
                return candidate
        if time.monotonic() >= deadline:
            raise NodeError(
                f"node 0 created run {name} at {path}, but this machine does not see it (nor {runs_root / name}): "
                "the runs folder must be on storage every node sees (XDG_DATA_HOME)"
            )
        time.sleep(0.2)


def peer_run(
    target: str,
    overrides: list[str],
    nodes: int | None,
    node_rank: int,
    main_address: str | None,
    say: Callable[[str], None],
) -> tuple[Path, NodeSpec]:
    """``studio train TARGET ... --node-rank R`` (R > 0): ask node 0, started before or after this, which run
    to join. TARGET is the recipe every node was given (node 0 checks it resolves to its own run's recipe), or
    the run's name; never looked up in the runs folder by recipe, so an older run of it is never joined."""
    from lorastudio import registry
    from lorastudio.paths import runs_dir
    from lorastudio.train.launch.nodes import node_spec
    from lorastudio.train.run.rundir import RECIPE_FILE, RUN_FILE

    root = runs_dir()
    named = next((p for p in (Path(target).expanduser(), root / target) if (p / RUN_FILE).exists()), None)
    if named is not None:  # the run's name: node 0 must be running that very run
        request: dict[str, Any] = {"want": "run", "run": named.name}
        recipe_nodes = registry.load_snapshot(named / RECIPE_FILE).train.nodes
    else:
        recipe = registry.load(target, overrides)
        request = {"want": "run", "recipe": registry.dump_snapshot(recipe)}
        recipe_nodes = recipe.train.nodes
    spec = node_spec(nodes, node_rank, main_address, recipe_nodes)
    timeout = wait_s()
    say(waiting_line(spec, timeout))
    return find_published(ask(spec, request, timeout), root), spec
