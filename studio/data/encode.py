"""The one place a raw row becomes ``input_ids`` and ``labels``.

The Preview screen, ``studio preview`` and the training worker all call
:meth:`Encoder.encode_row`, so what the preview shows is what trains.

The ids are always the tokenizer's own render of the whole conversation (what
``apply_chat_template`` gives), and the assistant turns are located in that render.
Masking does not rely on ``{% generation %}`` markers, which most chat templates lack, and
not on the render being prefix-stable, which Qwen3's is not (it drops the reasoning of turns
before the last user turn and opens the last reply with a think block; other templates insert
dates or default system prompts). Instead the conversation is rendered a second time with every
assistant reply (and reasoning) wrapped in unique private-use sentinels placed inside its
surrounding whitespace, so ``| trim`` and ``.strip()`` still see the same text. With the
sentinels taken out, that render must equal the real one character for character: then the
sentinels say exactly where each reply's text landed, whatever the template did around it.
A reply's trained span starts where the generation prompt of the turns before it ends (the
prompt the model is given at inference: the render of those turns with
``add_generation_prompt``, found as a prefix of the whole render, or else by its own header
text just before the reply) and ends with the first end-of-turn after the reply's text (tool
calls the template writes after the text train with it). A template whose sentinel render does
not match (it transforms contents) falls back to rendering prefix by prefix, which works for
prefix-stable templates and is refused, naming the template, for the rest.
"""

from __future__ import annotations

import bisect
import math
import re
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
NOTHING_TRAINED = "no trained tokens"
NOTHING_TRAINED_WITHIN = "no trained tokens within max_seq_length"
"""Why a row is skipped when no token of it trains (the second: none left after truncation); the fast encoder
gives the same reasons."""
_KNOWN_END_OF_TURN = (
    "<|eot_id|>",
    "<|im_end|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
    "<end_of_utterance>",
)


@dataclass(frozen=True)
class Encoded:
    """One training sample: token ids, labels (-100 where no loss is taken), and what truncation did."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool
    full_length: int
    notes: tuple[str, ...] = ()
    """What the Preview says about how the row was rendered (reasoning kept or dropped, history rewritten)."""

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


_MARK = re.compile("\ue000([0-9]+)\ue001")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def _mark(text: str, key: int) -> str:
    """``text`` with sentinels ``key`` (before) and ``key + 1`` (after) around its core, inside its whitespace."""
    core = text.strip()
    if not core:
        return text
    lead = len(text) - len(text.lstrip())
    return f"{text[:lead]}\ue000{key}\ue001{core}\ue000{key + 1}\ue001{text[lead + len(core) :]}"


def _unmark(text: str) -> tuple[str, dict[int, int | None]]:
    """The text without sentinels, and where each one stood in it (None: it stood more than once)."""
    parts: list[str] = []
    where: dict[int, int | None] = {}
    at = removed = 0
    for m in _MARK.finditer(text):
        parts.append(text[at : m.start()])
        key = int(m.group(1))
        where[key] = None if key in where else m.start() - removed
        removed += m.end() - m.start()
        at = m.end()
    parts.append(text[at:])
    return "".join(parts), where


def split_think(content: str) -> tuple[str, str] | None:
    """``(reasoning, answer)`` of a reply written as ``<think>…</think>answer``, as Qwen3's template splits it;
    None when the content holds no (or more than one) ``</think>``."""
    if content.count(THINK_CLOSE) != 1:
        return None
    head, answer = content.split(THINK_CLOSE)
    return head.rstrip("\n").split(THINK_OPEN)[-1].lstrip("\n"), answer.lstrip("\n")


@dataclass(frozen=True)
class Located:
    """A conversation's whole render, the character spans that train, and what the Preview should say."""

    text: str
    spans: list[tuple[int, int]]
    owners: tuple[int, ...] = ()
    """The index of the assistant turn each span belongs to."""
    notes: tuple[str, ...] = ()


class Encoder:
    """Renders, tokenizes and masks rows for one recipe and tokenizer."""

    def __init__(self, tokenizer: Any, recipe: Recipe, fmt: str) -> None:
        self.tokenizer = tokenizer
        self.recipe = recipe
        self.format = fmt
        self.max_length = recipe.model.max_seq_length
        self.train_on = recipe.train.train_on
        self.train_on_reasoning = recipe.data.train_on_reasoning
        self.columns: Mapping[str, str] = recipe.data.columns
        self.system_prompt = recipe.data.system_prompt
        self.template_name, template, end_of_turn = self._choose_template()
        self.template_source = template or ""
        self.end_of_turn = end_of_turn
        # A template that reads ``reasoning_content`` places reasoning itself; for the others it goes inline.
        self.native_reasoning = "reasoning_content" in self.template_source
        self.tool_support = "tool" in self.template_source
        self.thinking_switch = "enable_thinking" in self.template_source
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
    def messages(self, turns: Sequence[Mapping[str, Any]], marked: bool = False) -> list[dict[str, Any]]:
        """The turns as the template takes them: reasoning as ``reasoning_content`` where the template reads
        it, else inline as ``<think>…</think>`` before the answer; with sentinels when ``marked``."""
        out = []
        for i, turn in enumerate(turns):
            message = dict(turn)
            if message["role"] == "assistant":
                reasoning = message.pop("reasoning_content", None)
                answer = message["content"]
                if reasoning is None and self.native_reasoning and (parts := split_think(answer)) is not None:
                    reasoning, answer = parts  # the template would split it the same way
                if marked:
                    answer = _mark(answer, 4 * i)
                    reasoning = _mark(reasoning, 4 * i + 2) if reasoning is not None else None
                if reasoning is not None and not self.native_reasoning:
                    answer = (
                        f"{THINK_OPEN}\n{reasoning.strip(chr(10))}\n{THINK_CLOSE}\n\n{answer.lstrip(chr(10))}"
                    )
                elif reasoning is not None:
                    message["reasoning_content"] = reasoning
                message["content"] = answer
            out.append(message)
        return out

    def render(
        self,
        turns: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = False,
        tools: Sequence[Any] | None = None,
        marked: bool = False,
        enable_thinking: bool | None = None,
    ) -> str:
        assert self._compiled is not None
        extra: dict[str, Any] = {"tools": list(tools)} if tools else {}
        if enable_thinking is not None:
            extra["enable_thinking"] = enable_thinking
        return self._compiled.render(
            messages=self.messages(turns, marked),
            add_generation_prompt=add_generation_prompt,
            **extra,
            **self._special,
        )

    def check_tools(self, example: Example) -> None:
        """A conversation with tools needs a template that renders them; say which one does not."""
        uses = example.tools or any(t["role"] == "tool" or t.get("tool_calls") for t in example.turns)
        if uses and not self.tool_support:
            raise TemplateError(
                f"chat template {self.template_name!r} has no tool support, but the data has tool calls or tool "
                "results; use a model whose own template renders tools (model.chat_template: tokenizer, as "
                "Qwen3's and Llama-3.1's do) or leave the tool turns out"
            )

    def answer(self, turn: Mapping[str, Any]) -> str:
        """The reply's text that :meth:`messages` marks: the answer after a think block the template splits off
        itself, else the whole content."""
        content = turn["content"]
        if "reasoning_content" not in turn and self.native_reasoning and (parts := split_think(content)):
            return parts[1]
        return content

    def locate(self, turns: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None = None) -> Located:
        """The whole render and the character spans that train in it (see the module docstring)."""
        full = self.render(turns, tools=tools)
        clean, where = _unmark(self.render(turns, tools=tools, marked=True))
        assistants = [i for i, t in enumerate(turns) if t["role"] == "assistant"]
        found = all(
            where.get(4 * i) is not None and where.get(4 * i + 1) is not None
            for i in assistants
            if self.answer(turns[i]).strip()
        )
        if clean != full or not found:
            return self._locate_by_prefixes(turns, tools, full)
        spans: list[tuple[int, int]] = []
        notes: list[list[str]] = []
        owners = tuple(assistants)
        previous_end = 0
        for n, i in enumerate(assistants):
            answer_start, answer_end = where.get(4 * i), where.get(4 * i + 1)
            prompt = self.render(turns[:i], add_generation_prompt=True, tools=tools)
            limit = len(full) if answer_start is None else answer_start
            if full.startswith(prompt) and previous_end <= len(prompt) <= limit:
                start = len(prompt)
            else:  # the history before this turn renders differently: find this turn's own header before its text
                before = self.render(turns[:i], tools=tools)
                header = prompt[len(before) :] if prompt.startswith(before) else ""
                at = full.rfind(header, previous_end, limit) if header else -1
                if at < 0:
                    raise TemplateError(
                        f"chat template {self.template_name!r}: the start of assistant turn {i + 1} cannot be located "
                        "in the render of the whole conversation; choose a named template (model.chat_template) "
                        "or train.train_on: all"
                    )
                start = at + len(header)
            written = self.render(turns[: i + 1], tools=tools)
            as_written = full.startswith(written) and written.startswith(prompt)
            # The end-of-turn is looked for after the reply's text and before the next reply's.
            bound = len(written) if as_written else len(full)
            following = where.get(4 * assistants[n + 1]) if n + 1 < len(assistants) else None
            if following is not None:
                bound = min(bound, following)
            eot = self.end_of_turn
            eot_at = full.find(eot, start if answer_end is None else answer_end, bound) if eot else -1
            end = eot_at + len(eot) if eot and eot_at >= 0 else len(full[:bound].rstrip())
            said = []
            if not as_written:
                said.append(
                    f"turn {i + 1} renders differently in the whole conversation than when it was written "
                    "(the template rewrites history); train.train_on: last_response trains only the last reply"
                )
            start, reasoning_note = self._reasoning(turns[i], i, full, start, end, where)
            said += reasoning_note
            spans.append((start, end))
            notes.append(said)
            previous_end = end
        if self.train_on == "last_response":
            spans, notes, owners = spans[-1:], notes[-1:], owners[-1:]
        return Located(full, spans, owners, tuple(note for said in notes for note in said))

    def _reasoning(
        self,
        turn: Mapping[str, Any],
        i: int,
        full: str,
        start: int,
        end: int,
        where: Mapping[int, int | None],
    ) -> tuple[int, list[str]]:
        """Where a reply's trained span starts once its think block is masked or not, and what to say about it."""
        reasoning = turn.get("reasoning_content")
        if reasoning is None and (parts := split_think(turn["content"])) is not None:
            reasoning = parts[0]
        if reasoning is None or not reasoning.strip():
            return start, []
        if self.native_reasoning and where.get(4 * i + 2) is None:
            return start, [
                f"turn {i + 1}: the template leaves out its reasoning (it keeps only the latest turns'); "
                "train.train_on: last_response trains the last reply with its reasoning"
            ]
        if self.train_on_reasoning:
            return start, [f"turn {i + 1}: the think block trains (data.train_on_reasoning: true)"]
        closed = full.find(THINK_CLOSE, start, end)
        if closed >= 0:
            after = closed + len(THINK_CLOSE)
            start = after + len(full[after:end]) - len(full[after:end].lstrip())
        return start, [f"turn {i + 1}: the think block is masked (data.train_on_reasoning: false)"]

    def _locate_by_prefixes(
        self, turns: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None, full: str
    ) -> Located:
        """The older way, for templates that change the contents themselves: the text an assistant turn adds is
        the difference between the render of the turns before it (with the generation prompt) and the render
        including it; only prefix-stable templates can be read this way."""
        spans, owners = [], []
        for i, turn in enumerate(turns):
            if turn["role"] != "assistant":
                continue
            owners.append(i)
            prefix = self.render(turns[:i], add_generation_prompt=True, tools=tools)
            upto = self.render(turns[: i + 1], tools=tools)
            if not upto.startswith(prefix) or not full.startswith(upto):
                raise TemplateError(
                    f"chat template {self.template_name!r}: rendering turn {i + 1} changes the text before it and "
                    "the template changes the turns' contents, so the assistant tokens cannot be located; choose a "
                    "named template (model.chat_template) or train.train_on: all"
                )
            start, end = len(prefix), len(upto)
            content = turn["content"].strip()
            at = upto.find(content, start) if content else -1
            if at >= 0:
                content_end = at + len(content)
                eot = self.end_of_turn or ""
                eot_at = upto.find(eot, content_end) if eot else -1
                end = eot_at + len(eot) if eot_at >= 0 else len(upto.rstrip())
            spans.append((start, end))
        if self.train_on == "last_response":
            spans, owners = spans[-1:], owners[-1:]
        return Located(full, spans, tuple(owners))

    def assistant_spans(
        self, turns: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None = None
    ) -> tuple[str, list[tuple[int, int]]]:
        """The full render and the character spans that train (every reply with its end-of-turn)."""
        located = self.locate(turns, tools)
        return located.text, located.spans

    # -- encoding ------------------------------------------------------------------------------
    def encode_example(self, example: Example) -> Encoded:
        tok = self.tokenizer
        notes: tuple[str, ...] = ()
        if example.text is not None:
            ids = tok(example.text, add_special_tokens=True)["input_ids"]
            if tok.eos_token_id is not None and (not ids or ids[-1] != tok.eos_token_id):
                ids = [*ids, tok.eos_token_id]
            labels = list(ids)
        else:
            self.check_tools(example)
            located = self.locate(example.turns, example.tools)
            notes = located.notes
            enc = tok(located.text, add_special_tokens=False, return_offsets_mapping=True)
            ids = enc["input_ids"]
            labels = (
                list(ids)
                if self.train_on == "all"
                else _mask_outside(ids, enc["offset_mapping"], located.spans)
            )
        full = len(ids)
        truncated = full > self.max_length
        if truncated:
            ids, labels = ids[: self.max_length], labels[: self.max_length]
        if all(label == IGNORE_INDEX for label in labels):
            raise SkipRow(NOTHING_TRAINED_WITHIN if truncated else NOTHING_TRAINED)
        return Encoded(list(ids), labels, truncated, full, notes)

    def example_of(self, row: Mapping[str, Any]) -> Example:
        return to_example(row, self.format, self.columns, self.system_prompt)

    def encode_row(self, row: Mapping[str, Any], index: int | None = None) -> Encoded:
        """THE function: raw row -> Encoded. Raises SkipRow (with the reason) for unusable rows; ``index`` (the
        row's place in the data) is named where a row is refused (a vision row's missing image)."""
        return self.encode_example(self.example_of(row))


def _mask_outside(
    ids: Sequence[int], offsets: Sequence[tuple[int, int]], spans: list[tuple[int, int]]
) -> list[int]:
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
    sample is ever predicted from the one before it; ``seq_lengths`` lists each sample's length, which TRL's
    padding-free collator turns into those position ids (and the model into attention within each sample
    only). A generator, so the cache packs a data set larger than memory a batch at a time.
    """
    current: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": [], "seq_lengths": []}
    for sample_ids, sample_labels in samples:
        ids, labels = sample_ids[:max_length], sample_labels[:max_length]
        if current["input_ids"] and len(current["input_ids"]) + len(ids) > max_length:
            yield current
            current = {"input_ids": [], "labels": [], "position_ids": [], "seq_lengths": []}
        current["input_ids"] += ids
        current["labels"] += [IGNORE_INDEX, *labels[1:]]
        current["position_ids"] += list(range(len(ids)))
        current["seq_lengths"].append(len(ids))
    if current["input_ids"]:
        yield current


def packed_preview(
    encoder: Encoder, rows: Sequence[Mapping[str, Any]], start: int, max_length: int
) -> tuple[Encoded, list[int], int]:
    """What the Preview shows with ``train.packing``: the packed sequence the rows from ``start`` make, through
    :meth:`Encoder.encode_row` and :func:`packed` as training packs them (skipped rows left out). Returns it as
    one sample, where each document starts in it, and how many rows it took."""
    from lorastudio.data.formats import SkipRow

    read: list[int] = []  # the rows handed to the packing loop, in order

    def samples() -> Iterator[tuple[list[int], list[int]]]:
        for index in range(start, len(rows)):
            try:
                sample = encoder.encode_row(rows[index])
            except SkipRow:
                continue
            read.append(index)
            yield sample.input_ids, sample.labels

    pack = next(packed(samples(), max_length), None)
    if pack is None:
        return Encoded([], [], False, 0), [], len(rows) - start
    documents = len(pack["seq_lengths"])
    # the loop reads one sample past a full pack to see that it does not fit: that row starts the next pack
    following = read[documents] if len(read) > documents else len(rows)
    starts = [i for i, position in enumerate(pack["position_ids"]) if position == 0]
    return (
        Encoded(pack["input_ids"], pack["labels"], False, len(pack["input_ids"])),
        starts,
        following - start,
    )


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
        copy = replace(
            self,
            lengths=list(self.lengths),
            skipped=self.skipped.copy(),
            skipped_rows={k: v[:5] for k, v in self.skipped_rows.items()},
        )
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
        return [
            (low + b * width, low + (b + 1) * width - 1, int(counts[b]))
            for b in range(bins)
            if low + b * width <= high
        ]

    @property
    def trained_ratio(self) -> float:
        return self.trained_tokens / self.tokens if self.tokens else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "rows": self.rows,
            "used": self.used,
            "skipped": dict(self.skipped),
            "skipped_rows": {k: v[:10] for k, v in self.skipped_rows.items()},
            "truncated": self.truncated,
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
            "trained_ratio": round(self.trained_ratio, 4),
            "length": {
                "p50": self.percentile(50),
                "p90": self.percentile(90),
                "p99": self.percentile(99),
                "max": self.max_length,
            },
            "histogram": self.histogram(),
        }


def resolve_format(
    recipe: Recipe, column_names: Sequence[str], sample_rows: Sequence[Mapping]
) -> tuple[Recipe, str]:
    """The recipe with its data columns resolved against the file's, and the format (taken, or detected)."""
    columns = resolve_columns(column_names, recipe.data.columns)
    if columns != recipe.data.columns:
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"columns": columns})})
    fmt: str = recipe.data.format
    if fmt == "auto":
        fmt = detect_format(column_names, recipe.data.columns, sample_rows)
    return recipe, fmt


def make_encoder(
    tokenizer: Any, recipe: Recipe, column_names: Sequence[str], sample_rows: Sequence[Mapping], origin: str
) -> Encoder:
    """Detect (or take) the format, check the columns, and build the encoder."""
    recipe, fmt = resolve_format(recipe, column_names, sample_rows)
    check_columns(fmt, column_names, recipe.data.columns, origin)
    return Encoder(tokenizer, recipe, fmt)


def encode_all(encoder: Encoder, rows: Sequence[Mapping[str, Any]], origin: str) -> list[Encoded]:
    """Encode every row for training; zero usable rows is an error naming the reasons."""
    out: list[Encoded] = []
    reasons: Counter[str] = Counter()
    for row in rows:
        try:
            out.append(encoder.encode_row(row))
        except SkipRow as skip:
            reasons[str(skip)] += 1
    if not out:
        why = ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "the data set is empty"
        raise DataError(f"{origin}: no usable rows ({why})")
    return out
