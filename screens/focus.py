"""Type-ahead safe focus changes.

Textual routes each key to the widget that has focus *when the app dequeues it*, but a
binding's action runs only after the key has travelled through the focused widget's own
queue and bubbled back up. ``Widget.focus()`` is deferred as well. So in a burst (a paste,
or typing over a slow SSH link) like ``/tiny-p`` the keys after ``/`` are already on their
way to the list, and ``t`` fires Train. The fix used by every screen here:

- a key that opens a text box is a *priority* binding (it runs as the app dequeues it,
  before the next key is routed), guarded by :func:`typing_in` so it types normally once a
  text box has focus;
- the action moves focus *synchronously* with :func:`focus_now`, so the very next key in
  the burst is routed to the text box.

A key that *starts* something (Enter on a table row) is never a priority binding: it must
run after the keys typed before it (Down) have been handled.
"""

from __future__ import annotations

import sys
from typing import Any

from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input


def focus_now(widget: Widget) -> None:
    """Show ``widget`` and give it focus before the next key is routed (``focus()`` waits a turn)."""
    widget.display = True
    widget.screen.set_focus(widget)


def typing_in(screen: Screen[Any]) -> bool:
    """A text box has focus: keys are text, not commands."""
    focused = screen.focused
    if focused is None or isinstance(focused, Input):
        return focused is not None
    # Not imported: TextArea's module is 25 ms of start-up, and a widget can only be one once it is loaded.
    module = sys.modules.get("textual.widgets._text_area")
    return module is not None and isinstance(focused, module.TextArea)
