"""The Runs screen: every run directory, its status (died included), and keys to attach or chat."""

from __future__ import annotations

import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label

from lorastudio.train.runs import RunSummary


class RunsScreen(Screen[None]):
    """A table of runs, refreshed every few seconds."""

    BINDINGS = [
        # Not a priority binding: Enter must act after the Down typed before it (the table's own Enter
        # binding selects the row, see _row_selected); this one serves Enter when the table is not focused.
        Binding("enter", "attach", "Attach", id="runs.attach"),
        Binding("c", "chat", "Chat", id="runs.chat"),
        Binding("x", "export", "Export", id="runs.export"),
        Binding("escape", "back", "Back", id="runs.back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[RunSummary] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("Runs", classes="title")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("name", "recipe", "status", "step", "loss", "started")
        self.refresh_runs()
        self.set_interval(2.0, self.refresh_runs)

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False)
    def refresh_runs(self) -> None:
        from lorastudio.train.runs import list_runs

        runs = list_runs()
        self.app.call_from_thread(self._show, runs)

    def _show(self, runs: list[RunSummary]) -> None:
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        self.runs = runs
        table.clear()
        for r in runs:
            started = time.strftime("%m-%d %H:%M", time.localtime(r.started)) if r.started else "?"
            table.add_row(r.name, r.recipe, r.status, f"{r.step}/{r.max_steps or '?'}",
                          f"{r.last_loss:.4f}" if r.last_loss is not None else "-", started, key=r.name)
        if runs:
            table.move_cursor(row=min(cursor, len(runs) - 1))

    def _current(self) -> RunSummary | None:
        row = self.query_one(DataTable).cursor_row
        return self.runs[row] if 0 <= row < len(self.runs) else None

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_attach()

    def action_attach(self) -> None:
        run = self._current()
        if run is not None:
            from lorastudio.screens.monitor import MonitorScreen

            self.app.push_screen(MonitorScreen(run.path))

    def action_chat(self) -> None:
        run = self._current()
        if run is not None:
            from lorastudio.screens.chat import ChatScreen

            self.app.push_screen(ChatScreen(str(run.path)))

    def action_export(self) -> None:
        run = self._current()
        if run is not None:
            from lorastudio.screens.export import ExportScreen

            self.app.push_screen(ExportScreen(run.path))

    def action_back(self) -> None:
        self.app.pop_screen()
