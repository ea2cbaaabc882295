"""Answers in batches: many conversations in one left-padded ``generate`` call on a loaded chat engine.

Prompts are rendered as the recipe's chat renders them (``ChatEngine.prompt_ids``); the settings are the
recipe's chat section (greedy unless asked to sample), and a reply ends at the template's end-of-turn or eos.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from lorastudio.chat.engine import ChatEngine, generate_kwargs, with_overrides


@dataclass(frozen=True)
class Answer:
    """One generated answer."""

    text: str
    tokens: int
    finish: str
    """``stop`` (ended by itself) or ``length`` (cut at the token limit)."""


def answer_batch(
    engine: ChatEngine, conversations: list[list[dict[str, str]]], max_new_tokens: int | None, greedy: bool
) -> list[Answer]:
    """Each conversation's reply, all in one ``generate`` call (the adapter on when the engine has one)."""
    import torch

    from lorastudio.chat.admission import cpu_share

    if not conversations:
        return []
    sampling = with_overrides(engine.recipe.chat, max_new_tokens=max_new_tokens)
    if greedy:
        sampling = with_overrides(sampling, greedy=True)
    tok = engine.tokenizer
    stop_ids = engine.stop_token_ids()
    pad = tok.pad_token_id if tok.pad_token_id is not None else stop_ids[0]
    prompts = [engine.prompt_ids(c, sampling.enable_thinking) for c in conversations]
    width = max(len(p) for p in prompts)
    device = engine.model.device
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    share: Any = contextlib.nullcontext() if engine.on_gpu else cpu_share()
    with share, torch.inference_mode():
        out = engine.model.generate(
            input_ids=ids,
            attention_mask=mask,
            eos_token_id=stop_ids,
            pad_token_id=pad,
            **generate_kwargs(sampling),
        )
    stops = set(stop_ids)
    answers = []
    for row in out[:, width:].tolist():
        end = next((i for i, token in enumerate(row) if token in stops), None)
        kept = row if end is None else row[:end]
        text = tok.decode(kept, skip_special_tokens=True).strip()
        answers.append(Answer(text, len(kept), "length" if end is None else "stop"))
    return answers
