"""The Serve panel: start a run (or an export) behind an OpenAI-compatible endpoint, watch and stop servers.

Opened from Runs and from Export on one target, or on none (servers only). Starting, stopping and reading the
servers' directories (a ``/health`` probe, a ``/metrics`` poll) all run on thread workers; the list refreshes
every ``REFRESH_S``. Chat (c) and compare (o) open the Chat screen on the selected server through the app.
"""

from __future__ import annotations

import getpass
import socket
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.markup import escape
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, Select

from lorastudio.screens.navigate import Chat, go
from lorastudio.screens.worker_failures import HandlesWorkerFailures
from lorastudio.widgets.serve_details import STATUS_STYLE, ServeDetails, ServerView
from lorastudio.widgets.text_input import TextInput
from lorastudio.widgets.title_header import TitleHeader

ENGINES = ("auto", "transformers", "vllm", "llamacpp")
"""As ``serve.engines.ENGINES`` (not imported: the screen paints before the engine modules load)."""
DEFAULT_PORT = 8000
REFRESH_S = 2.0
TAIL_LINES = 40


def this_host() -> str:
    """``user@host`` for the SSH tunnel line."""
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (OSError, KeyError):
        return "user@host"


@dataclass
class ServersRead(Message):
    rows: list[tuple[str, str, str, str, str]]
    """(id, status, engine, URL, models) of every server, newest first."""
    views: dict[str, ServerView]
    read_for: str | None
    """The server selected when they were read: only its figures and log were read."""


@dataclass
class ServerStarted(Message):
    id: str
    text: str


class ServeScreen(HandlesWorkerFailures, Screen[None]):
    """Servers (running and past) in a table, the selected one's details below; start one for ``target``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "start", "Start", id="serve.start", priority=True),
        Binding("x", "stop", "Stop", id="serve.stop"),
        Binding("c", "chat", "Chat", id="serve.chat"),
        Binding("o", "compare", "Compare", id="serve.compare"),
        Binding("f5", "refresh", "Refresh", id="serve.refresh"),
        Binding("escape", "back", "Back", id="serve.back"),
    ]

    def __init__(
        self, target: str | None = None, user_host: str | None = None, refresh_s: float = REFRESH_S
    ) -> None:
        super().__init__()
        self.target = target
        self.user_host = user_host or this_host()
        self.refresh_s = refresh_s
        self.views: dict[str, ServerView] = {}
        self.selected: str | None = None
        self.read_for: str | None = None
        self.starting = False

    def compose(self) -> ComposeResult:
        yield TitleHeader()
        what = escape(self.target) if self.target else "servers"
        yield Label(f"Serve · {what}", id="serve-title", classes="title")
        with Horizontal(id="serve-form"):
            yield Label("engine", classes="muted")
            yield Select([(e, e) for e in ENGINES], value="auto", allow_blank=False, id="serve-engine")
            yield Label("port", classes="muted")
            yield TextInput(str(DEFAULT_PORT), id="serve-port")
            yield Label(
                "Ctrl+S start" if self.target else "open from Runs or Export to start one", classes="muted"
            )
        yield Label("", id="serve-status", classes="muted")
        table: DataTable[Any] = DataTable(id="serve-list", cursor_type="row", zebra_stripes=True)
        yield table
        yield ServeDetails(id="serve-details")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#serve-list", DataTable)
        table.add_columns("server", "status", "engine", "URL", "models")
        self.query_one("#serve-form").display = self.target is not None
        self.query_one(ServeDetails).show(None)
        table.focus()
        self.read_servers()
        self.set_interval(self.refresh_s, self.read_servers)

    # -- reading ------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="serve-read", exit_on_error=False)
    def read_servers(self) -> None:
        from lorastudio.serve.figures import log_tail, read_figures, ssh_line
        from lorastudio.serve.servedir import list_servers

        rows, views = [], {}
        servers = list_servers()
        chosen = self.selected
        if chosen is None and servers and servers[0][1] is not None:
            chosen = servers[0][0].name  # the panel selects the newest at first
        for path, info, status in servers:
            if info is None:
                rows.append((path.name, "damaged", "", status.removeprefix("damaged: "), ""))
                continue
            rows.append((info.id, status, info.engine, info.url, ", ".join(info.models)))
            mine = info.id == chosen
            views[info.id] = ServerView(
                id=info.id,
                status=status,
                engine=info.engine,
                url=info.url,
                models=info.models,
                target=info.target,
                ssh=ssh_line(info, self.user_host),
                api_key=info.api_key,
                figures=read_figures(path, info, status in ("starting", "ready")) if mine else None,
                tail=log_tail(path, TAIL_LINES) if mine else [],
                error=info.error,
            )
        self.post_message(ServersRead(rows, views, chosen))

    def on_servers_read(self, message: ServersRead) -> None:
        self.views = message.views
        self.read_for = message.read_for
        table = self.query_one("#serve-list", DataTable)
        ids = [row[0] for row in message.rows]
        cells = [(row[0], Text(row[1], style=STATUS_STYLE.get(row[1], "")), *row[2:]) for row in message.rows]
        if [key.value for key in table.rows] == ids:  # the same servers: their cells change in place
            for row in cells:
                for column, value in zip(table.columns, row, strict=True):
                    table.update_cell(row[0], column, value)
        else:
            keep = self.selected
            table.clear()
            for row in cells:
                table.add_row(*row, key=row[0])
            if keep in ids:
                table.move_cursor(row=ids.index(keep), animate=False)
        if self.selected not in ids:
            self.selected = ids[table.cursor_row] if ids else None
        self._show_selected()

    def _show_selected(self) -> None:
        details = self.query_one(ServeDetails)
        view = self.views.get(self.selected or "")
        if view is not None and self.selected != self.read_for:
            self.read_servers()  # its figures and log were not read (it was not selected then): read them now
        details.show(view)

    @on(DataTable.RowHighlighted, "#serve-list")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value if event.row_key is not None else None
        if key is not None and key != self.selected:
            self.selected = key
            self._show_selected()

    def action_refresh(self) -> None:
        self.read_servers()

    # -- starting and stopping ------------------------------------------------------------------
    def action_start(self) -> None:
        if self.target is None:
            self.notify(
                "open the Serve panel from a run (Runs: p) or an export to start one", severity="warning"
            )
            return
        if self.starting:
            self.notify("a server is starting already", severity="warning")
            return
        text = self.query_one("#serve-port", Input).value.strip()
        if not text.isdigit():
            self._say(f"port {text!r}: a whole number from 1 to 65535", error=True)
            return
        engine = str(self.query_one("#serve-engine", Select).value)
        self.starting = True
        self._say(f"starting {engine} on port {text}… (a model loads for a while)")
        self.start_server(self.target, engine, int(text))

    @work(thread=True, exclusive=True, group="serve-start", exit_on_error=False)
    def start_server(self, target: str, engine: str, port: int) -> None:
        from lorastudio.serve.server import start_server

        started = start_server(
            target, "127.0.0.1", port, engine, progress=lambda m: self.app.call_from_thread(self._say, m)
        )
        self.post_message(
            ServerStarted(started.info.id, f"serving {', '.join(started.info.models)} at {started.info.url}")
        )

    def on_server_started(self, message: ServerStarted) -> None:
        self.starting = False
        self.selected = message.id
        self._say(message.text)
        self.read_servers()

    def worker_failed(self, worker: Any, message: str) -> None:
        if worker.group == "serve-start":
            self.starting = False
            self.read_servers()  # the failed server's directory says why, with its log
        self._say(message, error=True)

    def action_stop(self) -> None:
        view = self.views.get(self.selected or "")
        if view is None or view.status not in ("starting", "ready"):
            self.notify("select a running server to stop", severity="warning")
            return
        self._say(f"stopping {view.id}…")
        self.stop_server(view.id)

    @work(thread=True, group="serve-stop", exit_on_error=False)
    def stop_server(self, server_id: str) -> None:
        from lorastudio.serve.server import find_server, stop_server

        info, live = stop_server(find_server(server_id))
        self.app.call_from_thread(self._say, f"stopped {info.id}" if live else f"{info.id} was not running")
        self.read_servers()

    def _say(self, text: str, error: bool = False) -> None:
        """The status line; nothing once the panel is closed (a start goes on after Esc: it is detached)."""
        with suppress(NoMatches):
            self.query_one("#serve-status", Label).update(Text(text, style="bold red" if error else ""))

    # -- chatting ------------------------------------------------------------------------------
    def _ready_view(self) -> ServerView | None:
        view = self.views.get(self.selected or "")
        if view is None or view.status != "ready":
            self.notify("select a ready server", severity="warning")
            return None
        if view.api_key:
            self.notify(
                f"{view.id} needs its API key: studio chat {view.url} --api-key-env VAR", severity="warning"
            )
            return None
        return view

    def action_chat(self) -> None:
        view = self._ready_view()
        if view is not None:
            go(self.app, Chat(view.url, model=view.models[0] if view.models else None))

    def action_compare(self) -> None:
        """The served model beside the local one it serves (the run, loaded here), side by side."""
        view = self._ready_view()
        if view is not None:
            model = view.models[0] if view.models else None
            go(self.app, Chat(view.target, versus=(view.url, model, None)))

    def action_back(self) -> None:
        self.app.pop_screen()
