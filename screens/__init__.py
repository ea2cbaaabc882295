"""lorastudio.screens (the `screens/` folder)."""

from __future__ import annotations

if __name__ != "lorastudio.screens":
    raise ImportError(f"this folder installs as 'lorastudio.screens'; import that, not {__name__!r}")
