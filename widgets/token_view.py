"""One encoded sample, trained tokens highlighted and masked tokens dimmed."""

from __future__ import annotations

import os

from textual.widgets import Static

from lorastudio.data.tokenview import Piece, render


class TokenView(Static):
    """Shows the pieces of one sample with the toggles the Preview screen offers."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.items: list[Piece] = []
        self.boundaries = False
        self.show_special = True
        self.show_ids = False
        self.highlight: str | None = None
        self.documents: list[int] = []
        """Where each document of a packed sequence starts (``train.packing``), marked between them."""

    def set_pieces(self, items: list[Piece]) -> None:
        self.items = items
        self.refresh_text()

    def refresh_text(self) -> None:
        self.update(
            render(
                self.items,
                boundaries=self.boundaries,
                show_special=self.show_special,
                show_ids=self.show_ids,
                no_color="NO_COLOR" in os.environ,
                highlight=self.highlight,
                documents=self.documents,
            )
        )
