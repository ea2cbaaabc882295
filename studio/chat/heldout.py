"""Held-out proof of a style fine-tune: ask questions no training row holds, base vs tuned, greedy.

Three rates: the tuned model's replies in the trained style, the base model's, and how often the
tuned model ends its reply by itself (end-of-turn) rather than at the token limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lorastudio.chat.engine import ChatEngine, Reply, Sampling
from lorastudio.models.piratedata import HELD_OUT, is_pirate


@dataclass
class HeldOutResult:
    """Rates over the questions, and every reply for inspection."""

    questions: list[str]
    tuned: list[Reply] = field(default_factory=list)
    base: list[Reply] = field(default_factory=list)

    @property
    def tuned_style_rate(self) -> float:
        return sum(is_pirate(r.text) for r in self.tuned) / max(len(self.tuned), 1)

    @property
    def base_style_rate(self) -> float:
        return sum(is_pirate(r.text) for r in self.base) / max(len(self.base), 1)

    @property
    def tuned_stop_rate(self) -> float:
        return sum(r.finish_reason == "stop" for r in self.tuned) / max(len(self.tuned), 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "questions": len(self.questions), "tuned_style_rate": self.tuned_style_rate,
            "base_style_rate": self.base_style_rate, "tuned_stop_rate": self.tuned_stop_rate,
            "replies": [{"question": q, "tuned": t.text, "tuned_finish": t.finish_reason, "base": b.text}
                        for q, t, b in zip(self.questions, self.tuned, self.base, strict=False)],
        }


def evaluate(engine: ChatEngine, questions: Sequence[str] = HELD_OUT, max_new_tokens: int | None = None,
             on_reply: Callable[[str, Reply, Reply], None] | None = None) -> HeldOutResult:
    """Greedy replies from the tuned model and (adapter off) the base model, one question at a time."""
    if not engine.has_adapter:
        raise ValueError("the held-out check needs a run with an adapter")
    sampling = Sampling.from_recipe(engine.recipe.chat).with_overrides(greedy=True, max_new_tokens=max_new_tokens)
    system = engine.recipe.chat.system_prompt or engine.recipe.data.system_prompt
    result = HeldOutResult(list(questions))
    for question in questions:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": question}]
        tuned = engine.generate(messages, sampling, use_adapter=True)
        base = engine.generate(messages, sampling, use_adapter=False)
        result.tuned.append(tuned)
        result.base.append(base)
        if on_reply is not None:
            on_reply(question, tuned, base)
    return result
