"""`studio mcp` answers every request (issue 37): malformed JSON-RPC lines over the server's real stdin/stdout,
each answered within a bounded wait; tool failures through the MCP SDK's own client, each one line, no
traceback on the server's stderr."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import STUDIO_BIN

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'lorastudio[mcp]')")

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from lorastudio.mcpwire import check_line

ANSWER_WAIT_S = 20.0
"""How long a test waits for one answer: a line left unanswered fails the test instead of hanging it."""


def server_env() -> dict[str, str]:
    keep = ("XDG_", "HF_", "STUDIO_", "PATH", "HOME", "PYTHONPATH")  # PYTHONPATH: a worktree's own package
    env = {k: v for k, v in os.environ.items() if k.startswith(keep)}
    return {**env, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


class RawServer:
    """``studio mcp`` spoken to line by line."""

    def __init__(self, *command: str) -> None:
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=server_env(),
        )
        self._buffer = b""

    def send(self, line: str | bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((line if isinstance(line, bytes) else line.encode()) + b"\n")
        self.process.stdin.flush()

    def answer(self, wait_s: float = ANSWER_WAIT_S) -> dict[str, Any]:
        """The next line the server writes, parsed; fails after ``wait_s`` with nothing."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + wait_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(left, 0))
            assert ready, f"no answer within {wait_s} s"
            chunk = os.read(self.process.stdout.fileno(), 65536)
            assert chunk, "the server closed its stdout"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def request(self, request_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        self.send(json.dumps(message | ({"params": params} if params is not None else {})))
        return self.answer()

    def close(self) -> str:
        """Close stdin (the client leaves); the server's stderr."""
        assert self.process.stdin is not None
        assert self.process.stderr is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        return self.process.stderr.read().decode(errors="replace")


@pytest.fixture(scope="module")
def raw_server() -> Iterator[RawServer]:
    server = RawServer(STUDIO_BIN, "mcp")
    hello = server.request(
        0,
        "initialize",
        {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    )
    assert hello["result"]["serverInfo"]["name"] == "studio"
    server.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    yield server
    stderr = server.close()
    assert server.process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert "Error executing tool" not in stderr, stderr


PARSE, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602
MALFORMED = [
    ("garbage", PARSE, None, "parse error: the line is not JSON"),
    ('{"jsonrpc": "2.0", "id": 3, "method": "tools/list"', PARSE, None, "parse error"),
    (b"\xff\xfe{not utf-8", PARSE, None, "parse error"),
    pytest.param(
        "[" * 100_000 + "]" * 100_000,
        PARSE,
        None,
        "parse error: the line is nested too deep to read",
        id="nested-too-deep",
    ),
    pytest.param(
        '{"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "list_runs", "arguments": {"x": '
        + "[" * 100_000
        + "]" * 100_000
        + "}}}",
        PARSE,
        None,
        "nested too deep",
        id="arguments-nested-too-deep",
    ),
    ("[]", INVALID_REQUEST, None, "expected an object, got an array (batches are not supported)"),
    ("42", INVALID_REQUEST, None, "expected an object, got an integer"),
    ('{"jsonrpc": "2.0", "id": {"a": 1}, "method": "tools/list"}', INVALID_REQUEST, None, "not an object"),
    ('{"jsonrpc": "2.0", "id": [1], "method": "tools/list"}', INVALID_REQUEST, None, "not an array"),
    ('{"jsonrpc": "2.0", "id": null, "method": "tools/list"}', INVALID_REQUEST, None, "not null"),
    ('{"jsonrpc": "2.0", "id": 1.5, "method": "tools/list"}', INVALID_REQUEST, None, "not a number"),
    ('{"jsonrpc": "2.0", "id": true, "method": "tools/list"}', INVALID_REQUEST, None, "not a boolean"),
    ('{"id": 7, "method": "tools/list"}', INVALID_REQUEST, 7, '"jsonrpc" must be "2.0"'),
    ('{"jsonrpc": "1.0", "id": 8, "method": "tools/list"}', INVALID_REQUEST, 8, '"jsonrpc" must be "2.0"'),
    ('{"jsonrpc": "2.0", "id": 9, "method": 5}', INVALID_REQUEST, 9, "method must be a string"),
    ('{"jsonrpc": "2.0", "id": 10}', INVALID_REQUEST, 10, "no method"),
    ('{"jsonrpc": "2.0", "method": "notifications/x", "params": 5}', INVALID_REQUEST, None, "not an integer"),
    (
        '{"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": [1, 2]}',
        INVALID_PARAMS,
        11,
        "tools/call's params must be an object, not an array",
    ),
    (
        '{"jsonrpc": "2.0", "id": "s12", "method": "tools/call", "params": "run_status"}',
        INVALID_PARAMS,
        "s12",
        "tools/call's params must be an object, not a string",
    ),
    (
        '{"jsonrpc": "2.0", "id": 13, "method": "tools/list", "params": 5}',
        INVALID_PARAMS,
        13,
        "not an integer",
    ),
    (
        '{"jsonrpc": "2.0", "id": 14, "method": "tools/call", "params": {}}',
        INVALID_PARAMS,
        14,
        "tools/call needs the tool's name (a string), not null",
    ),
    (
        '{"jsonrpc": "2.0", "id": 15, "method": "tools/call", "params": {"name": "run_status", "arguments": [1]}}',
        INVALID_PARAMS,
        15,
        "run_status's arguments must be an object, not an array",
    ),
    ('{"jsonrpc": "2.0", "id": 16, "method": "no/such"}', -32601, 16, "Method not found"),
]


@pytest.mark.parametrize(("line", "code", "request_id", "message"), MALFORMED)
def test_every_malformed_line_is_answered(
    raw_server: RawServer, line: str | bytes, code: int, request_id: Any, message: str
) -> None:
    raw_server.send(line)
    answer = raw_server.answer()
    assert answer["jsonrpc"] == "2.0"
    assert answer["id"] == request_id
    assert answer["error"]["code"] == code
    assert message in answer["error"]["message"]
    # and the server goes on answering
    assert raw_server.request(99, "ping") == {"jsonrpc": "2.0", "id": 99, "result": {}}


def test_blank_lines_and_answers_to_nothing_get_no_answer(raw_server: RawServer) -> None:
    raw_server.send("")
    raw_server.send("   ")
    raw_server.send('{"jsonrpc": "2.0", "id": 500, "result": {}}')  # a response: never answered
    assert raw_server.request(101, "ping")["id"] == 101  # the next answer is the ping's


def test_requests_sent_before_the_client_closes_stdin_are_all_answered() -> None:
    """A client that writes its requests and closes its end (a script, `printf ... | studio mcp`) still gets
    every answer: the server leaves only once each request it took has been answered, not at end of input."""
    server = RawServer(STUDIO_BIN, "mcp")
    hello = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "eof", "version": "1"},
    }
    lines = [
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_runs", "arguments": {}}},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "run_status", "arguments": {"run": ""}},
        },
        {"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 4, "method": "ping"},
    ]
    for line in lines:
        server.send(json.dumps(line))
    stderr = server.close()
    assert server.process.returncode == 0, stderr
    assert server.process.stdout is not None
    answers = [json.loads(line) for line in (server._buffer + server.process.stdout.read()).splitlines()]
    assert sorted(answer["id"] for answer in answers) == [0, 1, 2, 3, 4]
    status = next(answer for answer in answers if answer["id"] == 2)
    assert status["result"]["isError"] is True
    assert status["result"]["content"][0]["text"].startswith("empty run reference ''")


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        ({}, "run_status: argument 'run': Field required"),
        ({"run": 5}, "run_status: argument 'run': Input should be a valid string"),
        ({"run": "no-such-run"}, "no such run: 'no-such-run' (see `studio runs`)"),
    ],
)
def test_tool_errors_over_the_raw_wire_are_one_line(
    raw_server: RawServer, arguments: dict[str, Any], text: str
) -> None:
    answer = raw_server.request(200, "tools/call", {"name": "run_status", "arguments": arguments})
    assert answer["result"]["isError"] is True
    assert [block["text"] for block in answer["result"]["content"]] == [text]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"jsonrpc": "2.0", "id": 1, "method": "ping"}', None),
        ('{"jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": {"name": "x"}}', None),
        ('{"jsonrpc": "2.0", "method": "notifications/initialized"}', None),
        ('{"jsonrpc": "2.0", "id": 4, "result": {}}', None),
        ('{"jsonrpc": "2.0", "id": 4, "result": {}, "error": {"code": 1, "message": "x"}}', "no method"),
        ('{"jsonrpc": "2.0", "id": 5, "error": {"code": "x", "message": 1}}', "invalid request"),
    ],
)
def test_check_line_passes_what_the_sdk_takes(line: str, problem: str | None) -> None:
    answer = check_line(line)
    assert (answer is None) == (problem is None), answer
    if problem is not None and answer is not None:
        assert problem in answer["error"]["message"]


# -- tool failures through the SDK's client -----------------------------------------------------------
CRASHING_SERVER = """
from lorastudio.mcpserver import build_server

def explode(what: str) -> str:
    '''Fails the way a bug would.'''
    raise ValueError(f"cannot explode {what}\\nsecond line")

server = build_server()
server.add_tool(explode)
server.run("stdio")
"""


def run_client(command: list[str], body: Any, errlog: Path) -> Any:
    params = StdioServerParameters(command=command[0], args=command[1:], env=server_env())

    async def main() -> Any:
        with errlog.open("w") as log:
            async with (
                stdio_client(params, errlog=log) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                with anyio.fail_after(120):
                    return await body(session)

    return anyio.run(main)


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def test_sdk_client_gets_one_line_tool_errors_and_no_traceback(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe name: x\n")

    async def body(session: ClientSession) -> dict[str, str]:
        calls = {
            "crash": ("explode", {"what": "the moon"}),
            "missing": ("run_status", {}),
            "type": ("preview", {"recipe": "tiny-pirate", "index": -1}),
            "short": ("compare_runs", {"runs": ["a"]}),
            "studio": ("show_recipe", {"recipe": "tiny-pirate", "overrides": ["train.max_steps=lots"]}),
            "binary": ("show_recipe", {"recipe": str(binary)}),
        }
        texts = {}
        for key, (name, arguments) in calls.items():
            result = await session.call_tool(name, arguments)
            assert result.is_error, (key, text_of(result))
            texts[key] = text_of(result)
        return texts

    errlog = tmp_path / "stderr.txt"
    texts = run_client([sys.executable, "-c", CRASHING_SERVER], body, errlog)
    assert texts == {
        "crash": "ValueError: cannot explode the moon second line",
        "missing": "run_status: argument 'run': Field required",
        "type": "preview: argument 'index': Input should be greater than or equal to 0",
        "short": "compare_runs: argument 'runs': List should have at least 2 items after validation, not 1",
        "studio": "override 'train.max_steps=lots': Input should be a valid integer, unable to parse string "
        "as an integer",
        "binary": f"{binary}: cannot read recipe: not UTF-8 text (byte 0)",
    }
    stderr = errlog.read_text()
    assert "Traceback" not in stderr, stderr
    assert "Error executing tool" not in stderr, stderr


def test_read_only_server_names_the_tools_it_holds_back(tmp_path: Path) -> None:
    async def body(session: ClientSession) -> str:
        return text_of(await session.call_tool("start_run", {"recipe": "tiny-pirate"}))

    text = run_client([STUDIO_BIN, "mcp", "--read-only"], body, tmp_path / "stderr.txt")
    assert text == "start_run: not served by `studio mcp --read-only` (it changes something)"


def test_a_stray_print_never_reaches_the_wire(tmp_path: Path) -> None:
    """fd 1 points at stderr while serving: a tool's print (or a child's output) cannot corrupt the wire."""
    script = """
from lorastudio.mcpserver import build_server
import os, subprocess

def noisy() -> str:
    '''Prints, as a library might.'''
    print("stray print")
    os.write(1, b"stray write\\n")
    subprocess.run(["echo", "stray child"], check=True)
    return "quiet answer"

server = build_server()
server.add_tool(noisy)
server.run("stdio")
"""
    server = RawServer(sys.executable, "-c", script)
    hello = server.request(
        0,
        "initialize",
        {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    )
    assert "result" in hello
    server.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    answer = server.request(1, "tools/call", {"name": "noisy", "arguments": {}})
    assert answer["result"]["content"][0]["text"] == "quiet answer"
    assert server.request(2, "ping")["id"] == 2
    stderr = server.close()
    assert "stray print" in stderr
    assert "stray write" in stderr
    assert "stray child" in stderr
