"""Finding a row by its text (the Preview's search), a column at a time over the Arrow table.

String columns are matched by Arrow's own substring search, so a million rows take well under a
second; other columns (a ``messages`` list) are matched through their JSON text, a batch at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lorastudio.data.datasource import RowTable

SEARCH_BATCH = 50_000
"""Rows matched at a time (cancelling takes effect between batches)."""


def _value_holds(value: Any, lowered: str) -> bool:
    if value is None:
        return False
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return lowered in text.lower()


def row_holds(row: dict[str, Any], needle: str) -> bool:
    """Whether any of the row's values holds ``needle``, case ignored."""
    lowered = needle.lower()
    return any(_value_holds(v, lowered) for v in row.values())


def _hits(table: Any, needle: str) -> Any:
    """A numpy mask of the rows of this Arrow table that hold ``needle``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = np.zeros(table.num_rows, dtype=bool)
    lowered = needle.lower()
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            found = pc.fill_null(pc.match_substring(column, needle, ignore_case=True), False)
            mask |= found.to_numpy(zero_copy_only=False)
        else:
            mask |= np.fromiter(
                (_value_holds(v, lowered) for v in column.to_pylist()), dtype=bool, count=table.num_rows
            )
    return mask


def find_row(
    rows: RowTable, needle: str, after: int = -1, cancelled: Callable[[], bool] = lambda: False
) -> int | None:
    """The first row after row ``after`` that holds ``needle`` (case ignored), going round to the start;
    None when no row does, or when ``cancelled`` says so between batches."""
    total = len(rows)
    dataset = rows.dataset
    if dataset is None:
        for index in [*range(after + 1, total), *range(min(after + 1, total))]:
            if row_holds(rows[index], needle):
                return index
        return None
    first, start = None, 0
    for table in dataset.with_format("arrow").iter(batch_size=SEARCH_BATCH):
        if cancelled():
            return None
        hits = _hits(table, needle).nonzero()[0] + start
        if hits.size:
            later = hits[hits > after]
            if later.size:
                return int(later[0])
            if first is None:
                first = int(hits[0])
        start += table.num_rows
    return first
