"""Edit a chat reply into the better answer, as a modal: Ctrl+S saves it as feedback, Escape cancels."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, TextArea


class EditReplyScreen(ModalScreen[str | None]):
    """Answers with the edited text, or None when cancelled or left unchanged."""

    DEFAULT_CSS = """
    EditReplyScreen { align: center middle; }
    EditReplyScreen > Vertical { width: 90; max-width: 95%; height: 80%; border: thick $accent; padding: 1 2;
                                 background: $surface; }
    EditReplyScreen TextArea { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", id="edit_reply.save"),
        Binding("escape", "cancel", "Cancel", id="edit_reply.cancel"),
    ]

    def __init__(self, prompt: str, reply: str) -> None:
        super().__init__()
        self.prompt = prompt
        self.reply = reply

    def compose(self) -> ComposeResult:
        with Vertical():
            # the user's own words: shown as typed, never read as markup ("[/INST]" would not parse)
            yield Label(Text.assemble("Edit the reply to: ", (self.prompt[:80], "bold")))
            yield TextArea(self.reply, id="edit-reply")
            yield Label("[b]Ctrl+S[/] save as the better answer    [b]Esc[/] cancel", classes="muted")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_save(self) -> None:
        text = self.query_one(TextArea).text.strip()
        self.dismiss(text if text and text != self.reply.strip() else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
