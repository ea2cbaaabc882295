"""Screen 3: the live Monitor. It only reads the run directory, so it can detach and re-attach at will."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.markup import escape
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Label, Log, ProgressBar

from lorastudio.models.cachelock import WAITING as LOCK_WAIT
from lorastudio.recipe import Recipe
from lorastudio.screens import navigate as nav
from lorastudio.screens.navigate import go
from lorastudio.train.launch.runs import DIED_CAUSE, LOG_FILE, effective_status, worker_alive
from lorastudio.train.run.damage import DAMAGED, run_problem
from lorastudio.train.run.events import (
    TERMINAL_STATUSES,
    CheckpointEvent,
    EvalEvent,
    Event,
    LogEvent,
    StatusEvent,
    TaskScoresEvent,
)
from lorastudio.train.run.rundir import inspect_meta
from lorastudio.train.run.runstate import RunReader, RunState
from lorastudio.widgets.chart import SMOOTHING_STEPS, WAITING, WINDOWS, LineChart
from lorastudio.widgets.completions_panel import CompletionsPanel
from lorastudio.widgets.gpu_panel import GpuPanel
from lorastudio.widgets.method_charts import add_method_series, charts_for, ensure_series, method_chart_points
from lorastudio.widgets.metrics_panel import MetricsPanel, duration
from lorastudio.widgets.samples_view import SamplesView
from lorastudio.widgets.title_header import TitleHeader

REFRESH_S = 0.5


def start_training(app: App[Any], recipe: Recipe) -> None:
    """Create the run directory, start the detached worker and show its Monitor."""
    from lorastudio.errors import StudioError
    from lorastudio.train.launch.runs import start_run

    try:
        run_dir = start_run(recipe)
    except StudioError as exc:
        app.notify(str(exc), title="cannot start training", severity="error")
        return
    app.push_screen(MonitorScreen(run_dir))


CHARTS = (
    ("loss", "loss", "step"),
    ("lr", "learning rate", "step"),
    ("grad", "grad norm", "step"),
    ("tps", "tokens/s", "step"),
    ("memory", "memory MiB", "sec"),
)
"""(id suffix, title, x axis) of the Monitor's charts, in tab order."""
TAB_NAMES = ("loss", "lr", "grad", "tok/s", "mem")


def add_chart_series(charts: dict[str, LineChart]) -> None:
    """The Monitor's series on its charts (keyed by CHARTS id); the chart benchmark draws the same."""
    charts["loss"].add_series("train", "cyan", smooth=True).add_series("eval", "magenta", kind="points")
    charts["lr"].add_series("lr", "green")
    charts["grad"].add_series("grad", "yellow", smooth=True)
    charts["tps"].add_series("tok/s", "blue", smooth=True)
    charts["memory"].add_series("VRAM", "red").add_series("RSS", "magenta")


ChartPoint = tuple[str, str, tuple[float, float]]

CHART_CURVES = (
    ("loss", "train", "loss"),
    ("loss", "eval", "eval_loss"),
    ("lr", "lr", "learning_rate"),
    ("grad", "grad", "grad_norms"),
    ("tps", "tok/s", "throughput"),
)
"""(chart, series, RunState history) of the step charts."""
MEMORY_CURVES = (("memory", "VRAM", "vram"), ("memory", "RSS", "rss"))
"""(chart, series, RunState history) of the memory chart; its x axis is seconds since the run's first event."""


@dataclass
class Snapshot(Message):
    """The run state after the latest read, with the chart points and log lines that are new since the last."""

    state: RunState
    status: str
    log_lines: list[str]
    points: list[ChartPoint] = field(default_factory=list)

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Snapshot) and not message.log_lines and not message.points


def chart_points(state: RunState, sent: dict[str, int]) -> list[ChartPoint]:
    """The (chart, series, (x, y)) points the state's histories gained since ``sent`` (history -> points
    already charted, updated here)."""
    out: list[ChartPoint] = []
    for chart, series, name in CHART_CURVES:
        curve = getattr(state, name)
        out += [(chart, series, (float(step), value)) for step, value in curve[sent.get(name, 0) :]]
        sent[name] = len(curve)
    t0 = state.started or 0.0
    for chart, series, name in MEMORY_CURVES:
        curve = getattr(state, name)
        out += [(chart, series, (t - t0, value)) for t, value in curve[sent.get(name, 0) :]]
        sent[name] = len(curve)
    return out


def new_log_events(state: RunState, seen: int) -> list[Event]:
    """The log-box events the state folded after the first ``seen`` (at most the ones it keeps)."""
    fresh = state.logged - seen
    return state.log[-fresh:] if fresh > 0 else []


def log_line(event: Event) -> str | None:
    """The log box's line for an event: log messages, warnings, status changes and failures."""
    stamp = time.strftime("%H:%M:%S ", time.localtime(event.t)) if event.t is not None else ""
    if isinstance(event, LogEvent) and event.message:
        level = event.level or "info"
        prefix = "" if level == "info" else f"{level}: "
        return f"{stamp}{prefix}{event.message}"
    if isinstance(event, StatusEvent) and event.status:
        cause = f" ({event.cause})" if event.cause else ""
        return f"{stamp}status {event.status}{cause}"
    if isinstance(event, CheckpointEvent):
        return f"{stamp}saved checkpoint-{event.step if event.step is not None else '?'}"
    if isinstance(event, EvalEvent) and event.eval_loss is not None:
        return (
            f"{stamp}eval loss {event.eval_loss:.4f} at step {event.step if event.step is not None else '?'}"
        )
    if isinstance(event, TaskScoresEvent) and event.values:
        scores = ", ".join(f"{name} {value:.3f}" for name, value in sorted(event.values.items()))
        return f"{stamp}task scores at step {event.step if event.step is not None else '?'}: {scores}"
    return None


def summary_line(state: RunState, status: str) -> str:
    """One line for a finished run: final/best loss (GRPO: mean reward), eval loss, duration, tokens, mean
    tokens/s, peak memory."""
    parts = [status]
    if state.last_reward is not None:  # GRPO: its loss is no measure of progress, its mean reward is
        best = f" (best {state.best_reward:.3f})" if state.best_reward is not None else ""
        parts.append(f"final mean reward {state.last_reward:.3f}{best}")
    elif state.last_loss is not None and state.best_loss is not None:
        parts.append(f"final loss {state.last_loss:.4f} (best {state.best_loss:.4f})")
    if state.last_eval_loss is not None and state.lowest_eval_loss is not None:
        where = f" @ {state.best_checkpoint.rsplit('/', 1)[-1]}" if state.best_checkpoint else ""
        parts.append(f"eval {state.last_eval_loss:.4f} (best {state.lowest_eval_loss:.4f}{where})")
    parts.append(f"took {duration(state.duration_s)}")
    if state.tokens_seen:
        parts.append(f"{state.tokens_seen:,} tokens")
        if state.mean_tokens_per_s:
            parts.append(f"{state.mean_tokens_per_s:,.0f} tok/s")
    if state.peak_vram_mb:
        parts.append(f"peak VRAM {state.peak_vram_mb:,.0f} MiB")
    elif state.peak_rss_mb:
        parts.append(f"peak RSS {state.peak_rss_mb:,.0f} MiB")
    return " · ".join(parts)


class MonitorScreen(Screen[None]):
    """Progress, charts of loss (with eval), learning rate, grad norm, throughput and memory, panels, the log."""

    BINDINGS = [
        Binding("s", "stop", "Stop", id="monitor.stop"),
        Binding("d", "detach", "Detach", id="monitor.detach"),
        Binding("c", "chat", "Chat", id="monitor.chat"),
        Binding("r", "runs", "Runs", id="monitor.runs"),
        Binding("x", "export", "Export", id="monitor.export"),
        Binding("e", "eval", "Eval", id="monitor.eval"),
        Binding("m", "next_chart", "Chart", id="monitor.next_chart"),
        Binding("l", "log_scale", "Log", id="monitor.log_scale"),
        Binding("z", "smoothing", "EMA", id="monitor.smoothing"),
        Binding("w", "window", "Window", id="monitor.window"),
        Binding("p", "samples", "Samples", id="monitor.samples"),
        *[
            Binding(
                str(i + 1), f"select_chart({i})", f"{title} chart", show=False, id=f"monitor.chart_{i + 1}"
            )
            for i, (_, title, _) in enumerate(CHARTS)
        ],
        Binding("escape", "detach", "Back", show=False, id="monitor.back"),
    ]

    WIDE = (160, 40)
    """From this terminal size (columns, rows) every chart is shown at once, in a grid."""
    ROOMY = 110
    """From this many columns a GRPO run's right column widens for its completions."""

    selected: reactive[int] = reactive(0)

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
        self._reader = RunReader(run_dir)
        self._sent: dict[str, int] = {}
        self._logged = 0
        self._log_offset = 0
        self._reading = threading.Event()
        """Set while a read runs: a tick that finds it set is skipped, so two reads never fold at once."""
        self.reads = 0
        self.snapshot: Snapshot | None = None
        self.waiting: str | None = None
        """The worker's latest "waiting for another studio process …" (a lock), until a later log line."""
        # dpo/kto/orpo/grpo runs get their method's charts after the common ones (widgets/method_charts.py)
        recipe = _run_recipe(run_dir)
        self.method = recipe.train.method if recipe is not None else "sft"
        self.grpo_beta = recipe.grpo.beta if recipe is not None and recipe.grpo is not None else None
        self._marked_empty = False
        self.method_charts = charts_for(self.method)
        self.charts = [*CHARTS, *((key, title, "step") for key, title, _ in self.method_charts)]
        self.tab_names = [*TAB_NAMES, *(key for key, _, _ in self.method_charts)]

    def compose(self) -> ComposeResult:
        yield TitleHeader()
        yield Label(f"Monitor · {self.run_dir.name}", classes="title")
        with Vertical(id="monitor-top"):
            yield Label("status: reading…", id="status-line")
            yield ProgressBar(total=None, show_eta=False, id="progress")
            yield Label("", id="progress-label", classes="muted")
            yield Label("", id="summary-line")
        with Horizontal(id="monitor-body"):
            with Vertical(id="monitor-left"):
                yield Label("", id="chart-tabs")
                with Container(id="charts"):
                    for key, title, x_label in self.charts:
                        yield LineChart(title, x_label=x_label, id=f"chart-{key}")
                    yield Log(id="log-tail", max_lines=500)
                yield SamplesView(id="samples")
            with Vertical(id="monitor-right", classes="panel"):
                yield MetricsPanel(id="metrics")
                if self.method == "grpo":
                    yield CompletionsPanel(id="completions-panel")
                yield GpuPanel(id="gpu")
        yield Footer()

    def on_mount(self) -> None:
        add_chart_series({key: self.query_one(f"#chart-{key}", LineChart) for key, _, _ in CHARTS})
        add_method_series(
            {key: self.query_one(f"#chart-{key}", LineChart) for key, _, _ in self.method_charts}, self.method
        )
        self.set_class(bool(self.method_charts), "-method")
        self.set_class(self.method == "grpo", "-grpo")
        if self.method == "grpo" and self.grpo_beta == 0:  # TRL computes no KL without its penalty
            self.query_one("#chart-kl", LineChart).empty = "KL not computed: grpo.beta is 0"
        self.watch_selected()
        self.tick()
        self.set_interval(REFRESH_S, self.tick)

    def tick(self) -> None:
        """Start a read unless the last one is still running (a slow disk must not pile reads up)."""
        if self._reading.is_set():
            return
        self._reading.set()
        self.read_events()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width >= self.WIDE[0] and event.size.height >= self.WIDE[1], "-wide")
        # room for GRPO's completions: a wider right column (the charts keep the larger share)
        self.set_class(event.size.width >= self.ROOMY, "-roomy")

    @work(thread=True, group="monitor-tail", exit_on_error=False)
    def read_events(self) -> None:
        """Fold what was appended since the last read, post one snapshot."""
        try:
            self.reads += 1
            self._reader.update()
            state = self._reader.state
            points = chart_points(state, self._sent)
            points += method_chart_points(state, self._sent, self.method)
            fresh = new_log_events(state, self._logged)
            self._logged = state.logged
            lines = [line for line in map(log_line, fresh) if line is not None]
            lines += self._read_log()
            # The UI gets the latest values only (the charts got the new points above): copying whole
            # histories would make each refresh cost grow with the run.
            latest = state.latest()
            meta, meta_problem = inspect_meta(self.run_dir)
            status = effective_status(latest, meta, self.run_dir)
            problem = run_problem(self.run_dir, state, meta_problem, lambda: worker_alive(meta, self.run_dir))
            if problem is not None:  # as the Runs screen lists it: which file, and how
                status, latest.cause = DAMAGED, problem
            self.post_message(Snapshot(latest, status, lines, points))
        finally:
            self._reading.clear()

    def _read_log(self) -> list[str]:
        """New lines of the worker's stdout/stderr (tracebacks, anything printed outside the event log)."""
        path = self.run_dir / LOG_FILE
        try:
            with path.open("rb") as handle:
                handle.seek(self._log_offset)
                chunk = handle.read(256_000)
        except OSError:  # none yet, or not a file (a damaged run)
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self._log_offset += end + 1
        return [line for line in chunk[: end + 1].decode("utf-8", "replace").splitlines() if line.strip()]

    def on_snapshot(self, message: Snapshot) -> None:
        self.snapshot = message
        state, status = message.state, message.status
        line = f"status: {status}"
        if state.cause or status == "died":
            line += f" — {state.cause or DIED_CAUSE}"
        for text in message.log_lines:
            self.waiting = text[text.index(LOCK_WAIT) :] if LOCK_WAIT in text else None
        if self.waiting and status not in TERMINAL_STATUSES:
            line += f" — {self.waiting}"
        if state.hints:
            line += "  | to lower memory: " + "; ".join(state.hints)
        status_label = self.query_one("#status-line", Label)
        status_label.update(escape(line))  # a cause quotes the worker's error: "[rank0]: ..." is text
        status_label.set_class(status in ("failed", "died", DAMAGED), "error")
        bar = self.query_one("#progress", ProgressBar)
        if state.max_steps:
            bar.update(total=state.max_steps, progress=state.step)
        finished = status in TERMINAL_STATUSES
        self.set_class(finished, "-finished")
        self.query_one("#summary-line", Label).update(summary_line(state, status) if finished else "")
        elapsed = state.elapsed_s(time.time())
        if state.last_reward is not None:
            last = f" · mean reward {state.last_reward:.3f}"
        else:
            last = f" · last loss {state.last_loss:.4f}" if state.last_loss is not None else ""
        self.query_one("#progress-label", Label).update(
            f"step {state.step}/{state.max_steps or '?'} · epoch {state.epoch:.2f}{last}"
        )
        if finished and not self._marked_empty:
            self._marked_empty = True
            for line_chart in self.query(LineChart):
                if line_chart.empty == WAITING:  # nothing more will come: say so instead of waiting
                    line_chart.empty = "nothing logged"
        grouped: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for chart, series, point in message.points:
            grouped.setdefault((chart, series), []).append(point)
        for (chart, series), points in grouped.items():
            target = self.query_one(f"#chart-{chart}", LineChart)
            if chart == "functions":  # one series per GRPO reward function, named as the run names them
                ensure_series(target, series, len(target.series))
            target.extend(series, points)
        if self.method == "grpo":
            self.query_one(CompletionsPanel).show(state.completions)
        self.query_one(MetricsPanel).show(state, elapsed)
        self.query_one(GpuPanel).show(state.telemetry)
        self.query_one(SamplesView).show(state.samples)
        if message.log_lines:
            self.query_one(Log).write_lines(message.log_lines)

    # -- chart keys -------------------------------------------------------------------------------
    @property
    def selected_chart(self) -> LineChart:
        return self.query_one(f"#chart-{self.charts[self.selected][0]}", LineChart)

    def watch_selected(self) -> None:
        tabs = Text()
        for index, (key, _, _) in enumerate(self.charts):
            chart = self.query_one(f"#chart-{key}", LineChart)
            chart.set_class(index == self.selected, "-selected")
            number = f"{index + 1} " if index < len(CHARTS) else ""  # number keys reach the common charts
            tabs.append(
                f" {number}{self.tab_names[index]} ",
                style="reverse bold" if index == self.selected else "dim",
            )
        self.query_one("#chart-tabs", Label).update(tabs)

    def action_next_chart(self) -> None:
        self.selected = (self.selected + 1) % len(self.charts)

    def action_select_chart(self, index: int) -> None:
        self.selected = index

    def action_log_scale(self) -> None:
        """Log scale is per chart (loss reads best on log axes, learning rate on linear ones)."""
        chart = self.selected_chart
        chart.log_scale = not chart.log_scale
        self.notify(f"{chart.title}: {'log' if chart.log_scale else 'linear'} scale", timeout=2)

    def action_smoothing(self) -> None:
        """Smoothing applies to every chart, like TensorBoard's slider."""
        charts = list(self.query(LineChart))
        current = charts[0].smoothing if charts else 0.0
        steps = SMOOTHING_STEPS
        value = steps[(steps.index(current) + 1) % len(steps)] if current in steps else steps[0]
        for chart in charts:
            chart.smoothing = value
        self.notify(f"smoothing {value:g}" if value else "smoothing off", timeout=2)

    def action_window(self) -> None:
        """Step charts show the whole run or only the last N steps (the memory chart always shows it all)."""
        charts = [
            self.query_one(f"#chart-{key}", LineChart) for key, _, x_label in self.charts if x_label == "step"
        ]
        current = charts[0].window
        value = WINDOWS[(WINDOWS.index(current) + 1) % len(WINDOWS)] if current in WINDOWS else None
        for chart in charts:
            chart.window = value
        self.notify(f"last {value} steps" if value else "whole run", timeout=2)

    def action_samples(self) -> None:
        """The Samples pane in place of the charts (and back): each prompt's reply at a round, the rounds' history."""
        shown = not self.has_class("-samples")
        self.set_class(shown, "-samples")
        view = self.query_one(SamplesView)
        # set_focus now, not focus() (which waits a turn): after a fast `p p` the deferred focus landed on the
        # hidden pane, and the footer went on showing its keys
        if shown:
            self.set_focus(view)
        elif self.focused is view:
            self.set_focus(None)

    def action_stop(self) -> None:
        from lorastudio.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                from lorastudio.train.launch.runs import stop_run

                if stop_run(self.run_dir):
                    self.notify("asked the worker to save the adapter and stop")
                else:
                    self.notify("no live worker for this run", severity="warning")

        self.app.push_screen(
            ConfirmScreen(f"Stop {self.run_dir.name}? The adapter is saved first."), answered
        )

    def action_detach(self) -> None:
        """Leave the run going and go back; the worker does not depend on this screen."""
        if self.snapshot is None or self.snapshot.status not in TERMINAL_STATUSES:
            self.notify(f"{self.run_dir.name} goes on training; Ctrl+R lists runs to re-attach", timeout=4)
        go(self.app, nav.Recipes())

    def action_chat(self) -> None:
        go(self.app, nav.Chat(str(self.run_dir)))

    def action_eval(self) -> None:
        """The Eval screen on this run against its base model."""
        go(self.app, nav.Eval(("base", self.run_dir.name)))

    def action_runs(self) -> None:
        go(self.app, nav.Runs())

    def action_export(self) -> None:
        if self.snapshot is None or self.snapshot.status not in ("done", "stopped"):
            self.notify("export is available once the run has finished", severity="warning")
            return
        go(self.app, nav.Export(self.run_dir))


def _run_recipe(run_dir: Path) -> Recipe | None:
    """The run's recipe snapshot (None when unreadable: the common charts still work, as an SFT run's)."""
    try:
        from lorastudio.train.launch.runs import load_run_recipe

        return load_run_recipe(run_dir)
    except Exception:
        return None
