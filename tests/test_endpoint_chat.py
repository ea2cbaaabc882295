"""Chat against an OpenAI-compatible endpoint (``chat/endpoint.py``), and the MCP serve tools.

Bad input needs no model: a refused endpoint, an unset key variable, an endpoint flag on a local target are one
message each, in the CLI and in the Chat screen. The slow tests serve the tiny model on transformers' own server
(with an API key) and chat with it through the endpoint engine, streamed: greedy, its answer is local chat's,
word for word; a wrong key and an unknown model are one message; the panel's figures count those requests. The
MCP tools start, list and stop a server through the SDK's own client.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import QUESTION, STUDIO_BIN, screen_of, wait_until
from textual.widgets import Label

from lorastudio import cli
from lorastudio.app import StudioApp
from lorastudio.chat.endpoint import EndpointEngine
from lorastudio.errors import StudioError
from lorastudio.screens.chat import ChatScreen

KEY_VAR = "STUDIO_TEST_ENDPOINT_KEY"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nothing_there() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ([], "no server answers there (is it running?"),
        (
            ["--api-key-env", "STUDIO_TEST_UNSET_VAR"],
            "--api-key-env STUDIO_TEST_UNSET_VAR: the environment variable",
        ),
        (["--base"], "--base: "),
    ],
)
def test_endpoint_refused_in_the_cli(extra: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    os.environ.pop("STUDIO_TEST_UNSET_VAR", None)
    url = nothing_there()
    line = refused(["chat", url, "--prompt", "hi", *extra], capsys)
    assert line.startswith("studio: ")
    assert said in line
    if not extra:
        assert url in line


@pytest.mark.parametrize(
    ("flag", "said"),
    [
        (["--model", "pirate"], "--model pirate: only for an endpoint target"),
        (["--api-key-env", "K"], "--api-key-env K: only"),
    ],
)
def test_endpoint_flags_refused_for_a_local_target(
    flag: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert said in refused(["chat", "some-run", "--prompt", "hi", *flag], capsys)


async def test_refused_endpoint_said_in_the_chat_screen() -> None:
    from textual.widgets import Input

    url = nothing_there()
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.push_screen(ChatScreen(url, model="pirate"))
        status = app.screen.query_one("#chat-status", Label)
        await wait_until(pilot, lambda: "no server answers" in str(status.content), timeout=60)
        assert str(status.content) == (
            f"{url}: no server answers there (is it running? studio serve list shows studio's)"
        )
        assert app.screen.query_one("#chat-input", Input).disabled  # nothing to send to


# -- a real server: the tiny model on transformers' own -----------------------------------------------------
@pytest.fixture(scope="module")
def served(tiny_model: Path) -> Iterator[Any]:
    """The tiny model served with an API key (started as the Serve panel starts one); stopped after."""
    from lorastudio.serve.server import start_server, stop_server

    os.environ[KEY_VAR] = "right-key"
    started = start_server(str(tiny_model), "127.0.0.1", free_port(), "transformers", KEY_VAR)
    try:
        yield started
    finally:
        stop_server(started.path)
        os.environ.pop(KEY_VAR, None)


def greedy(engine: Any) -> Any:
    from lorastudio.chat.engine import with_overrides

    return with_overrides(engine.recipe.chat, greedy=True, max_new_tokens=30)


@pytest.mark.slow
def test_served_answer_streams_and_matches_local_chat(served: Any, tiny_model: Path) -> None:
    from lorastudio.chat.engine import engine_for
    from lorastudio.serve.figures import read_figures

    remote = EndpointEngine(served.info.url, key_env=KEY_VAR)
    remote.load()
    assert remote.model_name == served.info.models[0]  # the only model it serves, picked without --model
    pieces: list[str] = []
    reply = remote.generate(QUESTION, greedy(remote), on_text=pieces.append)
    local = engine_for(str(tiny_model))
    local.load()
    expected = local.generate(QUESTION, greedy(local))
    assert reply.text == expected.text
    assert reply.text.strip()
    assert len(pieces) > 1
    assert "".join(pieces) == reply.text
    assert reply.first_token_s is not None
    assert reply.tokens > 1
    figures = read_figures(served.path, served.info, live=True)
    assert figures.requests is not None
    assert figures.requests >= 1
    assert figures.tokens_per_s
    assert figures.source == "requests.jsonl"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "model", "said"),
    [
        ("wrong-key", None, ": the API key was refused (401); check the key in --api-key-env"),
        (None, None, ": the API key was refused (401); it needs one: --api-key-env VAR"),
        ("right-key", "no-such-model", "--model no-such-model: "),
    ],
)
def test_bad_endpoint_input_is_one_line(served: Any, key: str | None, model: str | None, said: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [STUDIO_BIN, "chat", served.info.url, "--prompt", "hi"]
    if key is not None:
        env["STUDIO_TEST_OTHER_KEY"] = key
        argv += ["--api-key-env", "STUDIO_TEST_OTHER_KEY"]
    if model is not None:
        argv += ["--model", model]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert said in line, line
    if model is not None:
        assert f"(it serves {served.info.models[0]})" in line


@pytest.mark.slow
@pytest.mark.parametrize("by", ["url", "id"])
def test_cli_chats_with_the_endpoint(served: Any, by: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [
        STUDIO_BIN,
        "chat",
        served.info.url if by == "url" else f"serve:{served.info.id}",
        "--api-key-env",
        KEY_VAR,
        "--prompt",
        "What colour is the sky?",
    ]
    proc = subprocess.run(
        [*argv, "--greedy", "--max-new-tokens", "30"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    remote = EndpointEngine(served.info.url, key_env=KEY_VAR)
    remote.load()
    assert proc.stdout.strip() == remote.generate(QUESTION, greedy(remote)).text.strip()
    assert f"served {served.info.models[0]}, " in proc.stderr.splitlines()[-1]  # the stats line names it


@pytest.mark.slow
def test_mcp_starts_lists_and_stops_a_server(tiny_model: Path) -> None:
    pytest.importorskip("mcp", reason="the MCP SDK is not installed")
    from test_mcp import call, data_of, run_client, text_of

    port = free_port()

    async def body(session: Any) -> dict[str, Any]:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert tools["stop_server"].annotations.destructive_hint is True
        assert tools["list_servers"].annotations.read_only_hint is True
        started = data_of(
            await call(session, "start_server", target=str(tiny_model), port=port, engine="transformers")
        )
        listed = {row["id"]: row for row in data_of(await call(session, "list_servers"))}
        in_use = await call(session, "start_server", target=str(tiny_model), port=port, engine="transformers")
        stopped = data_of(await call(session, "stop_server", id=started["id"]))
        unknown = await call(session, "stop_server", id="no-such-server")
        return {
            "started": started,
            "listed": listed,
            "in_use": text_of(in_use),
            "stopped": stopped,
            "unknown": text_of(unknown),
        }

    found = run_client(body)
    started = found["started"]
    assert started["status"] == "ready"
    assert started["url"] == f"http://127.0.0.1:{port}/v1"
    assert found["listed"][started["id"]]["status"] == "ready"
    assert found["in_use"] == f"--port {port}: port {port} on 127.0.0.1 is in use; pick another with --port"
    assert found["stopped"]["status"] == "stopped"
    assert found["stopped"]["was_running"] is True
    assert found["unknown"] == "no-such-server: no such server (studio serve list shows them)"
    with pytest.raises(StudioError, match="no server answers there"):
        EndpointEngine(started["url"]).load()


@pytest.mark.slow
async def test_chat_screen_compares_the_local_model_with_the_served_one(
    served: Any, tiny_model: Path
) -> None:
    """Side by side, the local model and the served one answer the same question; greedy, the same words."""
    from textual.widgets import Input

    from lorastudio.chat.engine import with_overrides

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(ChatScreen(str(tiny_model), versus=(served.info.url, None, KEY_VAR)))
        screen = screen_of(app, ChatScreen)
        await wait_until(pilot, lambda: screen.engine is not None, timeout=300)
        name = served.info.models[0]
        assert str(screen.query_one("#chat-title", Label).content).endswith(f"compare: base | served {name}")
        screen.sampling = with_overrides(screen.sampling, greedy=True, max_new_tokens=20)
        box = screen.query_one("#chat-input", Input)
        box.value = QUESTION[0]["content"]
        box.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: not screen.generating and len(screen.replies) == 2, timeout=300)
        local, remote = screen.replies
        assert local.text == remote.text
        assert local.text.strip()
        assert [t.get("model") for t in screen.turns] == [None, "base", f"served {name}"]
        assert screen.turns[-1]["compare"] is True


def test_mcp_serve_tools_refuse_bad_input_and_read_only_holds_them_back(tmp_path: Path) -> None:
    pytest.importorskip("mcp", reason="the MCP SDK is not installed")
    from test_mcp import call, data_of, run_client, text_of

    missing = tmp_path / "nothing.gguf"

    async def body(session: Any) -> dict[str, Any]:
        return {
            "start": text_of(await call(session, "start_server", target=str(missing), engine="llamacpp")),
            "stop": text_of(await call(session, "stop_server", id="../x")),
            "list": data_of(await call(session, "list_servers")),
        }

    found = run_client(body)
    assert found["start"] == f"{missing}: no such GGUF file"
    assert found["stop"] == "../x: not a server id (studio serve list shows them)"
    assert isinstance(found["list"], list)

    async def read_only(session: Any) -> set[str]:
        return {tool.name for tool in (await session.list_tools()).tools}

    names = run_client(read_only, "--read-only")
    assert "list_servers" in names
    assert not names & {"start_server", "stop_server"}
