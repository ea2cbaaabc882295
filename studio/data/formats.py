"""Turn a raw data set row into an :class:`Example`: a list of role/content turns, or plain text.

One function per format; ``detect_format`` picks one from the columns (and, for a
single text column, from the markers in the first rows).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from lorastudio.errors import DataError

Turn = dict[str, Any]
"""A message as chat templates take it: ``role`` and ``content`` (strings), and where the data has them an
assistant's ``reasoning_content`` and ``tool_calls``, a tool result's ``tool_call_id`` and ``name``."""

# Canonical columns each format reads; recipes map them onto the data set's own names.
FORMAT_COLUMNS: dict[str, tuple[str, ...]] = {
    "alpaca": ("instruction", "input", "output"),
    "dolly": ("instruction", "context", "response"),
    "sharegpt": ("conversations", "tools"),
    "messages": ("messages", "tools"),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
    "guanaco": ("text",),
    "llama2": ("text",),
    "human_assistant": ("text",),
}
OPTIONAL_COLUMNS = {"alpaca": {"input"}, "dolly": {"context"}, "sharegpt": {"tools"}, "messages": {"tools"}}


def resolve_columns(column_names: Sequence[str], columns: Mapping[str, str]) -> dict[str, str]:
    """The recipe's column mapping, completed with case-insensitive matches where they are unambiguous.

    Spreadsheets capitalise headers (``Concept``, ``Description``) while recipes name ``concept``;
    an exact name always wins, and two columns that differ only in case are left for the user to map.
    """
    resolved = dict(columns)
    by_lower: dict[str, list[str]] = {}
    for name in column_names:
        by_lower.setdefault(name.lower(), []).append(name)
    for canonical in {c for cols in FORMAT_COLUMNS.values() for c in cols} | set(columns):
        wanted = resolved.get(canonical, canonical)
        matches = by_lower.get(wanted.lower(), [])
        if wanted not in column_names and len(matches) == 1:
            resolved[canonical] = matches[0]
    return resolved


TEXT_FORMATS = {"guanaco", "llama2", "human_assistant"}


TEXT_ONLY_IMAGE = "image part, but the model is text-only (use a vision-language model, e.g. tiny-vision)"
"""Why a row with an image is skipped by a text model's encoder (see studio/data/imagerows.py for the others)."""


class SkipRow(Exception):
    """This row cannot be used; the reason is counted in the statistics."""


class Example(NamedTuple):
    """What a row means: turns to render with the chat template, or plain text trained as a whole.

    A named tuple rather than a frozen dataclass: one is built per row, and this builds three times faster.
    """

    turns: tuple[Turn, ...] = ()
    text: str | None = None
    tools: tuple[Any, ...] | None = None
    """The OpenAI-style tool list the conversation may call (the row's ``tools`` column), rendered by the template."""


def _col(row: Mapping[str, Any], columns: Mapping[str, str], name: str) -> Any:
    return row.get(columns.get(name, name))


def _text(value: Any, field: str, *, allow_empty: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        if isinstance(value, list) and any(
            isinstance(p, Mapping) and p.get("type") == "image" for p in value
        ):
            raise SkipRow(TEXT_ONLY_IMAGE)
        raise SkipRow(f"non-string {field}")
    if not value.strip() and not allow_empty:
        raise SkipRow(f"empty {field}")
    return value


def _instruction_pair(extra: str, answer: str):
    """alpaca (instruction/input/output) and dolly (instruction/context/response) differ only in names."""

    def convert(row, columns) -> list[Turn]:
        instruction = _text(_col(row, columns, "instruction"), "instruction")
        more = _text(_col(row, columns, extra), extra, allow_empty=True)
        user = f"{instruction}\n\n{more}" if more.strip() else instruction
        return [
            {"role": "user", "content": user},
            {"role": "assistant", "content": _text(_col(row, columns, answer), answer)},
        ]

    return convert


SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "tool": "tool",
    "observation": "tool",
}


_EXTRA_KEYS = {"assistant": ("reasoning_content", "tool_calls"), "tool": ("tool_call_id", "name")}


def _without_nulls(value: Any) -> Any:
    """The value with None-valued keys dropped, all the way down.

    A JSON lines file read through Arrow gives every message (and every tool call's arguments) the union of
    the keys any row has, the missing ones None; a template would render those as ``null``.
    """
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_without_nulls(v) for v in value]
    return value


def _turn_list(
    value: Any, field: str, role_key: str, content_key: str, roles: Mapping[str, str]
) -> list[Turn]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise SkipRow(f"{field} is not a list")
    turns = []
    for item in value:
        if not isinstance(item, Mapping):
            raise SkipRow(f"{field} has a turn that is not a mapping")
        role = roles.get(str(item.get(role_key, "")).lower())
        if role is None:
            raise SkipRow(f"unknown role {item.get(role_key)!r}")
        if len(item) == 2 and content_key in item:  # role and content only, the common case
            turns.append({"role": role, "content": _text(item.get(content_key), f"{role} content")})
            continue
        calls = item.get("tool_calls") if role == "assistant" else None
        content = item.get(content_key)
        if role == "tool" and isinstance(content, Mapping | list):
            content = json.dumps(content, ensure_ascii=False)
        # An assistant turn that only calls tools has no text; every other turn needs some.
        turn: Turn = {"role": role, "content": _text(content, f"{role} content", allow_empty=bool(calls))}
        reasoning = item.get("reasoning_content", item.get("reasoning")) if role == "assistant" else None
        if reasoning is not None:
            turn["reasoning_content"] = _text(reasoning, "reasoning_content", allow_empty=True)
        if calls:
            if not isinstance(calls, Sequence) or isinstance(calls, str):
                raise SkipRow("tool_calls is not a list")
            turn["tool_calls"] = _without_nulls(calls)
        for key in _EXTRA_KEYS.get(role, ()):
            if key not in turn and item.get(key) is not None:
                turn[key] = item[key]
        turns.append(turn)
    return turns


def _sharegpt(row, columns) -> list[Turn]:
    return _turn_list(_col(row, columns, "conversations"), "conversations", "from", "value", SHAREGPT_ROLES)


MESSAGE_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "tool": "tool"}


def _messages(row, columns) -> list[Turn]:
    return _turn_list(_col(row, columns, "messages"), "messages", "role", "content", MESSAGE_ROLES)


def tools_of(row: Mapping[str, Any], columns: Mapping[str, str]) -> tuple[Any, ...] | None:
    """The row's tool list (the ``tools`` column: a list, or the JSON text of one), or None."""
    value = _col(row, columns, "tools")
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise SkipRow("tools is not JSON") from None
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or not all(isinstance(t, Mapping) for t in value)
    ):
        raise SkipRow("tools is not a list of tool definitions")
    return tuple(_without_nulls(value)) or None


def _prompt_completion(row, columns) -> list[Turn]:
    return [
        {"role": "user", "content": _text(_col(row, columns, "prompt"), "prompt")},
        {"role": "assistant", "content": _text(_col(row, columns, "completion"), "completion")},
    ]


_HUMAN_ASSISTANT_RE = re.compile(r"###\s*(Human|Assistant)\s*:\s*")
_INST_RE = re.compile(r"(?:<s>)?\s*\[INST\](.*?)\[/INST\](.*?)(?:</s>|(?=<s>|\[INST\])|$)", re.DOTALL)
_SYS_RE = re.compile(r"<<SYS>>(.*?)<</SYS>>", re.DOTALL)


def parse_human_assistant(text: str) -> list[Turn]:
    """``### Human: ... ### Assistant: ...`` (guanaco) and ``###Human:`` (the CSV recipe)."""
    parts = _HUMAN_ASSISTANT_RE.split(text)
    turns: list[Turn] = []
    lead = parts[0].strip()
    if lead:
        turns.append({"role": "system", "content": lead})
    for speaker, content in zip(parts[1::2], parts[2::2], strict=False):
        role = "user" if speaker == "Human" else "assistant"
        turns.append({"role": role, "content": _text(content.strip(), f"{role} content")})
    return turns


def parse_llama2(text: str) -> list[Turn]:
    """``<s>[INST] <<SYS>>...<</SYS>> question [/INST] answer </s>`` repeated."""
    turns: list[Turn] = []
    for match in _INST_RE.finditer(text):
        user, answer = match.group(1), match.group(2)
        sys_match = _SYS_RE.search(user)
        if sys_match and not turns:
            turns.append({"role": "system", "content": sys_match.group(1).strip()})
            user = _SYS_RE.sub("", user)
        turns.append({"role": "user", "content": _text(user.strip(), "user content")})
        if answer.strip():
            turns.append({"role": "assistant", "content": answer.strip()})
    return turns


def _text_format(parser):
    def convert(row, columns) -> list[Turn]:
        return parser(_text(_col(row, columns, "text"), "text"))

    return convert


CONVERTERS = {
    "alpaca": _instruction_pair("input", "output"),
    "dolly": _instruction_pair("context", "response"),
    "sharegpt": _sharegpt,
    "messages": _messages,
    "prompt_completion": _prompt_completion,
    "guanaco": _text_format(parse_human_assistant),
    "human_assistant": _text_format(parse_human_assistant),
    "llama2": _text_format(parse_llama2),
}


def to_example(
    row: Mapping[str, Any], fmt: str, columns: Mapping[str, str], system_prompt: str | None
) -> Example:
    """The row as turns (or plain text); raises :class:`SkipRow` with the reason when it is unusable."""
    if fmt == "text":
        return Example(text=_text(_col(row, columns, "text"), "text"))
    turns = CONVERTERS[fmt](row, columns)
    if not any(t["role"] == "assistant" for t in turns):
        raise SkipRow("no assistant turn")
    if system_prompt and turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": system_prompt})
    tools = tools_of(row, columns) if fmt in ("messages", "sharegpt") else None
    return Example(turns=tuple(turns), tools=tools)


def detect_format(
    column_names: Sequence[str], columns: Mapping[str, str], sample_rows: Sequence[Mapping]
) -> str:
    """Pick the format whose (mapped) columns the data has; for raw text, look at its markers."""
    have = set(column_names)

    def has(fmt: str) -> bool:
        needed = set(FORMAT_COLUMNS[fmt]) - OPTIONAL_COLUMNS.get(fmt, set())
        return all(columns.get(c, c) in have for c in needed)

    for fmt in ("messages", "sharegpt", "alpaca", "dolly", "prompt_completion"):
        if has(fmt):
            return fmt
    if has("text"):
        texts = [str(_col(r, columns, "text") or "") for r in sample_rows[:20]]
        if any("[INST]" in t for t in texts):
            return "llama2"
        if any("### Human:" in t for t in texts):
            return "guanaco"
        if any(re.search(r"###\s*Human\s*:", t) for t in texts):
            return "human_assistant"
        return "text"
    raise DataError(
        "data.format: cannot detect the format from the columns "
        f"{', '.join(column_names) or '(none)'}; set data.format and data.columns in the recipe"
    )


def check_columns(fmt: str, column_names: Sequence[str], columns: Mapping[str, str], source: str) -> None:
    """Fail with both lists of columns when the data lacks what the format reads."""
    needed = [c for c in FORMAT_COLUMNS[fmt] if c not in OPTIONAL_COLUMNS.get(fmt, set())]
    missing = [columns.get(c, c) for c in needed if columns.get(c, c) not in column_names]
    if missing:
        expected = ", ".join(columns.get(c, c) for c in needed)
        found = ", ".join(column_names) or "(none)"
        raise DataError(
            f"{source}: format {fmt!r} expects columns {expected} but the data has {found} "
            f"(missing: {', '.join(missing)}; map them with data.columns)"
        )
