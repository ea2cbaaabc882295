"""Everything between a recipe and an :class:`Encoder`: tokenizer, rows, format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorastudio.data.encode import Encoder, make_encoder
from lorastudio.data.sources import Rows, load_rows
from lorastudio.models.tiny import Progress
from lorastudio.recipe import Recipe


@dataclass
class Prepared:
    """A recipe's tokenizer, rows and encoder, ready for preview or training."""

    tokenizer: Any
    rows: Rows
    encoder: Encoder


def prepare(recipe: Recipe, progress: Progress | None = None, tokenizer: Any = None) -> Prepared:
    """``tokenizer`` is loaded from the recipe unless given (the worker passes its backend's)."""
    rows = load_rows(recipe.data)
    if tokenizer is None:
        from lorastudio.models.sources import load_tokenizer

        tokenizer = load_tokenizer(recipe.model, progress)
    encoder = make_encoder(tokenizer, recipe, rows.columns, rows.rows[:20], rows.origin)
    return Prepared(tokenizer, rows, encoder)
