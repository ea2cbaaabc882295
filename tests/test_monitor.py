"""The Monitor: chart keys, layout at 80x24 and 200x50, the log box, eval loss and the finished-run summary."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import wait_until
from test_tui import screen_text, text_of, write_recorded_run

from lorastudio.app import StudioApp
from lorastudio.screens.monitor import CHARTS, MonitorScreen
from lorastudio.widgets.chart import LineChart


def add_eval_and_logs(run: Path) -> Path:
    """The recorded run plus what a run with eval data logs: eval events, best checkpoint, log messages."""
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    t0 = events[0]["t"]
    extra = [
        {"v": 1, "t": t0 + 0.5, "kind": "log", "message": "209 training samples (dolly), 16 eval samples"},
        {"v": 1, "t": t0 + 0.6, "kind": "log", "level": "warning", "message": "UserWarning: padding side"},
        {"v": 1, "t": t0 + 3.0, "kind": "eval", "step": 6, "eval_loss": 4.5},
        {
            "v": 1,
            "t": t0 + 3.1,
            "kind": "checkpoint",
            "step": 6,
            "best_checkpoint": "checkpoints/checkpoint-6",
            "best_eval_loss": 4.5,
        },
        {"v": 1, "t": t0 + 5.9, "kind": "eval", "step": 12, "eval_loss": 4.75},
        {
            "v": 1,
            "t": t0 + 5.95,
            "kind": "checkpoint",
            "step": 12,
            "best_checkpoint": "checkpoints/checkpoint-6",
            "best_eval_loss": 4.5,
        },
    ]
    merged = sorted(events + extra, key=lambda e: e["t"])
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in merged))
    return run


@pytest.fixture
def eval_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    return add_eval_and_logs(write_recorded_run(tmp_path / "data" / "studio" / "runs"))


async def open_monitor(app: StudioApp, pilot, run: Path) -> MonitorScreen:
    await app.push_screen(MonitorScreen(run))
    screen = app.screen
    assert isinstance(screen, MonitorScreen)
    await wait_until(pilot, lambda: screen.snapshot is not None and screen.snapshot.state.finished)
    await pilot.pause()
    return screen


async def test_eval_loss_log_box_and_summary(eval_run: Path) -> None:
    from textual.widgets import Log

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_monitor(app, pilot, eval_run)
        loss = screen.query_one("#chart-loss", LineChart)
        assert loss.series["eval"].store.ys == [4.5, 4.75] and len(loss.series["train"].store) == 12
        assert "●eval 4.750" in text_of_chart(loss)
        log = "\n".join(str(line) for line in screen.query_one(Log).lines)
        assert "209 training samples (dolly), 16 eval samples" in log
        assert "warning: UserWarning: padding side" in log and "status done" in log
        assert "eval loss 4.5000 at step 6" in log
        summary = text_of(screen.query_one("#summary-line"))
        assert "final loss 2.1074" in summary and "eval 4.7500 (best 4.5000 @ checkpoint-6)" in summary
        assert "3,360 tokens" in summary and "peak RSS 612 MiB" in summary and "tok/s" in summary
        assert "eval loss 4.7500" in screen_text(app)


def text_of_chart(chart: LineChart) -> str:
    import io

    from rich.console import Console

    console = Console(width=chart.size.width, file=io.StringIO(), record=True, color_system=None)
    console.print(chart.render())
    return console.export_text()


async def test_chart_keys_with_no_pauses(eval_run: Path) -> None:
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_monitor(app, pilot, eval_run)
        charts = {key: screen.query_one(f"#chart-{key}", LineChart) for key, _, _ in CHARTS}
        assert [k for k, c in charts.items() if c.display] == ["loss"]
        await pilot.press("l", "z", "w", "m", "m", "l", "3")
        assert charts["loss"].log_scale and not charts["lr"].log_scale and charts["grad"].log_scale
        assert all(c.smoothing == 0.8 for c in charts.values())
        assert charts["loss"].window == 500 and charts["memory"].window is None
        assert screen.selected == 2 and [k for k, c in charts.items() if c.display] == ["grad"]
        await pilot.press("1", "w", "w", "z", "z", "z", "z")
        assert charts["loss"].window is None and charts["loss"].smoothing == 0.0
        await pilot.pause()
        assert "[log raw]" in text_of_chart(charts["loss"]).splitlines()[0]
        assert "grad" in text_of(screen.query_one("#chart-tabs"))


GPU_TELEMETRY = {
    "v": 1,
    "kind": "telemetry",
    "gpus": [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "memory_used_mb": 30_000.0,
            "memory_total_mb": 81_559.0,
            "process_memory_mb": 29_000.0,
            "utilization_pct": 97.0,
            "temperature_c": 71.0,
            "power_w": 612.0,
        }
    ],
    "gpu_note": None,
    "torch_peak_reserved_mb": 31_000.0,
    "rss_mb": 3000.0,
    "cpu_pct": 99.0,
    "host_ram_used_mb": 40_000.0,
    "host_ram_total_mb": 128_000.0,
}


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
async def test_80x24_shows_the_whole_right_panel_and_a_labelled_chart(eval_run: Path, gpu: bool) -> None:
    if gpu:
        lines = (eval_run / "events.jsonl").read_text().splitlines()
        t = json.loads(lines[-3])["t"]
        lines.insert(-2, json.dumps({**GPU_TELEMETRY, "t": t}))
        (eval_run / "events.jsonl").write_text("\n".join(lines) + "\n")
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_monitor(app, pilot, eval_run)
        for widget_id in ("#metrics", "#gpu", "#monitor-right", "#chart-loss", "#log-tail"):
            region = screen.query_one(widget_id).region
            assert region.bottom <= 23 and region.right <= 80, widget_id  # row 23 is the footer
        panel = screen.query_one("#gpu")
        assert "worker RSS" in text_of(panel) and "worker CPU" in text_of(panel)
        assert panel.region.height >= len(text_of(panel).rstrip("\n").splitlines())
        assert screen.query_one("#metrics").region.height >= 8
        if gpu:
            assert "H100" in text_of(panel) and "31000 MiB" in text_of(panel) and "97 %" in text_of(panel)
            assert "peak VRAM 31,000 MiB" in text_of(screen.query_one("#summary-line"))
        chart = text_of_chart(screen.query_one("#chart-loss", LineChart)).splitlines()
        assert "┤" in chart[1] and chart[-1].split()[0] == "step" and chart[-1].split()[-1] == "12"


async def test_wide_terminal_shows_every_chart(eval_run: Path) -> None:
    app = StudioApp()
    async with app.run_test(size=(200, 50)) as pilot:
        screen = await open_monitor(app, pilot, eval_run)
        assert screen.has_class("-wide")
        charts = [screen.query_one(f"#chart-{key}", LineChart) for key, _, _ in CHARTS]
        assert all(c.display and c.region.height >= 12 and c.region.width >= 40 for c in charts)
        assert "sec" in text_of_chart(charts[-1]).splitlines()[-1]


def test_worker_cpu_is_measured_between_readings() -> None:
    from lorastudio.train.trainer.telemetry import host_sample

    host_sample(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    cpu_pct = host_sample(os.getpid())["cpu_pct"]
    assert cpu_pct is not None and cpu_pct > 0  # a fresh psutil.Process per reading always says 0.0


def test_worker_warnings_become_log_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging
    import warnings

    from lorastudio.train.run.eventlog import EventWriter, read_all
    from lorastudio.train.trainer.logcapture import LIBRARY_LOGGERS, capture_warnings

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    writer = EventWriter(tmp_path / "events.jsonl")
    before = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).level)
        for name in LIBRARY_LOGGERS
    }
    logging.getLogger("peft").setLevel(logging.ERROR)  # as quiet_libraries() leaves it in the worker
    try:
        capture_warnings(writer)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            for _ in range(3):  # the same warning every step is written once
                warnings.warn("padding side is right", UserWarning, stacklevel=1)
        logging.getLogger("peft").warning("target module not found: %s", "q_proj")
    finally:
        for name, (handlers, level) in before.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).setLevel(level)
        writer.close()
    events = [e for e in read_all(tmp_path / "events.jsonl") if e["kind"] == "log"]
    assert [(e["level"], e["message"]) for e in events] == [
        ("warning", "UserWarning: padding side is right"),
        ("warning", "peft: target module not found: q_proj"),
    ]
