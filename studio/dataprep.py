"""Everything between a recipe and an :class:`Encoder`: tokenizer, rows, format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .datasource import Rows, load_rows
from .encode import Encoder, make_encoder
from .recipe import Recipe
from .tinymodel import Progress


@dataclass
class Prepared:
    """A recipe's tokenizer, rows and encoder, ready for preview or training."""

    tokenizer: Any
    rows: Rows
    encoder: Encoder


def prepare(recipe: Recipe, progress: Progress | None = None) -> Prepared:
    from .modelsource import load_tokenizer

    rows = load_rows(recipe.data)
    tokenizer = load_tokenizer(recipe.model, progress)
    encoder = make_encoder(tokenizer, recipe, rows.columns, rows.rows[:20], rows.origin)
    return Prepared(tokenizer, rows, encoder)
