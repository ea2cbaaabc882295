"""Checks a higher stage hands to run creation: ``create_run`` makes each before a run directory exists.

Its own small module so that installing one (the app does at import) costs a face no imports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RECIPE_CHECKS: list[Callable[[Any], object]] = []
"""More checks ``create_run`` makes of a recipe before its run directory exists, each ``check(recipe)``
raising a StudioError: those of stages above this one, installed by the faces (``evaluate/intraining.py``
``install``: ``train.eval_tasks``)."""
