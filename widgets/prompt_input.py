"""The chat's message box."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType

from lorastudio.widgets.text_input import TextInput


class PromptInput(TextInput):
    """Up and Down recall earlier prompts: the box's own bindings, so they act in order with the keys typed
    around them (Up then Enter in one burst sends the recalled prompt, not the empty box)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "screen.history(-1)", "History", show=False, id="chat.input_history_up"),
        Binding("down", "screen.history(1)", "History", show=False, id="chat.input_history_down"),
    ]
