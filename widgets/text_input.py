"""An Input whose editing keys act in the order they were typed.

Textual inserts a typed character as the Input dequeues the key, but runs the Input's own bindings
(Backspace, the arrows, Home, Ctrl+U, Ctrl+W, Enter, ...) only after the key has bubbled up through
the screen to the app. In a burst (a paste, a slow SSH link, or keys typed while a worker holds the
interpreter) the characters typed after such a key are already in the box when it acts: ``abc``,
Backspace, ``d`` left ``abc``; Ctrl+U then ``400`` left the box empty. Here the Input runs its own
binding for a key as it dequeues it, like a character, so edits apply in order. Keys it does not bind
travel on as before (the screen's and the app's bindings).
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class TextInput(Input):
    """Every Input of the app: its editing bindings run in order with the characters around them."""

    async def _on_key(self, event: events.Key) -> None:
        if not event.is_printable:
            for binding in self._bindings.key_to_bindings.get(event.key, ()):
                if not binding.priority and await self.app.run_action(binding.action, self):
                    event.stop()
                    event.prevent_default()
                    return
        await super()._on_key(event)
