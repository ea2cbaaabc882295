"""The screen header: Textual's ``Header`` whose title update may safely arrive after the header is gone."""

from __future__ import annotations

from contextlib import suppress

from textual.css.query import NoMatches
from textual.dom import NoScreen
from textual.events import Mount
from textual.widgets import Header, Static


class TitleHeader(Header):
    """Textual's ``Header``; only its title watcher differs.

    ``Header`` re-renders its title whenever the app's or the screen's title changes, from a callback queued
    on the header. When a screen closes, or the app quits, just after a screen opens (keys typed fast), that
    callback can run after the header's children are removed, and ``Header`` lets the resulting ``NoMatches``
    escape and end the app with a traceback. Here it means there is no title left to update.
    """

    def _on_mount(self, event: Mount) -> None:
        event.prevent_default()  # Header's own handler would register the watcher that does not tolerate it

        async def set_title() -> None:
            with suppress(NoMatches, NoScreen):
                self.query_one("HeaderTitle", Static).update(self.format_title())

        self.watch(self.app, "title", set_title)
        self.watch(self.app, "sub_title", set_title)
        self.watch(self.screen, "title", set_title)
        self.watch(self.screen, "sub_title", set_title)
