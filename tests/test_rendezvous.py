"""Nodes started in any order meet at node 0's main address, which names the run node 0 created (rendezvous.py).

On loopback, without training: node 0's side (``Host`` served in a thread, or its real supervisor) and a peer's
side (``ask``, ``peer_run``) in either order, an older run of the same recipe lying beside the new one, refusals
(another recipe, another --nodes, a rank given twice), and both sides' time-outs naming the address.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import STUDIO_BIN, wait_for

from lorastudio import registry
from lorastudio.errors import StudioError
from lorastudio.train.launch import rendezvous, runs
from lorastudio.train.launch import supervisor as launch
from lorastudio.train.launch.nodes import NodeSpec, read_report, report_path
from lorastudio.train.run.rundir import read_meta

OVERRIDES = ["train.nodes=2", "train.max_steps=5"]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data" / "studio" / "runs"


def spec(nodes: int = 2, rank: int = 0, port: int | None = None) -> NodeSpec:
    return NodeSpec(nodes, rank, "127.0.0.1", port or launch.free_port())


class Hosting:
    """Node 0's side served in a thread, as its supervisor serves it; what it said while waiting in ``said``."""

    def __init__(self, run_dir: Path, node: NodeSpec, timeout_s: float = 30.0) -> None:
        self.host = rendezvous.Host.of(run_dir, node)
        self.said: list[str] = []
        self.result: Any = None
        self.stop = threading.Event()
        server = rendezvous.listen(node)

        def serve() -> None:
            try:
                self.result = rendezvous.serve_until_joined(
                    self.host, server, timeout_s, self.said.append, self.stop.is_set
                )
            except StudioError as exc:
                self.result = exc

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

    def finish(self) -> Any:
        self.thread.join(timeout=60)
        return self.result


def snapshot(*overrides: str) -> str:
    return registry.dump_snapshot(registry.load("tiny-pirate", [*OVERRIDES, *overrides]))


def test_peers_learn_node_0s_run_and_node_0_waits_until_every_one_joined(root: Path) -> None:
    run_dir = runs.create_run(registry.load("tiny-pirate", [*OVERRIDES, "train.nodes=3"]), root)
    node = spec(nodes=3)
    hosting = Hosting(run_dir, node)
    one, two = NodeSpec(3, 1, node.main_host, node.main_port), NodeSpec(3, 2, node.main_host, node.main_port)
    recipe = registry.dump_snapshot(registry.load("tiny-pirate", [*OVERRIDES, "train.nodes=3"]))
    reply = rendezvous.ask(one, {"want": "run", "recipe": recipe}, timeout_s=10)
    assert (reply["run"], reply["path"]) == (run_dir.name, str(run_dir))
    assert rendezvous.ask(one, {"want": "join", "run": run_dir.name, "host": "gpu02"}, 10)["ok"]
    assert hosting.thread.is_alive()  # node 2 has not joined yet
    assert rendezvous.ask(two, {"want": "join", "run": run_dir.name, "host": "gpu03"}, 10)["ok"]
    assert hosting.finish() is True and hosting.host.joined == {1: "gpu02", 2: "gpu03"}
    address = f"127.0.0.1:{node.main_port}"
    assert hosting.said[0].startswith(
        f"waiting for 2 of 2 peer nodes (node 1, node 2) to join at {address} since "
    )
    assert hosting.said[0].endswith("UTC (time-out 30 s, STUDIO_NODE_WAIT_S)")
    assert hosting.said[-1].startswith(f"waiting for 1 of 2 peer nodes (node 2) to join at {address}")
    with socket.socket() as free:  # node 0 let the port go: torchrun takes it next
        free.bind(("", node.main_port))


REFUSALS = [
    (
        {"want": "run", "recipe": "lora.r", "nodes": 2},
        "refused node 1: node 1 (gpu02)'s recipe differs from node 0's (lora.r: node 0 has 16, node 1 has 32)",
    ),
    ({"want": "run", "nodes": 3}, "node 1 (gpu02) was started with --nodes 3, node 0 with --nodes 2"),
    (
        {"want": "join", "run": "tiny-pirate-20200101-000000"},
        "node 1 (gpu02) names run 'tiny-pirate-20200101-000000'",
    ),
]


@pytest.mark.parametrize(("request_", "message"), REFUSALS, ids=["recipe", "nodes", "run"])
def test_a_peer_that_does_not_match_node_0_is_refused_naming_what_differs(
    root: Path, request_: dict[str, Any], message: str
) -> None:
    run_dir = runs.create_run(registry.load("tiny-pirate", OVERRIDES), root)
    node = spec()
    hosting = Hosting(run_dir, node)
    request = {"host": "gpu02", **request_}
    if request.get("recipe") == "lora.r":
        request["recipe"] = snapshot("lora.r=32")
    peer = NodeSpec(request.pop("nodes", 2), 1, node.main_host, node.main_port)
    with pytest.raises(StudioError) as caught:
        rendezvous.ask(peer, request, timeout_s=10)
    assert message in str(caught.value) and "give every node the same command line" in str(caught.value)
    assert hosting.host.joined == {}
    hosting.stop.set()
    assert hosting.finish() is False


def test_a_node_rank_given_twice_is_refused(root: Path) -> None:
    run_dir = runs.create_run(registry.load("tiny-pirate", [*OVERRIDES, "train.nodes=3"]), root)
    node = spec(nodes=3)
    hosting = Hosting(run_dir, node)
    peer = NodeSpec(3, 1, node.main_host, node.main_port)
    rendezvous.ask(peer, {"want": "join", "run": run_dir.name, "host": "gpu02"}, 10)
    with pytest.raises(StudioError, match="--node-rank 1 was given twice: gpu02 joined as node 1"):
        rendezvous.ask(peer, {"want": "join", "run": run_dir.name, "host": "gpu03"}, 10)
    hosting.stop.set()
    hosting.finish()


def test_node_0_times_out_naming_the_address_and_the_missing_nodes(root: Path) -> None:
    run_dir = runs.create_run(registry.load("tiny-pirate", [*OVERRIDES, "train.nodes=3"]), root)
    node = spec(nodes=3)
    result = Hosting(run_dir, node, timeout_s=1.0).finish()
    assert isinstance(result, StudioError)
    assert str(result).startswith(
        f"node 0 waited 1 s at 127.0.0.1:{node.main_port} for node 1, node 2, which never joined: "
        "start the same command line on every node"
    )


def test_a_peer_times_out_naming_the_address_and_what_answered() -> None:
    node = spec(rank=1)
    started = time.monotonic()
    with pytest.raises(StudioError) as caught:
        rendezvous.ask(node, {"want": "run", "recipe": "x"}, timeout_s=1.5)
    assert 1.5 <= time.monotonic() - started < 10
    assert str(caught.value).startswith(
        f"node 1: no studio node 0 answered at 127.0.0.1:{node.main_port} within 2 s: start the same command "
        "line with --node-rank 0 on 127.0.0.1"
    )
    # something else at the address (an older run's torchrun store): said, not taken for node 0
    with socket.create_server(("127.0.0.1", 0)) as other:
        other_port = other.getsockname()[1]

        def babble() -> None:
            for _ in range(3):
                try:
                    conn, _ = other.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(b"\x00\x01 not json\n")

        threading.Thread(target=babble, daemon=True).start()
        with pytest.raises(StudioError, match="something else answers there"):
            rendezvous.ask(NodeSpec(2, 1, "127.0.0.1", other_port), {"want": "run"}, timeout_s=1.5)


def test_a_peer_started_first_joins_the_run_node_0_creates_not_an_older_one(root: Path) -> None:
    older = runs.create_run(
        registry.load("tiny-pirate", OVERRIDES), root
    )  # a finished run of the same recipe
    port = launch.free_port()
    flags = [f"train.nodes={2}", "train.max_steps=5"]
    found: dict[str, Any] = {}
    said: list[str] = []

    def peer() -> None:
        try:
            found["run"] = rendezvous.peer_run("tiny-pirate", flags, 2, 1, f"127.0.0.1:{port}", said.append)
        except StudioError as exc:
            found["error"] = exc

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()  # before node 0 has even created its run
    wait_for(lambda: said, timeout=30)
    assert said[0].startswith(f"node 1: waiting for node 0 at 127.0.0.1:{port} to name its run (since ")
    assert said[0].endswith("time-out 600 s, STUDIO_NODE_WAIT_S)")
    time.sleep(1.5)
    newer = runs.create_run(registry.load("tiny-pirate", OVERRIDES), root)
    hosting = Hosting(newer, NodeSpec(2, 0, "127.0.0.1", port))
    thread.join(timeout=60)
    assert "error" not in found, found
    run_dir, node = found["run"]
    assert run_dir == newer != older and (node.nodes, node.node_rank) == (2, 1)
    hosting.stop.set()
    hosting.finish()


def supervisor(run_dir: Path, node: NodeSpec, wait_s: str) -> int:
    """Node 0's real supervisor, started as `studio train` starts it (its pid in run.json, proven live)."""
    os.environ["STUDIO_NODE_WAIT_S"] = wait_s
    try:
        runs.start_node(run_dir, node)
    finally:
        del os.environ["STUDIO_NODE_WAIT_S"]
    return int(read_meta(run_dir)["pid"])


def test_node_0_says_what_it_waits_for_then_fails_at_its_time_out(root: Path) -> None:
    run_dir = runs.create_run(registry.load("tiny-pirate", OVERRIDES), root)
    node = spec()
    supervisor(run_dir, node, "8")
    address = f"127.0.0.1:{node.main_port}"
    waiting = wait_for(lambda: (s := runs.summarise(run_dir)).cause and s, timeout=60)
    assert waiting.status == "queued"
    assert waiting.cause.startswith(f"waiting for 1 of 1 peer node (node 1) to join at {address} since ")
    assert waiting.cause.endswith("(time-out 8 s, STUDIO_NODE_WAIT_S)")
    listing = subprocess.run([STUDIO_BIN, "runs", "--json"], capture_output=True, text=True, timeout=120)
    assert f"to join at {address}" in json.loads(listing.stdout)[0]["cause"]
    ended = wait_for(lambda: (s := runs.summarise(run_dir)).status in ("failed", "died") and s, timeout=60)
    assert ended.status == "failed", ended
    assert ended.cause.startswith(f"node 0 waited 8 s at {address} for node 1, which never joined")
    assert (
        f"studio: waiting for 1 of 1 peer node (node 1) to join at {address}"
        in (run_dir / runs.LOG_FILE).read_text()
    )


def test_stop_while_node_0_waits_ends_the_run_stopped(root: Path) -> None:
    run_dir = runs.create_run(registry.load("tiny-pirate", OVERRIDES), root)
    supervisor(run_dir, spec(), "300")
    waiting = wait_for(lambda: (s := runs.summarise(run_dir)).cause and s, timeout=60)
    log = (run_dir / runs.LOG_FILE).read_text() if (run_dir / runs.LOG_FILE).exists() else ""
    assert waiting.cause.startswith("waiting for 1 of 1 peer node"), (waiting, log)  # not ended already
    assert runs.stop_run(run_dir), (
        read_meta(run_dir),
        log,
    )  # proven to be this run's: its command line names it
    ended = wait_for(lambda: (s := runs.summarise(run_dir)).status in ("stopped", "failed", "died") and s, 60)
    assert (ended.status, ended.cause) == (
        "stopped",
        "stopped while the nodes were meeting; it never started",
    )


def test_a_peers_supervisor_joins_node_0_and_reports_a_time_out(root: Path) -> None:
    run_dir = runs.create_run(registry.load("tiny-pirate", OVERRIDES), root)
    node = spec(rank=1)
    env = {**os.environ, "STUDIO_NODE_WAIT_S": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "lorastudio.train.launch.supervisor", str(run_dir), *node.args()],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    report = read_report(report_path(run_dir, 1))
    assert report["code"] == 1 and report["cause"].startswith(
        f"node 1: no studio node 0 answered at 127.0.0.1:{node.main_port} within 2 s"
    ), json.dumps(report)
