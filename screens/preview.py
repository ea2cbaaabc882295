"""Screen 2: the masked-sample preview. What is shown is what trains (same encode function)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, ProgressBar, Static

from lorastudio.data.datasource import describe_eval_split
from lorastudio.data.encode import DatasetStats
from lorastudio.recipe import Recipe
from lorastudio.screens.focus import focus_now, typing_in
from lorastudio.screens.messages import LoadProgress, show_load_progress, start_model_load
from lorastudio.screens.navigate import Launch, go
from lorastudio.screens.worker_failures import HandlesWorkerFailures
from lorastudio.widgets.filter_input import FilterInput
from lorastudio.widgets.stats_panel import StatsPanel
from lorastudio.widgets.title_header import TitleHeader
from lorastudio.widgets.token_view import TokenView

if TYPE_CHECKING:  # for types only: the worker imports prepare, off the start-up path
    from lorastudio.data.prepare import Prepared

STATS_EVERY_S = 0.25
"""How often the statistics panel is redrawn while rows are encoded."""

FIRST_PAINT_S = 0.05
"""How long the load waits after the first sample, so it is painted before the whole file is read."""


@dataclass
class Loaded(Message):
    """The tokenizer, rows and encoder are ready (``partial``: only the file's first rows, so far)."""

    prepared: Prepared
    partial: bool = False


@dataclass
class SearchResult(Message):
    """The row a search found (None: no row holds the text)."""

    needle: str
    index: int | None


@dataclass
class StatsWaiting(Message):
    """The statistics wait for another builder of the same prepared-data entry (who, and since when)."""

    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StatsWaiting)


@dataclass
class StatsUpdate(Message):
    """A snapshot of the data-set statistics; newer snapshots replace pending ones."""

    stats: DatasetStats

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StatsUpdate)


class PreviewScreen(HandlesWorkerFailures, Screen[None]):
    """One sample at a time, with data-set statistics computed in the background."""

    BINDINGS = [
        Binding("n,right,l", "next", "Next", id="preview.next"),
        Binding("p,left,h", "previous", "Prev", id="preview.previous"),
        Binding("g", "jump", "Go to", id="preview.jump", priority=True),
        Binding("slash", "search", "Search", id="preview.search", priority=True),
        Binding("b", "toggle_view('boundaries')", "Boundaries", id="preview.boundaries"),
        Binding("s", "toggle_view('show_special')", "Specials", id="preview.special"),
        Binding("i", "toggle_view('show_ids')", "Ids", id="preview.ids"),
        Binding("t", "train", "Train…", id="preview.train"),
        Binding("escape", "back", "Back", id="preview.back"),
    ]

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.torch_threads: int | None = None  # what the load capped torch to (models/threads.py)
        self.recipe = recipe
        self.prepared: Any = None
        self.partial = False
        self.index = 0
        self.input_mode: str | None = None
        self.pack_rows = 1
        """With ``train.packing``: how many rows the pack shown holds (``next`` skips past them)."""

    @property
    def loaded(self) -> bool:
        """The whole file is loaded, not only its first rows."""
        return self.prepared is not None and not self.partial

    def compose(self) -> ComposeResult:
        yield TitleHeader()
        yield Label(f"Preview · {self.recipe.name}", id="preview-title", classes="title")
        yield Label("", id="sample-header")
        yield ProgressBar(total=1.0, show_eta=False, id="build-progress")
        with Horizontal(id="preview-body"):
            with VerticalScroll(id="sample-scroll", classes="panel"):
                yield Static("loading tokenizer and data…", id="legend", classes="muted")
                yield Static("", id="sample-notes", classes="muted")
                yield TokenView(id="tokens")
            yield StatsPanel(id="stats-panel", classes="panel")
        yield FilterInput(id="preview-input")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#build-progress").display = False
        self.query_one("#sample-notes").display = False
        self.load()

    @work(thread=True, exclusive=True, group="preview-load", exit_on_error=False)
    def load(self) -> None:
        from lorastudio.data.prepare import prepare, prepare_head

        progress, self.torch_threads = start_model_load(self.post_message)

        # progress is only reported by slow first-use work: building tiny, fetching or dequantizing a GGUF.
        # A big file's first sample shows from its first rows while the whole file loads.
        head = prepare_head(self.recipe, progress)
        if head is not None:
            # Shown before the whole load starts: that load holds the GIL for long stretches, and a
            # posted message would wait behind it.
            self.app.call_from_thread(self.on_loaded, Loaded(head, partial=True))
            time.sleep(FIRST_PAINT_S)
        prepared = prepare(self.recipe, progress, tokenizer=head.tokenizer if head is not None else None)
        self.post_message(Loaded(prepared))

    @work(thread=True, exclusive=True, group="preview-stats", exit_on_error=False)
    def compute_stats(self) -> None:
        from textual.worker import get_current_worker

        from lorastudio.data.prepared.fastencode import compute_stats

        worker = get_current_worker()
        posted = [0.0]

        def progress(stats: DatasetStats) -> bool:
            # A few redraws a second: each copies and summarises up to a million lengths.
            if stats.done or time.monotonic() - posted[0] >= STATS_EVERY_S:
                posted[0] = time.monotonic()
                self.post_message(StatsUpdate(stats.snapshot()))
            return not worker.is_cancelled

        from lorastudio.data.prepared.cache import prepare_data
        from lorastudio.errors import StudioError

        try:  # the prepared-data cache: read when there, else encoded (and kept for training) with progress
            prepare_data(
                self.recipe,
                prepared=self.prepared,
                progress=progress,
                every=2000,
                waiting=lambda fraction, text: self.post_message(StatsWaiting(text)),
                cancelled=lambda: worker.is_cancelled,
            )
        except StudioError:  # no usable rows, or cancelled: the plain statistics still say why
            if not worker.is_cancelled:
                compute_stats(self.prepared.encoder, self.prepared.rows.rows, progress, every=2000)

    def worker_failed(self, worker: Any, message: str) -> None:
        self.query_one("#legend", Static).update(Text(message, style="bold red"))  # its text, never markup
        self.query_one("#build-progress").display = False

    def on_load_progress(self, message: LoadProgress) -> None:
        bar = self.query_one("#build-progress", ProgressBar)
        show_load_progress(bar, self.query_one("#legend", Static), self.recipe.model.name, message)

    def on_loaded(self, message: Loaded) -> None:
        from lorastudio.data.tokenview import legend

        self.prepared = message.prepared  # the head's, then the whole file's (redrawn with its encoder)
        self.partial = message.partial
        self.query_one("#build-progress").display = False
        import os

        self.query_one("#legend", Static).update(legend("NO_COLOR" in os.environ))
        if not message.partial:
            self.compute_stats()
        self.show_sample(self.index)

    def on_stats_waiting(self, message: StatsWaiting) -> None:
        self.query_one(StatsPanel).update(Text(message.text, style="yellow"))

    def on_stats_update(self, message: StatsUpdate) -> None:
        enc = self.prepared.encoder
        self.query_one(StatsPanel).show(
            message.stats,
            enc.format,
            enc.template_name,
            describe_eval_split(self.recipe.data, message.stats.rows),
        )

    def show_sample(self, index: int) -> None:
        from lorastudio.data.formats import SkipRow
        from lorastudio.data.tokenview import pieces

        if self.prepared is None:
            return
        rows = self.prepared.rows.rows
        self.index = max(0, min(index, len(rows) - 1))
        header = self.query_one("#sample-header", Label)
        view = self.query_one(TokenView)
        of = "… (reading the file)" if self.partial else str(len(rows))
        notes = self.query_one("#sample-notes", Static)
        if self.recipe.train.packing:  # what trains is the packed sequence: show it, documents marked
            self._show_pack(rows, of)
            return
        view.documents = []
        try:
            sample = self.prepared.encoder.encode_row(rows[self.index], self.index)
        except SkipRow as skip:
            header.update(f"sample {self.index + 1}/{of} · skipped: {escape(str(skip))}")
            notes.display = False
            view.set_pieces([])
            return
        # How the template rendered this row: think blocks trained or masked, reasoning or history it rewrote.
        notes.update(Text("\n".join(f"· {note}" for note in sample.notes)))
        notes.display = bool(sample.notes)
        header.update(
            f"sample {self.index + 1}/{of} · {len(sample.input_ids)} tokens · "
            f"{sample.trained_count} trained · {'TRUNCATED from ' + str(sample.full_length) if sample.truncated else 'not truncated'}"
            f" · format {escape(self.prepared.encoder.format)}"
        )
        view.set_pieces(pieces(self.prepared.tokenizer, sample))

    def _show_pack(self, rows: Any, of: str) -> None:
        from lorastudio.data.encode import packed_preview
        from lorastudio.data.tokenview import pieces

        sample, starts, used = packed_preview(
            self.prepared.encoder, rows, self.index, self.recipe.model.max_seq_length
        )
        self.pack_rows = max(used, 1)
        self.query_one("#sample-notes", Static).display = False
        self.query_one("#sample-header", Label).update(
            f"packed sequence from sample {self.index + 1}/{of} · {len(starts)} documents "
            f"(samples {self.index + 1}-{self.index + self.pack_rows}) · {len(sample.input_ids)} tokens · "
            f"{sample.trained_count} trained · format {escape(self.prepared.encoder.format)}"
        )
        view = self.query_one(TokenView)
        view.documents = starts
        view.set_pieces(pieces(self.prepared.tokenizer, sample))

    def action_next(self) -> None:
        if self.recipe.train.packing:  # a whole pack on: the next one starts where this one ended
            self.show_sample(self.index + self.pack_rows)
            return
        self.show_sample(self.index + 1)

    def action_previous(self) -> None:
        self.show_sample(self.index - 1)

    def action_toggle_view(self, attribute: str) -> None:
        # Not action_toggle: that is Textual's own (async, on every DOM node) and this one is not a drop-in.
        view = self.query_one(TokenView)
        setattr(view, attribute, not getattr(view, attribute))
        view.refresh_text()

    def _ask(self, mode: str, placeholder: str) -> None:
        self.input_mode = mode
        box = self.query_one("#preview-input", Input)
        box.placeholder = placeholder
        box.value = ""
        box.add_class("visible")
        focus_now(box)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # "g" and "/" are priority bindings so the keys after them reach the box; in the box they are text.
        return not (action in ("jump", "search") and typing_in(self))

    def _close_input(self) -> None:
        box = self.query_one("#preview-input", Input)
        box.remove_class("visible")
        box.display = False
        focus_now(self.query_one("#sample-scroll"))

    def action_jump(self) -> None:
        self._ask("jump", "go to sample number…")

    def action_search(self) -> None:
        self._ask("search", "search text in the rows…")

    @on(Input.Submitted, "#preview-input")
    def _answered(self, event: Input.Submitted) -> None:
        box = self.query_one("#preview-input", FilterInput)
        # What Enter was pressed on: keys typed after it in a burst are not part of the search.
        value = box.entered(event.value).strip()
        self._close_input()
        mode, self.input_mode = self.input_mode, None
        if not value or self.prepared is None:
            return
        if mode == "jump":
            if value.isdigit():
                self.show_sample(int(value) - 1)
            else:
                self.notify(f"not a sample number: {value!r}", severity="warning")
        elif mode == "search":
            self.search(value)

    def search(self, needle: str) -> None:
        """Find the next row holding ``needle`` in a worker (a big file takes a moment); the result comes as a message."""
        self.query_one("#sample-header", Label).update(f"searching for {escape(repr(needle))}…")
        self._search(needle, self.index)

    @work(thread=True, exclusive=True, group="preview-search", exit_on_error=False)
    def _search(self, needle: str, after: int) -> None:
        from textual.worker import get_current_worker

        from lorastudio.data.rowsearch import find_row

        worker = get_current_worker()
        found = find_row(self.prepared.rows.rows, needle, after, lambda: worker.is_cancelled)
        if not worker.is_cancelled:
            self.post_message(SearchResult(needle, found))

    def on_search_result(self, message: SearchResult) -> None:
        if message.index is None:
            more = " (the file is still being read)" if self.partial else ""
            self.notify(f"{message.needle!r} not found{more}", severity="warning")
            self.show_sample(self.index)  # the header again, in place of "searching…"
            return
        self.query_one(TokenView).highlight = message.needle
        self.show_sample(message.index)

    def action_back(self) -> None:
        box = self.query_one("#preview-input", Input)
        if box.display:
            self._close_input()
            return
        self.app.pop_screen()

    def action_train(self) -> None:
        """Open the Launch sheet; nothing trains until Enter there."""
        go(self.app, Launch(self.recipe))
