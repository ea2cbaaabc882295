"""Scorers of the shipped ``studio_pirate`` task (lm-eval loads this file through ``!function``)."""

from __future__ import annotations

from typing import Any

from lorastudio.demo.piratedata import is_pirate

SENTENCE_END = (".", "!", "?", '"', "'", ")")
"""A reply that ends on one of these finished by itself; one cut at the token limit almost never does."""


def ended_by_itself(text: str) -> bool:
    return text.rstrip().endswith(SENTENCE_END)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """One reply's figures: pirate style, and whether it ended by itself."""
    reply = results[0]
    return {"style_rate": float(is_pirate(reply)), "end_of_turn_rate": float(ended_by_itself(reply))}
