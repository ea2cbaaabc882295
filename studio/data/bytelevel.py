"""GPT-2-style byte-level BPE for ASCII text, a word at a time from a cache: the fast encoder's tokenizer.

A byte-level BPE tokenizer (SmolLM2, GPT-2, StarCoder, the tiny model) cuts its input at added
tokens, splits each stretch between them into words with one fixed regular expression, and runs
BPE on each word alone. The Rust tokenizer does all of that per call and builds offsets, masks and
type ids besides; a data set repeats the same few thousand words, so here each word's ids come
from the tokenizer's own BPE model once and from a dictionary afterwards. Only the split is done
here, with the standard library's ``re`` on ASCII text, where the expression's Unicode classes
reduce to ASCII ones; any other text (and any tokenizer of another kind) is left to the Rust
tokenizer, so the ids are always the tokenizer's own.
"""

from __future__ import annotations

import bisect
import json
import re
from array import array
from collections.abc import Sequence
from itertools import accumulate
from typing import Any, cast

_WS = r"\t\n\x0b\x0c\r "  # what the tokenizer's regex engine counts as \s among ASCII characters
WORDS = re.compile(
    rf"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^{_WS}A-Za-z0-9]+|[{_WS}]+(?![^{_WS}])|[{_WS}]+""")
"""The GPT-2 pre-tokenizer expression (``\\p{L}``, ``\\p{N}``, ``\\s``) restricted to ASCII text."""

CACHE_WORDS = 1_000_000
"""Words kept before the cache starts again (each costs about 150 bytes)."""


def _byte_chars() -> dict[int, str]:
    """The byte-level alphabet: each byte as the printable character the vocabulary spells it with."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


class ByteLevelWords:
    """Encodes ASCII text exactly as the tokenizer's ``encode(text, add_special_tokens=False)`` does."""

    def __init__(self, backend: Any, added: Sequence[tuple[str, int]]) -> None:
        self._model = backend.model
        self._bytes = str.maketrans({chr(b): c for b, c in _byte_chars().items() if b < 128})
        ordered = sorted((content for content, _ in added), key=len, reverse=True)  # leftmost-longest, as the tokenizer
        self._added = re.compile("(" + "|".join(map(re.escape, ordered)) + ")") if ordered else None
        self._added_ids = {content: array("i", [i]).tobytes() for content, i in added}
        self._cache: dict[str, bytes] = dict(self._added_ids)
        vocab = backend.get_vocab(with_added_tokens=True)
        self._length = [0] * (max(vocab.values()) + 1)
        for text, i in vocab.items():
            self._length[i] = len(text)  # one character per byte (added tokens: ASCII checked in for_backend)

    @classmethod
    def for_backend(cls, backend: Any) -> ByteLevelWords | None:
        """The word encoder for this Rust tokenizer, or None when it is not a plain GPT-2-style byte-level BPE."""
        try:
            spec = json.loads(backend.to_str())
        except Exception:
            return None
        pre, model, post = spec.get("pre_tokenizer") or {}, spec.get("model") or {}, spec.get("post_processor") or {}
        plain_pre = (pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
                     and not pre.get("add_prefix_space"))
        plain_model = (model.get("type") == "BPE" and model.get("dropout") is None
                       and not model.get("continuing_subword_prefix") and not model.get("end_of_word_suffix"))
        # A ByteLevel post-processor that trims offsets moves token boundaries the labels are found by.
        trims = post.get("type") == "ByteLevel" and post.get("trim_offsets")
        if not plain_pre or not plain_model or trims or spec.get("normalizer") is not None:
            return None
        if getattr(backend, "encode_special_tokens", False):
            return None
        added = []
        for i, token in backend.get_added_tokens_decoder().items():
            if token.lstrip or token.rstrip or token.single_word or not token.content.isascii():
                return None
            if token.content:
                added.append((token.content, i))
        return cls(backend, added)

    def _word(self, word: str) -> bytes:
        if len(self._cache) >= CACHE_WORDS:
            self._cache = dict(self._added_ids)
        ids = self._cache[word] = array("i", [t.id for t in self._model.tokenize(word.translate(self._bytes))]).tobytes()
        return ids

    def encode(self, text: str, spans: Sequence[tuple[int, int]] = ()) -> tuple[bytes, list[tuple[int, int]]] | None:
        """The ids (int32 bytes) of ``text`` and, per character span, the tokens overlapping it as
        ``(first, stop)``; None when the text is not ASCII (the caller asks the Rust tokenizer).

        A token overlaps a span when it starts before the span's end and ends after its start.
        """
        if not text.isascii():
            return None
        findall = WORDS.findall
        if self._added is None:
            units = findall(text)
        else:  # stretches and the added tokens between them, alternately
            pieces = self._added.split(text)
            units = findall(pieces[0]) if pieces[0] else []
            for k in range(1, len(pieces), 2):
                units.append(pieces[k])
                if pieces[k + 1]:
                    units += findall(pieces[k + 1])
        try:
            found = list(map(self._cache.get, units))
            if None in found:
                found = [ids if ids is not None else self._word(u) for ids, u in zip(found, units, strict=True)]
            parts = cast("list[bytes]", found)  # every miss was filled in just above
        except Exception:  # a word the BPE model cannot take: the Rust tokenizer says what it does
            return None
        blob = b"".join(parts)
        if not spans:
            return blob, []
        ends = list(accumulate(map(len, units)))
        token_ends = list(accumulate(map(len, parts)))  # in bytes: four per token
        ranges = [(self._token_at(units, parts, ends, token_ends, start, False),
                   self._token_at(units, parts, ends, token_ends, end, True)) for start, end in spans]
        return blob, ranges

    def _token_at(self, units: list[str], parts: list[bytes], ends: list[int], token_ends: list[int], at: int,
                  after: bool) -> int:
        """The token holding character ``at`` (``after``: the first token starting at or after it)."""
        j = bisect.bisect_right(ends, at)
        if j == len(ends):
            return token_ends[-1] // 4 if ends else 0
        unit_start = ends[j - 1] if j else 0
        before = token_ends[j - 1] // 4 if j else 0
        if at == unit_start:
            return before
        # ``at`` falls inside a word: place it among that word's tokens.
        lengths = accumulate(self._length[i] for i in array("i", parts[j]))
        inside = list(lengths)
        offset = at - unit_start
        return before + (bisect.bisect_left(inside, offset) + 1 if after else bisect.bisect_right(inside, offset))
