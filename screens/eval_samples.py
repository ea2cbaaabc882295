"""An evaluation row's documents: each prompt, its reference answer and every target's answer and score (a
judged row: the judge's verdicts and raw replies under each judged answer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from lorastudio.screens.worker_failures import HandlesWorkerFailures
from lorastudio.widgets.title_header import TitleHeader

PROMPT_LINES = 6
"""A prompt's last lines shown (few-shot prompts are long; the question is at their end)."""


@dataclass
class SamplesRead(Message):
    rows: list[Any]


def prompt_tail(prompt: str, lines: int = PROMPT_LINES) -> str:
    kept = prompt.strip().splitlines()
    return "\n".join((["…"] if len(kept) > lines else []) + kept[-lines:])


def samples_table(rows: list[Any], targets: list[str]) -> Table:
    """A row per document: the prompt (its end), the reference, then each target's answer (and score)."""
    table = Table(expand=True, show_lines=True, pad_edge=False)
    table.add_column("prompt", ratio=3)
    table.add_column("reference", ratio=1, style="green")
    for label in targets:
        table.add_column(label, ratio=2, style="bold")
    for row in rows:
        cells = []
        for label in targets:
            answer = row.answers.get(label)
            if answer is None:
                cells.append(Text("(not run)", style="dim"))
                continue
            cell = Text(answer.strip() or "(empty)")
            score = row.scores.get(label)
            if score is not None:
                cell.append(f"  {score:g}", style="green" if score > 0 else "red")
            verdict = getattr(row, "judged", {}).get(label)
            if verdict:  # the judge's verdicts and raw replies, under the answer they judged
                cell.append(f"\n{verdict}", style="italic")
            cells.append(cell)
        table.add_row(Text(prompt_tail(row.prompt)), Text(row.reference), *cells)
    return table


class EvalSamplesScreen(HandlesWorkerFailures, Screen[None]):
    """The documents of one results row, read on a worker thread; Escape goes back to the table."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back", id="eval_samples.back")]
    AUTO_FOCUS = "#eval-samples-scroll"

    def __init__(self, folder: Path, metric: str, targets: list[str]) -> None:
        super().__init__()
        self.folder, self.metric, self.targets = folder, metric, targets
        self.rows: list[Any] | None = None

    def compose(self) -> ComposeResult:
        yield TitleHeader()
        yield Label(f"Eval samples · {self.metric} · reading…", id="eval-samples-title", classes="title")
        with VerticalScroll(id="eval-samples-scroll"):
            yield Static("", id="eval-samples")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="eval-samples", exit_on_error=False)
    def load(self) -> None:
        from lorastudio.evaluate.scores import read_samples

        self.post_message(SamplesRead(read_samples(self.folder, self.metric)))

    def on_samples_read(self, message: SamplesRead) -> None:
        self.rows = message.rows
        title = self.query_one("#eval-samples-title", Label)
        body = self.query_one("#eval-samples", Static)
        if not message.rows:
            title.update(f"Eval samples · {self.metric}")
            body.update(
                Text(
                    f"no per-document outputs in {self.folder} for {self.metric.split('/', 1)[0]}",
                    style="dim",
                )
            )
            return
        title.update(f"Eval samples · {self.metric} · {len(message.rows)} documents")
        body.update(samples_table(message.rows, self.targets))

    def worker_failed(self, worker: Any, message: str) -> None:
        self.query_one("#eval-samples-title", Label).update(Text(message, style="bold red"))

    def action_back(self) -> None:
        self.app.pop_screen()
