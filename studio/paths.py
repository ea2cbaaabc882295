"""Where studio keeps things: XDG config, cache and data directories.

Nothing is read or created at import time; every function looks at the
environment when called, so tests can point ``XDG_*`` at a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    base = Path(value) if value else Path.home() / fallback
    return base / "studio"


def config_dir() -> Path:
    """User recipes live in ``$XDG_CONFIG_HOME/studio/recipes``."""
    return _xdg("XDG_CONFIG_HOME", ".config")


def cache_dir() -> Path:
    """The tiny offline base model is built into ``$XDG_CACHE_HOME/studio``."""
    return _xdg("XDG_CACHE_HOME", ".cache")


def data_dir() -> Path:
    """Run directories live in ``$XDG_DATA_HOME/studio/runs``."""
    return _xdg("XDG_DATA_HOME", ".local/share")


def user_recipes_dir() -> Path:
    return config_dir() / "recipes"


def runs_dir() -> Path:
    return data_dir() / "runs"


def tiny_model_dir() -> Path:
    return cache_dir() / "tiny-base"


def package_recipes_dir() -> Path:
    """The built-in recipes shipped inside ``lorastudio.recipes``."""
    import importlib.util

    spec = importlib.util.find_spec("lorastudio.recipes")
    assert spec is not None
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def display_path(path: str | Path) -> str:
    """A short, machine-independent form: built-in files relative to the package, home as ``~``."""
    path = Path(path)
    try:
        return "recipes/" + str(path.resolve().relative_to(package_recipes_dir().resolve()))
    except (ValueError, OSError):
        pass
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)
