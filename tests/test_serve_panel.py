"""The Serve panel on server directories written by a fixture (no engine runs): what it shows, stopping a live
server, opening it from Runs and Export, bad input; the request figures read from ``requests.jsonl`` and from a
``/metrics`` page; its 80x24 and 120x40 snapshots."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import screen_of, wait_until
from textual.widgets import DataTable, Label

from lorastudio.app import StudioApp
from lorastudio.screens.chat import ChatScreen
from lorastudio.screens.serve import ServeScreen
from lorastudio.serve.figures import from_metrics, from_requests_file, log_tail, parse_metrics
from lorastudio.serve.hfserve import tokens_in
from lorastudio.serve.servedir import LOG_FILE, ServeInfo, read_info, serves_dir, write_info

SIZES = [(80, 24), (120, 40)]
USER_HOST = "me@box"
LOG = "\n".join(
    [
        "INFO:     Started server process [4242]",
        "INFO:     Waiting for application startup.",
        "INFO:     Application startup complete.",
        "INFO:     Uvicorn running on http://127.0.0.1:8123 (Press CTRL+C to quit)",
        'INFO:     127.0.0.1:50000 - "GET /health HTTP/1.1" 200 OK',
        'INFO:     127.0.0.1:50002 - "POST /v1/chat/completions HTTP/1.1" 200 OK',
        'INFO:     127.0.0.1:50004 - "POST /v1/chat/completions HTTP/1.1" 200 OK',
        'INFO:     127.0.0.1:50006 - "POST /v1/chat/completions HTTP/1.1" 404 Not Found',
    ]
)
REQUESTS = [
    {
        "time": 1.0,
        "path": "/v1/chat/completions",
        "status": 200,
        "first_s": 0.05,
        "seconds": 1.05,
        "tokens": 20,
    },
    {
        "time": 2.0,
        "path": "/v1/chat/completions",
        "status": 200,
        "first_s": 0.15,
        "seconds": 2.15,
        "tokens": 40,
    },
    {
        "time": 3.0,
        "path": "/v1/chat/completions",
        "status": 404,
        "first_s": 0.01,
        "seconds": 0.01,
        "tokens": 0,
    },
]
VLLM_METRICS = """# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{finished_reason="stop",model_name="pirate"} 5.0
vllm:request_success_total{finished_reason="length",model_name="pirate"} 2.0
vllm:generation_tokens_total{model_name="pirate"} 700.0
vllm:request_decode_time_seconds_sum{model_name="pirate"} 3.5
vllm:time_to_first_token_seconds_sum{model_name="pirate"} 0.7
vllm:time_to_first_token_seconds_count{model_name="pirate"} 7.0
"""


def write_server(
    server_id: str, *, status: str, created: float, port: int, error: str | None = None, live: bool = False
) -> Path:
    """A server directory as ``studio serve`` leaves it; ``live``: a sleeping process proven to be its engine."""
    path = serves_dir() / server_id
    path.mkdir(parents=True)
    info = ServeInfo(
        id=server_id,
        target="/runs/tiny-pirate-20260101-120000",
        engine="transformers",
        host="127.0.0.1",
        port=port,
        url=f"http://127.0.0.1:{port}/v1",
        models=("tiny-pirate",),
        status=status,
        created=created,
        error=error,
    )
    if live:
        import psutil

        cmd = [sys.executable, "-c", "import time; time.sleep(600)"]
        proc = subprocess.Popen(cmd, cwd=path, start_new_session=True, stdin=subprocess.DEVNULL)
        _live.append(proc)
        info = info.model_copy(
            update={
                "pid": proc.pid,
                "pid_started": psutil.Process(proc.pid).create_time(),
                "command": tuple(cmd),
            }
        )
    write_info(path, info)
    (path / LOG_FILE).write_text(LOG + "\n", encoding="utf-8")
    return path


_live: list[subprocess.Popen[bytes]] = []


@pytest.fixture
def servers() -> Iterator[dict[str, Path]]:
    """A ready server (a live stand-in) with three requests recorded, and an older one that failed to start."""
    shutil.rmtree(serves_dir(), ignore_errors=True)
    ready = write_server("tiny-pirate-20260101-120500", status="ready", created=2000.0, port=8123, live=True)
    with (ready / "requests.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in REQUESTS)
    failed = write_server(
        "tiny-base-20260101-110000",
        status="failed",
        created=1000.0,
        port=8124,
        error="the transformers server exited (code 1) before answering",
    )
    yield {"ready": ready, "failed": failed}
    while _live:
        proc = _live.pop()
        proc.kill()
        proc.wait()
    shutil.rmtree(serves_dir(), ignore_errors=True)


def panel_text(app: StudioApp) -> str:
    """The selected server's details and the status line, as text."""
    import io

    from rich.console import Console

    from lorastudio.widgets.serve_details import ServeDetails

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(app.screen.query_one(ServeDetails).content)
    return console.export_text() + "\n" + str(app.screen.query_one("#serve-status", Label).content)


# -- figures ---------------------------------------------------------------------------------------------
def test_figures_from_requests_file(servers: dict[str, Path]) -> None:
    figures = from_requests_file(servers["ready"])
    assert figures is not None
    assert (figures.requests, figures.failed, figures.source) == (3, 1, "requests.jsonl")
    assert figures.tokens_per_s == pytest.approx(60 / 3.0)  # 60 tokens over 1.0 + 2.0 s of generating
    assert figures.first_token_s == pytest.approx(0.1)
    assert from_requests_file(servers["failed"]) is None  # no file: the engine told nothing


def test_figures_from_vllm_metrics() -> None:
    assert parse_metrics(VLLM_METRICS)["vllm:request_success_total"] == 7.0
    figures = from_metrics(VLLM_METRICS)
    assert figures.requests == 7
    assert figures.source == "/metrics"
    assert figures.tokens_per_s == pytest.approx(200.0)
    assert figures.first_token_s == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("body", "streamed", "tokens"),
    [
        (b'{"choices":[],"usage":{"completion_tokens":17}}', False, 17),
        (
            b'data: {"choices":[{"delta":{"content":"Ar"}}]}\n\ndata: {"choices":[{"delta":{"content":"r"}}]}\n\n',
            True,
            2,
        ),
        (
            b'data: {"choices":[{"delta":{"content":"Ar"}}]}\n\ndata: {"usage":{"completion_tokens":9}}\n\n',
            True,
            9,
        ),
        (b"not json", False, 0),
    ],
)
def test_tokens_counted_from_a_reply(body: bytes, streamed: bool, tokens: int) -> None:
    assert tokens_in(body, streamed) == tokens


def test_log_tail_reads_the_last_lines(servers: dict[str, Path]) -> None:
    assert log_tail(servers["ready"], 2) == LOG.splitlines()[-2:]


# -- the panel -------------------------------------------------------------------------------------------
async def open_panel(pilot, target: str | None = None) -> None:
    from lorastudio.screens.serve import ServeScreen

    await pilot.app.push_screen(ServeScreen(target, user_host=USER_HOST))
    await wait_until(
        pilot, lambda: pilot.app.screen.views and pilot.app.screen.views[pilot.app.screen.selected].tail
    )


async def test_panel_shows_url_tunnel_figures_and_log(servers: dict[str, Path]) -> None:
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_panel(pilot)
        text = panel_text(app)
        assert "http://127.0.0.1:8123/v1" in text
        assert "ssh -L 8123:127.0.0.1:8123 me@box" in text
        assert "tiny-pirate" in text
        assert "ready" in text
        assert (
            "requests 3 · 20.0 tok/s · first token 100 ms · errors 2" in text
        )  # a 404 request + its log line
        assert '"POST /v1/chat/completions HTTP/1.1" 404 Not Found' in text
        table = app.screen.query_one("#serve-list", DataTable)
        assert [str(table.get_row_at(i)[1]) for i in range(table.row_count)] == ["ready", "failed"]
        await pilot.press("down")
        await wait_until(pilot, lambda: "exited (code 1)" in panel_text(app))
        assert "tiny-base-20260101-110000" in panel_text(app)


async def test_stop_ends_the_live_server(servers: dict[str, Path]) -> None:
    import psutil

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await open_panel(pilot)
        pid = read_info(servers["ready"]).pid
        await pilot.press("x")
        await wait_until(pilot, lambda: read_info(servers["ready"]).status == "stopped", timeout=30)
        await wait_until(pilot, lambda: "stopped tiny-pirate" in panel_text(app))
        assert pid is not None
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        await pilot.press("x")  # nothing running any more: said, nothing signalled
        await pilot.pause(0.1)
        assert read_info(servers["ready"]).status == "stopped"


@pytest.mark.parametrize(
    ("port", "engine", "said"),
    [
        ("80a", "auto", "port '80a': a whole number from 1 to 65535"),
        ("70000", "auto", "--port 70000: choose a port from 1 to 65535"),
        ("8125", "vllm", "vLLM is not installed: pip install vllm"),
        ("8125", "llamacpp", "--engine llamacpp serves a GGUF file"),
    ],
)
async def test_bad_start_refused_in_the_panel(
    servers: dict[str, Path], tmp_path: Path, port: str, engine: str, said: str
) -> None:
    from textual.widgets import Input, Select

    folder = tmp_path / "some-model"  # reads as a model; every case is refused before it would load
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    before = sorted(p.name for p in serves_dir().iterdir())
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await open_panel(pilot, target=str(folder))
        app.screen.query_one("#serve-port", Input).value = port
        app.screen.query_one("#serve-engine", Select).value = engine
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: said in panel_text(app), timeout=60)
        assert "Traceback" not in panel_text(app)
        assert not screen_of(app, ServeScreen).starting
    assert sorted(p.name for p in serves_dir().iterdir()) == before  # no directory for a refused start


async def test_panel_without_a_target_cannot_start(servers: dict[str, Path]) -> None:
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await open_panel(pilot)
        assert not app.screen.query_one("#serve-form").display
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        assert any("open the Serve panel from a run" in n.message for n in app._notifications)


async def test_opened_from_runs_on_the_selected_run(servers: dict[str, Path]) -> None:
    from runs_fixtures import write_run

    from lorastudio.paths import runs_dir
    from lorastudio.screens.serve import ServeScreen

    run = write_run(runs_dir(), "served-pirate-20260101-100000", created=time.time())
    try:
        app = StudioApp()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("ctrl+r")
            await wait_until(
                pilot,
                lambda: (
                    app.screen.query("#runs-table")
                    and app.screen.query_one("#runs-table", DataTable).row_count
                ),
            )
            await pilot.press("p")
            await wait_until(pilot, lambda: isinstance(app.screen, ServeScreen))
            assert screen_of(app, ServeScreen).target == str(run)
            assert app.screen.query_one("#serve-form").display
    finally:
        shutil.rmtree(run)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_serve_panel(snap_compare, size, servers: dict[str, Path]) -> None:
    async def run_before(pilot) -> None:
        await open_panel(pilot, target="tiny-pirate-20260101-120000")
        await pilot.pause(0.3)

    assert snap_compare(StudioApp(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize(
    ("key", "target", "versus"),
    [
        ("c", "http://127.0.0.1:8123/v1", None),
        ("o", "/runs/tiny-pirate-20260101-120000", ("http://127.0.0.1:8123/v1", "tiny-pirate", None)),
    ],
)
async def test_chat_and_compare_open_the_chat_on_the_server(
    servers: dict[str, Path], key: str, target: str, versus: tuple[str, str, None] | None
) -> None:

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await open_panel(pilot)
        await pilot.press(key)
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen))
        chat = screen_of(app, ChatScreen)
        assert (chat.target, chat.versus) == (target, versus)
        assert chat.model == ("tiny-pirate" if versus is None else None)
        # the stand-in answers nothing: the served side is refused with one line, before any local load
        status = chat.query_one("#chat-status", Label)
        await wait_until(pilot, lambda: "no server answers there" in str(status.content), timeout=60)
        assert str(status.content).startswith("http://127.0.0.1:8123/v1: ")


async def test_chat_refused_on_a_server_that_is_not_ready(servers: dict[str, Path]) -> None:
    from lorastudio.screens.serve import ServeScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await open_panel(pilot)
        await pilot.press("down")  # the failed one
        await wait_until(pilot, lambda: screen_of(app, ServeScreen).selected == "tiny-base-20260101-110000")
        await pilot.press("c")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ServeScreen)
        assert any(n.message == "select a ready server" for n in app._notifications)


async def test_opened_from_export_on_the_run(servers: dict[str, Path]) -> None:
    from runs_fixtures import write_run

    from lorastudio.paths import runs_dir
    from lorastudio.screens.export import ExportScreen
    from lorastudio.screens.serve import ServeScreen

    run = write_run(runs_dir(), "exported-pirate-20260101-100000", created=time.time())
    try:
        app = StudioApp()
        async with app.run_test(size=(80, 24)) as pilot:
            await app.push_screen(ExportScreen(run))
            await pilot.press("f6")
            await wait_until(pilot, lambda: isinstance(app.screen, ServeScreen))
            assert screen_of(app, ServeScreen).target == str(run)  # nothing exported yet: the run itself
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen))
    finally:
        shutil.rmtree(run)


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("serve:no-such", "no-such: no such server (studio serve list shows them)"),
        (
            "serve:tiny-base-20260101-110000",
            "serve:tiny-base-20260101-110000: the server is failed; start it again with studio serve /runs/",
        ),
        # the live stand-in answers nothing: the endpoint it records is asked, and refused with one line
        ("serve:tiny-pirate", "http://127.0.0.1:8123/v1: no server answers there"),
    ],
)
def test_chat_with_a_served_target(
    servers: dict[str, Path], target: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from lorastudio import cli

    code = cli.main(["chat", target, "--prompt", "hi"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert said in err.strip().splitlines()[-1]
