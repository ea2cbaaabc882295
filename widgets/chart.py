"""One line-chart widget for every metric: braille lines on labelled axes, with values.

Why drawn here and not with textual-plotext: its last release (1.0.1) pins ``plotext<6``
and predates Textual 1.0 (we run Textual 8), and plotext redraws a figure from every
point on each refresh. This widget keeps each series in a :class:`SeriesStore` that
appends in O(1) and holds a fixed-size decimated copy, so drawing the whole of a
100k-step run costs the same as drawing a short one.

Each series is a line (optionally drawn raw and faint with an exponential moving
average over it, as TensorBoard does) or a set of points (eval loss). The chart has
three view settings, changed by the screen that holds it: ``log_scale``, ``smoothing``
(the EMA weight, 0 for none) and ``window`` (show only the last N units of x, or all).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import groupby

from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

SMOOTHING_STEPS = (0.0, 0.6, 0.8, 0.9, 0.95, 0.99)
"""EMA weights that the smoothing key cycles through (TensorBoard's slider, in steps)."""
WINDOWS = (None, 500, 100)
"""Views the window key cycles through: the whole run, then the last N steps."""
MAX_BUCKETS = 512

Point = tuple[float, float]
# One drawable column of data: x, the lowest and highest y it covers, and its last y.
Column = tuple[float, float, float, float]

# Braille dot bits by (pixel column in cell, pixel row in cell).
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
# _SPANS[side][first][last]: the bits of the dots from row ``first`` to row ``last`` of one side of a cell.
_SPANS = tuple(
    tuple(tuple(sum(_DOTS[side][first : last + 1]) for last in range(4)) for first in range(4))
    for side in range(2)
)


def format_value(value: float) -> str:
    """A short axis/legend number: 0.000123 -> 1.2e-04, 1234.5 -> 1234, 1.23456 -> 1.235."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    size = abs(value)
    if size >= 1e5 or size < 1e-3:
        return f"{value:.1e}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.4g}" if size < 1 else f"{value:.3f}"


def ema(values: Iterable[float], weight: float) -> list[float]:
    """Debiased exponential moving average (TensorBoard's smoothing); ``weight`` 0 returns the values."""
    out: list[float] = []
    last = 0.0
    for n, v in enumerate(values, 1):
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight**n) if weight else v)
    return out


class SeriesStore:
    """The points of one series (x ascending), appended incrementally, plus a decimated copy.

    The copy holds at most ``max_buckets`` buckets of ``span`` consecutive points each (min, max,
    last); when it fills, neighbours merge and ``span`` doubles, so appending stays O(1) and a
    whole-run view never touches every point.
    """

    def __init__(self, max_buckets: int = MAX_BUCKETS) -> None:
        self.max_buckets = max_buckets
        self.xs: list[float] = []
        self.ys: list[float] = []
        self._buckets: list[list[float]] = []  # [x, lo, hi, last, count]
        self._span = 1

    def __len__(self) -> int:
        return len(self.xs)

    def clear(self) -> None:
        self.xs, self.ys, self._buckets, self._span = [], [], [], 1

    def extend(self, points: Iterable[Point]) -> None:
        for x, y in points:
            if not math.isfinite(y):
                continue
            if self.xs and x <= self.xs[-1]:
                # A resumed run logs again from its checkpoint's step: the new points replace the old.
                keep = bisect_left(self.xs, x)
                xs, ys = self.xs[:keep], self.ys[:keep]
                self.clear()
                self._append_all(zip(xs, ys, strict=False))
            self._append(x, y)

    def _append_all(self, points: Iterable[Point]) -> None:
        for x, y in points:
            self._append(x, y)

    def _append(self, x: float, y: float) -> None:
        self.xs.append(x)
        self.ys.append(y)
        last = self._buckets[-1] if self._buckets else None
        if last is not None and last[4] < self._span:
            last[1], last[2], last[3] = min(last[1], y), max(last[2], y), y
            last[4] += 1
            return
        self._buckets.append([x, y, y, y, 1])
        if len(self._buckets) > self.max_buckets:
            merged = []
            for i in range(0, len(self._buckets) - 1, 2):
                a, b = self._buckets[i], self._buckets[i + 1]
                merged.append([a[0], min(a[1], b[1]), max(a[2], b[2]), b[3], a[4] + b[4]])
            if len(self._buckets) % 2:
                merged.append(self._buckets[-1])
            self._buckets = merged
            self._span *= 2

    def columns(self, x_from: float | None = None, budget: int = MAX_BUCKETS) -> list[Column]:
        """What to draw for x >= ``x_from``: at most about ``budget`` columns."""
        start = 0 if x_from is None else bisect_left(self.xs, x_from)
        count = len(self.xs) - start
        if count <= budget:
            return [(x, y, y, y) for x, y in zip(self.xs[start:], self.ys[start:], strict=False)]
        if start == 0:
            return [(b[0], b[1], b[2], b[3]) for b in self._buckets]
        step = math.ceil(count / budget)
        out = []
        for i in range(start, len(self.xs), step):
            chunk = self.ys[i : i + step]
            out.append((self.xs[i], min(chunk), max(chunk), chunk[-1]))
        return out

    def last(self) -> float | None:
        return self.ys[-1] if self.ys else None


@dataclass
class Series:
    """One named series of a chart and how it is drawn."""

    name: str
    color: str
    kind: str = "line"
    """``line`` or ``points`` (markers, e.g. eval loss)."""
    smooth: bool = False
    """Draw the raw line faint and its moving average over it."""
    store: SeriesStore = field(default_factory=SeriesStore)
    smoothed: SeriesStore = field(default_factory=SeriesStore)


WAITING = "waiting for data…"
"""What an empty chart says while its run may still log to it."""


class LineChart(Widget):
    """A line chart with a title and legend row, a labelled y axis and a labelled x axis."""

    DEFAULT_CSS = """
    LineChart {
        height: 1fr;
        min-height: 6;
        width: 1fr;
    }
    """

    log_scale: reactive[bool] = reactive(False)
    smoothing: reactive[float] = reactive(0.6)
    window: reactive[int | None] = reactive(None)
    empty: reactive[str] = reactive(WAITING)
    """What an empty chart says: the Monitor says why when nothing will come (a finished run, GRPO's KL at
    ``grpo.beta`` 0)."""

    def __init__(
        self,
        title: str,
        *,
        x_label: str = "step",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.title = title
        self.x_label = x_label
        self.series: dict[str, Series] = {}

    # -- data -----------------------------------------------------------------------------------
    def add_series(self, name: str, color: str, kind: str = "line", smooth: bool = False) -> LineChart:
        self.series[name] = Series(name, color, kind, smooth)
        return self

    def extend(self, name: str, points: Iterable[Point]) -> None:
        """Append new points (x ascending) to a series; cheap, and refreshes once."""
        series = self.series[name]
        points = list(points)
        if not points:
            return
        before = len(series.store)
        series.store.extend(points)
        if series.smooth:
            if len(series.store) == before + len(points) and len(series.smoothed) == before:
                self._extend_smoothed(series, before)
            else:
                self._rebuild_smoothed(series)
        self.refresh()

    def _extend_smoothed(self, series: Series, start: int) -> None:
        # Continue the debiased EMA from where it stopped: it needs the undebiased running value.
        weight = self.smoothing
        store, out = series.store, series.smoothed
        n = start
        last = (out.ys[-1] * (1 - weight**n)) if (n and weight) else 0.0
        for x, y in zip(store.xs[start:], store.ys[start:], strict=False):
            n += 1
            last = last * weight + (1 - weight) * y
            out.extend([(x, last / (1 - weight**n) if weight else y)])

    def _rebuild_smoothed(self, series: Series) -> None:
        series.smoothed.clear()
        series.smoothed.extend(zip(series.store.xs, ema(series.store.ys, self.smoothing), strict=False))

    def watch_smoothing(self) -> None:
        for series in self.series.values():
            if series.smooth:
                self._rebuild_smoothed(series)
        self.refresh()

    def watch_log_scale(self) -> None:
        self.refresh()

    def watch_window(self) -> None:
        self.refresh()

    # -- drawing --------------------------------------------------------------------------------
    def legend(self, compact: bool = False) -> Text:
        """Title, each series' latest value, and the view settings that differ from the plain view.

        ``compact`` leaves out the raw value under a smoothed line (for narrow charts)."""
        text = Text(self.title, style="bold")
        for series in self.series.values():
            value = series.store.last()
            if value is None:
                continue
            shown = format_value(value)
            if series.kind == "points":
                text.append(" ●", style=series.color)
                text.append(f"{series.name} {shown}")
            elif series.smooth and self.smoothing:
                smoothed = series.smoothed.last()
                if not compact:
                    text.append(" ─", style=Style(color=series.color, dim=True))
                    text.append(f"raw {shown}")
                text.append(" ━", style=series.color)
                text.append(f"ema {format_value(smoothed) if smoothed is not None else '-'}")
            else:
                text.append(" ━", style=series.color)
                text.append(f"{series.name} {shown}" if len(self.series) > 1 else shown)
        flags = ["log"] if self.log_scale else []
        if self.window:
            flags.append(f"last {self.window}")
        if any(s.smooth for s in self.series.values()):
            flags.append(f"ema {self.smoothing:g}" if self.smoothing else "raw")
        if flags:
            text.append(f" [{' '.join(flags)}]", style="dim")
        return text

    def _layers(self, x_from: float | None, budget: int) -> list[tuple[str, str, list[Column]]]:
        """(kind, style, columns) to draw, bottom layer first."""
        layers = []
        for series in self.series.values():
            if series.kind == "points":
                layers.append(("points", series.color, series.store.columns(x_from, budget)))
            elif series.smooth and self.smoothing:
                layers.append(("line", f"dim {series.color}", series.store.columns(x_from, budget)))
                layers.append(("line", series.color, series.smoothed.columns(x_from, budget)))
            else:
                layers.append(("line", series.color, series.store.columns(x_from, budget)))
        return layers

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        out = self.legend()
        if out.cell_len > width:
            out = self.legend(compact=True)
        out.truncate(max(width, 1))
        x_last = max((s.store.xs[-1] for s in self.series.values() if s.store.xs), default=None)
        if x_last is None:
            out.append("\n")
            out.append(self.empty, style="dim")
            return out
        x_from = x_last - self.window if self.window else None
        layers = self._layers(x_from, max(width * 2, 16))
        transform = (lambda v: math.log10(v) if v > 0 else None) if self.log_scale else (lambda v: v)
        xs: list[float] = []
        ys: list[float] = []
        for _, _, columns in layers:
            for x, lo, hi, _last in columns:
                xs.append(x)
                for v in (lo, hi):
                    t = transform(v)
                    if t is not None:
                        ys.append(t)
        plot_rows = height - 3  # legend, axis line, x labels
        if not ys or plot_rows < 2:
            return out
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys), max(ys)
        if y1 - y0 < 1e-12:
            pad = abs(y0) * 0.05 or 0.5
            y0, y1 = y0 - pad, y1 + pad

        def label_value(t: float) -> str:
            return format_value(10**t if self.log_scale else t)

        label_rows = sorted(
            {0, plot_rows - 1}
            | ({(plot_rows - 1) // 2} if plot_rows >= 5 else set())
            | ({(plot_rows - 1) // 4, 3 * (plot_rows - 1) // 4} if plot_rows >= 12 else set())
        )
        labels = {r: label_value(y1 - (y1 - y0) * r / (plot_rows - 1)) for r in label_rows}
        label_width = max(len(v) for v in labels.values())
        label_width = max(label_width, min(len(self.x_label), 6))
        plot_cols = width - label_width - 1
        if plot_cols < 4:
            return out
        px, py = plot_cols * 2, plot_rows * 4
        sx = (px - 1) / (x1 - x0) if x1 > x0 else 0.0
        sy = (py - 1) / (y1 - y0)

        def to_px(x: float) -> int:
            return round((x - x0) * sx) if sx else (px - 1) // 2

        def to_py(v: float) -> int | None:
            t = transform(v)
            return None if t is None else round((y1 - t) * sy)

        size = plot_cols * plot_rows
        chars = [" "] * size
        styles = [""] * size
        for kind, style, columns in layers:
            if kind == "points":
                for x, _lo, _hi, last in columns:
                    cx, cy = to_px(x), to_py(last)
                    if cy is not None and 0 <= cx < px and 0 <= cy < py:
                        index = (cy >> 2) * plot_cols + (cx >> 1)
                        chars[index], styles[index] = "●", style
                continue
            bits = bytearray(size)
            touched: set[int] = set()

            def dot(x: int, y: int, bits: bytearray = bits, touched: set[int] = touched) -> None:
                if 0 <= x < px and 0 <= y < py:
                    index = (y >> 2) * plot_cols + (x >> 1)
                    bits[index] |= _DOTS[x & 1][y & 3]
                    touched.add(index)

            def span(
                x: int, top: int, bottom: int, bits: bytearray = bits, touched: set[int] = touched
            ) -> None:
                # A vertical run of dots, one cell at a time: a noisy whole-run view is mostly these.
                if not 0 <= x < px:
                    return
                top, bottom = max(top, 0), min(bottom, py - 1)
                side = _SPANS[x & 1]
                for row in range(top >> 2, (bottom >> 2) + 1):
                    first, last_row = max(top - row * 4, 0), min(bottom - row * 4, 3)
                    index = row * plot_cols + (x >> 1)
                    bits[index] |= side[first][last_row]
                    touched.add(index)

            # One entry per pixel column (min, max, last), then a vertical span per column joined to the last.
            per_pixel: dict[int, list[float]] = {}
            for x, lo, hi, last in columns:
                cx = to_px(x)
                entry = per_pixel.get(cx)
                if entry is None:
                    per_pixel[cx] = [lo, hi, last]
                else:
                    entry[0], entry[1], entry[2] = min(entry[0], lo), max(entry[1], hi), last
            prev: tuple[int, int] | None = None
            for cx, (lo, hi, last) in per_pixel.items():
                top, bottom, end = to_py(hi), to_py(lo), to_py(last)
                if top is None or bottom is None or end is None:
                    prev = None
                    continue
                if prev is not None and cx - prev[0] <= 1:
                    top, bottom = min(top, prev[1]), max(bottom, prev[1])
                elif prev is not None:
                    _line(prev[0], prev[1], cx, min(max(prev[1], top), bottom), dot)
                span(cx, top, bottom)
                prev = (cx, end)
            for index in touched:
                chars[index], styles[index] = chr(0x2800 + bits[index]), style

        for row in range(plot_rows):
            out.append("\n")
            out.append(labels.get(row, "").rjust(label_width), style="dim")
            out.append("┤" if row in labels else "│", style="dim")
            base = row * plot_cols
            row_styles = styles[base : base + plot_cols]
            col = 0
            for style, group in groupby(row_styles):
                width_run = len(list(group))
                out.append("".join(chars[base + col : base + col + width_run]), style=style or None)
                col += width_run
        # The x axis: ticks at both ends and the middle, labelled with the x values there.
        ticks = {0: x0, plot_cols - 1: x1}
        if plot_cols >= 24:
            ticks[(plot_cols - 1) // 2] = x0 + (x1 - x0) * ((plot_cols - 1) // 2 * 2) / max(px - 1, 1)
        axis = "".join("┬" if c in ticks else "─" for c in range(plot_cols))
        out.append("\n")
        out.append(" " * label_width + "└" + axis, style="dim")
        tick_row = [" "] * plot_cols
        for col, value in sorted(ticks.items()):
            text = str(round(value)) if abs(value) >= 1 and abs(value) < 1e6 else format_value(value)
            start = (
                0 if col == 0 else (plot_cols - len(text) if col == plot_cols - 1 else col - len(text) // 2)
            )
            start = max(0, min(start, plot_cols - len(text)))
            if all(ch == " " for ch in tick_row[max(0, start - 1) : start + len(text) + 1]):
                tick_row[start : start + len(text)] = list(text)
        out.append("\n")
        out.append(self.x_label[:label_width].rjust(label_width) + " ", style="dim italic")
        out.append("".join(tick_row), style="dim")
        return out


def _line(x0: int, y0: int, x1: int, y1: int, dot) -> None:
    """Bresenham from (x0, y0) to (x1, y1)."""
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx = 1 if x0 < x1 else -1
    sy = 1 if y0 < y1 else -1
    err = dx + dy
    while True:
        dot(x0, y0)
        if x0 == x1 and y0 == y1:
            return
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy
