"""The Monitor's Samples pane: each sample prompt with its reply at one round, changes since the round before,
and the data's own answer (the reference) under it when the data has one.

Left/right (or ``[``/``]``) step through the rounds, ``end`` goes back to following the latest, ``b`` shows
the base's reply (the first round's) under each reply.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static

from lorastudio.train.run.events import SampleEvent
from lorastudio.train.run.samplelog import SampleHistory, round_label, word_diff

ADDED, REMOVED = "bold green", "red strike"


def reply_text(reply: str, before: str | None, cut: bool = False) -> Text:
    """A reply with the words added since ``before`` in green (`` …`` when ``cut`` at the token limit), then
    the words it dropped, struck through."""
    out, removed = Text(), []
    if before is None or before == reply:
        out.append(reply or "(empty reply)")
        before = reply
    for op, piece in word_diff(before, reply) if before != reply else ():
        if op == "removed":
            removed.append(piece)
        else:
            out.append(piece, style=ADDED if op == "added" else "")
    if cut:
        out.append(" …", style="dim")
    if removed:
        out.append("\n  − ", style="red")
        out.append(" · ".join(removed), style=REMOVED)
    return out


class SamplesView(VerticalScroll, can_focus=True):
    """A run's sample rounds; follows the latest round until the user steps back."""

    BINDINGS = [
        Binding("left,left_square_bracket", "step(-1)", "Earlier", id="samples.earlier"),
        Binding("right,right_square_bracket", "step(1)", "Later", id="samples.later"),
        Binding("home", "first", "First", show=False, id="samples.first"),
        Binding("end", "latest", "Latest", show=False, id="samples.latest"),
        Binding("b", "base", "Base", id="samples.base"),
    ]

    index: reactive[int | None] = reactive(None)
    """The round shown; None follows the latest."""
    show_base: reactive[bool] = reactive(False)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.history = SampleHistory(())
        self._seen = -1

    def compose(self) -> ComposeResult:
        yield Static(self.render_text(), id="samples-body")

    def show(self, samples: Sequence[SampleEvent]) -> None:
        """Take the fold's rounds (cheap when nothing is new)."""
        if len(samples) == self._seen:
            return
        self._seen = len(samples)
        self.history = SampleHistory.of(samples)
        self._refresh_body()

    @property
    def current(self) -> int | None:
        if not len(self.history):
            return None
        return len(self.history) - 1 if self.index is None else min(self.index, len(self.history) - 1)

    def render_text(self) -> Text:
        at = self.current
        if at is None:
            return Text(
                "no sample replies yet: they are written at the first step, at every evaluation and "
                "at the end (train.samples in the recipe)",
                style="dim",
            )
        event = self.history.rounds[at]
        base = self.history.base
        total = sum(e.seconds or 0.0 for e in self.history.rounds)
        out = Text()
        out.append(f" {round_label(event)} ", style="reverse bold")
        out.append(f"  round {at + 1}/{len(self.history)}" + ("" if self.index is None else " (held)"))
        out.append(f" · {event.seconds:.1f} s · {total:.1f} s sampling in all", style="dim")
        out.append("\n←/→ rounds · end latest · b base", style="dim")
        if at > 0:
            out.append(" · ", style="dim")
            out.append("added", style=ADDED)
            out.append(" / ", style="dim")
            out.append("removed", style=REMOVED)
            out.append(" since the round before", style="dim")
        for prompt, reply, finish in zip(
            event.prompts, event.replies, event.finish or ("",) * len(event.prompts), strict=False
        ):
            out.append("\n\n▌ ", style="cyan")
            out.append(prompt, style="bold")
            out.append("\n")
            out.append_text(reply_text(reply, self.history.previous(at, prompt), finish == "length"))
            reference = event.reference_to(prompt)
            if reference:  # the data's own answer, to read the reply against
                out.append("\n  reference: ", style="bold blue")
                out.append(reference, style="dim")
            if self.show_base and base is not None and base is not event:
                out.append("\n  base: ", style="bold magenta")
                out.append(base.reply_to(prompt) or "(not asked)", style="dim")
        return out

    def _refresh_body(self) -> None:
        if self.is_mounted:
            self.query_one("#samples-body", Static).update(self.render_text())

    def watch_index(self) -> None:
        self._refresh_body()

    def watch_show_base(self) -> None:
        self._refresh_body()

    def action_step(self, delta: int) -> None:
        at = self.current
        if at is None:
            return
        target = max(0, min(len(self.history) - 1, at + delta))
        self.index = None if target == len(self.history) - 1 else target

    def action_first(self) -> None:
        if len(self.history):
            self.index = 0 if len(self.history) > 1 else None

    def action_latest(self) -> None:
        self.index = None

    def action_base(self) -> None:
        self.show_base = not self.show_base
