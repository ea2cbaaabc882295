"""The samples' Arrow writer: encoded rows, a batch at a time, into an Arrow stream file with their statistics.

``cache`` writes the whole data set through it in one process; ``shards`` writes one chunk per
helper process through it. Each batch's own :class:`DatasetStats` goes to a callback, which
``merge_stats`` adds to the running total; the callback returning False stops the writing with
:class:`Cancelled`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.data.encode import DatasetStats
from lorastudio.data.prepared.fastencode import FastEncoder

BATCH = 2000
SKIPPED_ROWS_KEPT = 100


class Cancelled(Exception):
    """Raised when the progress callback asks to stop."""


_SCHEMAS: dict[str, Any] = {}


def _schema(kind: str) -> Any:
    """``samples``: each row's statistics (its skip reason, length, truncation, trained tokens); ``rows``: the
    trainer's columns."""
    if kind not in _SCHEMAS:
        import pyarrow as pa

        _SCHEMAS["samples"] = pa.schema(
            [
                ("length", pa.int32()),
                ("skip", pa.string()),
                ("truncated", pa.bool_()),
                ("full_length", pa.int32()),
                ("trained", pa.int32()),
            ]
        )
        _SCHEMAS["rows"] = pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32()))])
    return _SCHEMAS[kind]


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while rows are encoded: encoding makes no cycles, only many short-lived
    lists and tuples, and the collections they set off scanned every live object again (a third of the time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass(frozen=True)
class Targets:
    """Where one chunk's encoding goes: every row's statistics, and the rows for training and for evaluation."""

    samples: Path
    train: Path
    eval: Path


def encode_batches(
    fast: FastEncoder,
    batches: Iterable[Any],
    targets: Targets,
    on_batch: Callable[[DatasetStats], bool],
    start: int = 0,
    held: Any = None,
) -> None:
    """Encode rows into Arrow stream files: a statistics record per row (skipped ones with their reason), and the
    rows that are not skipped, to ``targets.eval`` where ``held`` (a numpy bool array over these rows) is set, else
    to ``targets.train``. Each process writes its chunk's training rows itself, so nothing is copied after.

    ``batches``: lists of row dicts, or ``pyarrow.Table`` batches of rows (``RowTable.encoding_batches``).
    ``on_batch`` gets each batch's own statistics (row numbers counted from ``start``); False stops.
    """
    import numpy as np
    import pyarrow as pa

    with contextlib.ExitStack() as stack:
        stack.enter_context(_collector_paused())
        writers = {}
        for name, path, kind in (
            ("samples", targets.samples, "samples"),
            ("train", targets.train, "rows"),
            ("eval", targets.eval, "rows"),
        ):
            sink = stack.enter_context(pa.OSFile(str(path), "wb"))
            writers[name] = stack.enter_context(pa.ipc.new_stream(sink, _schema(kind)))
        index = 0
        for batch in batches:
            part = DatasetStats(format=fast.encoder.format, rows=len(batch))
            cols = fast.encode_columns(batch) if isinstance(batch, list) else fast.encode_table(batch)
            if cols.skipped:
                for offset, reason in enumerate(cols.skip):
                    if reason is not None:  # rare: kept as an empty record that carries its reason
                        part.skipped[reason] += 1
                        part.skipped_rows.setdefault(reason, []).append(start + index + offset)
            part.used = len(batch) - cols.skipped
            part.lengths = (
                [n for n, skip in zip(cols.lengths, cols.skip, strict=True) if skip is None]
                if cols.skipped
                else cols.lengths
            )
            part.tokens = len(cols.ids)
            part.trained_tokens = sum(cols.trained)
            part.truncated = sum(cols.truncated)
            writers["samples"].write_batch(
                pa.record_batch(
                    [
                        pa.array(cols.lengths, pa.int32()),
                        pa.array(cols.skip, pa.string()),
                        pa.array(cols.truncated, pa.bool_()),
                        pa.array(cols.full_length, pa.int32()),
                        pa.array(cols.trained, pa.int32()),
                    ],
                    schema=_schema("samples"),
                )
            )
            rows = pa.record_batch(
                [
                    pa.ListArray.from_arrays(pa.array(cols.offsets), pa.array(cols.ids)),
                    pa.ListArray.from_arrays(pa.array(cols.offsets), pa.array(cols.labels)),
                ],
                schema=_schema("rows"),
            )
            used = (
                np.array([reason is None for reason in cols.skip], dtype=bool)
                if cols.skipped
                else np.ones(len(batch), dtype=bool)
            )
            held_here = (
                np.zeros(len(batch), dtype=bool)
                if held is None
                else np.asarray(held[index : index + len(batch)])
            )
            for name, mask in (("train", used & ~held_here), ("eval", used & held_here)):
                if mask.all():
                    writers[name].write_batch(rows)
                elif mask.any():
                    writers[name].write_batch(rows.filter(pa.array(mask)))
            index += len(batch)
            if on_batch(part) is False:
                raise Cancelled


def encode_chunk(
    fast: FastEncoder,
    rows: Any,
    targets: Targets,
    start: int,
    on_batch: Callable[[DatasetStats], bool],
    held: Any = None,
) -> tuple[int, int]:
    """Encode one chunk of rows (a RowTable slice starting at row ``start``) into ``targets``; returns how many
    conversation shapes it newly found fast and slow."""
    before = fast.fast_shapes, fast.slow_shapes
    encode_batches(fast, rows.encoding_batches(BATCH), targets, on_batch, start, held)
    return fast.fast_shapes - before[0], fast.slow_shapes - before[1]


def merge_stats(total: DatasetStats, part: DatasetStats) -> None:
    """Add one batch's statistics to the running total (the first skipped row numbers, whichever shard sent them)."""
    total.used += part.used
    total.lengths += part.lengths
    total.tokens += part.tokens
    total.trained_tokens += part.trained_tokens
    total.truncated += part.truncated
    total.skipped.update(part.skipped)
    for reason, rows in part.skipped_rows.items():
        kept = total.skipped_rows.setdefault(reason, [])
        kept += rows
        kept.sort()
        del kept[SKIPPED_ROWS_KEPT:]
