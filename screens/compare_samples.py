"""Compare's samples view: the marked runs' latest replies to the same prompts, side by side."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from lorastudio.screens.worker_failures import HandlesWorkerFailures
from lorastudio.widgets.compare_chart import SERIES_COLORS
from lorastudio.widgets.title_header import TitleHeader


@dataclass
class SamplesLoaded(Message):
    histories: list[Any]
    """One SampleHistory per run, in the runs' order."""


def side_by_side(names: list[str], histories: list[Any], base: bool = False) -> Table:
    """One row per prompt (those every run asked first), one column per run: its latest reply (or base's)."""
    table = Table(expand=True, show_lines=True, pad_edge=False)
    table.add_column("prompt", ratio=1, style="bold")
    for i, name in enumerate(names):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        latest = histories[i].rounds[-1] if len(histories[i]) else None
        where = f"step {latest.step}" if latest is not None else "no samples"
        table.add_column(
            Text(
                f"{string.ascii_uppercase[i % 26]} {name} · {'base' if base else where}",
                style=f"bold {color}",
            ),
            ratio=2,
        )
    prompts: list[str] = []
    for history in histories:
        prompts += [p for p in history.prompts if p not in prompts]
    shared = [p for p in prompts if all(p in h.prompts for h in histories)]
    for prompt in shared + [p for p in prompts if p not in shared]:
        cells = []
        for history in histories:
            event = history.base if base else (history.rounds[-1] if len(history) else None)
            reply = event.reply_to(prompt) if event is not None else None
            cells.append(Text(reply, style="") if reply is not None else Text("(not asked)", style="dim"))
        table.add_row(Text(prompt), *cells)
    return table


class CompareSamplesScreen(HandlesWorkerFailures, Screen[None]):
    """Lettered and coloured as Compare is; ``b`` switches to the runs' base replies."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="compare_samples.back"),
        Binding("b", "base", "Base/latest", id="compare_samples.base"),
    ]

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self.paths = paths
        self.histories: list[Any] | None = None
        self.base = False

    def compose(self) -> ComposeResult:
        yield TitleHeader()
        yield Label(
            f"Compare samples · {len(self.paths)} runs · loading…",
            id="compare-samples-title",
            classes="title",
        )
        with VerticalScroll(id="compare-samples-scroll"):
            yield Static("", id="compare-samples")
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="compare-samples", exit_on_error=False)
    def load(self) -> None:
        from lorastudio.train.run.runstate import load_samples
        from lorastudio.train.run.samplelog import SampleHistory

        self.post_message(SamplesLoaded([SampleHistory.of(load_samples(path)) for path in self.paths]))

    def worker_failed(self, worker: Any, message: str) -> None:
        self.query_one("#compare-samples-title", Label).update(
            Text(f"Compare samples · {message}", style="bold red")
        )

    def on_samples_loaded(self, message: SamplesLoaded) -> None:
        self.histories = message.histories
        self._draw()

    def _draw(self) -> None:
        if self.histories is None:
            return
        names = [p.name for p in self.paths]
        self.query_one("#compare-samples", Static).update(side_by_side(names, self.histories, self.base))
        self.query_one("#compare-samples-title", Label).update(
            f"Compare samples · {len(self.paths)} runs · {'base replies' if self.base else 'latest replies'}"
            "   [dim]b base/latest[/]"
        )

    def action_base(self) -> None:
        self.base = not self.base
        self._draw()

    def action_back(self) -> None:
        self.app.pop_screen()
