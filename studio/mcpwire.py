"""The stdio wire of ``studio mcp``: every request gets an answer, every error the CLI's one line.

The SDK's stdio transport drops a line it cannot read as a JSON-RPC message (not JSON, an object or float id,
params that are not an object), so the client waits forever. Here each line is checked first, as JSON-RPC 2.0
says: -32700 for a line that is not JSON, -32600 for one that is not a request (bad ``jsonrpc``, ``id`` or
``method``; answered with the id null when the id itself is bad), -32602 for a request whose params are not
an object or a ``tools/call`` whose ``name`` or ``arguments`` are malformed, each with a message saying what is
wrong. Lines that pass go to the SDK unchanged; blank lines are skipped. When the client closes stdin the
server leaves only after answering each request it took (the SDK would drop the tool calls still running).

A tool call's own failures are tool errors (``isError``, the model's to read and correct) carrying one line:
a :class:`StudioError`'s message as the CLI prints it, the arguments that do not fit the tool's schema, or
the type and text of an unexpected exception, never the SDK's "Error executing tool X" with a traceback on
stderr. While serving, fd 0 reads /dev/null and fd 1 writes to stderr (a stray print or a child process
never reaches the client); the wire itself runs on private copies of them.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, cast

import anyio
import anyio.to_thread
import mcp_types
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.stdio import stdio_server
from pydantic import ValidationError

from lorastudio.errors import StudioError

Answer = dict[str, Any]


def error(request_id: str | int | None, code: int, message: str) -> Answer:
    """A JSON-RPC error answer."""
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def _kind(value: Any) -> str:
    """How JSON calls a value's type: ``an array``, ``null``, ``a number``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    names = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _valid_id(value: Any) -> bool:
    """MCP's request ids: a string or an integer (not null, not a number with a fraction, not a boolean)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def check_line(line: str) -> Answer | None:
    """The error answer for a line the SDK could not take as a message, or None to pass it on."""
    try:
        message = json.loads(line)
    except ValueError as exc:
        return error(None, mcp_types.PARSE_ERROR, f"parse error: the line is not JSON ({exc})")
    except RecursionError:  # thousands of nested arrays or objects: Python's reader gives up
        return error(None, mcp_types.PARSE_ERROR, "parse error: the line is nested too deep to read")
    if not isinstance(message, dict):
        batch = " (batches are not supported)" if isinstance(message, list) else ""
        return error(
            None,
            mcp_types.INVALID_REQUEST,
            f"invalid request: expected an object, got {_kind(message)}{batch}",
        )
    has_id, request_id = "id" in message, message.get("id")
    answer_id = request_id if _valid_id(request_id) else None
    if has_id and answer_id is None:
        return error(
            None,
            mcp_types.INVALID_REQUEST,
            f"invalid request: id must be a string or an integer, not {_kind(request_id)}",
        )
    if message.get("jsonrpc") != "2.0":
        return error(answer_id, mcp_types.INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"')
    method = message.get("method")
    if "method" not in message:  # an answer to a request of the server's (none is sent today)
        if not has_id or ("result" in message) == ("error" in message):
            return error(answer_id, mcp_types.INVALID_REQUEST, "invalid request: no method")
    elif not isinstance(method, str):
        return error(answer_id, mcp_types.INVALID_REQUEST, "invalid request: method must be a string")
    elif not has_id:  # a notification is never answered, but one the SDK would drop is named
        if "params" in message and not isinstance(message["params"], dict):
            return error(
                None,
                mcp_types.INVALID_REQUEST,
                f"invalid request: {method}'s params must be an object, not {_kind(message['params'])}",
            )
    else:
        problem = _params_problem(method, message)
        if problem is not None:
            return error(answer_id, mcp_types.INVALID_PARAMS, f"invalid params: {problem}")
    try:  # whatever else the SDK's transport would drop
        mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or "the message"
        code = mcp_types.INVALID_PARAMS if has_id and method else mcp_types.INVALID_REQUEST
        return error(
            answer_id,
            code,
            f"invalid {'params' if code == mcp_types.INVALID_PARAMS else 'request'}: {where}: {first['msg']}",
        )
    return None


def _params_problem(method: str, message: dict[str, Any]) -> str | None:
    if "params" not in message:
        return None
    params = message["params"]
    if not isinstance(params, dict):
        return f"{method}'s params must be an object, not {_kind(params)}"
    if method == "tools/call":
        if not isinstance(params.get("name"), str):
            return f"tools/call needs the tool's name (a string), not {_kind(params.get('name'))}"
        if params.get("arguments") is not None and not isinstance(params["arguments"], dict):
            return f"{params['name']}'s arguments must be an object, not {_kind(params['arguments'])}"
    return None


# -- tool errors ------------------------------------------------------------------------------------
def argument_problem(tool: str, exc: ValidationError) -> str:
    """``run_status: argument 'run': Field required``: arguments that do not fit the tool's schema, one line."""
    parts = []
    for problem in exc.errors():
        where = ".".join(str(part) for part in problem["loc"])
        parts.append(f"argument {where!r}: {problem['msg']}" if where else problem["msg"])
    return f"{tool}: " + "; ".join(parts)


def one_line(exc: BaseException) -> str:
    """A failure as one line: a StudioError's own message, else the exception's type and text."""
    if isinstance(exc, StudioError):
        return str(exc)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class StudioServer(MCPServer):
    """The SDK's server on the checked wire, every tool failure a one-line tool error."""

    def __init__(self, *args: Any, held_back: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held_back = held_back
        """Tools this server leaves out (``--read-only``), named when asked for."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        if name in self.held_back:
            raise ToolError(f"{name}: not served by `studio mcp --read-only` (it changes something)")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError) and not isinstance(exc, UnexpectedToolError):
                raise ToolError(argument_problem(name, cause)) from None
            if cause is not None and not isinstance(cause, ToolError):
                raise ToolError(one_line(cause)) from None  # a crash: one line, no traceback on stderr
            raise

    async def run_stdio_async(self) -> None:
        """Serve over stdin/stdout, each line checked (:func:`check_line`) before the SDK reads it."""
        with _claimed_stdio() as (source, sink):
            wire = _Wire(sink)
            lines = _CheckedLines(source, wire)
            async with stdio_server(stdin=cast(Any, lines), stdout=cast(Any, wire)) as (read, write):
                lowlevel = self._lowlevel_server
                await lowlevel.run(read, write, lowlevel.create_initialization_options())


# -- the wire ---------------------------------------------------------------------------------------
class _Wire:
    """The client's end of stdout: whole lines, one writer at a time (the SDK's answers and ours), and the
    ids of the requests handed to the SDK that it has not answered yet."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._unanswered: set[str | int] = set()

    def taken(self, request_id: str | int) -> None:
        """A request the SDK will answer (or a cancelled one, with ``answered``)."""
        with self._lock:
            self._unanswered.add(request_id)

    def answered(self, request_id: Any) -> None:
        with self._lock:
            self._unanswered.discard(request_id)

    @property
    def waiting(self) -> bool:
        with self._lock:
            return bool(self._unanswered)

    def send(self, text: str) -> None:
        data = text.encode("utf-8")
        try:
            sent = json.loads(text)
        except ValueError:
            sent = None
        with self._lock:
            while data:
                data = data[os.write(self._fd, data) :]
            if isinstance(sent, dict) and ("result" in sent or "error" in sent) and _valid_id(sent.get("id")):
                self._unanswered.discard(sent["id"])

    async def write(self, text: str) -> None:
        await anyio.to_thread.run_sync(self.send, text)

    async def flush(self) -> None:
        return None  # every write went straight to the descriptor


class _CheckedLines:
    """The client's lines for the SDK's reader; a line it could not take is answered here instead."""

    def __init__(self, source: IO[bytes], wire: _Wire) -> None:
        self._source = source
        self._wire = wire

    def __aiter__(self) -> _CheckedLines:
        return self

    async def __anext__(self) -> str:
        while True:
            raw = await anyio.to_thread.run_sync(self._source.readline)
            if not raw:
                # The client closed its end: the SDK would drop the calls still running, so the end of
                # input waits until each request it took has been answered.
                while self._wire.waiting:
                    await anyio.sleep(0.05)
                raise StopAsyncIteration
            line = raw.decode("utf-8", errors="replace")
            if not line.strip():
                continue
            answer = check_line(line)
            if answer is None:
                self._note(json.loads(line))
                return line
            await self._wire.write(json.dumps(answer, ensure_ascii=False, separators=(",", ":")) + "\n")

    def _note(self, message: dict[str, Any]) -> None:
        """Keep count of what the SDK owes an answer: a request it takes, less one the client cancels (the
        SDK answers no cancelled request)."""
        if "method" not in message:
            return
        if "id" in message:
            self._wire.taken(message["id"])
        elif message["method"] == "notifications/cancelled" and isinstance(message.get("params"), dict):
            self._wire.answered(message["params"].get("requestId"))


@contextmanager
def _claimed_stdio() -> Iterator[tuple[IO[bytes], int]]:
    """(the client's stdin, the client's stdout descriptor), private copies of fds 0 and 1 (above 2, closed
    on exec); while serving fd 0 reads /dev/null and fd 1 writes to stderr; both restored after."""
    wire_in = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    wire_out = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    sys.stdout.flush()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    source = os.fdopen(wire_in, "rb")
    try:
        yield source, wire_out
    finally:
        sys.stdout.flush()  # what a tool printed goes to stderr, not onto the restored wire
        os.dup2(source.fileno(), 0)
        os.dup2(wire_out, 1)
        source.close()
        os.close(wire_out)
