"""Errors that carry a message fit for a user: the CLI prints them, screens show them."""

from __future__ import annotations


class StudioError(Exception):
    """An expected failure with a message that names the file, field or row at fault."""


class RecipeError(StudioError):
    """A recipe file is invalid: bad YAML, unknown key, wrong type, missing base recipe."""


class DataError(StudioError):
    """The data set cannot be loaded or encoded."""


class TemplateError(StudioError):
    """A chat template cannot be used for masking."""


class RunError(StudioError):
    """A run directory cannot be created, read or resumed."""
