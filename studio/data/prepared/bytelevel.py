r"""Byte-level BPE a word at a time from a cache: the fast encoder's tokenizer.

A byte-level BPE tokenizer (SmolLM2, GPT-2, StarCoder, the tiny model, and with a ``Split``
expression before the byte-level step Llama-3 and Qwen) cuts its input at added tokens, splits
each stretch between them into words with one fixed regular expression, and runs BPE on each
word alone. The Rust tokenizer does all of that per call and builds offsets, masks and type ids
besides; a data set repeats the same few thousand words, so here each word's ids come from the
tokenizer's own BPE model once and from a dictionary afterwards. Only the split is done here:
ASCII text with the standard library's ``re``, where the expression's Unicode classes reduce to
ASCII ones, and other text with the ``regex`` module and the expression's own ``\p{L}`` and
``\p{N}`` (``\s`` spelled out as the White_Space characters the tokenizer's engine counts).
Exactness beyond ASCII rests on the two engines classing every character alike: text with a
character this Python's Unicode tables leave unassigned (where the tables of two Unicode versions
may differ), or not in NFC where the tokenizer normalizes to NFC, is left to the Rust tokenizer,
and a test compares the split with the Rust tokenizer's over every assigned code point. Any other
kind of tokenizer is left to the Rust tokenizer too, so the ids are always the tokenizer's own.
"""

from __future__ import annotations

import bisect
import json
import re
import unicodedata
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, cast

GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""The expression the ``ByteLevel`` pre-tokenizer splits with when ``use_regex`` is on."""

WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""What the tokenizer's regex engine (Oniguruma) counts as ``\\s``: Unicode's White_Space characters (not the
``\\x1c``-``\\x1f`` separators Python's ``str.isspace`` adds)."""

_ASCII_CLASSES = {"L": "A-Za-z", "N": "0-9"}

_LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
SPACE_SPLIT_EXPRESSIONS = frozenset(
    (GPT2_SPLIT, _LLAMA3_SPLIT, _LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}"))
)
"""The expressions (GPT-2's, Llama-3's, Qwen's) under which a text's words are its space-separated chunks' words,
wherever each space cut at has no whitespace beside it: in them a space is only ever a match's first character,
or part of a match of whitespace alone, so a match ends before such a space and another starts at it, and nothing
after it looks back. ``tests/test_bytelevel.py`` checks the two splits against each other."""


def translate(expression: str, ascii_only: bool) -> str:
    """The tokenizer's expression for Python: ``\\s`` spelled out, and for ASCII text ``\\p{L}``/``\\p{N}`` as ASCII
    ranges (for the standard library's ``re``); otherwise the ``\\p`` classes stay (for ``regex``).
    Raises ValueError for a construct it does not know how to carry over."""
    out, k, in_class = [], 0, False
    while k < len(expression):
        c = expression[k]
        if c == "\\":
            nxt = expression[k + 1]
            if nxt in "pP":
                close = expression.index("}", k)
                name = expression[k + 3 : close]
                if nxt == "P" or name not in _ASCII_CLASSES:
                    raise ValueError(f"class {expression[k : close + 1]}")
                body = _ASCII_CLASSES[name] if ascii_only else expression[k : close + 1]
                out.append(body if in_class else f"[{body}]")
                k = close + 1
                continue
            if nxt == "s":
                out.append(WHITE_SPACE if in_class else f"[{WHITE_SPACE}]")
            elif nxt == "S":
                if in_class:
                    raise ValueError("\\S inside a class")
                out.append(f"[^{WHITE_SPACE}]")
            elif nxt in "rnt":
                out.append(c + nxt)
            elif nxt.isalnum():
                raise ValueError(f"escape \\{nxt}")
            else:
                out.append(c + nxt)
            k += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        k += 1
    return "".join(out)


_ODD = frozenset(("Cn", "Co", "Cs"))
"""Unassigned, private-use and surrogate code points: where two Unicode versions' tables may class a character
differently, so its split is not proven."""


_FIRST = "\ud800"
"""Marks a stretch's first chunk in the chunk cache (no space before it, so other ids): a lone surrogate, which no
text that reaches the chunks holds (ASCII, or proven: ``_ODD`` keeps surrogates out)."""

CACHE_WORDS = 1_000_000
"""Words kept before the cache starts again (each costs about 150 bytes)."""


Edge = tuple[int, int, int]
"""Where a span's edge falls: (segment, part, offset). In a constant run, part is -1 and offset the token
index within the run; in a stretch, the char offset within its constant part ``part``."""

Segment = bytes | tuple[str | int, ...]
"""A constant run of ids (int32 bytes), or a stretch: constant texts and content indices, alternately, a text
first and last."""


@dataclass(frozen=True)
class WordPlan:
    """A layout's render as constant runs and stretches, and where its trained spans' edges fall."""

    segments: tuple[Segment, ...]
    edges: tuple[tuple[Edge, Edge], ...]
    guard: str
    """The added tokens' first characters: a content holding one takes the whole-render path."""
    edge_stretches: frozenset[int] = frozenset()
    """The stretches an edge falls in: their words' positions are needed, the others' only their ids."""


def _state(part: Any) -> dict[str, Any]:
    """A tokenizer part's settings as in ``tokenizer.json`` ({} for a part the tokenizer lacks)."""
    return {} if part is None else cast("dict[str, Any]", json.loads(part.__getstate__()))


def _byte_chars() -> dict[int, str]:
    """The byte-level alphabet: each byte as the printable character the vocabulary spells it with."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


class ByteLevelWords:
    """Encodes text exactly as the tokenizer's ``encode(text, add_special_tokens=False)`` does (or says it cannot)."""

    def __init__(
        self, backend: Any, added: Sequence[tuple[str, int]], expression: str = GPT2_SPLIT, nfc: bool = False
    ) -> None:
        import regex

        self._model = backend.model
        self._bytes = str.maketrans({chr(b): c for b, c in _byte_chars().items() if b < 128})
        self._byte_chars = [c for _, c in sorted(_byte_chars().items())]
        self._ascii_words = re.compile(translate(expression, ascii_only=True))
        self._unicode_words = regex.compile(translate(expression, ascii_only=False))
        self._nfc = nfc
        # The characters whose class the split is proven for: ASCII, and those met since that are assigned.
        self._assigned: set[str] = {chr(c) for c in range(128)}
        ordered = sorted(
            (content for content, _ in added), key=len, reverse=True
        )  # leftmost-longest, as the tokenizer
        # A look-ahead on the tokens' first characters lets the scan skip every other position at once
        # (Llama-3 has 256 added tokens, all alternatives of one expression).
        firsts = "".join(sorted({re.escape(t[0]) for t in ordered}))
        alternatives = "|".join(map(re.escape, ordered))
        self._added = re.compile(f"((?=[{firsts}])(?:{alternatives}))") if ordered else None
        self._added_ids = {content: array("i", [i]).tobytes() for content, i in added}
        self._cache: dict[str, bytes] = dict(self._added_ids)
        # Where the expression allows it, a stretch is looked up a space-separated chunk at a time: splitting at
        # spaces is several times faster than the expression. Each chunk after the first has its space in front.
        self._by_spaces = expression in SPACE_SPLIT_EXPRESSIONS
        # Chunks after a space are keyed as they are, a stretch's first chunk behind ``_FIRST``.
        self._chunk_ids: dict[str, bytes] = {}
        # A space with white space before or after it; led by the space itself, so the search skips to spaces.
        self._space_beside_space = re.compile(f" (?:(?=[{WHITE_SPACE}])|(?<=[{WHITE_SPACE}] ))")
        self._inside_chunk: dict[tuple[str, bool, int, bool], int | None] = {}
        self._backend = backend
        self._lengths: list[int] | None = None

    @property
    def _length(self) -> list[int]:
        """Each token's length in characters (one per byte; added tokens: ASCII, checked in for_backend), read
        from the vocabulary the first time a span edge falls inside a word."""
        if self._lengths is None:
            vocab = self._backend.get_vocab(with_added_tokens=True)
            lengths = [0] * (max(vocab.values()) + 1)
            for text, i in vocab.items():
                lengths[i] = len(text)
            self._lengths = lengths
        return self._lengths

    @classmethod
    def for_backend(cls, backend: Any) -> ByteLevelWords | None:
        """The word encoder for this Rust tokenizer, or None when it is not a byte-level BPE of the kinds above:
        a plain ``ByteLevel`` pre-tokenizer, or an isolating ``Split`` expression before a ``ByteLevel`` one
        that does not split again; no normalizer, or NFC."""
        try:
            # Each part's own state, not ``to_str()``: the whole tokenizer's JSON (its vocabulary and merges)
            # takes a second to write and parse for Llama-3, in every encoding process.
            pre, post, normalizer = (
                _state(backend.pre_tokenizer),
                _state(backend.post_processor),
                _state(backend.normalizer) or None,
            )
        except Exception:
            return None
        model = backend.model
        expression = cls._expression(pre)
        plain_model = (
            type(model).__name__ == "BPE"
            and getattr(model, "dropout", None) is None
            and not getattr(model, "continuing_subword_prefix", None)
            and not getattr(model, "end_of_word_suffix", None)
        )
        # A ByteLevel post-processor that trims offsets moves token boundaries the labels are found by.
        processors = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
        trims = any(p.get("type") == "ByteLevel" and p.get("trim_offsets") for p in processors)
        nfc = normalizer == {"type": "NFC"}
        if expression is None or not plain_model or trims or (normalizer is not None and not nfc):
            return None
        if getattr(backend, "encode_special_tokens", False):
            return None
        added = []
        for i, token in backend.get_added_tokens_decoder().items():
            if token.lstrip or token.rstrip or token.single_word or not token.content.isascii():
                return None
            if token.content:
                added.append((token.content, i))
        try:
            return cls(backend, added, expression, nfc)
        except (ValueError, re.error):
            return None

    @staticmethod
    def _expression(pre: dict[str, Any]) -> str | None:
        """The expression that splits words, or None for a pre-tokenizer this module does not reproduce."""

        def byte_level(step: dict[str, Any]) -> bool:
            return step.get("type") == "ByteLevel" and not step.get("add_prefix_space")

        if byte_level(pre) and pre.get("use_regex", True):
            return GPT2_SPLIT
        steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
        if len(steps) == 2 and byte_level(steps[1]) and not steps[1].get("use_regex", True):
            split = steps[0]
            pattern = split.get("pattern") or {}
            if (
                split.get("type") == "Split"
                and split.get("behavior") == "Isolated"
                and not split.get("invert")
                and "Regex" in pattern
            ):
                return pattern["Regex"]
        return None

    @property
    def added_tokens(self) -> list[str]:
        """The added tokens' texts."""
        return list(self._added_ids)

    def split_added(self, text: str) -> list[str]:
        """The stretches of ``text`` and the added tokens between them, alternately (a stretch first and last)."""
        return self._added.split(text) if self._added is not None else [text]

    def _split_any(self, stretch: str) -> list[str]:
        """The words of a stretch of text: the standard library's ``re`` where it is ASCII (the same split, faster)."""
        return (self._ascii_words if stretch.isascii() else self._unicode_words).findall(stretch)

    def _learn(self, text: str) -> bool:
        """Whether every character of ``text`` is assigned in this Python's Unicode tables (remembered for next time)."""
        fresh = set(text) - self._assigned
        if any(unicodedata.category(c) in _ODD for c in fresh):
            return False
        self._assigned |= fresh
        return True

    def _proven(self, text: str) -> bool:
        """Whether the split of this text beyond ASCII is proven (see the module's docstring)."""
        if not self._assigned.issuperset(text) and not self._learn(text):
            return False
        return not self._nfc or unicodedata.is_normalized("NFC", text)

    def _word(self, word: str) -> bytes:
        if len(self._cache) >= CACHE_WORDS:
            self._cache = dict(self._added_ids)
        spelled = (
            word.translate(self._bytes)
            if word.isascii()
            else "".join([self._byte_chars[b] for b in word.encode("utf-8")])
        )
        ids = self._cache[word] = array("i", [t.id for t in self._model.tokenize(spelled)]).tobytes()
        return ids

    def _chunk(self, chunk: str, spaced: bool) -> bytes | None:
        """A chunk's ids (its words' ids, joined), remembered; None for a word the BPE model cannot take."""
        units = self._split_any(" " + chunk if spaced else chunk)
        ids = self._ids(units)
        if ids is None:
            return None
        kept = self._chunk_ids
        if len(kept) >= CACHE_WORDS:
            kept.clear()
        blob = kept[chunk if spaced else _FIRST + chunk] = b"".join(ids)
        return blob

    def _chunks(self, text: str) -> tuple[list[str], list[bytes]] | None:
        """The space-separated chunks of a proven stretch (see ``SPACE_SPLIT_EXPRESSIONS``) and their ids; None
        where a space cut at has whitespace beside it, or a word cannot be taken."""
        if self._space_beside_space.search(text) is not None:
            return None
        chunks = text.split(" ")
        found = self._chunks_ids(chunks)
        return None if found is None else (chunks, found)

    def _chunks_ids(self, chunks: list[str]) -> list[bytes] | None:
        """Each chunk's ids (the first one's without a space before it), from the cache or learned; None where a
        word cannot be taken."""
        get = self._chunk_ids.get
        found = [get(_FIRST + chunks[0]), *map(get, chunks[1:])]
        if None in found:
            for k in range(len(found)):
                if found[k] is None:
                    found[k] = self._chunk(chunks[k], k > 0)
                    if found[k] is None:
                        return None
        return found  # type: ignore[return-value]

    def _stretch_ids(self, text: str) -> bytes | None:
        """``_chunks``' ids of a proven stretch, joined: the same, with less work per chunk while all are known."""
        if self._space_beside_space.search(text) is not None:
            return None
        keys = text.split(" ")
        first = keys[0]
        keys[0] = _FIRST + first
        try:
            return b"".join(map(self._chunk_ids.__getitem__, keys))
        except KeyError:  # a chunk not met before
            keys[0] = first
        found = self._chunks_ids(keys)
        return None if found is None else b"".join(found)

    def plan_encoder(
        self, plan: WordPlan, transforms: Sequence[Callable[[str], str]] | None = None
    ) -> Callable[[Sequence[str]], tuple[bytes, list[tuple[int, int]]] | None]:
        """A row encoder for ``plan``: for a row's contents, each first passed through its ``transforms`` entry
        (none: as they are), :meth:`encode_plan`'s result for them, or None (then ask ``encode_plan``). The plan's
        segments and edges are resolved here once and each stretch is looked up a chunk at a time, so a row costs
        its stretches' lookups and little else. Only where the expression splits at spaces and every stretch holds
        one content; for other plans it is ``encode_plan`` itself."""
        segments = plan.segments
        if not self._by_spaces or any(not isinstance(seg, bytes) and len(seg) != 3 for seg in segments):

            def whole(contents: Sequence[str]) -> tuple[bytes, list[tuple[int, int]]] | None:
                given = (
                    contents
                    if transforms is None
                    else [f(c) for f, c in zip(transforms, contents, strict=True)]
                )
                return self.encode_plan(plan, given)

            return whole
        template: list[bytes] = [seg if isinstance(seg, bytes) else b"" for seg in segments]
        # (slot in ``template``, text before, content index, text after, its transform) per stretch, in order.
        stretches: list[tuple[int, str, int, str, Callable[[str], str] | None]] = [
            (
                k,
                str(seg[0]),
                int(seg[1]),
                str(seg[2]),
                None if transforms is None else transforms[int(seg[1])],
            )
            for k, seg in enumerate(segments)
            if not isinstance(seg, bytes)
        ]
        slot_of = {stretch[0]: j for j, stretch in enumerate(stretches)}
        # Per edge end: constant tokens before its segment, how many stretches precede it, and where it falls:
        # (-1, tokens into a constant run) or (stretch, chars into its text before the content or past it).
        points: list[tuple[int, int, int, int, int, bool]] = []
        for edge in plan.edges:
            for (segment, part, at), after in zip(edge, (False, True), strict=True):
                before = sum(len(seg) >> 2 for seg in segments[:segment] if isinstance(seg, bytes))
                preceding = sum(1 for stretch in stretches if stretch[0] < segment)
                if part < 0:
                    points.append((before, preceding, -1, at, 0, after))
                else:
                    points.append((before, preceding, slot_of[segment], at, part, after))
        guard, proven, ids_of = plan.guard, self._proven, self._stretch_ids
        inside = self._chunk_token

        def encode(contents: Sequence[str]) -> tuple[bytes, list[tuple[int, int]]] | None:
            for ch in guard:
                for content in contents:
                    if ch in content:
                        return None
            parts = template.copy()
            counts, texts, given = [], [], []
            for slot, head, index, tail, transform in stretches:
                content = contents[index] if transform is None else transform(contents[index])
                text = head + content + tail
                if not text.isascii() and not proven(text):
                    return None
                blob = ids_of(text)
                if blob is None:
                    return None
                parts[slot] = blob
                counts.append(len(blob) >> 2)
                texts.append(text)
                given.append(content)
            ends = []
            for before, preceding, stretch, at, part, after in points:
                tokens = before + sum(counts[:preceding]) if preceding else before
                if stretch < 0:
                    ends.append(tokens + at)
                    continue
                text = texts[stretch]
                if part:  # in the text after the content
                    at += len(stretches[stretch][1]) + len(given[stretch])
                if at == len(text):
                    tokens += counts[stretch]
                elif at:
                    first = text.partition(" ")[0]
                    if at >= len(first):
                        return None  # past the first chunk: encode_plan walks the chunks
                    token = inside([first], [], at, after)
                    if token is None:
                        return None
                    tokens += token
                ends.append(tokens)
            return b"".join(parts), list(zip(ends[::2], ends[1::2], strict=True))

        return encode

    def _chunk_token(self, chunks: list[str], ids: list[bytes], at: int, after: bool) -> int | None:
        """:meth:`_token_at` over space-separated chunks (each after the first one char longer, for its space)."""
        pos = tokens = 0
        for k, chunk in enumerate(chunks):
            if at == pos:
                return tokens
            size = len(chunk) + (k > 0)
            # Inside this chunk: place it among the chunk's own words (the same every time).
            if at < pos + size:
                key = (chunk, k > 0, at - pos, after)
                if key in self._inside_chunk:
                    token = self._inside_chunk[key]
                else:
                    units = self._split_any(" " + chunk if k else chunk)
                    parts = self._ids(units)
                    token = None if parts is None else self.token_at(units, parts, at - pos, after)
                    if len(self._inside_chunk) >= CACHE_WORDS:
                        self._inside_chunk.clear()
                    self._inside_chunk[key] = token
                return None if token is None else tokens + token
            pos += size
            tokens += len(ids[k]) >> 2
        return tokens

    def _ids(self, units: list[str]) -> list[bytes] | None:
        """Each word's ids, from the cache or the BPE model; None for a word the model cannot take."""
        try:
            found = list(map(self._cache.get, units))
            if None in found:
                found = [
                    ids if ids is not None else self._word(u) for ids, u in zip(found, units, strict=True)
                ]
        except Exception:  # the Rust tokenizer says what it does with it
            return None
        return cast("list[bytes]", found)  # every miss was filled in just above

    def units_of(self, text: str) -> tuple[list[str], list[bytes]] | None:
        """The words and added tokens of ``text``, and their ids; None where exactness is not proven."""
        findall: Callable[[str], list[str]]
        if text.isascii():
            findall = self._ascii_words.findall
        elif self._proven(text):
            findall = self._split_any
        else:
            return None
        if self._added is None:
            units = findall(text)
        else:  # stretches and the added tokens between them, alternately
            pieces = self._added.split(text)
            units = findall(pieces[0]) if pieces[0] else []
            for k in range(1, len(pieces), 2):
                units.append(pieces[k])
                if pieces[k + 1]:
                    units += findall(pieces[k + 1])
        ids = self._ids(units)
        return None if ids is None else (units, ids)

    def encode(
        self, text: str, spans: Sequence[tuple[int, int]] = ()
    ) -> tuple[bytes, list[tuple[int, int]]] | None:
        """The ids (int32 bytes) of ``text`` and, per character span, the tokens overlapping it as
        ``(first, stop)``; None where exactness is not proven (the caller asks the Rust tokenizer): a character
        unassigned in this Python's Unicode tables, text the tokenizer's NFC would change, or a span edge inside
        a word beyond ASCII.

        A token overlaps a span when it starts before the span's end and ends after its start.
        """
        found = self.units_of(text)
        if found is None:
            return None
        units, parts = found
        blob = b"".join(parts)
        if not spans:
            return blob, []
        ends = list(accumulate(map(len, units)))
        token_ends = list(accumulate(map(len, parts)))  # in bytes: four per token
        ranges = []
        for start, end in spans:
            first = self._token_at(units, parts, ends, token_ends, start, False)
            stop = self._token_at(units, parts, ends, token_ends, end, True)
            if first is None or stop is None:
                return None
            ranges.append((first, stop))
        return blob, ranges

    def encode_plan(
        self, plan: WordPlan, contents: Sequence[str]
    ) -> tuple[bytes, list[tuple[int, int]]] | None:
        """The ids (int32 bytes) of the render of a layout's ``plan`` with these contents, and each trained span's
        (first, stop) tokens; None where the plan cannot say (the caller encodes the whole render)."""
        guard = plan.guard
        for content in contents:
            for ch in guard:
                if ch in content:
                    return None
        blobs: list[bytes] = []
        starts: list[int] = []
        # Per stretch an edge falls in: its units, their ids, its parts' lengths, and whether the units are chunks.
        kept: dict[int, tuple[list[str], list[bytes], list[int], bool]] = {}
        edged = plan.edge_stretches
        words = self._ascii_words.findall
        by_spaces = self._by_spaces
        tokens = 0
        for index, segment in enumerate(plan.segments):
            starts.append(tokens)
            if isinstance(segment, bytes):
                blobs.append(segment)
                tokens += len(segment) >> 2
                continue
            text: str
            if len(segment) == 3:  # the usual stretch: text, one content, text
                text = segment[0] + contents[segment[1]] + segment[2]  # type: ignore[operator,index,assignment]
            else:
                text = "".join([p if isinstance(p, str) else contents[p] for p in segment])
            ascii_text = text.isascii()
            if not ascii_text and not self._proven(text):
                return None
            chunked = self._chunks(text) if by_spaces else None
            if chunked is not None:
                units, found = chunked
            else:
                units = words(text) if ascii_text else self._unicode_words.findall(text)
                ids = self._ids(units)
                if ids is None:
                    return None
                found = ids
            blob = b"".join(found)
            blobs.append(blob)
            tokens += len(blob) >> 2
            if index in edged:
                lengths = [len(p) if isinstance(p, str) else len(contents[p]) for p in segment]
                kept[index] = (units, found, lengths, chunked is not None)
        ranges = []
        for (first_segment, first_part, first_at), (stop_segment, stop_part, stop_at) in plan.edges:
            first = self._plan_token(first_segment, first_part, first_at, starts, kept, False)
            stop = self._plan_token(stop_segment, stop_part, stop_at, starts, kept, True)
            if first is None or stop is None:
                return None
            ranges.append((first, stop))
        return b"".join(blobs), ranges

    def _plan_token(
        self,
        segment: int,
        part: int,
        at: int,
        starts: list[int],
        kept: dict[int, tuple[list[str], list[bytes], list[int], bool]],
        after: bool,
    ) -> int | None:
        """The token of an edge of a plan (see ``wordplan.Edge``), in the row just encoded."""
        if part < 0:
            return starts[segment] + at
        units, found, lengths, chunked = kept[segment]
        at += sum(lengths[:part])
        token = (
            self._chunk_token(units, found, at, after) if chunked else self.token_at(units, found, at, after)
        )
        return None if token is None else starts[segment] + token

    def token_at(self, units: list[str], parts: list[bytes], at: int, after: bool) -> int | None:
        """:meth:`_token_at` for one char of the text these words spell."""
        return self._token_at(
            units, parts, list(accumulate(map(len, units))), list(accumulate(map(len, parts))), at, after
        )

    def _token_at(
        self,
        units: list[str],
        parts: list[bytes],
        ends: list[int],
        token_ends: list[int],
        at: int,
        after: bool,
    ) -> int | None:
        """The token holding character ``at`` (``after``: the first token starting at or after it); None when
        ``at`` falls inside a word beyond ASCII (its tokens hold bytes, and a character's bytes may be split)."""
        j = bisect.bisect_right(ends, at)
        if j == len(ends):
            return token_ends[-1] // 4 if ends else 0
        unit_start = ends[j - 1] if j else 0
        before = token_ends[j - 1] // 4 if j else 0
        if at == unit_start:
            return before
        if not units[j].isascii():
            return None
        # ``at`` falls inside a word: place it among that word's tokens.
        lengths = accumulate(self._length[i] for i in array("i", parts[j]))
        inside = list(lengths)
        offset = at - unit_start
        return before + (
            bisect.bisect_left(inside, offset) + 1 if after else bisect.bisect_right(inside, offset)
        )
