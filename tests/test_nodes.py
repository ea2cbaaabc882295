"""Training across machines: two "nodes" on loopback, each a supervisor with one CPU process (gloo).

Both nodes are started with the same ``studio train tiny-pirate ... --nodes 2 --main-address 127.0.0.1:PORT``
(``--node-rank 1`` first), as on two machines sharing the run directory; the run must match one node with two
processes step for step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import STUDIO_BIN, state_of, wait_for

from lorastudio import registry
from lorastudio.errors import StudioError
from lorastudio.train.launch import nodes, runs
from lorastudio.train.launch import supervisor as launch
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all

LOSS_TOLERANCE = 1e-4
STEPS = 10


def test_node_spec_checks_its_flags() -> None:
    assert not nodes.node_spec(None, None, None).multi
    spec = nodes.node_spec(2, 1, "127.0.0.1:29501")
    assert (spec.nodes, spec.node_rank, spec.main_host, spec.main_port) == (2, 1, "127.0.0.1", 29501)
    assert nodes.node_spec(None, 0, "h:1", recipe_nodes=3).nodes == 3
    with pytest.raises(StudioError, match="needs --main-address HOST:PORT"):
        nodes.node_spec(2, 0, None)
    with pytest.raises(StudioError, match="--node-rank 2: must be between 0 and 1"):
        nodes.node_spec(2, 2, "h:1")
    with pytest.raises(StudioError, match="give node 0's HOST:PORT"):
        nodes.node_spec(2, 0, "node001")
    with pytest.raises(StudioError, match="train.nodes"):
        registry.load("tiny-pirate", ["train.nodes=0"])
    assert nodes.ranks_of(1, 4) == range(4, 8)


@pytest.mark.parametrize(
    "address",
    [
        "h:²",
        "h:٣",
        "a\nb:29500",
        "a b:29500",
        "h;rm -rf ~:29500",
        ":29500",
        "h:0",
        "h:65536",
        "[::1:29500",
        "h:+1",
    ],
)
def test_a_main_address_that_is_not_host_and_port_is_refused_naming_it(address: str) -> None:
    """Host and port as a machine reads them: a host name or IP address (an IPv6 one in brackets) and an ASCII
    port 1-65535; anything else (a line break, a blank, a superscript digit) is named, never a traceback."""
    with pytest.raises(StudioError) as err:
        nodes.node_spec(2, 0, address)
    assert str(err.value).startswith(f"--main-address {address!r}: give node 0's HOST:PORT")


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("node001:29500", "node001", 29500),
        ("10.0.0.7:1", "10.0.0.7", 1),
        ("[fe80::1%eth0]:29500", "fe80::1%eth0", 29500),
        ("gpu-3.cluster.local:65535", "gpu-3.cluster.local", 65535),
    ],
)
def test_a_main_address_is_read_as_host_and_port(address: str, host: str, port: int) -> None:
    assert nodes.parse_address(address) == (host, port)


def test_accelerate_command_for_a_node(tmp_path: Path) -> None:
    node = nodes.NodeSpec(2, 1, "node001", 29600)
    cmd = launch.accelerate_command(tmp_path, 4, "ddp", python="py", node=node)
    joined = " ".join(cmd)
    assert "--num_processes 8 --num_machines 2" in joined  # accelerate counts processes over all machines
    assert "--machine_rank 1 --main_process_ip node001 --main_process_port 29600" in joined
    assert node.args() == ["--nodes", "2", "--node-rank", "1", "--main-address", "node001:29600"]


def _node_run(*overrides: str) -> Path:
    """Both nodes get the same command line, node 1 first (as pdsh or an ssh loop may start them), while an older
    run of the recipe lies in the runs folder: node 1 waits for node 0 and joins the run node 0 creates."""
    older = runs.create_run(registry.load("tiny-pirate", ["train.batch_size=4", *overrides, "train.nodes=2"]))
    address = f"127.0.0.1:{launch.free_port()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [STUDIO_BIN, "train", "tiny-pirate", "train.batch_size=4", *overrides]
    command += ["--nodes", "2", "--main-address", address]
    peer = subprocess.Popen(
        [*command, "--node-rank", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    time.sleep(1.0)  # node 1 is waiting before node 0 has created anything
    first = subprocess.run(
        [*command, "--node-rank", "0", "--detach"], capture_output=True, text=True, env=env, timeout=300
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"node 0 waits for 1 peer node at {address}" in first.stderr
    name = first.stdout.strip().splitlines()[-1]
    out, err = peer.communicate(timeout=300)
    assert peer.returncode == 0 and f"node 1 of {name} started" in out, out + err
    assert f"node 1: waiting for node 0 at {address} to name its run" in err
    assert name != older.name
    run_dir = runs.find_run(name)
    assert runs.load_run_recipe(run_dir).train.nodes == 2
    return run_dir


@pytest.fixture(scope="module")
def two_nodes(tiny_model: Path) -> Path:
    run_dir = _node_run(f"train.max_steps={STEPS}")
    wait_for(lambda: runs.summarise(run_dir).status in ("done", "failed", "died"), timeout=900)
    node1 = nodes.read_report(nodes.report_path(run_dir, 1))
    wait_for(lambda: nodes.read_report(nodes.report_path(run_dir, 1)).get("ended"), timeout=120)
    assert runs.summarise(run_dir).status == "done", (run_dir / runs.LOG_FILE).read_text()[-3000:] + str(
        node1
    )
    return run_dir


@pytest.mark.slow
def test_two_nodes_match_one_node_with_two_processes(two_nodes: Path, tiny_model: Path) -> None:
    result = subprocess.run(
        [
            STUDIO_BIN,
            "train",
            "tiny-pirate",
            f"train.max_steps={STEPS}",
            "train.batch_size=4",
            "--devices",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    one_node = Path(result.stderr.split("run: ", 1)[1].splitlines()[0].strip())
    assert result.returncode == 0, result.stdout + result.stderr
    single, double = state_of(one_node).loss, state_of(two_nodes).loss
    assert [s for s, _ in single] == [s for s, _ in double] == list(range(1, STEPS + 1))
    worst = max(abs(a - b) for (_, a), (_, b) in zip(single, double, strict=True))
    print(f"two nodes vs one node x 2 processes: max |loss diff| over {STEPS} steps {worst:.2e}")
    assert worst <= LOSS_TOLERANCE


@pytest.mark.slow
def test_node_0_alone_writes_the_run_and_saves_the_adapter_once(two_nodes: Path) -> None:
    events = read_all(two_nodes / EVENTS_FILE)
    statuses = [e["status"] for e in events if e["kind"] == "status"]
    assert statuses == [
        "queued",
        "queued",  # node 0 waiting for node 1 at the main address, saying so
        "starting",
        "loading model",
        "loading data",
        "training",
        "saving",
        "done",
    ]
    waiting = [e for e in events if e.get("status") == "queued"][1]
    assert waiting["cause"].startswith("waiting for 1 of 1 peer node (node 1) to join at 127.0.0.1:")
    assert next(e for e in events if e.get("status") == "training")["world_size"] == 2
    assert [m["step"] for m in events if m["kind"] == "metrics"] == list(range(1, STEPS + 1))
    assert [e["step"] for e in events if e["kind"] == "checkpoint"] == [STEPS]
    assert (two_nodes / "adapter" / "adapter_model.safetensors").exists()
    assert sorted(p.name for p in (two_nodes / nodes.NODES_DIR).iterdir()) == [
        "node-0.json",
        "node-1.json",
        "node-1.log",
    ]
    report = nodes.read_report(nodes.report_path(two_nodes, 1))
    assert report["code"] == 0 and report["ranks"] == [1, 1] and report["cause"] is None
    assert "--machine_rank 1" in (two_nodes / nodes.NODES_DIR / "node-1.log").read_text()
    assert "--machine_rank 0" in (two_nodes / runs.LOG_FILE).read_text()


def _node_pids(run_dir: Path, node_rank: int) -> dict[int, int]:
    import psutil

    supervisor = psutil.Process(nodes.read_report(nodes.report_path(run_dir, node_rank))["pid"])
    found = {}
    for proc in supervisor.children(recursive=True):
        try:
            if "lorastudio.worker" in " ".join(proc.cmdline()):
                found[int(proc.environ()["RANK"])] = proc.pid
        except (psutil.Error, KeyError):
            continue
    return found


@pytest.mark.slow
def test_losing_node_1_fails_the_run_naming_it(tiny_model: Path) -> None:
    run_dir = _node_run("train.max_steps=100000", "train.save_steps=100000")
    wait_for(lambda: state_of(run_dir).step >= 2, timeout=600)
    ranks = wait_for(lambda: _node_pids(run_dir, 1), timeout=30)
    killed = time.monotonic()
    os.kill(ranks[1], signal.SIGKILL)
    summary = wait_for(
        lambda: (s := runs.summarise(run_dir)).status in ("failed", "died", "stopped") and s, timeout=120
    )
    print(f"failed {time.monotonic() - killed:.1f} s after node 1's rank was killed: {summary.cause}")
    assert summary.status == "failed", summary
    assert "node 1" in (summary.cause or "") and "rank 1" in summary.cause and "SIGKILL" in summary.cause


@pytest.mark.slow
def test_stop_on_node_0_stops_every_node_after_one_step(tiny_model: Path) -> None:
    run_dir = _node_run("train.max_steps=100000", "train.save_steps=100000")
    wait_for(lambda: state_of(run_dir).step >= 2, timeout=600)
    assert runs.stop_run(run_dir)  # SIGTERM to node 0's supervisor only: the vote carries it to node 1
    summary = wait_for(
        lambda: (s := runs.summarise(run_dir)).status in ("failed", "died", "stopped") and s, timeout=180
    )
    assert summary.status == "stopped" and "SIGTERM" in (summary.cause or ""), summary
    report = wait_for(
        lambda: (r := nodes.read_report(nodes.report_path(run_dir, 1))).get("ended") and r, timeout=120
    )
    node_log = nodes.node_log(run_dir, 1).read_text(errors="replace")[-4000:]
    assert report["code"] == 0, f"{report}\n{node_log}"  # node 1's rank left cleanly after the same step
    checkpoint = runs.latest_checkpoint(run_dir)
    assert checkpoint is not None and checkpoint.name == f"checkpoint-{summary.step}"
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
