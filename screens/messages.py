"""Messages that more than one screen posts from its workers."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class LoadProgress(Message):
    """Progress of a slow load (tiny model build, model load); a newer one replaces a pending one."""

    fraction: float
    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LoadProgress)
