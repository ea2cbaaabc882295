"""The chart widget: labelled axes and values, log scale, smoothing, windows, incremental data."""

from __future__ import annotations

import io
import math
import time

import pytest
from rich.console import Console
from textual.app import App, ComposeResult

from lorastudio.widgets.chart import MAX_BUCKETS, LineChart, SeriesStore, ema, format_value


def plain(chart: LineChart) -> str:
    console = Console(width=chart.size.width, file=io.StringIO(), record=True, color_system=None)
    console.print(chart.render())
    return console.export_text()


class ChartApp(App[None]):
    def compose(self) -> ComposeResult:
        chart = LineChart("loss", id="chart")
        chart.add_series("train", "cyan", smooth=True).add_series("eval", "magenta", kind="points")
        yield chart


async def test_axes_are_labelled_with_values() -> None:
    app = ChartApp()
    async with app.run_test(size=(60, 14)) as pilot:
        chart = app.query_one(LineChart)
        assert "waiting for data" in plain(chart)
        chart.smoothing = 0.0
        chart.extend("train", [(step, 4.0 - step / 50) for step in range(1, 101)])  # 3.98 down to 2.0
        chart.extend("eval", [(50.0, 3.1), (100.0, 2.5)])
        await pilot.pause()
        lines = plain(chart).splitlines()
        assert lines[0].startswith("loss")
        assert "━train 2.000" in lines[0]
        assert "●eval 2.500" in lines[0]
        # y labels: the top row carries the maximum, the bottom plot row the minimum, with tick marks
        assert lines[1].split("┤")[0].strip() == "3.980"
        plot = [line for line in lines[1:] if "┤" in line or "│" in line]
        assert plot[-1].split("┤")[0].strip() == "2.000"
        # x axis: ticks and step labels at both ends and the middle, named "step"
        assert "└┬" in lines[-2]
        assert lines[-2].endswith("┬")
        x_labels = lines[-1].split()
        assert x_labels[0] == "step"
        assert x_labels[1] == "1"
        assert x_labels[-1] == "100"
        assert len(x_labels) == 4
        # the line is drawn: braille cells in the plot, falling from top-left to bottom-right
        assert any("\u2800" < ch <= "\u28ff" for ch in plot[0].split("┤", 1)[1][:5])
        assert any("\u2800" < ch <= "\u28ff" for ch in plot[-1].split("┤", 1)[1][-5:])
        assert sum(line.count("●") for line in plot) == 2


async def test_log_scale_labels_powers_and_drops_non_positive() -> None:
    app = ChartApp()
    async with app.run_test(size=(60, 14)) as pilot:
        chart = app.query_one(LineChart)
        chart.smoothing = 0.0
        chart.extend("train", [(step, 10.0 ** (-step / 25)) for step in range(0, 101)])  # 1 down to 1e-4
        await pilot.pause()
        linear = plain(chart).splitlines()
        chart.log_scale = True
        await pilot.pause()
        logged = plain(chart).splitlines()
        assert "[log raw]" in logged[0]
        assert "log" not in linear[0]
        labels = [line.split("┤")[0].strip() for line in logged[1:] if "┤" in line]
        assert labels[0] == "1.000"
        assert labels[-1] == "1.0e-04"
        assert "0.01" in labels  # the middle of a log axis is the geometric mean

        # On log axes the curve is a straight diagonal, so the middle plot row has its dots near the middle
        # column; on linear axes it hugs the bottom, so that row has them near the left.
        def middle_dots(lines: list[str]) -> float:
            plot = [line for line in lines[1:] if "┤" in line or "│" in line]
            row = plot[(len(plot) - 1) // 2][len(plot[0].split("┤")[0]) + 1 :]
            dots = [i / len(row) for i, ch in enumerate(row) if "\u2800" < ch <= "\u28ff"]
            return sum(dots) / len(dots)

        assert 0.3 < middle_dots(logged) < 0.7
        assert middle_dots(linear) < 0.15
        chart.extend("train", [(101.0, 0.0), (102.0, -1.0)])  # no log of these: skipped, not a crash
        await pilot.pause()
        assert "loss" in plain(chart)


async def test_smoothing_draws_an_ema_over_the_raw_line() -> None:
    app = ChartApp()
    async with app.run_test(size=(60, 14)) as pilot:
        chart = app.query_one(LineChart)
        noisy = [(float(step), 2.0 + (1.0 if step % 2 else -1.0)) for step in range(1, 201)]
        chart.extend("train", noisy[:120])
        chart.extend("train", noisy[120:])  # incremental extension continues the same EMA
        series = chart.series["train"]
        assert series.smoothed.ys == pytest.approx(ema([y for _, y in noisy], 0.6))
        assert abs(series.smoothed.ys[-1] - 2.0) < 0.3
        await pilot.pause()
        head = plain(chart).splitlines()[0]
        assert "─raw 1.000" in head
        assert "━ema" in head
        assert "[ema 0.6]" in head
        chart.smoothing = 0.9
        assert series.smoothed.ys == pytest.approx(ema([y for _, y in noisy], 0.9))
        chart.smoothing = 0.0
        await pilot.pause()
        assert "[raw]" in plain(chart).splitlines()[0]


async def test_window_shows_only_the_last_steps() -> None:
    app = ChartApp()
    async with app.run_test(size=(60, 14)) as pilot:
        chart = app.query_one(LineChart)
        chart.extend("train", [(float(step), 1.0 / step) for step in range(1, 1001)])
        chart.window = 100
        await pilot.pause()
        lines = plain(chart).splitlines()
        assert "last 100" in lines[0]
        assert lines[-1].split()[1] == "900"
        assert lines[-1].split()[-1] == "1000"


def test_store_stays_bounded_and_replaces_a_resumed_tail() -> None:
    store = SeriesStore()
    store.extend((float(i), math.sin(i)) for i in range(100_000))
    whole = store.columns(None, budget=200)
    assert len(whole) <= MAX_BUCKETS
    assert min(lo for _, lo, _, _ in whole) == pytest.approx(min(store.ys))
    assert max(hi for _, _, hi, _ in whole) == pytest.approx(max(store.ys))
    assert len(store.columns(99_000.0, budget=200)) <= 200
    store.extend([(50_000.0, 9.0)])  # a resumed run logs again from its checkpoint's step
    assert len(store) == 50_001
    assert store.last() == 9.0
    assert store.xs[-2] == 49_999.0


async def test_redraw_cost_does_not_grow_with_the_run() -> None:
    app = ChartApp()
    async with app.run_test(size=(100, 30)) as pilot:
        chart = app.query_one(LineChart)
        chart.extend("train", [(float(s), 1.0 / s) for s in range(1, 1001)])
        await pilot.pause()
        started = time.perf_counter()
        for _ in range(20):
            chart.render()
        short = time.perf_counter() - started
        chart.extend("train", [(float(s), 1.0 / s) for s in range(1001, 200_001)])
        started = time.perf_counter()
        for _ in range(20):
            chart.render()
        long = time.perf_counter() - started
        assert long < short * 3 + 0.05


def test_format_value() -> None:
    assert format_value(0.0002) == "2.0e-04"
    assert format_value(1234.5) == "1234" or format_value(1234.5) == "1235"
    assert format_value(1.23456) == "1.235"
    assert format_value(0.5) == "0.5"
    assert format_value(0) == "0"
