"""An Input that remembers its text at the moment Enter reached it.

A screen reads the box when the Submitted message reaches it, and by then the keys typed after Enter in
a burst (a paste, a slow SSH link) are in the box. ``submitted_text`` is what Enter was pressed on (its
TextInput base runs Enter's binding in order, so the Submitted value agrees with it).
"""

from __future__ import annotations

from textual import events

from lorastudio.widgets.text_input import TextInput


class FilterInput(TextInput):
    """An Input whose Enter acts on the text before it, not on keys typed ahead after it."""

    submitted_text: str | None = None

    def entered(self, submitted: str) -> str:
        """The text Enter was pressed on; ``submitted`` (the Submitted event's value) when no Enter key came."""
        return self.submitted_text if self.submitted_text is not None else submitted

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":  # handled in order, before the keys queued behind it
            self.submitted_text = self.value
        await super()._on_key(event)
