"""The progress callback every slow step takes: loading, building, fetching, exporting."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]
"""Called with the fraction done (0 to 1) and a short message saying what happens now."""
