"""Screen 3: the live Monitor. It only reads the run directory, so it can detach and re-attach at will."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Log, ProgressBar, Sparkline

from lorastudio.recipe import Recipe
from lorastudio.train.events import EVENTS_FILE, EventTail, RunState
from lorastudio.train.runs import DIED_CAUSE, LOG_FILE, effective_status, read_meta
from lorastudio.widgets.gpu_panel import GpuPanel
from lorastudio.widgets.metrics_panel import MetricsPanel

REFRESH_S = 0.5
CHART_POINTS = 400


def start_training(app: App[Any], recipe: Recipe) -> None:
    """Create the run directory, start the detached worker and show its Monitor."""
    from lorastudio.errors import StudioError
    from lorastudio.train.runs import create_run, start_worker

    try:
        run_dir = create_run(recipe)
        start_worker(run_dir)
    except StudioError as exc:
        app.notify(str(exc), title="cannot start training", severity="error")
        return
    app.push_screen(MonitorScreen(run_dir))


@dataclass
class Snapshot(Message):
    """The run state after the latest read; a newer snapshot replaces a pending one."""

    state: RunState
    status: str
    log_lines: list[str]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Snapshot) and not message.log_lines


def smooth(values: list[float], alpha: float = 0.1) -> list[float]:
    out, current = [], None
    for v in values:
        current = v if current is None else alpha * v + (1 - alpha) * current
        out.append(current)
    return out


def thin(values: list[float], points: int = CHART_POINTS) -> list[float]:
    if len(values) <= points:
        return values
    step = len(values) / points
    return [values[int(i * step)] for i in range(points)]


class MonitorScreen(Screen[None]):
    """Progress, loss and learning-rate curves, throughput, GPU and host panels, and the log's tail."""

    BINDINGS = [
        Binding("s", "stop", "Stop", id="monitor.stop"),
        Binding("d", "detach", "Detach", id="monitor.detach"),
        Binding("c", "chat", "Chat", id="monitor.chat"),
        Binding("r", "runs", "Runs", id="monitor.runs"),
        Binding("x", "export", "Export", id="monitor.export"),
        Binding("escape", "detach", "Back", show=False, id="monitor.back"),
    ]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
        self._tail = EventTail(run_dir / EVENTS_FILE)
        self._state = RunState()
        self._log_offset = 0
        self.snapshot: Snapshot | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label(f"Monitor · {self.run_dir.name}", classes="title")
        with Vertical(id="monitor-top"):
            yield Label("status: reading…", id="status-line")
            yield ProgressBar(total=None, show_eta=False, id="progress")
            yield Label("", id="progress-label", classes="muted")
        with Horizontal(id="monitor-body"):
            with Vertical(id="monitor-left", classes="panel"):
                yield Label("loss (raw)", classes="muted")
                yield Sparkline([], id="loss-raw")
                yield Label("loss (smoothed)", classes="muted")
                yield Sparkline([], id="loss-smooth")
                yield Label("learning rate", classes="muted")
                yield Sparkline([], id="lr")
                yield Log(id="log-tail", max_lines=500)
            with Vertical(id="monitor-right", classes="panel"):
                yield MetricsPanel(id="metrics")
                yield Label("VRAM history", classes="muted")
                yield Sparkline([], id="vram")
                yield GpuPanel(id="gpu")
        yield Footer()

    def on_mount(self) -> None:
        self.read_events()
        self.set_interval(REFRESH_S, self.read_events)

    @work(thread=True, exclusive=True, group="monitor-tail", exit_on_error=False)
    def read_events(self) -> None:
        """Read only what was appended since the last call, fold it, post one snapshot."""
        for event in self._tail.read_new():
            self._state.apply(event)
        lines = self._read_log()
        state = replace(self._state, loss=list(self._state.loss), learning_rate=list(self._state.learning_rate),
                        vram_history=list(self._state.vram_history))
        status = effective_status(state, read_meta(self.run_dir))
        self.post_message(Snapshot(state, status, lines))

    def _read_log(self) -> list[str]:
        path = self.run_dir / LOG_FILE
        try:
            with path.open("rb") as handle:
                handle.seek(self._log_offset)
                chunk = handle.read(256_000)
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self._log_offset += end + 1
        return chunk[: end + 1].decode("utf-8", "replace").splitlines()

    def on_snapshot(self, message: Snapshot) -> None:
        self.snapshot = message
        state, status = message.state, message.status
        line = f"status: {status}"
        if state.cause or status == "died":
            line += f" — {state.cause or DIED_CAUSE}"
        if state.hints:
            line += "  | to lower memory: " + "; ".join(state.hints)
        status_label = self.query_one("#status-line", Label)
        status_label.update(line)
        status_label.set_class(status in ("failed", "died"), "error")
        bar = self.query_one("#progress", ProgressBar)
        if state.max_steps:
            bar.update(total=state.max_steps, progress=state.step)
        elapsed = None
        if state.started is not None:
            end = state.updated if state.finished else time.time()
            elapsed = (end or state.started) - state.started
        self.query_one("#progress-label", Label).update(
            f"step {state.step}/{state.max_steps or '?'}"
            + (f" · last loss {state.last_loss:.4f}" if state.last_loss is not None else "")
        )
        losses = [v for _, v in state.loss]
        self.query_one("#loss-raw", Sparkline).data = thin(losses)
        self.query_one("#loss-smooth", Sparkline).data = thin(smooth(losses))
        self.query_one("#lr", Sparkline).data = thin([v for _, v in state.learning_rate])
        self.query_one("#vram", Sparkline).data = thin(state.vram_history)
        self.query_one(MetricsPanel).show(state, elapsed)
        self.query_one(GpuPanel).show(state.telemetry)
        if message.log_lines:
            self.query_one(Log).write_lines(message.log_lines)

    def action_stop(self) -> None:
        from lorastudio.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                from lorastudio.train.runs import stop_run

                if stop_run(self.run_dir):
                    self.notify("asked the worker to save the adapter and stop")
                else:
                    self.notify("no live worker for this run", severity="warning")

        self.app.push_screen(ConfirmScreen(f"Stop {self.run_dir.name}? The adapter is saved first."), answered)

    def action_detach(self) -> None:
        """Leave the run going and go back; the worker does not depend on this screen."""
        from lorastudio.screens.recipes import RecipesScreen

        while len(self.app.screen_stack) > 2 and not isinstance(self.app.screen, RecipesScreen):
            self.app.pop_screen()

    def action_chat(self) -> None:
        from lorastudio.screens.chat import ChatScreen

        self.app.push_screen(ChatScreen(str(self.run_dir)))

    def action_runs(self) -> None:
        self.app.action_runs()

    def action_export(self) -> None:
        if self.snapshot is None or self.snapshot.status not in ("done", "stopped"):
            self.notify("export is available once the run has finished", severity="warning")
            return
        from lorastudio.screens.export import ExportScreen

        self.app.push_screen(ExportScreen(self.run_dir))
