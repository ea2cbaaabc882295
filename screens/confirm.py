"""A yes/no question as a modal."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class ConfirmScreen(ModalScreen[bool]):
    """Answer with y / Enter or n / Escape."""

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 64; max-width: 100%; height: auto; border: thick $warning; padding: 1 2; background: $surface; }
    ConfirmScreen #confirm-question { width: 100%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,enter", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            # wrapped, not cut at the box's edge; run names and paths are shown as they are, never as markup
            yield Static(self.question, id="confirm-question", markup=False)
            yield Label("[b]y[/] yes    [b]n[/] no", classes="muted")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
