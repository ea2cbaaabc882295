"""A one-line note for a run, as a modal: Enter saves, Escape leaves it as it was."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from lorastudio.widgets.text_input import TextInput


class NoteScreen(ModalScreen[str | None]):
    """Answers with the new note (an empty one clears it) or None when cancelled."""

    DEFAULT_CSS = """
    NoteScreen { align: center middle; }
    NoteScreen > Vertical { width: 70; max-width: 95%; height: auto; border: thick $accent; padding: 1 2;
                            background: $surface; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="note.cancel")]

    def __init__(self, run_name: str, note: str) -> None:
        super().__init__()
        self.run_name = run_name
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text.assemble("Note for ", (self.run_name, "bold")))
            yield TextInput(self.note, placeholder="what this run tried (empty clears)", id="note-input")
            yield Label("[b]Enter[/] save    [b]Esc[/] cancel", classes="muted")

    @on(Input.Submitted)
    def save(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
