"""lorastudio.widgets (the `widgets/` folder)."""

from __future__ import annotations

if __name__ != "lorastudio.widgets":
    raise ImportError(f"this folder installs as 'lorastudio.widgets'; import that, not {__name__!r}")
