"""lorastudio.recipes (the `recipes/` folder)."""

from __future__ import annotations

if __name__ != "lorastudio.recipes":
    raise ImportError(f"this folder installs as 'lorastudio.recipes'; import that, not {__name__!r}")
