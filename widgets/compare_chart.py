"""Several runs' curves overlaid on shared axes, drawn with braille dots (2x4 per cell), labelled axes."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

SERIES_COLORS = ("cyan", "magenta", "yellow", "green", "red", "bright_blue", "white", "bright_red")
"""One colour per run, in marking order; the Compare legend uses the same ones."""

_BRAILLE_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # [row in cell][column in cell]

Points = Sequence[tuple[float, float]]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.1e}"
    return f"{value:.3g}"


def render_chart(
    series: Sequence[tuple[str, Points]],
    width: int,
    height: int,
    log_y: bool = False,
    colors: Sequence[str] = SERIES_COLORS,
    x_label: str = "step",
) -> Text:
    """Draw every series as a line over one x (step) and one y range; returns ``height`` lines of ``width``."""

    def ty(v: float) -> float:
        return math.log10(v) if log_y else v

    usable = [
        (
            name,
            [
                (float(x), float(y))
                for x, y in pts
                if y is not None and (not log_y or y > 0) and math.isfinite(y)
            ],
        )
        for name, pts in series
    ]
    points = [p for _, pts in usable for p in pts]
    if width < 16 or height < 4 or not points:
        return Text("no loss logged yet" if not points else "", style="dim")
    x_min, x_max = min(p[0] for p in points), max(p[0] for p in points)
    y_min, y_max = min(ty(p[1]) for p in points), max(ty(p[1]) for p in points)
    if y_max == y_min:
        y_min, y_max = y_min - 0.5, y_max + 0.5
    if x_max == x_min:
        x_max = x_min + 1
    labels = [_fmt(10**v if log_y else v) for v in (y_max, (y_max + y_min) / 2, y_min)]
    gutter = max(len(s) for s in labels) + 1
    plot_w, plot_h = width - gutter - 1, height - 2
    dots_w, dots_h = plot_w * 2, plot_h * 4
    cells = [[0] * plot_w for _ in range(plot_h)]
    owner: list[list[int | None]] = [[None] * plot_w for _ in range(plot_h)]

    def to_px(x: float, y: float) -> tuple[int, int]:
        px = round((x - x_min) / (x_max - x_min) * (dots_w - 1))
        py = round((y_max - ty(y)) / (y_max - y_min) * (dots_h - 1))
        return px, py

    def dot(px: int, py: int, index: int) -> None:
        row, col = py // 4, px // 2
        if 0 <= row < plot_h and 0 <= col < plot_w:
            cells[row][col] |= _BRAILLE_BITS[py % 4][px % 2]
            owner[row][col] = index

    for index, (_, pts) in enumerate(usable):
        previous = None
        for x, y in sorted(pts):
            current = to_px(x, y)
            if previous is None:
                dot(*current, index)
            else:  # a straight segment, one dot per pixel step along the longer axis
                (x0, y0), (x1, y1) = previous, current
                steps = max(abs(x1 - x0), abs(y1 - y0), 1)
                for i in range(1, steps + 1):
                    dot(round(x0 + (x1 - x0) * i / steps), round(y0 + (y1 - y0) * i / steps), index)
            previous = current

    out = Text(no_wrap=True, overflow="crop")
    label_rows = {0: labels[0], (plot_h - 1) // 2: labels[1], plot_h - 1: labels[2]}
    for row in range(plot_h):
        out.append(label_rows.get(row, "").rjust(gutter - 1) + " ", style="dim")
        out.append("┤" if row in label_rows else "│", style="dim")
        for col in range(plot_w):
            bits, who = cells[row][col], owner[row][col]
            if bits:
                out.append(chr(0x2800 + bits), style=colors[who % len(colors)] if who is not None else "")
            else:
                out.append(" ")
        out.append("\n")
    out.append(" " * gutter + "└" + "─" * plot_w + "\n", style="dim")
    left, right = _fmt(x_min), _fmt(x_max)
    middle = f"{x_label}{' (log y)' if log_y else ''}"
    room = plot_w - len(left) - len(right)
    axis = left + middle.center(room) + right if room > len(middle) + 1 else left + " " * max(room, 1) + right
    out.append(" " * (gutter + 1) + axis, style="dim")
    return out


class CompareChart(Widget):
    """Curves of several runs on shared axes; ``set_series`` replaces them, ``log_y`` switches the scale."""

    DEFAULT_CSS = """
    CompareChart { height: 1fr; min-height: 6; }
    """

    log_y: reactive[bool] = reactive(False)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.series: list[tuple[str, list[tuple[float, float]]]] = []

    def set_series(self, series: Sequence[tuple[str, Points]]) -> None:
        self.series = [(name, list(points)) for name, points in series]
        self.refresh()

    def render(self) -> Text:
        return render_chart(self.series, self.size.width, self.size.height, log_y=self.log_y)
