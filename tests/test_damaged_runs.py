"""One damaged run never breaks the others (issue 37), summary.json never wins over the events, and every
``--json`` output and MCP answer is strict JSON.

Each damage is done to one run of three recorded ones; the listing (CLI, MCP, Runs screen) shows it as
``damaged`` with a reason naming the file and the others as they are, and compare, resume and samples on it
answer one line naming the file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import STUDIO_BIN, wait_until
from runs_fixtures import write_run, write_runs

from lorastudio.cli import main
from lorastudio.train.launch import runs
from lorastudio.train.run.eventlog import EVENTS_FILE
from lorastudio.train.run.events import MetricsEvent, Status, StatusEvent

NEWEST, MIDDLE, OLDEST = (
    "qwen-csv-concepts-long-experiment-20260922-120000",
    "tiny-pirate-20260922-113000",
    "tiny-pirate-20260922-101500",
)
T0 = 1_790_000_000.0


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    folder = tmp_path / "data" / "studio" / "runs"
    write_runs(folder)
    return folder


def _events_folder(run: Path) -> None:
    (run / EVENTS_FILE).unlink()
    (run / EVENTS_FILE).mkdir()


def _cut_last_line(run: Path) -> None:
    data = (run / EVENTS_FILE).read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    (run / EVENTS_FILE).write_bytes(data[: last + 30])  # the final status, its first 30 bytes written


def _insert_line(line: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        lines = (run / EVENTS_FILE).read_text().splitlines(keepends=True)
        lines.insert(5, line + "\n")
        (run / EVENTS_FILE).write_text("".join(lines))

    return damage


def _wrong_types(run: Path) -> None:
    meta = {"format": 1, "name": run.name, "recipe": 7, "created": "yesterday"}
    (run / "run.json").write_text(json.dumps(meta))


DAMAGES: dict[str, tuple[Callable[[Path], Any], str]] = {
    # name: (what is done to the run, what its reason must say)
    "run.json an array": (lambda r: (r / "run.json").write_text("[]"), "run.json holds an array"),
    "run.json wrong types": (_wrong_types, 'run.json: recipe is 7, not text; created is "yesterday"'),
    "run.json truncated": (
        lambda r: (r / "run.json").write_text('{"format": 1, "name": "x", "rec'),
        "run.json is not valid JSON (cut off?)",
    ),
    "run.json binary": (lambda r: (r / "run.json").write_bytes(bytes(range(256))), "run.json is not text"),
    "events.jsonl a folder": (_events_folder, "events.jsonl is a folder"),
    "events.jsonl binary": (
        lambda r: (r / EVENTS_FILE).write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 40),
        "events.jsonl: line 1 is not an event: not JSON (80 such lines)",
    ),
    "events.jsonl last line cut off": (
        _cut_last_line,
        "events.jsonl: its last line is cut off (30 bytes after the last newline)",
    ),
    "events.jsonl a field of the wrong type": (
        _insert_line('{"v": 1, "kind": "metrics", "step": "lots"}'),
        "events.jsonl: line 6 is not an event: metrics.step: not an integer: 'lots'",
    ),
    "events.jsonl a line that is no object": (
        _insert_line("[1, 2, 3]"),
        "events.jsonl: line 6 is not an event: not an event object with a kind",
    ),
    "note.txt binary": (
        lambda r: (r / "note.txt").write_bytes(b"\xff\xfenote"),
        f"note.txt is not text (binary data at byte 0); `studio runs note {MIDDLE} --clear` replaces it",
    ),
    "checkpoints a file": (lambda r: (r / "checkpoints").write_text(""), "checkpoints is a file"),
    # nested deeper than Python's JSON reader recurses: RecursionError, not ValueError
    "run.json nested too deep": (
        lambda r: (r / "run.json").write_text("[" * 100_000 + "]" * 100_000),
        "run.json is not valid JSON: nested too deep",
    ),
    "events.jsonl a line nested too deep": (
        _insert_line('{"v": 1, "kind": "metrics", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        "events.jsonl: line 6 is not an event: not JSON",
    ),
}


def strict_loads(text: str) -> Any:
    """JSON as jq and JavaScript read it: NaN and Infinity are refused."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def studio(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``studio ARGS`` in this process: (exit code, stdout, stderr); a traceback fails the test."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_run_is_listed_with_its_reason_and_the_others_as_they_are(
    root: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = {r.name: r.to_json() for r in runs.list_runs(root)}
    do, reason = DAMAGES[damage]
    do(root / MIDDLE)
    code, out, err = studio(capsys, "runs", "--json")
    assert code == 0 and not err
    listed = {r["name"]: r for r in strict_loads(out)}
    assert set(listed) == {NEWEST, MIDDLE, OLDEST}
    for name in (NEWEST, OLDEST):  # the others: exactly as before
        assert {k: v for k, v in listed[name].items() if k != "note"} == expected[name]
    assert listed[NEWEST]["note"] == "lr sweep, stopped to free the GPU"
    assert listed[MIDDLE]["status"] == "damaged"
    assert reason in listed[MIDDLE]["cause"]
    code, out, err = studio(capsys, "runs")  # the table names the reason below it
    assert code == 0 and f"{MIDDLE}: {listed[MIDDLE]['cause']}" in err.splitlines()


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_compare_resume_and_samples_refuse_a_damaged_run_in_one_line_naming_the_file(
    root: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    do, reason = DAMAGES[damage]
    do(root / MIDDLE)
    for args in (
        ("runs", "compare", OLDEST, MIDDLE, "--json"),
        ("resume", MIDDLE),
        ("runs", "samples", MIDDLE),
        ("runs", "samples", MIDDLE, "--json"),
    ):
        code, out, err = studio(capsys, *args)
        assert (code, out) == (2, ""), args
        assert err.startswith(f"studio: run {MIDDLE} is damaged: ") and reason in err, args
        assert err.count("\n") == 1, args
    assert "pid" not in json.loads((root / OLDEST / "run.json").read_text())  # nothing was started


@pytest.mark.parametrize("damage", ["events.jsonl a folder", "run.json an array", "events.jsonl binary"])
def test_other_readers_survive_a_damaged_run(
    root: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from lorastudio import mcpserver
    from lorastudio.train.launch.live import live_runs

    DAMAGES[damage][0](root / MIDDLE)
    assert runs.find_run("latest", root).name == NEWEST
    assert [r.name for r in live_runs(root)] == []
    status = mcpserver.run_status(MIDDLE)
    assert status["status"] == "damaged" and DAMAGES[damage][1] in status["cause"]
    listed = {r["name"]: r["status"] for r in mcpserver.list_runs()}
    assert listed == {NEWEST: "stopped", MIDDLE: "damaged", OLDEST: "done"}
    code, out, err = studio(capsys, "runs", "note", MIDDLE, "fine")  # a note can be written on it
    assert code == 0 and (root / MIDDLE / "note.txt").read_text() == "fine\n"
    for args in (("export", MIDDLE, "--estimate", "--json"), ("chat", f"{MIDDLE}@best", "--prompt", "hi")):
        code, out, err = studio(capsys, *args)  # the run's lookup: its own message, in one line
        assert (
            (code, out) == (2, "")
            and err.startswith(f"studio: run {MIDDLE} has no ")
            and err.count("\n") == 1
        )


def test_a_damaged_run_json_is_not_rewritten(root: Path) -> None:
    from lorastudio.errors import RunError

    (root / MIDDLE / "run.json").write_text('{"format": 1, "na')
    with pytest.raises(RunError, match="run.json is not valid JSON"):
        runs.update_meta(root / MIDDLE, pid=1)
    assert (root / MIDDLE / "run.json").read_text() == '{"format": 1, "na'


def test_a_cut_off_line_of_a_live_run_is_a_line_being_written(root: Path) -> None:
    from conftest import stand_in_worker

    run = root / MIDDLE
    _cut_last_line(run)
    stand_in_worker(run)
    summary = runs.summarise(run)
    assert (summary.status, summary.cause) == ("training", None)  # the worker is still writing "done"


def test_a_run_directory_that_cannot_be_read_is_listed_as_damaged(root: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    run = root / MIDDLE
    (run / EVENTS_FILE).chmod(0)
    try:
        listed = {r.name: r for r in runs.list_runs(root)}
    finally:
        (run / EVENTS_FILE).chmod(0o644)
    assert listed[MIDDLE].status == "damaged" and "events.jsonl cannot be read" in (
        listed[MIDDLE].cause or ""
    )
    assert listed[OLDEST].status == "done"


# -- summary.json is a cache of the events, never a record --------------------------------------------
def written_run(folder: Path, name: str, final: Status = "done") -> Path:
    """A run written through the SummarizingWriter, as the worker writes it (so it has a summary.json)."""
    from lorastudio.train.run.summaries import SummarizingWriter

    run = folder / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"format": 1, "name": name, "recipe": "r", "created": T0}))
    (run / "recipe.yaml").write_text("name: r\n")
    writer = SummarizingWriter(run / EVENTS_FILE)
    writer.emit(StatusEvent(status="queued"))
    writer.emit(StatusEvent(status="training", max_steps=6))
    for step in range(1, 7):
        writer.emit(MetricsEvent(step=step, max_steps=6, loss=1.0 / step))
    writer.emit(StatusEvent(status=final, step=6, adapter="adapter"))
    writer.close()
    return run


def test_a_summary_that_says_failed_over_a_finished_run_is_dropped_and_resume_refuses(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lorastudio.train.run.summaries import RUN_SUMMARY_FILE

    run = written_run(root, "e-written-20260922-130000")
    entry = json.loads((run / RUN_SUMMARY_FILE).read_text())
    # offset and fingerprint still the file's: only the figures lie
    entry["state"].update(status="failed", cause="out of memory", step=3, last_loss=0.5)
    (run / RUN_SUMMARY_FILE).write_text(json.dumps(entry))
    code, out, _ = studio(capsys, "runs", "--json")
    listed = {r["name"]: r for r in strict_loads(out)}[run.name]
    assert (listed["status"], listed["cause"], listed["step"], listed["last_loss"]) == (
        "done",
        None,
        6,
        1 / 6,
    )
    shutil.rmtree(root.parent.parent.parent / "cache")  # a fresh machine: resume reads the summary again
    code, out, err = studio(capsys, "resume", run.name)
    assert code == 2 and err == (
        f"studio: run {run.name} is done; only a stopped, failed or died run can be resumed\n"
    )
    assert "pid" not in json.loads((run / "run.json").read_text())  # no worker was started


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff\xfe garbage",
        b"[]",
        b'{"version": [1, 1], "offset": "x"}',
        b'{"version": [1, 1], "offs',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["binary", "array", "wrong-type", "cut-off", "nested-too-deep"],
)
def test_a_garbage_summary_is_dropped_and_the_run_lists_from_its_events(root: Path, garbage: bytes) -> None:
    from lorastudio.train.run.summaries import RUN_SUMMARY_FILE

    run = written_run(root, "e-written-20260922-130000", final="stopped")
    (run / RUN_SUMMARY_FILE).write_bytes(garbage)
    summary = {r.name: r for r in runs.list_runs(root)}[run.name]
    assert (summary.status, summary.step, summary.last_loss) == ("stopped", 6, 1 / 6)


# -- strict JSON ------------------------------------------------------------------------------------
def non_finite_runs(folder: Path) -> tuple[Path, Path]:
    """Two runs whose events hold NaN and infinities (Python's json writes and reads them)."""
    a = write_run(folder, "inf-a-20260922-140000", created=T0 + 9000, steps=4, eval_every=2)
    b = write_run(folder, "inf-b-20260922-150000", created=T0 + 9900, steps=4, lr=0.001)
    for run in (a, b):
        with (run / EVENTS_FILE).open("a") as handle:
            for event in (
                {"kind": "metrics", "step": 4, "max_steps": 4, "loss": math.inf, "tokens_per_s": math.nan},
                {"kind": "eval", "step": 4, "eval_loss": math.nan},
                {"kind": "method_metrics", "step": 4, "values": {"reward": -math.inf, "kl": math.nan}},
                {"kind": "telemetry", "gpus": [], "rss_mb": math.inf},
                {
                    "kind": "sample",
                    "step": 4,
                    "at": "end",
                    "prompts": ["p"],
                    "replies": ["r"],
                    "seconds": math.nan,
                },
                {"kind": "status", "status": "done"},
            ):
                handle.write(json.dumps({"v": 1, "t": T0 + 9999, **event}) + "\n")
    assert "Infinity" in (a / EVENTS_FILE).read_text()
    return a, b


def test_every_json_output_of_a_run_with_non_finite_figures_is_strict(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = non_finite_runs(root)
    code, out, _ = studio(capsys, "runs", "--json")
    listed = {r["name"]: r for r in strict_loads(out)}
    assert (listed[a.name]["status"], listed[a.name]["last_loss"], listed[a.name]["last_reward"]) == (
        "done",
        None,
        None,
    )
    code, out, _ = studio(capsys, "runs", "compare", a.name, b.name, "--json")
    compared = strict_loads(out)["runs"]
    assert [r["final_loss"] for r in compared] == [None, None] and compared[0]["peak_rss_mb"] is None
    code, out, _ = studio(capsys, "runs", "samples", a.name, "--json")
    assert strict_loads(out)["rounds"][-1]["seconds"] is None


def test_studio_runs_json_across_processes_lists_every_damage_and_is_strict(root: Path) -> None:
    """The whole table at once, as a script sees it: one process, every damage, no traceback."""
    damaged = []
    for i, (name, (do, _)) in enumerate(DAMAGES.items()):
        run = write_run(root, f"damaged-{i:02d}", created=T0 + 20_000 + i)
        do(run)
        damaged.append((run.name, name))
    non_finite_runs(root)
    done = subprocess.run(
        [STUDIO_BIN, "runs", "--json"], capture_output=True, text=True, env=os.environ, timeout=120
    )
    assert done.returncode == 0 and not done.stderr
    listed = {r["name"]: r for r in strict_loads(done.stdout)}
    for run_name, damage in damaged:
        reason = DAMAGES[damage][1].replace(MIDDLE, run_name)
        assert listed[run_name]["status"] == "damaged" and reason in listed[run_name]["cause"], damage
    assert listed[OLDEST]["status"] == "done" and listed["inf-a-20260922-140000"]["status"] == "done"


def test_mcp_answers_are_strict_json(root: Path) -> None:
    """The server's own bytes, read as jq would: list_runs, run_status, compare_runs and samples over a run
    that logged NaN and infinities, and a damaged one."""
    pytest.importorskip("mcp")
    a, b = non_finite_runs(root)
    _insert_line("[1]")(root / MIDDLE)
    calls = [
        ("list_runs", {}),
        ("run_status", {"run": a.name}),
        ("compare_runs", {"runs": [a.name, b.name]}),
        ("samples", {"run": a.name}),
        ("samples", {"run": MIDDLE}),
    ]
    requests: list[dict[str, Any]] = [
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ]
    requests += [
        {
            "jsonrpc": "2.0",
            "id": i + 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        }
        for i, (name, arguments) in enumerate(calls)
    ]
    server = subprocess.Popen(
        [STUDIO_BIN, "mcp", "--read-only"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=os.environ,
        text=True,
    )
    answers: dict[int, Any] = {}
    try:
        assert server.stdin is not None and server.stdout is not None
        for request in requests:
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            if "id" not in request:
                continue
            while request["id"] not in answers:
                line = server.stdout.readline()
                assert line, "the server closed its output"
                message = strict_loads(line)  # every byte the server writes
                if "id" in message:
                    answers[message["id"]] = message["result"]
    finally:
        server.kill()
        server.wait()
    for i, (name, _) in enumerate(calls[:4]):
        result = answers[i + 1]
        assert not result.get("isError"), (name, result)
        for block in result["content"]:
            strict_loads(block["text"])  # the answer's text is JSON too
    status = strict_loads(answers[2]["content"][0]["text"])
    assert (status["status"], status["loss"], status["memory"]["peak_rss_mb"]) == ("done", None, None)
    refused = answers[5]
    assert refused["isError"] and refused["content"][0]["text"].startswith(
        f"run {MIDDLE} is damaged: events.jsonl"
    )


# -- the screens ------------------------------------------------------------------------------------
async def test_runs_screen_shows_a_damaged_run_and_its_reason_below_the_table(root: Path) -> None:
    from textual.widgets import DataTable, Static

    from lorastudio.app import StudioApp
    from lorastudio.screens.runs import RunsScreen

    DAMAGES["run.json wrong types"][0](root / MIDDLE)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(RunsScreen())
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await wait_until(pilot, lambda: screen.loaded)
        table = screen.query_one(DataTable)
        assert str(table.get_cell(MIDDLE, "status")) == "damaged"
        assert str(table.get_cell(OLDEST, "status")) == "done"
        table.move_cursor(row=[r.summary.name for r in screen.rows].index(MIDDLE))
        await pilot.pause()
        detail = str(screen.query_one("#run-detail", Static).render())
        assert 'run.json: recipe is 7, not text; created is "yesterday", not a time in seconds' in detail


@pytest.mark.parametrize("damage", ["events.jsonl a folder", "run.json binary", "events.jsonl binary"])
async def test_the_monitor_attached_to_a_damaged_run_says_so(root: Path, damage: str) -> None:
    from textual.widgets import Label

    from lorastudio.app import StudioApp
    from lorastudio.screens.monitor import MonitorScreen

    DAMAGES[damage][0](root / MIDDLE)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(MonitorScreen(root / MIDDLE))
        screen = app.screen
        assert isinstance(screen, MonitorScreen)
        await wait_until(pilot, lambda: screen.snapshot is not None)
        await pilot.pause()
        line = str(screen.query_one("#status-line", Label).render())
        assert line.startswith("status: damaged — ") and DAMAGES[damage][1] in line


def test_a_damaged_member_of_a_sweep_is_listed_unranked_and_the_others_ranked(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for index, name in enumerate((OLDEST, MIDDLE, NEWEST)):
        runs.update_meta(
            root / name,
            sweep={"name": "lr", "index": index, "of": 3, "fields": {"train.learning_rate": index}},
        )
    DAMAGES["events.jsonl a line that is no object"][0](root / OLDEST)
    code, out, err = studio(capsys, "runs", "compare", "--sweep", "lr", "--json")
    assert code == 0, err
    ranking = strict_loads(out)
    assert [(r["name"], r["rank"], r["status"]) for r in ranking["runs"]] == [
        (MIDDLE, 1, "done"),  # ranked by eval loss: the only one that evaluated
        (OLDEST, None, "damaged"),
        (NEWEST, None, "stopped"),
    ]
