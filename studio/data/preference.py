"""Rows for the preference and RL methods (``train.method`` dpo, orpo, reward, kto, grpo) and their ONE encode
path (a reward model reads the same pairs as dpo).

Formats, detected from the columns like the SFT ones:

- ``preference``: ``prompt``, ``chosen``, ``rejected`` strings;
- ``preference_messages``: ``chosen`` / ``rejected`` message lists, either whole conversations sharing their
  first turns (UltraFeedback-binarized) or the replies alone beside a ``prompt`` message list (TRL's
  conversational shape);
- ``hh``: Anthropic HH ``chosen`` / ``rejected`` transcripts (``\\n\\nHuman:`` / ``\\n\\nAssistant:``);
- ``kto``: ``prompt``, ``completion`` and a boolean ``label`` (unpaired);
- ``prompt_only``: a ``prompt`` (string or messages) for GRPO; every other column goes to the reward functions.

:class:`MethodEncoder` renders each conversation with the SFT :class:`Encoder` and masks the reply exactly as
``Encoder.encode_example`` masks the last assistant turn of the same conversation, so the Preview, ``studio
prepare`` and the worker show and train the same tokens. The trainers get these ids pre-tokenized
(see ``studio/train/trainer/methods.py``).
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lorastudio.data.encode import IGNORE_INDEX, Encoder, _mask_outside, make_encoder
from lorastudio.data.formats import SkipRow, Turn
from lorastudio.errors import DataError
from lorastudio.progress import Progress
from lorastudio.recipe import Recipe

PREFERENCE_FORMATS = ("preference", "preference_messages", "hh")
FORMATS_OF_METHOD: dict[str, tuple[str, ...]] = {
    "dpo": PREFERENCE_FORMATS,
    "orpo": PREFERENCE_FORMATS,
    "reward": PREFERENCE_FORMATS,
    "kto": ("kto",),
    "grpo": ("prompt_only",),
}
COLUMNS_OF_FORMAT: dict[str, tuple[str, ...]] = {
    "preference": ("prompt", "chosen", "rejected"),
    "preference_messages": ("chosen", "rejected"),
    "hh": ("chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
    "prompt_only": ("prompt",),
}
_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "system": "system"}
_HH_RE = re.compile(r"\n\n(Human|Assistant):[ ]?")


# -- what a row means --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """A prompt (turns ending with a user turn) and two replies to it."""

    prompt: tuple[Turn, ...]
    chosen: str
    rejected: str


@dataclass(frozen=True)
class Unpaired:
    """A prompt and one reply labelled desirable (True) or not (KTO)."""

    prompt: tuple[Turn, ...]
    completion: str
    label: bool


@dataclass(frozen=True)
class PromptRow:
    """A GRPO prompt and the row's other columns, which the reward functions receive."""

    prompt: tuple[Turn, ...]
    extra: dict[str, Any]


def _col(row: Mapping[str, Any], columns: Mapping[str, str], name: str) -> Any:
    return row.get(columns.get(name, name))


def _not_nan(value: Any, what: str) -> None:
    """A NaN cell (a float where text belongs, pandas' and JSON's "no value") is named as such, not as missing."""
    if isinstance(value, float) and math.isnan(value):
        raise SkipRow(f"{what} is NaN")


def _string(value: Any, what: str) -> str:
    _not_nan(value, what)
    if value is None:
        raise SkipRow(f"missing {what}")
    if not isinstance(value, str):
        raise SkipRow(f"non-string {what}")
    if not value.strip():
        raise SkipRow(f"empty {what}")
    return value


def _messages(value: Any, what: str) -> list[Turn]:
    _not_nan(value, what)
    if value is None:
        raise SkipRow(f"missing {what}")
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise SkipRow(f"{what} is not a message list")
    turns: list[Turn] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise SkipRow(f"{what} has a turn that is not a mapping")
        role = _ROLES.get(str(item.get("role", item.get("from", ""))).lower())
        if role is None:
            raise SkipRow(f"{what} has an unknown role {item.get('role')!r}")
        content = item.get("content", item.get("value"))
        turns.append({"role": role, "content": _string(content, f"{what} {role} content")})
    if not turns:
        raise SkipRow(f"empty {what}")
    return turns


def _prompt_turns(value: Any, system_prompt: str | None) -> list[Turn]:
    """A prompt column: a string (one user turn) or a message list ending with a user turn."""
    if isinstance(value, str | float) or value is None:
        turns = [{"role": "user", "content": _string(value, "prompt")}]
    else:
        turns = _messages(value, "prompt")
    return _with_system(turns, system_prompt)


def _with_system(turns: list[Turn], system_prompt: str | None) -> list[Turn]:
    if turns and turns[-1]["role"] == "assistant":
        raise SkipRow("prompt ends with an assistant turn")
    if system_prompt and turns[0]["role"] != "system":
        turns = [{"role": "system", "content": system_prompt}, *turns]
    return turns


def _reply(value: Any, what: str) -> str:
    """A reply column: a string, or a message list whose last turn is the assistant's reply."""
    if not isinstance(value, list | tuple):
        return _string(value, what)
    turns = _messages(value, what)
    if turns[-1]["role"] != "assistant":
        raise SkipRow(f"{what} does not end with an assistant turn")
    return turns[-1]["content"]


def parse_hh(text: str) -> list[Turn]:
    """An Anthropic HH transcript (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as turns."""
    parts = _HH_RE.split(text)
    turns: list[Turn] = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=False):
        turns.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    return turns


def _split_conversations(chosen: list[Turn], rejected: list[Turn]) -> tuple[list[Turn], str, str]:
    """Two whole conversations that share every turn but the last: (shared prompt, chosen, rejected)."""
    if chosen[-1]["role"] != "assistant":
        raise SkipRow("chosen does not end with an assistant turn")
    if rejected[-1]["role"] != "assistant":
        raise SkipRow("rejected does not end with an assistant turn")
    if chosen[:-1] != rejected[:-1]:
        raise SkipRow("chosen and rejected differ before their last turn")
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


def to_pair(row: Mapping[str, Any], fmt: str, columns: Mapping[str, str], system_prompt: str | None) -> Pair:
    """The row as a :class:`Pair`; raises :class:`SkipRow` with the reason when it is unusable."""
    raw_chosen, raw_rejected = _col(row, columns, "chosen"), _col(row, columns, "rejected")
    _not_nan(raw_chosen, "chosen")
    _not_nan(raw_rejected, "rejected")
    if raw_chosen is None:
        raise SkipRow("missing chosen")
    if raw_rejected is None:
        raise SkipRow("missing rejected")
    if fmt == "preference":
        prompt = _prompt_turns(_col(row, columns, "prompt"), system_prompt)
        chosen, rejected = _reply(raw_chosen, "chosen"), _reply(raw_rejected, "rejected")
    elif fmt == "hh":
        whole_c = parse_hh(_string(raw_chosen, "chosen"))
        whole_r = parse_hh(_string(raw_rejected, "rejected"))
        if not whole_c or not whole_r:
            raise SkipRow("no Human:/Assistant: turns")
        for turn in (*whole_c, *whole_r):
            _string(turn["content"], f"{turn['role']} content")
        shared, chosen, rejected = _split_conversations(whole_c, whole_r)
        prompt = _with_system(shared, system_prompt) if shared else []
    else:  # preference_messages
        given_prompt = _col(row, columns, "prompt")
        whole_c, whole_r = _messages(raw_chosen, "chosen"), _messages(raw_rejected, "rejected")
        if len(whole_c) == 1 and len(whole_r) == 1:  # TRL's conversational shape: the replies alone
            prompt = _prompt_turns(given_prompt, system_prompt)
            chosen, rejected = _reply(whole_c, "chosen"), _reply(whole_r, "rejected")
        else:  # whole conversations (UltraFeedback-binarized): the prompt is what they share
            shared, chosen, rejected = _split_conversations(whole_c, whole_r)
            prompt = _with_system(shared, system_prompt) if shared else []
    if not prompt or not any(t["role"] == "user" and t["content"].strip() for t in prompt):
        raise SkipRow("empty prompt")
    if chosen.strip() == rejected.strip():
        raise SkipRow("chosen equals rejected")
    return Pair(tuple(prompt), chosen, rejected)


def to_unpaired(row: Mapping[str, Any], columns: Mapping[str, str], system_prompt: str | None) -> Unpaired:
    prompt = _prompt_turns(_col(row, columns, "prompt"), system_prompt)
    completion = _reply(_col(row, columns, "completion"), "completion")
    label = _col(row, columns, "label")
    _not_nan(label, "label")
    if isinstance(label, str) and label.strip().lower() in ("true", "false"):
        label = label.strip().lower() == "true"  # CSV files carry booleans as text
    if not isinstance(label, bool):
        raise SkipRow("label is not a boolean" if label is not None else "missing label")
    return Unpaired(tuple(prompt), completion, label)


def to_prompt(row: Mapping[str, Any], columns: Mapping[str, str], system_prompt: str | None) -> PromptRow:
    prompt_column = columns.get("prompt", "prompt")
    prompt = _prompt_turns(row.get(prompt_column), system_prompt)
    return PromptRow(tuple(prompt), {k: v for k, v in row.items() if k != prompt_column})


def detect_method_format(
    method: str,
    column_names: Sequence[str],
    columns: Mapping[str, str],
    sample_rows: Sequence[Mapping[str, Any]],
    origin: str,
) -> str:
    """The format of a preference/KTO/GRPO data set, from its columns and first rows."""
    have = set(column_names)

    def has(*names: str) -> bool:
        return all(columns.get(n, n) in have for n in names)

    if method in ("dpo", "orpo", "reward"):
        if has("chosen", "rejected"):
            firsts = [_col(r, columns, "chosen") for r in sample_rows[:20]]
            if any(isinstance(v, list) for v in firsts):
                return "preference_messages"
            if not has("prompt") or any(isinstance(v, str) and "\n\nHuman:" in v for v in firsts):
                return "hh"
            return "preference"
        needed = "prompt, chosen, rejected (or chosen and rejected conversations)"
    elif method == "kto":
        if has("prompt", "completion", "label"):
            return "kto"
        needed = "prompt, completion, label"
    else:
        if has("prompt"):
            return "prompt_only"
        needed = "prompt"
    raise DataError(
        f"{origin}: train.method {method} needs the columns {needed}, but the data has "
        f"{', '.join(column_names) or '(none)'}; map them with data.columns"
    )


# -- encoding ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodedReply:
    """A prompt's ids and one reply's trained ids (what the trainer concatenates), and what truncation did."""

    prompt_ids: list[int]
    reply_ids: list[int]
    prompt_truncated: bool
    reply_truncated: bool


@dataclass(frozen=True)
class EncodedPair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    prompt_truncated: bool
    chosen_truncated: bool
    rejected_truncated: bool

    def row(self) -> dict[str, list[int]]:
        return {
            "prompt_ids": self.prompt_ids,
            "chosen_ids": self.chosen_ids,
            "rejected_ids": self.rejected_ids,
        }


@dataclass(frozen=True)
class EncodedUnpaired:
    prompt_ids: list[int]
    completion_ids: list[int]
    label: bool
    prompt_truncated: bool
    completion_truncated: bool

    def row(self) -> dict[str, Any]:
        return {"prompt_ids": self.prompt_ids, "completion_ids": self.completion_ids, "label": self.label}


@dataclass(frozen=True)
class EncodedPrompt:
    """A GRPO prompt: the text the model continues (rendered with the generation prompt) and its ids."""

    prompt: str
    prompt_ids: list[int]
    extra: dict[str, Any]
    prompt_truncated: bool

    def row(self) -> dict[str, Any]:
        return {**self.extra, "prompt": self.prompt, "prompt_ids": self.prompt_ids}


Encoded = EncodedPair | EncodedUnpaired | EncodedPrompt


class MethodEncoder:
    """Turns a raw row into what ``train.method``'s trainer reads, through the SFT encoder's rendering."""

    def __init__(self, base: Encoder, recipe: Recipe, fmt: str) -> None:
        if base.format == "text" or base._compiled is None:
            raise DataError("preference and RL methods need a chat template (model.chat_template)")
        self.base = base
        self.recipe = recipe
        self.method = recipe.train.method
        self.format = fmt
        self.section = recipe.method_section()
        self.max_length = recipe.model.max_seq_length
        self.max_prompt_length = getattr(self.section, "max_prompt_length", None)
        self.columns: Mapping[str, str] = recipe.data.columns
        self.system_prompt = recipe.data.system_prompt

    @property
    def tokenizer(self) -> Any:
        return self.base.tokenizer

    @property
    def template_name(self) -> str:
        return self.base.template_name

    # The ONE masking rule: the reply's tokens are those the SFT encoder trains for the last assistant turn.
    def encode_reply(self, prompt: Sequence[Turn], reply: str) -> EncodedReply:
        turns = [*prompt, {"role": "assistant", "content": reply}]
        text, spans = self.base.assistant_spans(turns)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        labels = _mask_outside(ids, enc["offset_mapping"], spans[-1:])
        trained = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
        if not trained:
            raise SkipRow("no trained tokens")
        prompt_ids, reply_ids = ids[: trained[0]], ids[trained[0] : trained[-1] + 1]
        return self._truncate(prompt_ids, reply_ids)

    def _truncate(self, prompt_ids: list[int], reply_ids: list[int]) -> EncodedReply:
        prompt_cut = self.max_prompt_length is not None and len(prompt_ids) > self.max_prompt_length
        if prompt_cut:
            prompt_ids = prompt_ids[-self.max_prompt_length :]  # type: ignore[operator]
        room = self.max_length - len(prompt_ids)
        if room <= 0:
            raise SkipRow("prompt fills max_seq_length")
        reply_cut = len(reply_ids) > room
        return EncodedReply(prompt_ids, reply_ids[:room], prompt_cut, reply_cut)

    def render_prompt(self, prompt: Sequence[Turn]) -> str:
        return self.base.render(prompt, add_generation_prompt=True)

    def example_of(self, row: Mapping[str, Any]) -> Pair | Unpaired | PromptRow:
        if self.format in PREFERENCE_FORMATS:
            return to_pair(row, self.format, self.columns, self.system_prompt)
        if self.format == "kto":
            return to_unpaired(row, self.columns, self.system_prompt)
        return to_prompt(row, self.columns, self.system_prompt)

    def encode_example(self, example: Pair | Unpaired | PromptRow) -> Encoded:
        if isinstance(example, Pair):
            chosen = self.encode_reply(example.prompt, example.chosen)
            rejected = self.encode_reply(example.prompt, example.rejected)
            if chosen.prompt_ids != rejected.prompt_ids:
                raise SkipRow("prompt tokenizes differently before chosen and rejected")
            return EncodedPair(
                chosen.prompt_ids,
                chosen.reply_ids,
                rejected.reply_ids,
                chosen.prompt_truncated,
                chosen.reply_truncated,
                rejected.reply_truncated,
            )
        if isinstance(example, Unpaired):
            one = self.encode_reply(example.prompt, example.completion)
            return EncodedUnpaired(
                one.prompt_ids, one.reply_ids, example.label, one.prompt_truncated, one.reply_truncated
            )
        text = self.render_prompt(example.prompt)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        cut = self.max_prompt_length is not None and len(ids) > self.max_prompt_length
        if cut:
            ids = ids[-self.max_prompt_length :]  # type: ignore[operator]
            text = self.tokenizer.decode(ids)
        return EncodedPrompt(text, ids, example.extra, cut)

    def encode_row(self, row: Mapping[str, Any]) -> Encoded:
        """THE function for these methods: raw row -> encoded; raises SkipRow with the reason."""
        return self.encode_example(self.example_of(row))


def make_method_encoder(
    tokenizer: Any,
    recipe: Recipe,
    column_names: Sequence[str],
    sample_rows: Sequence[Mapping[str, Any]],
    origin: str,
) -> MethodEncoder:
    """Detect (or take and check) the method's format and build its encoder."""
    fmt = method_format(recipe, column_names, sample_rows, origin)
    # The SFT encoder renders and tokenizes; its own format only decides the template (never plain text here).
    base = make_encoder(
        tokenizer,
        recipe.model_copy(update={"data": recipe.data.model_copy(update={"format": "messages"})}),
        ["messages"],
        [],
        origin,
    )
    return MethodEncoder(base, recipe, fmt)


def method_format(
    recipe: Recipe, column_names: Sequence[str], sample_rows: Sequence[Mapping[str, Any]], origin: str
) -> str:
    """The method's data format, detected (or the recipe's, checked) from the columns and first rows."""
    method = recipe.train.method
    allowed = FORMATS_OF_METHOD[method]
    if not column_names:  # not "the data has (none)": there is nothing to map
        raise DataError(
            f"{origin}: the data has no rows (is the file empty?); train.method {method} needs some"
        )
    fmt: str = recipe.data.format
    if fmt == "auto":
        fmt = detect_method_format(method, column_names, recipe.data.columns, sample_rows, origin)
    elif fmt not in allowed:
        raise DataError(
            f"data.format: {fmt} does not fit train.method {method} (use one of {', '.join(allowed)})"
        )
    missing = [
        recipe.data.columns.get(c, c)
        for c in COLUMNS_OF_FORMAT[fmt]
        if recipe.data.columns.get(c, c) not in column_names
    ]
    if missing:
        raise DataError(
            f"{origin}: format {fmt!r} expects the columns {', '.join(COLUMNS_OF_FORMAT[fmt])} but the "
            f"data has {', '.join(column_names) or '(none)'} (missing: {', '.join(missing)})"
        )
    return fmt


# -- statistics --------------------------------------------------------------------------------------------
@dataclass
class MethodStats:
    """What the Preview's statistics and ``studio preview --json`` report for a preference/RL data set."""

    method: str
    format: str
    rows: int = 0
    used: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_rows: dict[str, list[int]] = field(default_factory=dict)
    prompt_truncated: int = 0
    reply_truncated: int = 0
    prompt_tokens: int = 0
    reply_tokens: dict[str, int] = field(default_factory=lambda: Counter())
    labels: Counter[str] = field(default_factory=Counter)
    done: bool = False

    def add(self, index: int, sample: Encoded | str) -> None:
        if isinstance(sample, str):
            self.skipped[sample] += 1
            self.skipped_rows.setdefault(sample, []).append(index)
            return
        self.used += 1
        self.prompt_tokens += len(sample.prompt_ids)
        self.prompt_truncated += sample.prompt_truncated
        if isinstance(sample, EncodedPair):
            self.reply_tokens["chosen"] += len(sample.chosen_ids)
            self.reply_tokens["rejected"] += len(sample.rejected_ids)
            self.reply_truncated += sample.chosen_truncated or sample.rejected_truncated
        elif isinstance(sample, EncodedUnpaired):
            key = "desirable" if sample.label else "undesirable"
            self.labels[key] += 1
            self.reply_tokens[key] += len(sample.completion_ids)
            self.reply_truncated += sample.completion_truncated

    def mean(self, what: str) -> float:
        if what == "prompt":
            return self.prompt_tokens / self.used if self.used else 0.0
        count = self.labels[what] if what in ("desirable", "undesirable") else self.used
        return self.reply_tokens.get(what, 0) / count if count else 0.0

    def state(self) -> dict[str, Any]:
        """Every field as JSON (what the prepared-data cache keeps); :meth:`from_state` reads it back."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> MethodStats:
        values = dict(state)
        for name in ("skipped", "reply_tokens", "labels"):
            values[name] = Counter(values[name])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "format": self.format,
            "rows": self.rows,
            "used": self.used,
            "skipped": dict(self.skipped),
            "skipped_rows": {k: v[:10] for k, v in self.skipped_rows.items()},
            "prompt_truncated": self.prompt_truncated,
            "reply_truncated": self.reply_truncated,
            "mean_prompt_tokens": round(self.mean("prompt"), 1),
        }
        for key in self.reply_tokens:
            out[f"mean_{key}_tokens"] = round(self.mean(key), 1)
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


def encode_rows(
    encoder: MethodEncoder,
    rows: Sequence[Mapping[str, Any]],
    stats: MethodStats | None = None,
    progress: Callable[[MethodStats], Any] | None = None,
) -> tuple[list[Encoded], MethodStats]:
    """Encode every row, counting skips with their reasons and row numbers."""
    stats = stats or MethodStats(encoder.method, encoder.format)
    stats.rows += len(rows)
    out: list[Encoded] = []
    for index, row in enumerate(rows):
        try:
            sample: Encoded | str = encoder.encode_row(row)
        except SkipRow as skip:
            sample = str(skip)
        stats.add(index, sample)
        if not isinstance(sample, str):
            out.append(sample)
        if progress is not None and index % 500 == 499:
            progress(stats)
    stats.done = True
    return out, stats


def no_usable_rows(stats: MethodStats, origin: str) -> DataError:
    why = ", ".join(
        f"{n} {r} (first: row {stats.skipped_rows[r][0]})" for r, n in stats.skipped.most_common()
    )
    return DataError(
        f"{origin}: no usable rows for train.method {stats.method} ({why or 'the data set is empty'})"
    )


# -- from a recipe -----------------------------------------------------------------------------------------
@dataclass
class MethodData:
    """A recipe's encoded rows for its method's trainer, and the statistics of every row."""

    encoder: MethodEncoder
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    stats: MethodStats
    cached: Path | None = None
    """The prepared-data cache entry the rows were read from (None: encoded now)."""


def method_encoder(
    recipe: Recipe, tokenizer: Any = None, rows: Any = None, progress: Progress | None = None
) -> tuple[MethodEncoder, Any]:
    """(encoder, rows) for a recipe whose ``train.method`` is not sft; the tokenizer is loaded unless given
    (``progress`` hears its slow first-use work: building tiny, fetching or dequantizing a GGUF)."""
    from lorastudio.data.datasource import load_rows

    if tokenizer is None:
        from lorastudio.models.resolve import load_tokenizer

        tokenizer = load_tokenizer(recipe.model, progress)
    rows = rows if rows is not None else load_rows(recipe.data)
    encoder = make_method_encoder(tokenizer, recipe, rows.columns, rows.rows[:20], rows.origin)
    return encoder, rows


CHECK_ROWS_MAX_BYTES = 8 * 2**20
"""The largest local data file :func:`check_method_rows` reads before a run starts (larger: the worker says)."""


def check_method_rows(recipe: Recipe) -> None:
    """Refuse a dpo/kto/orpo/grpo recipe whose data has no row its method can use, before a run directory exists
    (the worker finds out only once the model has loaded). The rows are parsed as the trainer's encoder parses
    them, without the tokenizer; done for a local data file of up to :data:`CHECK_ROWS_MAX_BYTES` (cheap enough
    to read at every start), the rest is left to the worker."""
    if recipe.train.supervised:
        return
    from lorastudio.data.datasource import head_rows, is_local, load_rows

    path = Path(recipe.data.source).expanduser()
    if not is_local(recipe.data.source) or not path.is_file() or path.stat().st_size > CHECK_ROWS_MAX_BYTES:
        return
    # JSON lines and CSV read as Python reads them: Arrow's reader turns a NaN among texts into a null, and the
    # reason would say "missing" where the file says NaN
    rows = head_rows(recipe.data, sys.maxsize) or load_rows(recipe.data)
    table = rows.rows
    fmt = method_format(recipe, rows.columns, table[:20], rows.origin)
    stats = MethodStats(recipe.train.method, fmt)
    columns, system = recipe.data.columns, recipe.data.system_prompt
    parse = {
        "kto": lambda r: to_unpaired(r, columns, system),
        "prompt_only": lambda r: to_prompt(r, columns, system),
    }
    for index in range(len(table)):
        try:
            parse.get(fmt, lambda r: to_pair(r, fmt, columns, system))(table[index])
            return
        except SkipRow as skip:
            stats.add(index, str(skip))
    raise no_usable_rows(stats, rows.origin)


# -- what the Preview and ``studio preview`` show ----------------------------------------------------------
def _pieces(tokenizer: Any, ids: list[int], trained: bool, context: Sequence[int] = ()) -> list[Any]:
    from lorastudio.data.encode import Encoded as SftEncoded
    from lorastudio.data.tokenview import pieces

    labels = list(ids) if trained else [IGNORE_INDEX] * len(ids)
    return pieces(tokenizer, SftEncoded(list(ids), labels, False, len(ids)), context)


def sample_parts(tokenizer: Any, sample: Encoded) -> dict[str, list[Any]]:
    """The token pieces of each part: ``prompt`` (masked) and the trained replies (``chosen`` / ``rejected``,
    or ``completion``); a GRPO prompt has only its ``prompt`` (nothing is trained from the data)."""
    parts = {"prompt": _pieces(tokenizer, sample.prompt_ids, False)}
    if isinstance(sample, EncodedPair):
        parts["chosen"] = _pieces(tokenizer, sample.chosen_ids, True, sample.prompt_ids)
        parts["rejected"] = _pieces(tokenizer, sample.rejected_ids, True, sample.prompt_ids)
    elif isinstance(sample, EncodedUnpaired):
        parts["completion"] = _pieces(tokenizer, sample.completion_ids, True, sample.prompt_ids)
    return parts


def method_sample_json(tokenizer: Any, sample: Encoded, index: int) -> dict[str, Any]:
    """One encoded row for ``studio preview --json``: each part's tokens, what was truncated."""
    out: dict[str, Any] = {"index": index}
    for name, items in sample_parts(tokenizer, sample).items():
        out[name] = {
            "tokens": len(items),
            "trained_tokens": sum(p.trained for p in items),
            "pieces": [
                {"id": p.token_id, "text": p.text, "trained": p.trained, "special": p.special} for p in items
            ],
        }
    out["prompt_truncated"] = sample.prompt_truncated
    if isinstance(sample, EncodedPair):
        out["chosen_truncated"], out["rejected_truncated"] = (
            sample.chosen_truncated,
            sample.rejected_truncated,
        )
    elif isinstance(sample, EncodedUnpaired):
        out["label"], out["completion_truncated"] = sample.label, sample.completion_truncated
    else:
        out["prompt_text"], out["extra"] = sample.prompt, {k: str(v)[:200] for k, v in sample.extra.items()}
    return out
