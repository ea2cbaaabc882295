"""The fast, exact twin of :meth:`Encoder.encode_row` for whole data sets.

The chat template is analysed once per conversation shape (the sequence of roles): it is
rendered with sentinel contents, which splits the render into constant pieces around each
turn's content, and with contents padded by each kind of whitespace, which shows whether (and
how) the template strips a turn's content. Where :meth:`Encoder.locate` puts each trained span
in that render becomes a constant distance from the reply's text, back to the end of its prompt
and on to its end-of-turn. Rows are then formatted by string joins and tokenized a word at a
time from a cache (``bytelevel``) or in batches by the Rust tokenizer; the labels are the token
ranges overlapping each reply, found by binary search over the words' or tokens' offsets.
Conversations with tools, tool calls, tool results or reasoning are rendered row by row.

The tokenizer cuts its input at added tokens (``<|im_start|>``) before anything else, so a
template's constant opening (a default system prompt, up to the token that opens the first turn)
is tokenized once per shape and only the rest of each row goes to the tokenizer.

Exactness is checked, not assumed: the first rows of every shape are also encoded by
:meth:`Encoder.encode_example` and compared token for token. A template that is not linear for
a shape (its text depends on the contents) uses that path for the shape, so the result is
always what ``encode_row`` gives.
"""

from __future__ import annotations

import bisect
import itertools
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lorastudio.data.datasource import decoded_rows
from lorastudio.data.encode import (
    IGNORE_INDEX,
    NOTHING_TRAINED,
    NOTHING_TRAINED_WITHIN,
    THINK_CLOSE,
    DatasetStats,
    Encoded,
    Encoder,
)
from lorastudio.data.formats import Example, SkipRow
from lorastudio.data.prepared.arrowturns import Turns, read_turns
from lorastudio.data.prepared.bytelevel import ByteLevelWords
from lorastudio.data.prepared.wordplan import WordPlan, make_plan

ENCODER_VERSION = 5
"""Bumped whenever a change to the encoding could change ``input_ids`` or ``labels`` (it keys the cache)."""

_SENTINEL = "\u27e6S{}\u27e7"
_PADDINGS = (" \n", "\n", " ", "\t\n ")
_TEXT: tuple[str, ...] = ("(plain text)",)  # the pseudo-shape of plain-text rows, checked like the others


def _keep(s: str) -> str:
    return s


_TRANSFORMS: dict[str, Callable[[str], str]] = {
    "keep": _keep,
    "strip": str.strip,
    "lstrip": str.lstrip,
    "rstrip": str.rstrip,
    "strip newlines": lambda s: s.strip("\n"),
    "lstrip newlines": lambda s: s.lstrip("\n"),
    "rstrip newlines": lambda s: s.rstrip("\n"),
}


@dataclass(frozen=True)
class Layout:
    """A linear template for one shape: ``pieces[0] + c0 + pieces[1] + ... + c(n-1) + pieces[n]``."""

    pieces: tuple[str, ...]
    transforms: tuple[Callable[[str], str], ...]
    # Per trained assistant turn: (turn index, chars from the start of its content as rendered back to where
    # its prompt ends, chars from the end of its content on to the end of its end-of-turn).
    assistant: tuple[tuple[int, int, int], ...]
    # The render's first ``head`` characters (a default system prompt, up to the added token that opens
    # the first turn) always tokenize to ``head_blob`` (int32 ids); only the rest goes to the tokenizer.
    # 0: no such head.
    head: int = 0
    head_blob: bytes = b""
    # The render as constant token runs and the stretches holding contents (``wordplan``); None without the
    # word encoder, or where the template's added tokens do not allow one.
    plan: WordPlan | None = None
    as_is: bool = False
    """Whether the template takes every content as it is (no stripping)."""
    plan_rows: Callable[[Sequence[str]], tuple[bytes, list[tuple[int, int]]] | None] | None = None
    """The plan's row encoder (``ByteLevelWords.plan_encoder``, given the transforms): for the contents as the
    row holds them, ``encode_plan``'s result for the transformed ones, or None to ask it."""

    @property
    def head_ids(self) -> list[int]:
        return array("i", self.head_blob).tolist()


Result = Encoded | str
"""An encoded sample, or the reason (as :class:`SkipRow` says it) the row is skipped."""


class FastEncoder:
    """Encodes batches of rows exactly as ``encoder.encode_row`` does, much faster."""

    def __init__(self, encoder: Encoder, verify: int = 3, word_cache: bool = True) -> None:
        self.encoder = encoder
        self.verify = verify
        self._layouts: dict[tuple[str, ...], Layout | None] = {}
        self._checked: dict[tuple[str, ...], int] = {}
        tok = encoder.tokenizer
        backend = getattr(tok, "_tokenizer", None) if getattr(tok, "is_fast", False) else None
        # The Rust tokenizers.Tokenizer behind a fast tokenizer; None for a slow one, which takes only the slow paths.
        self._backend: Any = backend
        plain = word_cache and backend is not None and not getattr(tok, "split_special_tokens", False)
        self._words = ByteLevelWords.for_backend(backend) if plain else None
        # Plain text is encoded with the tokenizer's special tokens; the word path serves it when there are none.
        self._bare = plain and backend is not None and backend.num_special_tokens_to_add(False) == 0
        self.fast_shapes = 0
        self.slow_shapes = 0

    @property
    def word_cache(self) -> bool:
        """Whether ASCII rows are tokenized a word at a time (``bytelevel``) rather than by the Rust tokenizer."""
        return self._words is not None

    # -- analysis ------------------------------------------------------------------------------
    def layout(self, roles: tuple[str, ...]) -> Layout | None:
        if roles not in self._layouts:
            try:
                self._layouts[roles] = self._analyse(roles)
            except Exception:  # a template that fails on sentinels is left to the prefix-rendering path
                self._layouts[roles] = None
            if self._layouts[roles] is None:
                self.slow_shapes += 1
            else:
                self.fast_shapes += 1
        return self._layouts[roles]

    def _analyse(self, roles: tuple[str, ...]) -> Layout | None:
        enc = self.encoder
        sentinels = [_SENTINEL.format(i) for i in range(len(roles))]
        turns = [{"role": r, "content": s} for r, s in zip(roles, sentinels, strict=True)]
        full = enc.render(turns)
        pieces, starts, at = [], [], 0
        for s in sentinels:
            found = full.find(s, at)
            if found < 0 or full.count(s) != 1:
                return None
            pieces.append(full[at:found])
            starts.append(found)
            at = found + len(s)
        pieces.append(full[at:])
        transforms = []
        for i in range(len(roles)):
            fits = set(_TRANSFORMS)
            for padding in _PADDINGS:  # each kind of whitespace: ``.lstrip('\n')`` keeps a leading space
                padded = [dict(t) for t in turns]
                padded[i]["content"] = padding + sentinels[i] + padding
                text = enc.render(padded)
                fits &= {
                    name
                    for name, transform in _TRANSFORMS.items()
                    if text
                    == _join(
                        pieces,
                        [transform(padded[i]["content"]) if j == i else s for j, s in enumerate(sentinels)],
                    )
                }
            if not fits:
                return None
            transforms.append(_TRANSFORMS[next(name for name in _TRANSFORMS if name in fits)])
        # The spans the encoder finds in the sentinel render, as constant distances from each reply's text:
        # back to where its prompt ends, forward to its end-of-turn, both within the pieces around it.
        located = enc.locate(turns)
        if located.text != full:
            return None
        eot = enc.end_of_turn
        assistant = []
        for (span_start, span_end), i in zip(located.spans, located.owners, strict=True):
            start, end = starts[i], starts[i] + len(sentinels[i])
            back, forward = start - span_start, span_end - end
            if not (0 <= back <= len(pieces[i]) and 0 <= forward <= len(pieces[i + 1])):
                return None
            if not eot or full.find(eot, end) != span_end - len(eot) or span_end - len(eot) < end:
                return None  # no end-of-turn in the piece after the reply: its end depends on the contents
            assistant.append((i, back, forward))
        layout = Layout(tuple(pieces), tuple(transforms), tuple(assistant))
        head = self._head(layout, full)
        head_blob = b""
        if head:
            head_blob = array("i", self._backend.encode(full[:head], add_special_tokens=False).ids).tobytes()
        plan = None
        if self._words is not None:
            edges = [(i, len(pieces[i]) - back, i + 1, forward) for i, back, forward in assistant]
            plan = make_plan(self._words, pieces, edges)
        as_is = all(t is _keep for t in transforms)
        plan_rows = (
            None
            if plan is None or self._words is None
            else self._words.plan_encoder(plan, None if as_is else transforms)
        )
        return Layout(
            layout.pieces, layout.transforms, layout.assistant, head, head_blob, plan, as_is, plan_rows
        )

    def _head(self, layout: Layout, render: str) -> int:
        """How much of the first piece tokenizes the same whatever follows, or 0.

        The tokenizer cuts its input at added tokens before anything else, so the text up to an
        added token is tokenized alone, unless an added token could start inside it and end in
        what follows (checked for every added token), or the tokenizer treats the start of its
        input specially (checked on the sentinel render).
        """
        backend = self._backend
        if (
            backend is None
            or backend.normalizer is not None
            or (layout.assistant and layout.assistant[0][0] == 0)
        ):
            return 0
        self._reset_backend()
        decoder = backend.get_added_tokens_decoder()
        if getattr(backend, "encode_special_tokens", False) or any(
            t.lstrip or t.rstrip or t.single_word for t in decoder.values()
        ):
            return 0
        added = [t.content for t in decoder.values() if t.content]
        first = layout.pieces[0]
        head = max((first.rfind(t) + len(t) for t in added if t in first), default=0)
        if not head or any(first[:head].endswith(t[:j]) for t in added for j in range(1, len(t))):
            return 0
        whole = backend.encode(render, add_special_tokens=False).ids
        parts = (
            backend.encode(render[:head], add_special_tokens=False).ids
            + backend.encode(render[head:], add_special_tokens=False).ids
        )
        return head if whole == parts else 0

    # -- formatting ----------------------------------------------------------------------------
    def _format(self, layout: Layout, contents: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
        """The render and assistant spans, exactly as :meth:`Encoder.assistant_spans` finds them."""
        parts: list[str] = []
        bounds: list[tuple[int, int]] = []
        pos = 0
        for i, raw in enumerate(contents):
            piece, content = layout.pieces[i], layout.transforms[i](raw)
            pos += len(piece)
            bounds.append((pos, pos + len(content)))
            pos += len(content)
            parts += (piece, content)
        parts.append(layout.pieces[-1])
        full = "".join(parts)
        spans = []
        for i, back, forward in layout.assistant:
            start, end = bounds[i]
            spans.append((start - back, end + forward))
        return full, spans

    # -- encoding ------------------------------------------------------------------------------
    def encode_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[Result]:
        """Each row's :class:`Encoded`, or the reason it is skipped; order kept."""
        out: list[Result] = []
        for row in self._encode(rows):
            if isinstance(row, str):
                out.append(row)
                continue
            blob, ranges, truncated, full, _ = row
            ids = array("i", blob).tolist()
            out.append(Encoded(ids, _labels_of(ids, ranges), truncated, full))
        return out

    def encode_table(self, table: Any) -> Columns:
        """:meth:`encode_columns` for a ``pyarrow.Table`` of rows: the plain rows are read a column at a time
        (``arrowturns``), the others as dicts."""
        enc = self.encoder
        turns = read_turns(table, enc.format, enc.columns, enc.system_prompt)
        if turns is None:
            return self.encode_columns(decoded_rows(table))
        if None in turns:
            rows = decoded_rows(table)
            return self._columns(self._encode([t if t is not None else rows[k] for k, t in enumerate(turns)]))
        return self._columns(self._encode(turns))  # type: ignore[arg-type]

    def encode_columns(self, rows: Sequence[Mapping[str, Any]]) -> Columns:
        """The rows as flat arrays for Arrow (a skipped row has no tokens and its reason), order kept."""
        return self._columns(self._encode(rows))

    @staticmethod
    def _columns(finished: list[_Finished | str]) -> Columns:
        import numpy as np

        n = len(finished)
        skip: list[str | None] = [None] * n
        skipped = [k for k, row in enumerate(finished) if isinstance(row, str)]
        if skipped:
            finished = list(finished)
            for k in skipped:
                skip[k] = finished[k]  # type: ignore[assignment]
                finished[k] = (b"", [], False, 0, 0)  # no tokens: its record carries the reason
        if n:
            blobs, ranges, truncated, full, trained = zip(*finished, strict=True)
        else:
            blobs, ranges, truncated, full, trained = (), (), (), (), ()
        ids = np.frombuffer(b"".join(blobs), dtype=np.int32)
        lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=n) >> 2
        offsets: np.ndarray = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        # Each trained range moved to where its row starts in ``ids``, then marked +1 at its first token and -1
        # at its stop: a running sum over the tokens is positive exactly on the trained ones.
        per_row = np.fromiter(map(len, ranges), dtype=np.int64, count=n)
        flat = np.fromiter(
            itertools.chain.from_iterable(itertools.chain.from_iterable(ranges)), dtype=np.int64
        )
        at = np.repeat(offsets[:-1].astype(np.int64), per_row)
        edges: np.ndarray = np.zeros(len(ids) + 1, dtype=np.int32)
        np.add.at(edges, flat[0::2] + at, 1)
        np.add.at(edges, flat[1::2] + at, -1)
        labels = np.where(np.cumsum(edges[:-1]) > 0, ids, np.int32(IGNORE_INDEX)).astype(np.int32)
        return Columns(
            ids,
            labels,
            offsets,
            lengths.tolist(),
            skip,
            list(truncated),
            list(full),
            list(trained),
            len(skipped),
        )

    def _encode(self, rows: Sequence[Mapping[str, Any] | Turns]) -> list[_Finished | str]:
        """Rows (dicts, or the plain ones already as roles and contents) to finished rows or skip reasons."""
        enc = self.encoder
        results: list[_Row | _Finished | str | None] = [None] * len(rows)
        chats: list[tuple[int, str, list[tuple[int, int]], bytes]] = []
        texts: list[tuple[int, str]] = []
        checks: list[tuple[int, tuple[str, ...], Example]] = []
        everything = enc.train_on == "all"
        words = self._words
        limit = enc.max_length
        for index, row in enumerate(rows):
            example: Example | None = None
            if isinstance(row, tuple) and self._backend is not None:
                roles, contents = row
            elif isinstance(row, tuple):
                results[index] = self._slow(_example(*row))
                continue
            else:
                try:
                    example = enc.example_of(row)
                except SkipRow as skip:
                    results[index] = str(skip)
                    continue
                if self._backend is None or (
                    example.text is not None and self._layouts.get(_TEXT, True) is None
                ):
                    results[index] = self._slow(example)
                    continue
                if example.text is not None:
                    encoded = words.encode(example.text) if words is not None and self._bare else None
                    if encoded is None:
                        texts.append((index, example.text))
                    else:
                        results[index] = self._text_row(encoded[0])
                    if self._checked.get(_TEXT, 0) < self.verify:
                        self._checked[_TEXT] = self._checked.get(_TEXT, 0) + 1
                        checks.append((index, _TEXT, example))
                    continue
                if example.tools or any(len(t) > 2 or THINK_CLOSE in t["content"] for t in example.turns):
                    # Tools, tool calls and reasoning: rendered row by row.
                    results[index] = self._slow(example)
                    continue
                roles = tuple([t["role"] for t in example.turns])
                contents = [t["content"] for t in example.turns]
            layout = self.layout(roles)
            if layout is None:
                results[index] = self._slow(example or _example(roles, contents))
                continue
            if self._checked.get(roles, 0) < self.verify:
                self._checked[roles] = self._checked.get(roles, 0) + 1
                checks.append((index, roles, example or _example(roles, contents)))
            if layout.plan_rows is not None:
                assert words is not None and layout.plan is not None
                planned = layout.plan_rows(contents)
                if planned is None:
                    given = (
                        contents
                        if layout.as_is
                        else [f(c) for f, c in zip(layout.transforms, contents, strict=True)]
                    )
                    planned = words.encode_plan(layout.plan, given)
                if planned is not None:
                    blob, ranges = planned
                    total = len(blob) >> 2
                    if everything:
                        ranges = [(0, total)]
                    if total > limit:
                        results[index] = (blob, ranges, total)  # ``_finish`` truncates it
                    else:  # finished here: the common case, kept short
                        trained = (
                            sum([b - a for a, b in ranges])
                            if len(ranges) != 1
                            else ranges[0][1] - ranges[0][0]
                        )
                        results[index] = (blob, ranges, False, total, trained) if trained else NOTHING_TRAINED
                    continue
            full, spans = self._format(layout, contents)
            head = layout.head
            if head:
                spans = [(a - head, b - head) for a, b in spans]
            encoded = words.encode(full[head:], () if everything else spans) if words is not None else None
            if encoded is None:
                chats.append((index, full[head:], spans, layout.head_blob))
            else:
                results[index] = self._joined(layout.head_blob, *encoded, everything)
        if texts or chats:
            self._reset_backend()
        if texts:
            for (index, _), encoding in zip(
                texts, self._backend.encode_batch([t for _, t in texts], add_special_tokens=True), strict=True
            ):
                results[index] = self._text_row(array("i", encoding.ids).tobytes())
        if chats:
            encodings = self._backend.encode_batch(
                [text for _, text, _, _ in chats], add_special_tokens=False
            )
            for (index, _, spans, head_blob), encoding in zip(chats, encodings, strict=True):
                ranges = [] if everything else _ranges(encoding.offsets, spans)
                results[index] = self._joined(
                    head_blob, array("i", encoding.ids).tobytes(), ranges, everything
                )
        # Every row has its result by now; the plan rows within max_seq_length are finished already.
        finished: list[_Finished | str] = [
            row if isinstance(row, str) or len(row) == 5 else self._finish(row)  # type: ignore[arg-type,misc]
            for row in results
        ]
        for index, roles, example in checks:
            try:
                expected: Encoded | str = self.encoder.encode_example(example)
            except SkipRow as skip:
                expected = str(skip)
            got = finished[index]
            if isinstance(expected, str) or isinstance(got, str):
                same = expected == got
            else:
                got_ids = array("i", got[0]).tolist()
                same = (
                    expected.input_ids == got_ids
                    and expected.labels == _labels_of(got_ids, got[1])
                    and (expected.truncated, expected.full_length) == (got[2], got[3])
                )
            if (
                not same
            ):  # the template (or tokenizer) is not what the analysis saw: this shape goes row by row
                if roles != _TEXT:
                    self.fast_shapes -= 1
                    self.slow_shapes += 1
                self._layouts[roles] = None
                return self._encode(rows)
        return finished

    def _text_row(self, blob: bytes) -> _Row:
        """Plain text trains on every token, and ends with the end-of-sequence token."""
        eos = self.encoder.tokenizer.eos_token_id
        if eos is not None and blob[-4:] != (eos_bytes := array("i", [eos]).tobytes()):
            blob += eos_bytes
        return blob, [(0, len(blob) // 4)], len(blob) // 4

    @staticmethod
    def _joined(head_blob: bytes, blob: bytes, ranges: list[tuple[int, int]], everything: bool) -> _Row:
        """A row's ids after the template's pre-tokenized opening, its trained ranges moved to match."""
        head = len(head_blob) // 4
        total = head + len(blob) // 4
        if everything:
            ranges = [(0, total)]
        elif head:
            ranges = [(a + head, b + head) for a, b in ranges]
        return head_blob + blob, ranges, total

    def _reset_backend(self) -> None:
        """Calls through transformers set truncation/padding on the shared backend; clear them once."""
        backend = self._backend
        if backend.truncation is not None or backend.padding is not None:
            self.encoder.tokenizer(["x"], add_special_tokens=False)
        split = getattr(self.encoder.tokenizer, "split_special_tokens", False)
        if hasattr(backend, "encode_special_tokens") and backend.encode_special_tokens != split:
            backend.encode_special_tokens = split

    def _slow(self, example: Example) -> _Row | str:
        try:
            encoded = self.encoder.encode_example(example)
        except SkipRow as skip:
            return str(skip)
        return array("i", encoded.input_ids).tobytes(), _runs(encoded.labels), encoded.full_length

    def _finish(self, row: _Row) -> _Finished | str:
        """Truncation to max_seq_length, and the skip of a row with nothing left to train."""
        blob, ranges, full = row
        limit = self.encoder.max_length
        truncated = full > limit
        if len(blob) > 4 * limit:
            blob = blob[: 4 * limit]
            ranges = [(a, min(b, limit)) for a, b in ranges if a < limit]
        trained = sum(b - a for a, b in ranges)
        if not trained:
            return NOTHING_TRAINED_WITHIN if truncated else NOTHING_TRAINED
        return blob, ranges, truncated, full, trained


_Row = tuple[bytes, list[tuple[int, int]], int]
"""A row's int32 ids, the (first, stop) token ranges that are trained, and its length before truncation."""
_Finished = tuple[bytes, list[tuple[int, int]], bool, int, int]
"""A finished row: ids and trained ranges within max_seq_length, truncated, full length, trained count."""


@dataclass
class Columns:
    """A batch of encoded rows, flat: row k's tokens are ``ids[offsets[k]:offsets[k + 1]]``."""

    ids: Any  # numpy int32
    labels: Any  # numpy int32, IGNORE_INDEX where no loss is taken
    offsets: Any  # numpy int32, one more than the rows
    lengths: list[int]
    skip: list[str | None]  # the reason a row is skipped (it has no tokens), else None
    truncated: list[bool]
    full_length: list[int]
    trained: list[int]
    skipped: int = 0
    """How many rows are skipped (have a reason in ``skip``)."""


def _example(roles: tuple[str, ...], contents: Sequence[str]) -> Example:
    """The example ``to_example`` gives for a plain row of these roles and contents."""
    return Example(turns=tuple({"role": r, "content": c} for r, c in zip(roles, contents, strict=True)))


def _join(pieces: Sequence[str], contents: Sequence[str]) -> str:
    parts = [pieces[0]]
    for content, piece in zip(contents, pieces[1:], strict=True):
        parts += (content, piece)
    return "".join(parts)


def _ranges(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (first, stop) tokens overlapping each span (offsets rise monotonically, so each span is a run).

    The searches compare the offset tuples themselves (in C): ``(at, -1)`` sorts before every
    token starting at ``at``.
    """
    ranges = []
    for start, end in spans:
        first = bisect.bisect_left(offsets, (start, -1))  # first token starting at or after the span...
        while first and offsets[first - 1][1] > start:  # ...or earlier, when it reaches into the span
            first -= 1
        stop = bisect.bisect_left(offsets, (end, -1), first)  # first token starting at or after its end
        while first < stop and offsets[first][1] <= start:  # an empty token where the span starts is outside
            first += 1
        if stop > first:
            ranges.append((first, stop))
    return ranges


def _runs(labels: Sequence[int]) -> list[tuple[int, int]]:
    """The (first, stop) runs of trained labels (only rows from the prefix-rendering path come this way)."""
    ranges, first = [], None
    for k, label in enumerate(labels):
        if label != IGNORE_INDEX and first is None:
            first = k
        elif label == IGNORE_INDEX and first is not None:
            ranges.append((first, k))
            first = None
    if first is not None:
        ranges.append((first, len(labels)))
    return ranges


def _labels_of(ids: list[int], ranges: list[tuple[int, int]]) -> list[int]:
    labels = [IGNORE_INDEX] * len(ids)
    for first, stop in ranges:
        labels[first:stop] = ids[first:stop]
    return labels


def compute_stats(
    encoder: Encoder,
    rows: Sequence[Mapping[str, Any]],
    progress: Callable[[DatasetStats], bool] | None = None,
    every: int = 2000,
) -> DatasetStats:
    """Encode every row; ``progress`` is called every ``every`` rows and may return False to cancel."""
    stats = DatasetStats(format=encoder.format, rows=len(rows))
    if getattr(encoder, "vision", False):  # images go through the model's processor, a row at a time
        return _vision_stats(encoder, rows, stats, progress, every)
    fast = FastEncoder(encoder)
    step = max(1, min(every, 1000))
    index = 0
    for start in range(0, len(rows), step):
        for sample in fast.encode_rows(rows[start : start + step]):
            if isinstance(sample, str):
                stats.skipped[sample] += 1
                stats.skipped_rows.setdefault(sample, []).append(index)
            else:
                stats.used += 1
                stats.lengths.append(len(sample.input_ids))
                stats.tokens += len(sample.input_ids)
                stats.trained_tokens += sample.trained_count
                stats.truncated += sample.truncated
            if progress is not None and index % every == every - 1 and progress(stats) is False:
                return stats
            index += 1
    stats.done = True
    if progress is not None:
        progress(stats)
    return stats


def _vision_stats(
    encoder: Any,
    rows: Sequence[Mapping[str, Any]],
    stats: DatasetStats,
    progress: Callable[[DatasetStats], bool] | None,
    every: int,
) -> DatasetStats:
    for index in range(len(rows)):
        if progress is not None and index % every == every - 1 and progress(stats) is False:
            return stats
        try:
            sample = encoder.encode_row(rows[index], index)  # a missing image is refused, naming the row
        except SkipRow as skip:
            stats.skipped[str(skip)] += 1
            stats.skipped_rows.setdefault(str(skip), []).append(index)
            continue
        stats.used += 1
        stats.lengths.append(len(sample.input_ids))
        stats.tokens += len(sample.input_ids)
        stats.trained_tokens += sample.trained_count
        stats.truncated += sample.truncated
    stats.done = True
    if progress is not None:
        progress(stats)
    return stats
