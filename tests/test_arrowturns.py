"""Rows read from Arrow a column at a time are exactly the turns ``to_example`` makes of them, or left to it."""

from __future__ import annotations

from typing import Any

import pytest

from lorastudio.data.formats import SkipRow, to_example
from lorastudio.data.prepared.arrowturns import read_turns


def _table(rows: list[dict[str, Any]], start: int = 0) -> Any:
    from datasets import Dataset

    data = Dataset.from_list(rows).select(range(start, len(rows)))
    return next(iter(data.with_format("arrow").iter(batch_size=len(rows))))


def _plain(row: dict[str, Any], fmt: str, system: str | None) -> tuple[tuple[str, ...], list[str]] | None:
    """What read_turns must give for a row: to_example's turns where they are plain role/content turns."""
    from lorastudio.data.encode import THINK_CLOSE

    try:
        example = to_example(row, fmt, {}, system)
    except SkipRow:
        return None
    if example.tools or any(len(t) > 2 or THINK_CLOSE in t["content"] for t in example.turns):
        return None
    return tuple(t["role"] for t in example.turns), [t["content"] for t in example.turns]


CHATS = [
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ahoy"}],
    [
        {"role": "system", "content": "Be a pirate."},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ],
    [{"role": "user", "content": "only a question"}],
    [{"role": "user", "content": "  "}, {"role": "assistant", "content": "blank question"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}],
    [{"role": "user", "content": None}, {"role": "assistant", "content": "null question"}],
    [{"role": "wizard", "content": "q"}, {"role": "assistant", "content": "unknown role"}],
    [{"role": "User", "content": "q"}, {"role": "Assistant", "content": "capitalised roles"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>hm</think>answer"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "reasoning_content": "because"}],
    [],
    [
        {"role": "user", "content": "\x1c"},
        {"role": "assistant", "content": "a separator Python counts as space"},
    ],
]


@pytest.mark.parametrize("system", [None, "You are terse."])
@pytest.mark.parametrize("start", [0, 3])
def test_chat_rows(system: str | None, start: int) -> None:
    rows = [{"messages": m} for m in CHATS]
    got = read_turns(_table(rows, start), "messages", {}, system)
    assert got is not None
    assert got == [_plain(row, "messages", system) for row in rows[start:]]
    assert sum(g is not None for g in got) == (1 if start else 3)  # the plain user/assistant rows


def test_sharegpt_roles_and_a_tools_column() -> None:
    rows: list[dict[str, Any]] = [
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "tools": None},
        {
            "conversations": [{"from": "human", "value": "q"}, {"from": "chatgpt", "value": "a"}],
            "tools": None,
        },
        {
            "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
            "tools": '[{"type": "function"}]',
        },
    ]
    got = read_turns(_table(rows), "sharegpt", {}, None)
    assert got == [(("user", "assistant"), ["q", "a"]), (("user", "assistant"), ["q", "a"]), None]
    assert got[:2] == [_plain(row, "sharegpt", None) for row in rows[:2]]


@pytest.mark.parametrize("fmt", ["alpaca", "dolly", "prompt_completion"])
def test_instruction_rows(fmt: str) -> None:
    names = {"alpaca": ("instruction", "input", "output"), "dolly": ("instruction", "context", "response")}
    first, extra, answer = names.get(fmt, ("prompt", None, "completion"))
    cases = [
        ("Why?", "", "Because."),
        ("Why?", "some context", "Because."),
        ("Why?", "   ", "Because."),
        ("Why?", None, "Because."),
        ("", "x", "Because."),
        ("Why?", "x", " "),
        (None, "x", "y"),
        ("Why?", "x", "<think>a</think>b"),
    ]
    rows = [{first: q, **({extra: c} if extra else {}), answer: a} for q, c, a in cases]
    got = read_turns(_table(rows), fmt, {}, "Sys.")
    assert got == [_plain(row, fmt, "Sys.") for row in rows]
    assert got[0] == (("system", "user", "assistant"), ["Sys.", "Why?", "Because."])


def test_mapped_columns_and_other_types_are_left_to_the_dicts() -> None:
    rows = [{"q": "Why?", "a": "Because."}]
    assert read_turns(_table(rows), "prompt_completion", {"prompt": "q", "completion": "a"}, None) == [
        (("user", "assistant"), ["Why?", "Because."])
    ]
    assert read_turns(_table([{"prompt": 1, "completion": "a"}]), "prompt_completion", {}, None) is None
    assert read_turns(_table([{"text": "plain"}]), "text", {}, None) is None
