"""The one place a raw row becomes ``input_ids`` and ``labels``.

The Preview screen, ``studio preview`` and the training worker all call
:meth:`Encoder.encode_row`, so what the preview shows is what trains.

Masking does not rely on ``{% generation %}`` markers, which most chat templates
lack. The assistant spans are found by rendering the conversation prefix by
prefix: the text an assistant turn adds is the difference between the render of
the turns before it (with the generation prompt) and the render including it.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from lorastudio.data.formats import (
    TEXT_FORMATS,
    Example,
    SkipRow,
    check_columns,
    detect_format,
    resolve_columns,
    to_example,
)
from lorastudio.errors import DataError, TemplateError
from lorastudio.models.templates import TEMPLATE_FOR_TEXT_FORMAT, TEMPLATES
from lorastudio.recipe import Recipe

IGNORE_INDEX = -100
_KNOWN_END_OF_TURN = ("<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


@dataclass(frozen=True)
class Encoded:
    """One training sample: token ids, labels (-100 where no loss is taken), and what truncation did."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool
    full_length: int

    @property
    def trained_count(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _compile(template: str):
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template

        return _compile_jinja_template(template)
    except ImportError:  # pragma: no cover - older transformers keep it elsewhere
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(template)


class Encoder:
    """Renders, tokenizes and masks rows for one recipe and tokenizer."""

    def __init__(self, tokenizer: Any, recipe: Recipe, fmt: str) -> None:
        self.tokenizer = tokenizer
        self.recipe = recipe
        self.format = fmt
        self.max_length = recipe.model.max_seq_length
        self.train_on = recipe.train.train_on
        self.columns: Mapping[str, str] = recipe.data.columns
        self.system_prompt = recipe.data.system_prompt
        self.template_name, template, end_of_turn = self._choose_template()
        self.end_of_turn = end_of_turn
        self._compiled = _compile(template) if template else None
        self._special = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}

    def _choose_template(self) -> tuple[str, str | None, str | None]:
        wanted = self.recipe.model.chat_template
        eos = self.tokenizer.eos_token
        if self.format == "text":
            return "none (plain text)", None, eos
        if wanted == "tokenizer" and self.format in TEXT_FORMATS:
            # Raw text with its own markers trains in those markers.
            wanted = TEMPLATE_FOR_TEXT_FORMAT[self.format]
        if wanted != "tokenizer":
            named = TEMPLATES.get(wanted)
            if named is None:
                raise TemplateError(
                    f"model.chat_template: unknown template {wanted!r} (known: tokenizer, {', '.join(TEMPLATES)})"
                )
            return wanted, named.jinja, named.end_of_turn or eos
        own = getattr(self.tokenizer, "chat_template", None)
        if not own or not isinstance(own, str):
            raise TemplateError(
                f"model.chat_template: the tokenizer of {self.recipe.model.name!r} has no chat template; "
                f"name one (one of {', '.join(TEMPLATES)})"
            )
        eot = next((t for t in _KNOWN_END_OF_TURN if t in own), eos)
        return "tokenizer", own, eot

    # -- rendering -----------------------------------------------------------------------------
    def render(self, turns: Sequence[Mapping[str, str]], add_generation_prompt: bool = False) -> str:
        assert self._compiled is not None
        return self._compiled.render(
            messages=[dict(t) for t in turns], add_generation_prompt=add_generation_prompt, **self._special
        )

    def assistant_spans(self, turns: Sequence[Mapping[str, str]]) -> tuple[str, list[tuple[int, int]]]:
        """The full render and the character spans of every assistant reply (with its end-of-turn)."""
        full = self.render(turns)
        spans = []
        for i, turn in enumerate(turns):
            if turn["role"] != "assistant":
                continue
            prefix = self.render(turns[:i], add_generation_prompt=True)
            upto = self.render(turns[: i + 1])
            if not upto.startswith(prefix) or not full.startswith(upto):
                raise TemplateError(
                    f"chat template {self.template_name!r}: rendering turn {i + 1} changes the text before it, so "
                    "the assistant tokens cannot be located; choose a named template (model.chat_template) "
                    "or train.train_on: all"
                )
            start, end = len(prefix), len(upto)
            content = turn["content"].strip()
            at = upto.find(content, start) if content else -1
            if at >= 0:
                content_end = at + len(content)
                eot_at = upto.find(self.end_of_turn, content_end) if self.end_of_turn else -1
                end = eot_at + len(self.end_of_turn) if eot_at >= 0 else len(upto.rstrip())
            spans.append((start, end))
        return full, spans

    # -- encoding ------------------------------------------------------------------------------
    def encode_example(self, example: Example) -> Encoded:
        tok = self.tokenizer
        if example.text is not None:
            ids = tok(example.text, add_special_tokens=True)["input_ids"]
            if tok.eos_token_id is not None and (not ids or ids[-1] != tok.eos_token_id):
                ids = [*ids, tok.eos_token_id]
            labels = list(ids)
        else:
            text, spans = self.assistant_spans(example.turns)
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
            ids = enc["input_ids"]
            labels = list(ids) if self.train_on == "all" else _mask_outside(ids, enc["offset_mapping"], spans)
        full = len(ids)
        truncated = full > self.max_length
        if truncated:
            ids, labels = ids[: self.max_length], labels[: self.max_length]
        if all(label == IGNORE_INDEX for label in labels):
            raise SkipRow("no trained tokens within max_seq_length" if truncated else "no trained tokens")
        return Encoded(list(ids), labels, truncated, full)

    def example_of(self, row: Mapping[str, Any]) -> Example:
        return to_example(row, self.format, self.columns, self.system_prompt)

    def encode_row(self, row: Mapping[str, Any]) -> Encoded:
        """THE function: raw row -> Encoded. Raises SkipRow (with the reason) for unusable rows."""
        return self.encode_example(self.example_of(row))


def _mask_outside(ids: Sequence[int], offsets: Sequence[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    labels = [IGNORE_INDEX] * len(ids)
    if not spans:
        return labels
    starts = [s for s, _ in spans]
    for i, (tok_start, tok_end) in enumerate(offsets):
        # A token is trained when it overlaps an assistant span (a leading space merged into the
        # first reply token still belongs to the reply).
        j = bisect.bisect_right(starts, max(tok_end - 1, tok_start)) - 1
        if j >= 0 and tok_start < spans[j][1] and tok_end > spans[j][0]:
            labels[i] = ids[i]
    return labels


def pack(samples: Sequence[Encoded], max_length: int) -> list[dict[str, list[int]]]:
    """Concatenate samples into sequences of at most ``max_length`` tokens (see :func:`packed`)."""
    return list(packed(((s.input_ids, s.labels) for s in samples), max_length))


def packed(samples: Iterable[tuple[list[int], list[int]]], max_length: int) -> Iterator[dict[str, list[int]]]:
    """The one packing loop: ``(input_ids, labels)`` pairs into sequences of at most ``max_length`` tokens.

    Each sample restarts ``position_ids`` at 0 and its first label is -100, so no
    sample is ever predicted from the one before it. A generator, so the cache packs a
    data set larger than memory a batch at a time.
    """
    current: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for sample_ids, sample_labels in samples:
        ids, labels = sample_ids[:max_length], sample_labels[:max_length]
        if current["input_ids"] and len(current["input_ids"]) + len(ids) > max_length:
            yield current
            current = {"input_ids": [], "labels": [], "position_ids": []}
        current["input_ids"] += ids
        current["labels"] += [IGNORE_INDEX, *labels[1:]]
        current["position_ids"] += list(range(len(ids)))
    if current["input_ids"]:
        yield current


# -- statistics --------------------------------------------------------------------------------
@dataclass
class DatasetStats:
    """What the Preview's statistics panel and ``studio preview --json`` report."""

    format: str
    rows: int = 0
    used: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_rows: dict[str, list[int]] = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list)
    truncated: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    done: bool = False

    def _array(self) -> Any:
        """The lengths as a numpy array, kept while the list is the same list at the same length (it only
        grows): the Preview redraws these figures while a million rows stream in, on the UI thread."""
        import numpy as np

        key = (id(self.lengths), len(self.lengths))
        kept = self.__dict__.get("_lengths_array")
        if kept is None or kept[0] != key:
            kept = (key, np.array(self.lengths, dtype=np.int64))
            self.__dict__["_lengths_array"] = kept
        return kept[1]

    def snapshot(self) -> DatasetStats:
        """A copy for another thread (this one keeps growing), its length figures ready to read."""
        copy = replace(self, lengths=list(self.lengths), skipped=self.skipped.copy(),
                       skipped_rows={k: v[:5] for k, v in self.skipped_rows.items()})
        copy._array()
        return copy

    def percentile(self, q: float) -> int:
        """The length at or below which ``q`` percent of the samples fall (nearest rank)."""
        import numpy as np

        if not self.lengths:
            return 0
        n = len(self.lengths)
        k = min(n - 1, max(0, math.ceil(q / 100 * n) - 1))
        return int(np.partition(self._array(), k)[k])

    @property
    def max_length(self) -> int:
        return int(self._array().max()) if self.lengths else 0

    def histogram(self, bins: int = 10) -> list[tuple[int, int, int]]:
        """(low, high, count) buckets of token lengths."""
        import numpy as np

        if not self.lengths:
            return []
        lengths = self._array()
        low, high = int(lengths.min()), int(lengths.max())
        width = max(1, math.ceil((high - low + 1) / bins))
        counts = np.bincount((lengths - low) // width, minlength=bins)
        return [(low + b * width, low + (b + 1) * width - 1, int(counts[b])) for b in range(bins)
                if low + b * width <= high]

    @property
    def trained_ratio(self) -> float:
        return self.trained_tokens / self.tokens if self.tokens else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format, "rows": self.rows, "used": self.used,
            "skipped": dict(self.skipped), "skipped_rows": {k: v[:10] for k, v in self.skipped_rows.items()},
            "truncated": self.truncated, "tokens": self.tokens, "trained_tokens": self.trained_tokens,
            "trained_ratio": round(self.trained_ratio, 4),
            "length": {"p50": self.percentile(50), "p90": self.percentile(90), "p99": self.percentile(99),
                       "max": self.max_length},
            "histogram": self.histogram(),
        }


def make_encoder(tokenizer: Any, recipe: Recipe, column_names: Sequence[str], sample_rows: Sequence[Mapping],
                 origin: str) -> Encoder:
    """Detect (or take) the format, check the columns, and build the encoder."""
    columns = resolve_columns(column_names, recipe.data.columns)
    if columns != recipe.data.columns:
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"columns": columns})})
    fmt = recipe.data.format
    if fmt == "auto":
        fmt = detect_format(column_names, recipe.data.columns, sample_rows)
    check_columns(fmt, column_names, recipe.data.columns, origin)
    return Encoder(tokenizer, recipe, fmt)


def encode_all(encoder: Encoder, rows: Sequence[Mapping[str, Any]], origin: str) -> list[Encoded]:
    """Encode every row for training; zero usable rows is an error naming the reasons."""
    out, reasons = [], Counter()
    for row in rows:
        try:
            out.append(encoder.encode_row(row))
        except SkipRow as skip:
            reasons[str(skip)] += 1
    if not out:
        why = ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "the data set is empty"
        raise DataError(f"{origin}: no usable rows ({why})")
    return out
