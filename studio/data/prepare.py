"""Everything between a recipe and an :class:`Encoder`: tokenizer, rows, format."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from lorastudio.data.encode import Encoder, make_encoder
from lorastudio.data.sources import Rows, head_rows, load_rows
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
    """``tokenizer`` is loaded from the recipe unless given (the worker passes its backend's).

    Where this process may fork (``studio prepare``), a forked copy reads a local data file into the
    data set cache while this one loads the tokenizer, and the rows are then read from that cache: the
    two slowest steps of a cold start share the cores. A data error is raised here, as always.
    """
    if tokenizer is not None:
        return _prepared(recipe, load_rows(recipe.data), tokenizer)
    warming = _warm_rows(recipe)
    try:
        tokenizer = _tokenizer(recipe, progress)
    finally:
        if warming is not None:
            warming.join()
    return _prepared(recipe, load_rows(recipe.data), tokenizer)


def _warm_rows(recipe: Recipe) -> Any:
    """A forked process reading the recipe's local data file into the data set cache, or None (another thread
    runs, the data is not a file ``datasets`` converts, or it is already cached: reading it then is quick)."""
    import multiprocessing

    from lorastudio.data.shards import can_fork
    from lorastudio.data.sources import converted_by_datasets

    if not can_fork() or not converted_by_datasets(recipe.data):
        return None
    process = multiprocessing.get_context("fork").Process(
        target=_load_quietly, args=(recipe,), daemon=True, name="studio-rows"
    )
    process.start()
    return process


def _load_quietly(recipe: Recipe) -> None:
    with contextlib.suppress(BaseException):  # whatever went wrong, this process's caller says it again
        load_rows(recipe.data)


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
    from lorastudio.models.sources import load_tokenizer

    return load_tokenizer(recipe.model, progress)


def _prepared(recipe: Recipe, rows: Rows, tokenizer: Any) -> Prepared:
    encoder = make_encoder(tokenizer, recipe, rows.columns, rows.rows[:20], rows.origin)
    return Prepared(tokenizer, rows, encoder)
