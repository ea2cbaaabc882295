"""Held-out proof of a style fine-tune: ask questions no training row holds, base vs tuned, greedy.

Three rates: the tuned model's replies in the trained style, the base model's, and how often the
tuned model ends its reply by itself (end-of-turn) rather than at the token limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lorastudio.chat.engine import ChatEngine, Reply, Sampling, with_overrides
from lorastudio.demo.piratedata import HELD_OUT, is_pirate


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
            "questions": len(self.questions),
            "tuned_style_rate": self.tuned_style_rate,
            "base_style_rate": self.base_style_rate,
            "tuned_stop_rate": self.tuned_stop_rate,
            "replies": [
                {"question": q, "tuned": t.text, "tuned_finish": t.finish_reason, "base": b.text}
                for q, t, b in zip(self.questions, self.tuned, self.base, strict=False)
            ],
        }


def evaluate(
    engine: ChatEngine,
    questions: Sequence[str] = HELD_OUT,
    max_new_tokens: int | None = None,
    on_reply: Callable[[str, Reply, Reply], None] | None = None,
    batched: bool = True,
) -> HeldOutResult:
    """Greedy replies from the tuned model and (adapter off) the base model.

    ``batched`` answers all questions in one left-padded ``generate`` call per model (many times faster
    on CPU); otherwise one question at a time through the streaming chat path.
    """
    if not engine.has_adapter:
        raise ValueError("the held-out check needs a run with an adapter")
    sampling = with_overrides(engine.recipe.chat, greedy=True, max_new_tokens=max_new_tokens)
    system = engine.recipe.chat.system_prompt or engine.recipe.data.system_prompt
    conversations = [
        ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        for question in questions
    ]
    result = HeldOutResult(list(questions))
    if batched:
        result.tuned = _batch_generate(engine, conversations, sampling, adapter=True)
        result.base = _batch_generate(engine, conversations, sampling, adapter=False)
    else:
        for messages in conversations:
            result.tuned.append(engine.generate(messages, sampling, use_adapter=True))
            result.base.append(engine.generate(messages, sampling, use_adapter=False))
    if on_reply is not None:
        for question, tuned, base in zip(questions, result.tuned, result.base, strict=True):
            on_reply(question, tuned, base)
    return result


def _batch_generate(
    engine: ChatEngine, conversations: list[list[dict[str, str]]], sampling: Sampling, adapter: bool
) -> list[Reply]:
    import contextlib
    import time

    import torch

    tok = engine.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    prompts = [engine.prompt_ids(c) for c in conversations]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=engine.model.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=engine.model.device)
    stop_ids = set(engine.stop_token_ids())
    context = contextlib.nullcontext() if adapter else engine.model.disable_adapter()
    started = time.monotonic()
    with context, torch.inference_mode():
        out = engine.model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            max_new_tokens=sampling.max_new_tokens,
            repetition_penalty=sampling.repetition_penalty,  # the recipe's, as chat uses
            eos_token_id=list(stop_ids),
            pad_token_id=pad,
        )
    seconds = time.monotonic() - started
    replies = []
    for row in out[:, width:].tolist():
        end = next((i for i, token in enumerate(row) if token in stop_ids), None)
        kept = row if end is None else row[:end]
        replies.append(
            Reply(
                tok.decode(kept, skip_special_tokens=True).strip(),
                len(kept),
                seconds,
                None,
                False,
                adapter,
                "length" if end is None else "stop",
            )
        )
    return replies
