"""Pick what to chat with: the final adapter or one of the run's checkpoints."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from lorastudio.train.launch.manage import Checkpoint


class CheckpointPicker(ModalScreen[Path | None]):
    """Answers with the chosen adapter folder, or None when cancelled."""

    DEFAULT_CSS = """
    CheckpointPicker { align: center middle; }
    CheckpointPicker > Vertical { width: 60; max-width: 95%; height: auto; max-height: 80%;
                                  border: thick $accent; padding: 1 2; background: $surface; }
    CheckpointPicker OptionList { height: auto; max-height: 16; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="checkpoints.cancel")]

    def __init__(self, run_name: str, choices: list[Checkpoint], best: str | None = None) -> None:
        super().__init__()
        self.run_name = run_name
        self.choices = choices
        self.best = Path(best).name if best else None

    def compose(self) -> ComposeResult:
        options = []
        for i, choice in enumerate(self.choices):
            mark = "  ★ best eval loss" if self.best and choice.path.name == self.best else ""
            options.append(Option(f"{choice.label}{mark}", id=str(i)))
        with Vertical():
            yield Label(Text.assemble("Chat with ", (self.run_name, "bold"), " at:"))
            yield OptionList(*options, id="checkpoint-list")
            yield Label("[b]Enter[/] chat    [b]Esc[/] cancel", classes="muted")

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[int(event.option.id or 0)].path)

    def action_cancel(self) -> None:
        self.dismiss(None)
