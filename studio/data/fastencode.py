"""The fast, exact twin of :meth:`Encoder.encode_row` for whole data sets.

The chat template is analysed once per conversation shape (the sequence of roles): it is
rendered with sentinel contents, which splits the render into constant pieces around each
turn's content, and with whitespace-padded sentinels, which shows whether the template strips
a turn's content. The prefix renders that :meth:`Encoder.assistant_spans` takes per row become
constant offsets from the contents. Rows are then formatted by string joins and tokenized in
batches by the Rust tokenizer, and the labels come from the token offsets by binary search.

The tokenizer cuts its input at added tokens (``<|im_start|>``) before anything else, so a
template's constant opening (a default system prompt, up to the token that opens the first turn)
is tokenized once per shape and only the rest of each row goes to the tokenizer.

Exactness is checked, not assumed: the first rows of every shape are also encoded by the
prefix-rendering path and compared token for token. A template that is not linear for a shape
(it rewrites earlier turns, or its text depends on content) uses the prefix-rendering path for
that shape, so the result is always what ``encode_row`` gives.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lorastudio.data.encode import IGNORE_INDEX, Encoded, Encoder
from lorastudio.data.formats import Example, SkipRow
from lorastudio.errors import TemplateError

ENCODER_VERSION = 2
"""Bumped whenever a change to the encoding could change ``input_ids`` or ``labels`` (it keys the cache)."""

_SENTINEL = "\u27e6S{}\u27e7"
_PADDING = " \n"
_TEXT: tuple[str, ...] = ("(plain text)",)  # the pseudo-shape of plain-text rows, checked like the others
_TRANSFORMS: dict[str, Callable[[str], str]] = {
    "keep": lambda s: s, "strip": str.strip, "lstrip": str.lstrip, "rstrip": str.rstrip,
}


@dataclass(frozen=True)
class Layout:
    """A linear template for one shape: ``pieces[0] + c0 + pieces[1] + ... + c(n-1) + pieces[n]``."""

    pieces: tuple[str, ...]
    transforms: tuple[Callable[[str], str], ...]
    # Per assistant turn: (turn index, chars from its content start back to the prompt-prefix end,
    # chars from its content end to the end of the render that stops after it).
    assistant: tuple[tuple[int, int, int], ...]
    # The render's first ``head`` characters (a default system prompt, up to the added token that opens
    # the first turn) always tokenize to ``head_ids``; only the rest goes to the tokenizer. 0: no such head.
    head: int = 0
    head_ids: tuple[int, ...] = ()


Result = Encoded | str
"""An encoded sample, or the reason (as :class:`SkipRow` says it) the row is skipped."""


class FastEncoder:
    """Encodes batches of rows exactly as ``encoder.encode_row`` does, much faster."""

    def __init__(self, encoder: Encoder, verify: int = 3) -> None:
        self.encoder = encoder
        self.verify = verify
        self._layouts: dict[tuple[str, ...], Layout | None] = {}
        self._checked: dict[tuple[str, ...], int] = {}
        tok = encoder.tokenizer
        self._backend = getattr(tok, "_tokenizer", None) if getattr(tok, "is_fast", False) else None
        self.fast_shapes = 0
        self.slow_shapes = 0

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
            padded = [dict(t) for t in turns]
            padded[i]["content"] = _PADDING + sentinels[i] + _PADDING
            text = enc.render(padded)
            for transform in _TRANSFORMS.values():
                contents = [transform(padded[i]["content"]) if j == i else s for j, s in enumerate(sentinels)]
                if text == _join(pieces, contents):
                    transforms.append(transform)
                    break
            else:
                return None
        assistant = []
        for i, role in enumerate(roles):
            if role != "assistant":
                continue
            prefix = enc.render(turns[:i], add_generation_prompt=True)
            upto = enc.render(turns[: i + 1])
            start, end = starts[i], starts[i] + len(sentinels[i])
            if not full.startswith(prefix) or not full.startswith(upto):
                return None
            if not (start - len(pieces[i]) <= len(prefix) <= start and end <= len(upto) <= end + len(pieces[i + 1])):
                return None
            assistant.append((i, start - len(prefix), len(upto) - end))
        layout = Layout(tuple(pieces), tuple(transforms), tuple(assistant))
        head = self._head(layout, full)
        if head:
            ids = self._backend.encode(full[:head], add_special_tokens=False).ids
            layout = Layout(layout.pieces, layout.transforms, layout.assistant, head, tuple(ids))
        return layout

    def _head(self, layout: Layout, render: str) -> int:
        """How much of the first piece tokenizes the same whatever follows, or 0.

        The tokenizer cuts its input at added tokens before anything else, so the text up to an
        added token is tokenized alone, unless an added token could start inside it and end in
        what follows (checked for every added token), or the tokenizer treats the start of its
        input specially (checked on the sentinel render).
        """
        backend = self._backend
        if backend is None or backend.normalizer is not None or (layout.assistant and layout.assistant[0][0] == 0):
            return 0
        self._reset_backend()
        decoder = backend.get_added_tokens_decoder()
        if getattr(backend, "encode_special_tokens", False) or any(
                t.lstrip or t.rstrip or t.single_word for t in decoder.values()):
            return 0
        added = [t.content for t in decoder.values() if t.content]
        first = layout.pieces[0]
        head = max((first.rfind(t) + len(t) for t in added if t in first), default=0)
        if not head or any(first[:head].endswith(t[:j]) for t in added for j in range(1, len(t))):
            return 0
        whole = backend.encode(render, add_special_tokens=False).ids
        parts = backend.encode(render[:head], add_special_tokens=False).ids + \
            backend.encode(render[head:], add_special_tokens=False).ids
        return head if whole == parts else 0

    # -- formatting ----------------------------------------------------------------------------
    def _format(self, layout: Layout, turns: Sequence[Mapping[str, str]]) -> tuple[str, list[tuple[int, int]]]:
        """The render and assistant spans, exactly as :meth:`Encoder.assistant_spans` finds them."""
        parts, bounds, pos = [], [], 0
        for i, turn in enumerate(turns):
            piece, content = layout.pieces[i], layout.transforms[i](turn["content"])
            pos += len(piece)
            bounds.append((pos, pos + len(content)))
            pos += len(content)
            parts += (piece, content)
        parts.append(layout.pieces[-1])
        full = "".join(parts)
        eot = self.encoder.end_of_turn
        spans = []
        for i, back, forward in layout.assistant:
            start, upto_end = bounds[i][0] - back, bounds[i][1] + forward
            end = upto_end
            content = turns[i]["content"].strip()
            at = full.find(content, start, upto_end) if content else -1
            if at >= 0:
                content_end = at + len(content)
                eot_at = full.find(eot, content_end, upto_end) if eot else -1
                end = eot_at + len(eot) if eot_at >= 0 else len(full[:upto_end].rstrip())
            spans.append((start, end))
        return full, spans

    # -- encoding ------------------------------------------------------------------------------
    def encode_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[Result]:
        """Each row's :class:`Encoded`, or the reason it is skipped; order kept."""
        enc = self.encoder
        results: list[Result | None] = [None] * len(rows)
        chats: list[tuple[int, str, list[tuple[int, int]], int, tuple[int, ...]]] = []
        texts: list[tuple[int, str]] = []
        checks: list[tuple[int, tuple[str, ...], Example]] = []
        for index, row in enumerate(rows):
            try:
                example = enc.example_of(row)
            except SkipRow as skip:
                results[index] = str(skip)
                continue
            if self._backend is None or (example.text is not None and self._layouts.get(_TEXT, True) is None):
                results[index] = self._slow(example)
            elif example.text is not None:
                texts.append((index, example.text))
                if self._checked.get(_TEXT, 0) < self.verify:
                    self._checked[_TEXT] = self._checked.get(_TEXT, 0) + 1
                    checks.append((index, _TEXT, example))
            else:
                roles = tuple(t["role"] for t in example.turns)
                layout = self.layout(roles)
                if layout is None:
                    results[index] = self._slow(example)
                    continue
                full, spans = self._format(layout, example.turns)
                chats.append((index, full, spans, layout.head, layout.head_ids))
                if self._checked.get(roles, 0) < self.verify:
                    self._checked[roles] = self._checked.get(roles, 0) + 1
                    checks.append((index, roles, example))
        if texts or chats:
            self._reset_backend()
        if texts:
            tok = enc.tokenizer
            eos = tok.eos_token_id
            for (index, _), encoding in zip(texts, self._backend.encode_batch([t for _, t in texts],
                                                                               add_special_tokens=True),
                                            strict=True):
                ids = encoding.ids
                if eos is not None and (not ids or ids[-1] != eos):
                    ids = [*ids, eos]
                results[index] = self._finish(ids, list(ids))
        if chats:
            encodings = self._backend.encode_batch([full[head:] for _, full, _, head, _ in chats],
                                                   add_special_tokens=False)
            everything = enc.train_on == "all"
            for (index, _, spans, head, head_ids), encoding in zip(chats, encodings, strict=True):
                ids = encoding.ids
                if everything:
                    labels = list(ids)
                elif head:
                    labels = _labels(ids, encoding.offsets, [(a - head, b - head) for a, b in spans])
                else:
                    labels = _labels(ids, encoding.offsets, spans)
                if head_ids:
                    ids = [*head_ids, *ids]
                    labels = [*(ids[:len(head_ids)] if everything else [IGNORE_INDEX] * len(head_ids)), *labels]
                results[index] = self._finish(ids, labels)
        for index, roles, example in checks:
            expected = self._slow(example)
            got = results[index]
            same = (isinstance(expected, str) and expected == got) or (
                isinstance(expected, Encoded) and isinstance(got, Encoded)
                and expected.input_ids == got.input_ids and expected.labels == got.labels)
            if not same:  # the template (or tokenizer) is not what the analysis saw: this shape goes row by row
                if roles != _TEXT:
                    self.fast_shapes -= 1
                    self.slow_shapes += 1
                self._layouts[roles] = None
                return self.encode_rows(rows)
        return results  # type: ignore[return-value]

    def _reset_backend(self) -> None:
        """Calls through transformers set truncation/padding on the shared backend; clear them once."""
        backend = self._backend
        if backend.truncation is not None or backend.padding is not None:
            self.encoder.tokenizer(["x"], add_special_tokens=False)
        split = getattr(self.encoder.tokenizer, "split_special_tokens", False)
        if hasattr(backend, "encode_special_tokens") and backend.encode_special_tokens != split:
            backend.encode_special_tokens = split

    def _slow(self, example: Example) -> Result:
        try:
            return self.encoder.encode_example(example)
        except SkipRow as skip:
            return str(skip)
        except TemplateError:
            raise

    def _finish(self, ids: list[int], labels: list[int]) -> Result:
        full = len(ids)
        limit = self.encoder.max_length
        truncated = full > limit
        if truncated:
            ids, labels = ids[:limit], labels[:limit]
        if labels.count(IGNORE_INDEX) == len(labels):
            return "no trained tokens within max_seq_length" if truncated else "no trained tokens"
        return Encoded(list(ids), labels, truncated, full)


def _join(pieces: Sequence[str], contents: Sequence[str]) -> str:
    parts = [pieces[0]]
    for content, piece in zip(contents, pieces[1:], strict=True):
        parts += (content, piece)
    return "".join(parts)


def _labels(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Tokens overlapping an assistant span keep their id (offsets rise monotonically, so each span is a run).

    The searches compare the offset tuples themselves (in C): ``(at, -1)`` sorts before every
    token starting at ``at``.
    """
    labels = [IGNORE_INDEX] * len(ids)
    for start, end in spans:
        first = bisect.bisect_left(offsets, (start, -1))  # first token starting at or after the span...
        while first and offsets[first - 1][1] > start:  # ...or earlier, when it reaches into the span
            first -= 1
        stop = bisect.bisect_left(offsets, (end, -1), first)  # first token starting at or after its end
        while first < stop and offsets[first][1] <= start:  # an empty token where the span starts is outside
            first += 1
        if stop > first:
            labels[first:stop] = ids[first:stop]
    return labels
