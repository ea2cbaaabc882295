"""Messages that more than one screen posts from its workers, and how those screens show them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.markup import escape
from textual.message import Message
from textual.widgets import Label, ProgressBar, Static

WARMING_UP = "loading the tokenizer and model libraries (studio is still starting; a second or two)"


@dataclass
class LoadProgress(Message):
    """Progress of a slow load (tiny model build, model load); a newer one replaces a pending one."""

    fraction: float
    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LoadProgress)


def start_model_load(post: Callable[[Message], object]) -> tuple[Callable[[float, str], None], int]:
    """In a worker thread about to load a recipe's tokenizer or model: (a progress callback posting
    :class:`LoadProgress` through ``post``, the torch threads this thread may use).

    It says why nothing shows yet when studio is still importing, waits for those imports, and caps torch
    (the tiny build beside a training worker must not fight it).
    """
    from lorastudio.models.resolve import wait_for_imports, warming_up
    from lorastudio.models.threads import share_cores

    def progress(fraction: float, text: str) -> None:
        post(LoadProgress(fraction, text))

    if warming_up():  # opened in the first seconds
        progress(0.0, WARMING_UP)
    wait_for_imports()
    return progress, share_cores()


def show_load_progress(bar: ProgressBar, label: Label | Static, model: str, message: LoadProgress) -> None:
    """The bar at the message's fraction (hidden once done) and "preparing MODEL: what" beside it."""
    bar.display = message.fraction < 1.0
    bar.update(progress=message.fraction)
    label.update(f"preparing {escape(model)}: {escape(message.text)}")
