"""Strict JSON for everything studio prints with ``--json`` and answers over MCP.

Python's ``json`` writes a float that is not finite as ``NaN``, ``Infinity`` or ``-Infinity``, which no JSON
parser outside Python accepts (jq, JavaScript's ``JSON.parse``, Go, Rust's serde). A run can log one (a loss
that overflowed, an inf reward), so every figure that is not finite is written as ``null``: the same value a
figure has when there is none, so a reader that handles a missing loss handles this one too, and the field
keeps one type (number or null). The event log itself keeps what the worker wrote; only output is made strict.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every float that is not finite replaced by None, inside dicts, lists and tuples too
    (tuples become lists, as JSON writes them). Anything else is returned as it is."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes strict JSON (see the module docstring); it raises rather than write
    ``NaN`` should a value get past :func:`finite` (an object a ``default`` turns into a float)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
