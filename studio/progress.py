"""The progress callback every slow step takes: loading, building, fetching, exporting."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], object]
"""Called with the fraction done (0 to 1) and a short message saying what happens now; what it returns is
ignored (so ``post_message`` or an event writer's ``write`` can be passed as it is)."""
