"""A Switch for forms: space toggles it, Enter is left to the form (the Launch sheet's Enter launches)."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import Switch


class FormSwitch(Switch):
    """Like Switch, without its Enter binding."""

    inherit_bindings = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_switch", "Toggle", show=False, id="form_switch.toggle")
    ]
