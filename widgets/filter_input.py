"""An Input that remembers its text at the moment Enter reached it.

Its Enter binding runs only after the key has bubbled up through the screen, and by then the
keys typed after Enter in a burst (a paste, a slow SSH link) have already been typed into the
box. ``submitted_text`` is what Enter was pressed on.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class FilterInput(Input):
    """An Input whose Enter acts on the text before it, not on keys typed ahead after it."""

    submitted_text: str | None = None

    def entered(self, submitted: str) -> str:
        """The text Enter was pressed on; ``submitted`` (the Submitted event's value) when no Enter key came."""
        return self.submitted_text if self.submitted_text is not None else submitted

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":  # handled in order, before the keys queued behind it
            self.submitted_text = self.value
        await super()._on_key(event)
