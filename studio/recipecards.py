"""The recipe picker's list as it was last shown (``RecipeCard``), cached, so the next start shows it before
pydantic and YAML are imported; the recipes are validated behind it and the cache rewritten when they differ.

Only the standard library is imported here: reading the cards is the first thing the picker does.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.paths import cache_dir, package_recipes_dir, user_recipes_dir

CARDS_FILE = "recipe-cards.json"
CARDS_VERSION = 2
"""Raised when a card's fields change, so an older cache is never read as this one."""
MEMORY_ROW = "@memory"
"""The details row whose label is the machine's (est. VRAM or est. RAM), filled in when shown."""
# the modules whose code decides what a card says: an edited one (a development tree) makes the cache stale
_DECIDING = ("recipe.py", "registry.py", "recipecards.py", "models/estimate.py")


@dataclass(frozen=True)
class RecipeFile:
    """A recipe file found on disk, before it is validated."""

    name: str
    path: Path
    origin: str  # "built-in", "user" or "path"


@dataclass(frozen=True)
class RecipeCard:
    """One recipe as the picker lists and describes it: valid (``title`` set) or not (``error`` set)."""

    file: RecipeFile
    title: str | None
    """The recipe's own name; None when it does not validate."""
    model: str
    description: str
    tags: tuple[str, ...]
    error: str | None
    """Why the recipe does not validate."""
    rows: tuple[tuple[str, str], ...]
    """The details pane's rows; the one keyed :data:`MEMORY_ROW` gets the machine's memory label."""

    @property
    def offline(self) -> bool:
        """Trains with no hub: the tiny models or the shipped SmolLM2."""
        return self.model in ("tiny", "tiny-vision", "smollm2-135m-instruct")


def listing_state() -> list[Any]:
    """What the cards depend on: the recipe files' names, times and sizes (built-in and user) and the deciding
    modules' times; a few stats, read before the recipes are, so a change meanwhile shows at the next start."""
    state: list[Any] = [CARDS_VERSION]
    here = Path(__file__).parent
    for name in _DECIDING:
        try:
            state.append([name, (here / name).stat().st_mtime_ns])
        except OSError:
            state.append([name, None])
    for origin, folder in (("built-in", package_recipes_dir()), ("user", user_recipes_dir())):
        try:
            paths = sorted(folder.glob("*.y*ml"))
        except OSError:
            paths = []
        for path in paths:
            try:
                st = path.stat()
            except OSError:
                continue
            state.append([origin, str(path), st.st_mtime_ns, st.st_size])
    return state


def _cards_path() -> Path:
    return cache_dir() / CARDS_FILE


def read_cards(state: list[Any]) -> tuple[list[RecipeCard], bool] | None:
    """The cached cards when they were written for ``state``, and whether a GPU was seen then (the memory
    row's label: corrected once the GPU is asked again); None when missing, stale or unreadable."""
    try:
        data = json.loads(_cards_path().read_text(encoding="utf-8"))
        if data.get("state") != state:
            return None
        cards = [
            RecipeCard(
                file=RecipeFile(c["name"], Path(c["path"]), c["origin"]),
                title=c["title"],
                model=c["model"],
                description=c["description"],
                tags=tuple(c["tags"]),
                error=c["error"],
                rows=tuple((str(k), str(v)) for k, v in c["rows"]),
            )
            for c in data["cards"]
        ]
        return cards, bool(data["on_gpu"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no cache yet, or one from elsewhere: the validated list is shown a moment later


def write_cards(state: list[Any], cards: list[RecipeCard], on_gpu: bool) -> None:
    """Cache ``cards`` for ``state``, whole or not at all (a unique temporary file, then a rename)."""
    path = _cards_path()
    data = {
        "state": state,
        "on_gpu": on_gpu,
        "cards": [
            {
                "name": c.file.name,
                "path": str(c.file.path),
                "origin": c.file.origin,
                "title": c.title,
                "model": c.model,
                "description": c.description,
                "tags": list(c.tags),
                "error": c.error,
                "rows": [list(row) for row in c.rows],
            }
            for c in cards
        ],
    }
    tmp = path.with_name(f".{CARDS_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a read-only cache costs the next start a moment, nothing more
        with contextlib.suppress(OSError):
            tmp.unlink()
