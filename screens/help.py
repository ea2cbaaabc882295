"""F1 / ?: every key of the screen below and of the app."""

from __future__ import annotations

import re
from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


def human_title(screen: Screen) -> str:
    """What the screen calls itself: its title line ("Preview · tiny-pirate · dpo"), else its class name in
    words ("Checkpoint picker"), never the code's "MethodPreview"."""
    for label in screen.query(".title"):
        text = str(label.render()).strip()
        if text:
            return text
    name = type(screen).__name__.removesuffix("Screen")
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).capitalize()


class HelpScreen(ModalScreen[None]):
    """Lists the bindings of the screen it was opened over."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 70; max-height: 90%; border: thick $primary; background: $surface; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,question_mark,q", "dismiss", "Close", id="help.close")
    ]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        table = Table("key", "action", box=None, title=f"Keys · {human_title(self.under)}")
        rows: dict[tuple[str, str], list[str]] = {}  # (action, description) -> its keys, in binding order
        taken: set[str] = set()  # a key the screen binds hides the app's binding of it
        for binding in [*self.under.BINDINGS, *self.app.BINDINGS]:
            if not isinstance(binding, Binding):
                continue
            keys = [k.strip() for k in binding.key.split(",") if k.strip() not in taken]
            if not keys:
                continue
            taken.update(keys)
            shown = rows.setdefault((binding.action, binding.description or binding.action), [])
            shown += [self.app.get_key_display(Binding(key, "")) for key in keys]
        for (_, description), keys in rows.items():
            table.add_row(", ".join(keys), description)
        table.add_row("ctrl+p", "command palette")
        with VerticalScroll():
            yield Static(table)
