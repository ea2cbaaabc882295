"""Compare: the marked runs' loss curves on shared axes, their results, and the recipe fields that differ."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static

from lorastudio.screens.navigate import CompareSamples, go
from lorastudio.screens.runs import fit
from lorastudio.screens.worker_failures import HandlesWorkerFailures
from lorastudio.widgets.compare_chart import SERIES_COLORS, CompareChart
from lorastudio.widgets.title_header import TitleHeader

if TYPE_CHECKING:
    from lorastudio.train.launch.compare import Comparison, RunResult


@dataclass
class ComparisonReady(Message):
    comparison: Comparison
    scores: list[Any] | None = None
    """Each run's latest evaluation scores (``evaluate/scores.py``: a RunScores or None), in the runs' order."""


def eval_rows(scores: list[Any]) -> list[tuple[str, list[float | None]]]:
    """(task/metric, each run's value) for every metric any run's latest evaluation has, sorted."""
    metrics = sorted({m for s in scores if s is not None for m in s.values})
    return [(m, [s.values.get(m) if s is not None else None for s in scores]) for m in metrics]


def best_by_eval(runs: list[RunResult]) -> int | None:
    """The index of the run with the lowest best eval loss (None when no run evaluated)."""
    scored = [(run.best_eval_loss, i) for i, run in enumerate(runs) if run.best_eval_loss is not None]
    return min(scored)[1] if scored else None


class CompareScreen(HandlesWorkerFailures, Screen[None]):
    """Runs are lettered A, B, C… in marking order; the letter and colour match across chart and tables."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="compare.back"),
        Binding("l", "toggle_log", "Log", id="compare.log"),
        Binding("e", "toggle_eval", "Eval", id="compare.eval"),
        Binding("f5", "reload", "Reload", id="compare.reload"),
        Binding("p", "samples", "Samples", id="compare.samples"),
    ]

    def __init__(self, paths: list[Path], sweep: str | None = None) -> None:
        super().__init__()
        self.paths = paths
        self.sweep = sweep
        """The sweep these runs belong to, when opened on one: its best run by eval loss gets a star."""
        self.comparison: Any = None
        self.show_eval = False

    def compose(self) -> ComposeResult:
        yield TitleHeader()
        yield Label(f"Compare · {len(self.paths)} runs · loading…", id="compare-title", classes="title")
        yield Static("", id="compare-legend")
        # its own line, not the legend's last: with many runs the legend is cut at its height, the caveat never is
        yield Static("", id="compare-caveat")
        yield CompareChart(id="compare-chart")
        # One pane for both tables, scrolled by the keyboard (up/down, page up/down, home/end, left/right);
        # the tables themselves take no focus, so no key stops at one of them.
        with VerticalScroll(id="compare-tables"):
            yield DataTable(id="compare-results", cursor_type="none", zebra_stripes=True)
            yield Label("recipe fields that differ", id="compare-diff-label", classes="muted")
            yield DataTable(id="compare-diff", cursor_type="none", zebra_stripes=True)
            yield Label("latest evaluation (studio eval)", id="compare-evals-label", classes="muted")
            yield DataTable(id="compare-evals", cursor_type="none", zebra_stripes=True)
        yield Footer()

    AUTO_FOCUS = "#compare-tables"

    def on_mount(self) -> None:
        for table in self.query(DataTable):
            table.can_focus = False
        self.load()

    @work(thread=True, exclusive=True, group="compare-load", exit_on_error=False)
    def load(self) -> None:
        from lorastudio.evaluate.scores import scores_of
        from lorastudio.train.launch.compare import compare_runs

        self.post_message(ComparisonReady(compare_runs(self.paths), scores_of(self.paths)))

    def worker_failed(self, worker: Any, message: str) -> None:
        self.query_one("#compare-title", Label).update(Text.assemble("Compare · ", (message, "bold red")))

    @staticmethod
    def letter(index: int) -> str:
        return string.ascii_uppercase[index % 26]

    def _color(self, index: int) -> str:
        return SERIES_COLORS[index % len(SERIES_COLORS)]

    def on_comparison_ready(self, message: ComparisonReady) -> None:
        from lorastudio.train.launch.compare import format_duration, format_value

        self.comparison = comparison = message.comparison
        legend = Text(no_wrap=True, overflow="ellipsis")
        for i, run in enumerate(comparison.runs):
            if i:
                legend.append("\n")
            legend.append(f"{self.letter(i)} ━ ", style=f"bold {self._color(i)}")
            legend.append(run.name, style="bold")
            legend.append(f"  {run.status}, step {run.step}/{run.max_steps or '?'}", style="dim")
        self.query_one("#compare-legend", Static).update(legend)
        caveat = self.query_one("#compare-caveat", Static)
        caveat.update(Text(f"⚠ {comparison.loss_caveat}", style="yellow") if comparison.loss_caveat else "")
        caveat.display = bool(comparison.loss_caveat)
        self._draw()

        def num(value: float | None, spec: str = ".4f") -> str:
            return format(value, spec) if value is not None else "-"

        results = self.query_one("#compare-results", DataTable)
        results.clear(columns=True)
        results.add_columns(
            "run", "final loss", "best loss", "eval loss", "best eval", "tok/s", "time", "peak VRAM"
        )
        best = best_by_eval(comparison.runs) if self.sweep else None
        for i, run in enumerate(comparison.runs):
            best_eval = num(run.best_eval_loss)
            if run.best_checkpoint:
                best_eval += f" ({Path(run.best_checkpoint).name.replace('checkpoint-', 'ck ')})"
            vram = (
                f"{run.peak_vram_mb:,.0f} MB"
                if run.peak_vram_mb
                else (f"CPU {run.peak_rss_mb:,.0f} MB" if run.peak_rss_mb else "-")
            )
            letter = f"{self.letter(i)} ★" if i == best else self.letter(i)  # the lowest best eval loss
            results.add_row(
                Text(letter, style=f"bold {self._color(i)}"),
                num(run.final_loss),
                num(run.best_loss),
                num(run.eval_loss),
                best_eval,
                num(run.tokens_per_s, ",.0f"),
                format_duration(run.duration_s),
                vram,
            )
        diff = self.query_one("#compare-diff", DataTable)
        diff.clear(columns=True)
        diff.add_column("field")
        for i in range(len(comparison.runs)):
            diff.add_column(Text(self.letter(i), style=f"bold {self._color(i)}"))
        # every run's column on screen: a long value (a path, a system prompt) is cut in the middle to its
        # share of the width, keeping its end (a file's name)
        names = max((len(name) for name in comparison.differing), default=5)
        runs = max(1, len(comparison.runs))
        room = max(10, (self.size.width - 3 - names - 2 * (runs + 1)) // runs)  # 3: scrollbar, margin
        for name, values in comparison.differing.items():
            # as text: a template or a system prompt may hold "[/INST]", which markup would refuse
            diff.add_row(name, *(Text(fit(format_value(v), room, room // 2)) for v in values))
        label = self.query_one("#compare-diff-label", Label)
        label.update(
            f"recipe fields that differ ({len(comparison.differing)})"
            if comparison.differing
            else "the recipes are identical"
        )
        diff.display = bool(comparison.differing)
        self._show_evals(message.scores or [])
        self.call_after_refresh(self._fit_tables)

    def _show_evals(self, scores: list[Any]) -> None:
        """Each run's latest evaluation: a row per task/metric, a column per run (its evaluation's id below)."""
        table = self.query_one("#compare-evals", DataTable)
        table.clear(columns=True)
        rows = eval_rows(scores)
        label = self.query_one("#compare-evals-label", Label)
        table.display = label.display = bool(rows)  # no room taken while no run was evaluated
        if not rows:
            return
        label.update("latest evaluation of each run (studio eval)")
        table.add_column("task/metric")
        for i in range(len(scores)):
            table.add_column(Text(self.letter(i), style=f"bold {self._color(i)}"))
        for metric, values in rows:
            present = [v for v in values if v is not None]
            top = max(present) if len(present) > 1 else None
            table.add_row(
                metric,
                *(
                    Text("-", style="dim")
                    if v is None
                    else Text(f"{v:.4f}", style="bold green" if v == top else "")
                    for v in values
                ),
            )
        table.add_row(
            Text("evaluation", style="dim"),
            *(Text(s.eval_id if s is not None else "-", style="dim") for s in scores),
        )

    CHART_MIN = 5
    """Rows the chart keeps however many tables' rows there are (its axes take 2 of them)."""

    def _fit_tables(self, again: int = 2) -> None:
        """The tables' pane takes what the chart's few rows leave (at most 60% of the screen): a long legend
        and the caveat no longer push it under the footer, and what does not fit scrolls in the pane.

        Measured ``again`` more times after the next refreshes: the legend and the wrapped caveat take their
        height a refresh after they are filled, and a pane fitted to their old height went under the footer,
        its last rows out of reach."""
        if again > 0:
            self.call_after_refresh(self._fit_tables, again - 1)
        above = sum(
            w.outer_size.height
            for w in (self.query_one(TitleHeader), self.query_one("#compare-title"), *self._tops())
            if w.display
        )
        room = self.size.height - above - self.query_one(Footer).outer_size.height - self.CHART_MIN
        pane = self.query_one("#compare-tables", VerticalScroll)
        pane.styles.max_height = max(4, min(room, self.size.height * 6 // 10))

    def _tops(self) -> list[Static]:
        return [self.query_one("#compare-legend", Static), self.query_one("#compare-caveat", Static)]

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit_tables)

    def _draw(self) -> None:
        if self.comparison is None:
            return
        runs = self.comparison.runs
        metric = "eval loss" if self.show_eval else "train loss"
        series = [(self.letter(i), run.eval if self.show_eval else run.loss) for i, run in enumerate(runs)]
        chart = self.query_one(CompareChart)
        chart.set_series(series)
        scale = "log" if chart.log_y else "linear"
        empty = " (none logged)" if not any(points for _, points in series) else ""
        self.query_one("#compare-title", Label).update(
            f"Compare · {len(runs)} runs · {metric}{empty} · {scale}   [dim]e train/eval · l log scale[/]"
        )

    def action_toggle_log(self) -> None:
        chart = self.query_one(CompareChart)
        chart.log_y = not chart.log_y
        self._draw()

    def action_toggle_eval(self) -> None:
        self.show_eval = not self.show_eval
        self._draw()

    def action_reload(self) -> None:
        self.load()

    def action_samples(self) -> None:
        """The runs' sample replies to the same prompts, side by side."""
        go(self.app, CompareSamples(tuple(self.paths)))

    def action_back(self) -> None:
        self.app.pop_screen()
