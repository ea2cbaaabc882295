"""Everything between a recipe and an :class:`Encoder`: tokenizer, rows, format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorastudio.data import arrowwarm
from lorastudio.data.datasource import Rows, head_rows, load_rows
from lorastudio.data.encode import Encoder, make_encoder
from lorastudio.errors import StudioError
from lorastudio.progress import Progress
from lorastudio.recipe import Recipe


@dataclass
class Prepared:
    """A recipe's tokenizer, rows and encoder, ready for preview or training."""

    tokenizer: Any
    rows: Rows
    encoder: Encoder


def prepare(recipe: Recipe, progress: Progress | None = None, tokenizer: Any = None) -> Prepared:
    """``tokenizer`` is loaded from the recipe unless given (the worker passes its backend's)."""
    warming = arrowwarm.start(recipe.data) if tokenizer is None else None
    if warming is None:
        rows = load_rows(recipe.data)
        return _prepared(recipe, rows, tokenizer if tokenizer is not None else _tokenizer(recipe, progress))
    try:  # a helper converts the large data file meanwhile
        tokenizer = _tokenizer(recipe, progress)
        rows = load_rows(recipe.data)
    finally:
        warming.close()
    return _prepared(recipe, rows, tokenizer)


def prepare_head(recipe: Recipe, progress: Progress | None = None) -> Prepared | None:
    """:func:`prepare` on the first rows only (see :func:`head_rows`), or None when there is no shortcut.

    The encoder is built exactly as for the whole file; the Preview swaps in the whole file's
    encoder when it has loaded, so what stays on screen is what trains.
    """
    rows = head_rows(recipe.data)
    if rows is None:
        return None
    tokenizer = _tokenizer(recipe, progress)
    try:
        return _prepared(recipe, rows, tokenizer)
    except StudioError:  # the head alone may not show every column; the whole file will say
        return None


def _tokenizer(recipe: Recipe, progress: Progress | None) -> Any:
    from lorastudio.models.resolve import load_tokenizer

    return load_tokenizer(recipe.model, progress)


def _prepared(recipe: Recipe, rows: Rows, tokenizer: Any) -> Prepared:
    from lorastudio.data.imagerows import make_vision_encoder, processor_for

    processor = processor_for(recipe)  # a vision-language model encodes through its processor
    if processor is not None:
        vision = make_vision_encoder(processor, recipe, rows.columns, rows.rows[:20], rows.origin)
        return Prepared(vision.tokenizer, rows, vision)
    encoder = make_encoder(tokenizer, recipe, rows.columns, rows.rows[:20], rows.origin)
    return Prepared(tokenizer, rows, encoder)
