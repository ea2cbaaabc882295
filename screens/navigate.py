"""Where a screen can send the user: typed destinations that the app opens (``StudioApp.open_screen``).

Screens never import one another to navigate: recipes -> launch -> monitor -> recipes and runs -> monitor made
a seven-module import cycle through the app. A screen names the next one here (``go(self.app, Monitor(path))``)
and the app, which alone imports every screen, builds and pushes it. Modal helpers a screen owns (a confirm
dialog, its own file picker, whose answer comes back to it) are pushed by that screen directly.

This module imports no screen and not the app, so any screen may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from textual.app import App

    from lorastudio.recipe import Recipe


@dataclass(frozen=True)
class Recipes:
    """Back to the recipe picker: the screens above it are popped, as Escape on each would."""


@dataclass(frozen=True)
class Runs:
    """The list of runs (Ctrl+R); nothing happens when it is already showing."""


@dataclass(frozen=True)
class Preview:
    """A supervised recipe's token preview."""

    recipe: Recipe


@dataclass(frozen=True)
class MethodPreview:
    """A preference or RL recipe's preview: prompt and replies per part."""

    recipe: Recipe


@dataclass(frozen=True)
class Launch:
    """The Launch sheet; nothing trains until Enter there."""

    recipe: Recipe
    base: str | None = None
    """The recipe file's name, when opened from the picker (a saved variant's name starts from it)."""


@dataclass(frozen=True)
class Train:
    """Start ``recipe`` (its run directory and detached worker) and show its Monitor."""

    recipe: Recipe


@dataclass(frozen=True)
class Monitor:
    """A run's live Monitor."""

    run_dir: Path


@dataclass(frozen=True)
class Chat:
    """The Chat screen on ``target`` (a run, adapter or model; an endpoint's URL with ``model``), beside a
    served one (``versus``: URL, model, API key variable)."""

    target: str
    model: str | None = None
    versus: tuple[str, str | None, str | None] | None = None


@dataclass(frozen=True)
class Eval:
    """The Eval screen on ``targets`` (``base`` and run names), or on ``recipe``'s newest run."""

    targets: tuple[str, ...] | None = None
    recipe: str | None = None


@dataclass(frozen=True)
class EvalSamples:
    """One metric's scored samples of an evaluation, per target."""

    folder: Path
    metric: str
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Compare:
    """Runs side by side (a sweep's when ``sweep`` names it)."""

    paths: tuple[Path, ...]
    sweep: str | None = None


@dataclass(frozen=True)
class CompareSamples:
    """The runs' sample replies to the same prompts, side by side."""

    paths: tuple[Path, ...]


@dataclass(frozen=True)
class Export:
    """The Export screen on a finished run."""

    run_dir: Path


@dataclass(frozen=True)
class Serve:
    """The Serve panel, to start ``target`` (a run's path, an export folder) or, with none, to watch servers."""

    target: str | None = None


Destination = (
    Recipes
    | Runs
    | Preview
    | MethodPreview
    | Launch
    | Train
    | Monitor
    | Chat
    | Eval
    | EvalSamples
    | Compare
    | CompareSamples
    | Export
    | Serve
)
"""Every screen a screen can open; ``StudioApp.open_screen`` handles each (mypy checks it misses none)."""


class Navigator(Protocol):
    """What a screen needs of the app to move on: studio's app is one."""

    def open_screen(self, to: Destination) -> None: ...


def go(app: App[Any], to: Destination) -> None:
    """Ask the app to open ``to`` (at once: the next key already finds the new screen)."""
    cast("Navigator", app).open_screen(to)
