"""The common rows of a batch read from Arrow a column at a time: each row's roles and contents, no dict per row.

:func:`formats.to_example` turns one row (a dict) into turns; for a data set read through Arrow,
building those dicts costs more than encoding them. Here the chat formats (``messages``,
``sharegpt``) and the instruction formats (``alpaca``, ``dolly``, ``prompt_completion``) are
read column by column. A row comes out as ``(roles, contents)`` only where it is the plain case,
where ``to_example`` gives exactly those turns with no more keys: string contents with text in
them, known roles, an assistant turn, no tools, reasoning, tool calls or think block. Every other
row comes out as None, and the caller gives it to ``to_example`` as a dict, which says what is
wrong with it or carries its extra keys. A batch whose columns are not of the plain types is
left to the dicts altogether.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lorastudio.data.encode import THINK_CLOSE
from lorastudio.data.formats import MESSAGE_ROLES, SHAREGPT_ROLES

Turns = tuple[tuple[str, ...], list[str]]
"""A row's roles and its turns' contents, as ``to_example`` would give them."""

_CHATS = {"messages": ("messages", "role", "content"), "sharegpt": ("conversations", "from", "value")}
_PAIRS = {
    "alpaca": ("instruction", "input", "output"),
    "dolly": ("instruction", "context", "response"),
    "prompt_completion": ("prompt", None, "completion"),
}


def read_turns(
    table: Any, fmt: str, columns: Mapping[str, str], system_prompt: str | None
) -> list[Turns | None] | None:
    """Each row of ``table`` (a ``pyarrow.Table``) as its roles and contents, or None for a row to read as a
    dict; None for the whole batch when its columns are not of the plain types (or the format is another)."""
    import pyarrow as pa

    def column(name: str) -> Any:
        mapped = columns.get(name, name)
        return table.column(mapped).combine_chunks() if mapped in table.column_names else None

    if fmt in _CHATS:
        name, role_key, content_key = _CHATS[fmt]
        turns = _chat_turns(
            pa, column(name), role_key, content_key, MESSAGE_ROLES if fmt == "messages" else SHAREGPT_ROLES
        )
        if turns is None:
            return None
        tools = column("tools")
        if tools is not None and tools.null_count < len(tools):
            plain = tools.is_null().to_pylist()
            turns = [t if keep else None for t, keep in zip(turns, plain, strict=True)]
    elif fmt in _PAIRS:
        first, extra, answer = _PAIRS[fmt]
        turns = _pair_turns(pa, column(first), column(extra) if extra else None, column(answer))
        if turns is None:
            return None
    else:
        return None
    if system_prompt:
        turns = [
            t if t is None or t[0][0] == "system" else (("system", *t[0]), [system_prompt, *t[1]])
            for t in turns
        ]
    return turns


def _strings(pa: Any, array: Any) -> bool:
    return array is not None and (pa.types.is_string(array.type) or pa.types.is_large_string(array.type))


def _chat_turns(
    pa: Any, messages: Any, role_key: str, content_key: str, roles: Mapping[str, str]
) -> list[Turns | None] | None:
    if messages is None or not (pa.types.is_list(messages.type) or pa.types.is_large_list(messages.type)):
        return None
    item = messages.type.value_type
    if (
        not pa.types.is_struct(item)
        or item.get_field_index(role_key) < 0
        or item.get_field_index(content_key) < 0
    ):
        return None
    flat = messages.flatten()
    role_values, content_values = flat.field(role_key), flat.field(content_key)
    if not _strings(pa, role_values) or not _strings(pa, content_values):
        return None
    all_roles = role_values.to_pylist()
    contents = content_values.to_pylist()
    # A message with any other key set, or itself null, is not the plain case.
    odd = flat.is_null()
    for k in range(item.num_fields):
        name = item.field(k).name
        if name not in (role_key, content_key):
            odd = pa.compute.or_(odd, flat.field(k).is_valid())
    odd_messages = odd.to_pylist()
    offsets = messages.offsets.to_pylist()
    base = offsets[0]
    listed = messages.is_valid().to_pylist()
    mapped = {r: roles.get(r.lower()) for r in set(all_roles) if r is not None}
    out: list[Turns | None] = []
    for row, (start, stop) in enumerate(zip(offsets, offsets[1:], strict=False)):
        a, b = start - base, stop - base
        if not listed[row] or a == b or any(odd_messages[a:b]):
            out.append(None)
            continue
        shape = tuple([mapped.get(r) for r in all_roles[a:b]])
        texts = contents[a:b]
        if (
            None in shape
            or "assistant" not in shape
            or None in texts
            or any(not t or t.isspace() or THINK_CLOSE in t for t in texts)
        ):
            out.append(None)
            continue
        out.append((shape, texts))  # type: ignore[arg-type]
    return out


def _pair_turns(pa: Any, first: Any, extra: Any, answer: Any) -> list[Turns | None] | None:
    if not _strings(pa, first) or not _strings(pa, answer) or (extra is not None and not _strings(pa, extra)):
        return None
    firsts, answers = first.to_pylist(), answer.to_pylist()
    extras = extra.to_pylist() if extra is not None else [None] * len(firsts)
    shape = ("user", "assistant")
    out: list[Turns | None] = []
    for prompt, more, reply in zip(firsts, extras, answers, strict=True):
        if (
            not prompt
            or not reply
            or prompt.isspace()
            or reply.isspace()
            or THINK_CLOSE in reply
            or THINK_CLOSE in prompt
            or (more is not None and THINK_CLOSE in more)
        ):
            out.append(None)
            continue
        if more and not more.isspace():
            prompt = f"{prompt}\n\n{more}"
        out.append((shape, [prompt, reply]))
    return out
