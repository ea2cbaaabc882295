"""Feedback from chat into training data: replies marked good or bad, and replies edited into better ones.

Two files, one row a line, in formats the recipes read with no conversion:

- the SFT file (the name the user gives, default ``feedback.jsonl`` in the run's folder): one ``messages`` row
  per good reply and per edited reply (the edited text is the better answer), with the conversation before it;
- the pairs file beside it (``NAME-pairs.jsonl``): one preference pair per edited reply (edited vs original)
  and per good and bad reply to the same prompt, in TRL's standard shape ``{"prompt", "chosen", "rejected"}``
  (the prompt is the user's message the replies answer).

Each row is appended with one write and flushed, so a file never ends in a partial row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Messages = Sequence[dict[str, str]]

DEFAULT_NAME = "feedback.jsonl"


def pairs_path(sft: Path) -> Path:
    """The preference pairs' file beside an SFT feedback file."""
    return sft.with_name(f"{sft.stem}-pairs{sft.suffix or '.jsonl'}")


def _count(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    except FileNotFoundError:
        return 0


def _append(path: Path, row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()


def destination_problem(path: Path) -> str | None:
    """Why feedback could not be written to ``path`` (or to its pairs file beside it), or None.

    Asked before a reply is generated, so a bad destination loses nothing: a folder, a path under a file, a
    folder that cannot be created, a file that cannot be written. Nothing is created here."""
    problem = _unwritable(path)
    if problem is not None:
        return f"{problem} (give a file, e.g. {path / DEFAULT_NAME})" if path.is_dir() else problem
    pairs = pairs_path(path)
    problem = _unwritable(pairs)
    return f"its pairs file {pairs}: {problem}" if problem is not None else None


def _unwritable(path: Path) -> str | None:
    if path.is_dir():
        return "is a folder, not a file"
    if path.exists():
        return None if os.access(path, os.R_OK | os.W_OK) else "cannot be written (permission denied)"
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # the nearest folder that is there
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot be created in {folder} (permission denied)"
    return None


def _prompt_of(context: Messages) -> str:
    users = [m["content"] for m in context if m.get("role") == "user"]
    if not users:
        raise ValueError("feedback needs the user's message the reply answers")
    return users[-1]


def conversation_problem(messages: Messages) -> str | None:
    """What keeps ``messages`` from being a conversation to train on, or None: roles must alternate user and
    assistant after an optional system message, starting with the user and ending with the assistant."""
    roles = [m.get("role") for m in messages]
    if roles[:1] == ["system"]:
        roles = roles[1:]
    if not roles or roles[-1] != "assistant":
        return "it does not end with the assistant's reply"
    for at, role in enumerate(roles):
        expected = "user" if at % 2 == 0 else "assistant"
        if role != expected:
            return f"turn {at + 1} is {role!r} where {expected!r} belongs (roles must alternate)"
    return None


@dataclass
class FeedbackLog:
    """Appends feedback rows; remembers this session's good and bad replies per prompt to pair them."""

    path: Path
    sft_rows: int = 0
    pair_rows: int = 0
    good: dict[str, str] = field(default_factory=dict)
    bad: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sft_rows, self.pair_rows = _count(self.path), _count(self.pairs)

    @property
    def pairs(self) -> Path:
        return pairs_path(self.path)

    def _sft(self, context: Messages, reply: str) -> None:
        messages = [{"role": m["role"], "content": m["content"]} for m in context if m.get("content")]
        row = [*messages, {"role": "assistant", "content": reply}]
        problem = conversation_problem(row)
        if problem is not None:  # never write a row the recipes could not train on
            raise ValueError(f"not saved to {self.path.name}: {problem}")
        _append(self.path, {"messages": row})
        self.sft_rows += 1

    def _pair(self, prompt: str, chosen: str, rejected: str) -> None:
        if chosen.strip() == rejected.strip():
            return
        _append(self.pairs, {"prompt": prompt, "chosen": chosen, "rejected": rejected})
        self.pair_rows += 1

    def mark_good(self, context: Messages, reply: str) -> str:
        """A good reply: an SFT row, and a pair against a bad reply to the same prompt when there is one."""
        prompt = _prompt_of(context)
        self._sft(context, reply)
        self.good[prompt] = reply
        if prompt in self.bad:
            self._pair(prompt, reply, self.bad[prompt])
            return "saved as a good reply, and paired with the bad one"
        return "saved as a good reply"

    def mark_bad(self, context: Messages, reply: str) -> str:
        """A bad reply: a pair against a good reply to the same prompt, now or once one is marked."""
        prompt = _prompt_of(context)
        self.bad[prompt] = reply
        if prompt in self.good:
            self._pair(prompt, self.good[prompt], reply)
            return "marked bad, and paired with the good one"
        return "marked bad: mark a good reply to the same prompt (or edit this one) to make a pair"

    def edited(self, context: Messages, original: str, better: str) -> str:
        """An edited reply is the better answer: an SFT row and a pair (edited over original)."""
        prompt = _prompt_of(context)
        self._sft(context, better)
        self.good[prompt] = better
        self._pair(prompt, better, original)
        return "saved the edit as a good reply and as a pair over the original"

    def summary(self) -> str:
        where = (
            f"{self.path.parent.name}/{self.path.name}"  # short and stable; the full path is in the notices
        )
        return f"feedback → {where} ({self.sft_rows} SFT rows) · {self.pairs.name} ({self.pair_rows} pairs)"


def default_path(target: str | None) -> Path:
    """``feedback.jsonl`` in the folder of the run the target belongs to (its adapter, a checkpoint or an export
    included), else in studio's data folder."""
    from lorastudio.chat.targets import run_of_target
    from lorastudio.paths import data_dir

    run = run_of_target(target)
    return (run if run is not None else data_dir()) / DEFAULT_NAME
