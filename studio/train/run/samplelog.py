"""Reading a run's sample replies: rounds in step order, each prompt's history, word diffs between rounds.

The Monitor's Samples pane, Compare and ``studio runs samples`` all read rounds through these; the rounds
themselves come from the fold (``RunState.samples``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lorastudio.train.run.events import SampleEvent

Op = Literal["same", "added", "removed"]
_WORDS = re.compile(r"\S+\s*")


def word_diff(before: str, after: str) -> list[tuple[Op, str]]:
    """``after`` in pieces marked against ``before``: unchanged and added words (each with the whitespace that
    follows it, so joining them gives ``after`` back), and the words dropped, where they were."""
    old, new = _WORDS.findall(before), _WORDS.findall(after.lstrip())
    lead = after[: len(after) - len(after.lstrip())]
    out: list[tuple[Op, str]] = [("same", lead)] if lead else []
    matcher = difflib.SequenceMatcher(a=[w.strip() for w in old], b=[w.strip() for w in new], autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            out.append(("removed", " ".join(w.strip() for w in old[a0:a1])))
        if tag == "equal":
            out.append(("same", "".join(new[b0:b1])))
        elif tag in ("replace", "insert"):
            out.append(("added", "".join(new[b0:b1])))
    return out


def changed_words(before: str, after: str) -> int:
    """How many words were added or removed between two replies."""
    return sum(len(text.split()) for op, text in word_diff(before, after) if op != "same")


@dataclass(frozen=True)
class SampleHistory:
    """A run's rounds, one per step (a later round at a step, as after a resume, replaces the earlier)."""

    rounds: tuple[SampleEvent, ...]

    @classmethod
    def of(cls, samples: Sequence[SampleEvent]) -> SampleHistory:
        by_step: dict[int, SampleEvent] = {}
        for event in samples:
            step = event.step or 0
            if event.at == "start" and step in by_step:
                continue  # a resumed run's start round repeats the step it stopped at
            by_step[step] = event
        return cls(tuple(by_step[step] for step in sorted(by_step)))

    def __len__(self) -> int:
        return len(self.rounds)

    @property
    def prompts(self) -> list[str]:
        """Every prompt asked, in the order first asked."""
        seen: dict[str, None] = {}
        for event in self.rounds:
            seen.update(dict.fromkeys(event.prompts))
        return list(seen)

    @property
    def base(self) -> SampleEvent | None:
        """The first round (the model before this run trained it), when it was written."""
        return self.rounds[0] if self.rounds and self.rounds[0].at == "start" else None

    def previous(self, index: int, prompt: str) -> str | None:
        """The reply to ``prompt`` in the round before ``index`` that asked it."""
        for event in reversed(self.rounds[:index]):
            reply = event.reply_to(prompt)
            if reply is not None:
                return reply
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "rounds": [
                {
                    "step": e.step,
                    "at": e.at,
                    "seconds": round(e.seconds or 0.0, 3),
                    "replies": [
                        {"prompt": p, "reply": r, "finish": f}
                        for p, r, f in zip(
                            e.prompts, e.replies, e.finish or ("",) * len(e.prompts), strict=False
                        )
                    ],
                }
                for e in self.rounds
            ],
            "sampling_s": round(sum(e.seconds or 0.0 for e in self.rounds), 3),
        }


def round_label(event: SampleEvent) -> str:
    return {"start": "base", "end": "end"}.get(event.at or "eval", "eval") + f" · step {event.step}"
