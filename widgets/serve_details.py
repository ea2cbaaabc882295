"""One server in the Serve panel: its URL and SSH tunnel, model names, request figures and the engine's log tail."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

STATUS_STYLE = {"ready": "bold green", "starting": "yellow", "failed": "bold red", "died": "bold red"}


@dataclass(frozen=True)
class ServerView:
    """What the panel shows of one server, read off the UI thread."""

    id: str
    status: str
    engine: str
    url: str
    models: tuple[str, ...]
    target: str
    ssh: str
    api_key: bool
    figures: Any = None
    """A ``serve.figures.Figures`` (typed loosely: widgets never import the engine)."""
    tail: list[str] = field(default_factory=list)
    error: str | None = None


def _figure(value: float | None, fmt: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{unit}"


class ServeDetails(Static):
    """The selected server; empty with a hint when there is none. The log's tail fills the height left."""

    view: ServerView | None = None

    def on_resize(self) -> None:
        self.show(self.view)

    def show(self, view: ServerView | None) -> None:
        self.view = view
        if view is None:
            self.update(Text("no server yet: Ctrl+S starts one for this run", style="dim"))
            return
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="ellipsis", no_wrap=True)
        grid.add_row(
            "server", Text.assemble((view.id, "bold"), "  ", (view.status, STATUS_STYLE.get(view.status, "")))
        )
        grid.add_row("URL", Text(view.url + ("  (API key required)" if view.api_key else ""), style="bold"))
        grid.add_row("tunnel", Text(view.ssh))
        grid.add_row("models", Text(", ".join(view.models) or "-"))
        figures = view.figures
        if figures is not None:
            requests = "-" if figures.requests is None else str(figures.requests)
            errors = figures.failed + figures.log_errors
            line = Text.assemble(
                f"requests {requests} · ",
                f"{_figure(figures.tokens_per_s, '.1f', ' tok/s')} · ",
                f"first token {_figure(None if figures.first_token_s is None else figures.first_token_s * 1000, '.0f', ' ms')} · ",
                (f"errors {errors}", "bold red" if errors else ""),
                (f" ({figures.source})" if figures.source != "none" else "", "dim"),
            )
            grid.add_row("served", line)
        if view.error:
            grid.add_row("error", Text(view.error, style="bold red"))
        used = len(grid.rows) + 1  # the figures' lines, the log's heading
        room = max(2, self.size.height - used) if self.size.height else 8
        tail = Text("\n".join(view.tail[-room:]) or "(the log is empty)", style="dim", no_wrap=True)
        self.update(Group(grid, Text(f"{view.engine} log:", style="dim italic"), tail))
