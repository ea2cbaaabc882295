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


def _prompt_of(context: Messages) -> str:
    users = [m["content"] for m in context if m.get("role") == "user"]
    if not users:
        raise ValueError("feedback needs the user's message the reply answers")
    return users[-1]


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
        _append(self.path, {"messages": [*messages, {"role": "assistant", "content": reply}]})
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
    """``feedback.jsonl`` in the run's folder for a run target, else in studio's data folder."""
    from lorastudio.paths import data_dir

    try:
        from lorastudio.train.runref import resolve_run

        return resolve_run("latest" if target is None else target, checkpoint=True).path / DEFAULT_NAME
    except Exception:
        return data_dir() / DEFAULT_NAME
