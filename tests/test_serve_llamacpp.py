"""``studio serve`` of a GGUF file on llama.cpp's server, talked to with the official ``openai`` client.

llama-cpp-python's server is not a dependency: these tests run where ``python -m llama_cpp.server`` imports with
``STUDIO_TEST_LLAMA_CPP_SITE`` (default ``/root/.cache/lcp-site``) on ``PYTHONPATH``, or where a ``llama-server``
binary is on PATH, and are skipped with the reason elsewhere (CI has neither).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import QUESTION, STUDIO_BIN

SITE = os.environ.get("STUDIO_TEST_LLAMA_CPP_SITE", "/root/.cache/lcp-site")


def engine_env() -> dict[str, str]:
    """This environment with llama-cpp-python's folder added to PYTHONPATH (the worktree's entry kept first)."""
    paths = [p for p in (os.environ.get("PYTHONPATH", ""), SITE) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _python_server() -> bool:
    probe = [sys.executable, "-c", "import llama_cpp.server.app"]
    return subprocess.run(probe, env=engine_env(), capture_output=True, timeout=120).returncode == 0


HAS_ENGINE = shutil.which("llama-server") is not None or _python_server()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not HAS_ENGINE,
        reason=f"llama.cpp's server is not installed (no llama-server on PATH; llama_cpp.server not "
        f"importable with {SITE} on PYTHONPATH)",
    ),
]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def studio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STUDIO_BIN, *args], capture_output=True, text=True, timeout=600, env=engine_env())


def listed() -> dict[str, dict]:
    proc = studio("serve", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    return {row["id"]: row for row in map(json.loads, proc.stdout.splitlines())}


def gone(pid: int) -> bool:
    import psutil

    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.fixture(scope="module")
def served(smollm2_gguf: Path) -> Iterator[dict]:
    proc = studio("serve", str(smollm2_gguf), "--engine", "llamacpp", "--port", str(free_port()))
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        server_id = proc.stdout.split("(id ", 1)[1].split(")", 1)[0]
        yield listed()[server_id]
    finally:
        studio("serve", "stop", "all")


def ask(server: dict, stream: bool) -> str:
    from openai import OpenAI

    api = OpenAI(base_url=server["url"], api_key="unused", max_retries=0, timeout=120)
    messages: Any = QUESTION
    model = server["models"][0]
    if stream:
        chunks = api.chat.completions.create(
            model=model, messages=messages, max_tokens=24, temperature=0, stream=True
        )
        return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    reply = api.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0)
    return str(reply.choices[0].message.content)


def test_gguf_served_and_answered_streamed_and_not(served: dict, smollm2_gguf: Path) -> None:
    from openai import OpenAI

    assert served["status"] == "ready"
    assert served["engine"] == "llamacpp"
    assert served["models"] == [smollm2_gguf.stem]
    api = OpenAI(base_url=served["url"], api_key="unused", max_retries=0, timeout=60)
    assert [model.id for model in api.models.list()] == served["models"]
    plain = ask(served, stream=False)
    assert "blue" in plain.lower(), plain  # SmolLM2-Instruct knows the sky's colour
    assert ask(served, stream=True) == plain


def test_stop_ends_the_engine(served: dict) -> None:
    proc = studio("serve", "stop", served["id"])
    assert proc.returncode == 0
    assert f"stopped {served['id']}" in proc.stdout
    assert gone(served["pid"])
    assert listed()[served["id"]]["status"] == "stopped"


def test_llama_server_binary_preferred(smollm2_gguf: Path) -> None:
    binary = shutil.which("llama-server")
    if binary is None:
        pytest.skip("no llama-server binary on PATH")
    proc = studio("serve", str(smollm2_gguf), "--engine", "llamacpp", "--port", str(free_port()))
    try:
        assert proc.returncode == 0, proc.stderr
        server_id = proc.stdout.split("(id ", 1)[1].split(")", 1)[0]
        row = listed()[server_id]
        assert row["command"][0] == binary
        assert "--metrics" in row["command"]
        assert ask(row, stream=False)
    finally:
        studio("serve", "stop", "all")


@pytest.mark.parametrize(
    "damage",
    ["header only", "cut short", "not a GGUF"],
)
def test_corrupt_gguf_refused_nothing_left_running(damage: str, smollm2_gguf: Path, tmp_path: Path) -> None:
    whole = smollm2_gguf.read_bytes()
    body = {"header only": b"GGUF", "cut short": whole[: len(whole) // 3], "not a GGUF": b"\0" * 4096}[damage]
    bad = tmp_path / "broken-q4_1.gguf"
    bad.write_bytes(body)
    before = set(listed())
    proc = studio("serve", str(bad), "--engine", "llamacpp", "--port", str(free_port()))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "the llamacpp server exited (code" in proc.stderr
    assert "before answering" in proc.stderr
    (row,) = (row for server_id, row in listed().items() if server_id not in before)
    assert row["status"] == "failed"
    assert "exited (code" in row["error"]
    assert f"(its log: {row['dir']}/engine.log)" in proc.stderr
    assert gone(row["pid"])


def test_key_asked_for_and_readiness_seen_through_it(smollm2_gguf: Path) -> None:
    """llama-cpp-python's server has no open /health: a 401 from /v1/models still says it is up."""
    import openai

    os.environ["STUDIO_TEST_LCP_KEY"] = "right-key"
    try:
        proc = studio(
            "serve", str(smollm2_gguf), "--engine", "llamacpp", "--port", str(free_port()),
            "--api-key-env", "STUDIO_TEST_LCP_KEY",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        row = listed()[proc.stdout.split("(id ", 1)[1].split(")", 1)[0]]
        assert row["api_key"]
        assert row["status"] == "ready"
        wrong = openai.OpenAI(base_url=row["url"], api_key="wrong-key", max_retries=0, timeout=60)
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        right = openai.OpenAI(base_url=row["url"], api_key="right-key", max_retries=0, timeout=60)
        assert [model.id for model in right.models.list()] == row["models"]
    finally:
        os.environ.pop("STUDIO_TEST_LCP_KEY", None)
        studio("serve", "stop", "all")
