"""Past evaluations, newest first: pick one to reopen it on the Eval screen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


@dataclass
class EvalsListed(Message):
    evals: list[Any]


def eval_line(summary: Any) -> Text:
    """``ID  status  done/total  targets on tasks``."""
    state = summary.state
    what = f"{', '.join(summary.spec.targets)} on {', '.join(summary.spec.tasks)}" if summary.spec else "?"
    style = {"done": "green", "failed": "red", "died": "red", "damaged": "red"}.get(summary.status, "yellow")
    return Text.assemble(
        (summary.id, "bold"),
        "  ",
        (f"{summary.status:<8}", style),
        f" {state.eval_done}/{state.eval_total or '?'}  ",
        what,
        no_wrap=True,
        overflow="ellipsis",
    )


class EvalListScreen(ModalScreen[Path | None]):
    """Every evaluation (``studio evals``); Enter reopens one, Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="eval_list.cancel")]

    def __init__(self) -> None:
        super().__init__()
        self.evals: list[Any] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="eval-list-box", classes="panel"):
            yield Label("Past evaluations · reading…", id="eval-list-title", classes="title")
            yield OptionList(id="eval-list")

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="eval-list", exit_on_error=False)
    def load(self) -> None:
        from lorastudio.evaluate.job import list_evals

        self.post_message(EvalsListed(list_evals()))

    def on_evals_listed(self, message: EvalsListed) -> None:
        self.evals = message.evals
        box = self.query_one(OptionList)
        box.clear_options()
        box.add_options([Option(eval_line(e), id=str(e.path)) for e in message.evals])
        title = self.query_one("#eval-list-title", Label)
        title.update(
            f"Past evaluations ({len(message.evals)}) · Enter opens · Esc cancels"
            if message.evals
            else "No evaluations yet · Esc goes back"
        )
        if message.evals:
            box.highlighted = 0

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(Path(event.option.id) if event.option.id else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
