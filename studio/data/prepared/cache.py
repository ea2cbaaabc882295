"""The prepared-data cache: a recipe's encoded training and eval sets, stored as Arrow.

``prepare_data`` is what ``studio prepare``, the Preview's statistics and the training worker
call. It encodes every row once (with :class:`FastEncoder`, exactly what ``encode_row`` gives;
large data sets in one process per core, see ``shards``), writes the result under
``$XDG_CACHE_HOME/studio/prepared/<key>/`` (the key: ``cachekey``) and afterwards reads it back
memory-mapped, so a second run starts at once and training memory is bounded by the Arrow file.
An entry is built in a temporary folder and renamed into place, so a half-written one is never
read; ``cacheindex`` finds entries without the tokenizer and evicts the least recently used.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.data.datasource import held_out, load_rows
from lorastudio.data.encode import DatasetStats, packed
from lorastudio.data.prepare import Prepared, prepare
from lorastudio.data.prepared.arrowwriter import (
    BATCH,
    Cancelled,
    Targets,
    encode_batches,
    encode_chunk,
    merge_stats,
)
from lorastudio.data.prepared.cacheindex import evict, read_table, remember, sample_files, stats_from, touch
from lorastudio.data.prepared.cachekey import EVAL, META, SAMPLES, TRAIN, cache_key, prepared_root
from lorastudio.data.prepared.fastencode import ENCODER_VERSION, FastEncoder
from lorastudio.data.prepared.shards import ShardJob, chunk_starts, encode_in_processes, worker_count
from lorastudio.errors import DataError
from lorastudio.models.cachelock import LockWaitCancelled, folder_lock
from lorastudio.progress import Progress
from lorastudio.recipe import Recipe

StatsProgress = Callable[[DatasetStats], Any]


@dataclass
class PreparedData:
    """A recipe's encoded data: Arrow datasets for the trainer and the statistics of every row."""

    key: str
    path: Path
    format: str
    template: str
    origin: str
    stats: DatasetStats
    train: Any  # datasets.Dataset with input_ids, labels (and position_ids when packed)
    eval: Any  # the same, or None
    from_cache: bool


def _rows_dataset(path: Path, names: Sequence[str]) -> Any:
    """The trainer's rows from an entry's files (shards concatenated, nothing copied); None for no files."""
    from datasets import Dataset, concatenate_datasets

    parts = [Dataset.from_file(str(path / name)) for name in names]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def _load_entry(path: Path, key: str) -> PreparedData | None:
    try:
        meta = json.loads((path / META).read_text())
        files = sample_files(path)
        if not files:
            return None
        stats = stats_from(read_table(files), meta)
        train = _rows_dataset(path, meta["train_files"])
        evals = _rows_dataset(path, meta["eval_files"]) if meta["eval_rows"] else None
        if (
            train is None
            or len(train) != meta["train_rows"]
            or (evals is not None and len(evals) != meta["eval_rows"])
        ):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or incomplete: built again
    return PreparedData(
        key, path, meta["format"], meta["template"], meta["origin"], stats, train, evals, True
    )


def cached(recipe: Recipe, tokenizer: Any) -> PreparedData | None:
    """The cache entry for this recipe and tokenizer, when one is there (nothing is encoded)."""
    key = cache_key(recipe, tokenizer)
    path = prepared_root() / key
    return _load_entry(path, key) if (path / META).exists() else None


def _encode_samples(
    prepared: Prepared,
    recipe: Recipe,
    rows: Any,
    staging: Path,
    name: str,
    stats: DatasetStats,
    progress: StatsProgress | None,
    every: int,
    held: Any,
) -> tuple[list[Targets], int, int]:
    """Encode ``rows`` into ``staging``, a set of :class:`Targets` per chunk (``<name>-NNNNN.arrow`` for the
    statistics, ``train-<name>-NNNNN.arrow`` and ``eval-<name>-NNNNN.arrow`` for the rows), in several
    processes when large. ``held``: a numpy bool per row, set for the rows held out for evaluation."""
    seen = [0, 0]  # rows merged, rows at the last report

    def merged(part: DatasetStats) -> bool:
        merge_stats(stats, part)
        seen[0] += part.rows
        if progress is not None and seen[0] - seen[1] >= every:
            seen[1] = seen[0]
            return progress(stats) is not False
        return True

    def targets(k: int) -> Targets:
        return Targets(
            staging / f"{name}-{k:05d}.arrow",
            staging / f"train-{name}-{k:05d}.arrow",
            staging / f"eval-{name}-{k:05d}.arrow",
        )

    workers = worker_count(len(rows))
    if workers == 1:  # one process: the tokenizer's own threads use the cores
        fast = FastEncoder(prepared.encoder)
        encode_batches(fast, rows.encoding_batches(BATCH), targets(0), merged, 0, held)
        return [targets(0)], fast.fast_shapes, fast.slow_shapes
    data = prepared.rows
    sample = list(data.rows[:20])
    starts = [*chunk_starts(len(rows)), len(rows)]
    jobs = [
        ShardJob(
            k,
            start,
            rows.slice(start, stop),
            targets(k),
            recipe,
            prepared.tokenizer,
            data.columns,
            sample,
            data.origin,
            None if held is None else held[start:stop],
        )
        for k, (start, stop) in enumerate(itertools.pairwise(starts))
    ]
    # On the main thread (studio prepare, the training worker) this process encodes too; a thread of
    # the TUI leaves the encoding to the helpers and keeps its GIL for the screen.
    here = threading.current_thread() is threading.main_thread()
    fast_here = FastEncoder(prepared.encoder) if here else None

    def encode_here(job: ShardJob, on_batch: Callable[[DatasetStats], bool]) -> tuple[int, int]:
        assert fast_here is not None
        return encode_chunk(fast_here, job.rows, job.targets, job.start, on_batch, job.held)

    with _single_threaded_tokenizer() if here else contextlib.nullcontext():
        fast_shapes, slow_shapes = encode_in_processes(
            jobs, merged, workers - 1 if here else workers, encode_here if here else None, fast_here
        )
    return [job.targets for job in jobs], fast_shapes, slow_shapes


@contextlib.contextmanager
def _single_threaded_tokenizer() -> Iterator[None]:
    """Hold the Rust tokenizer (which reads this on every call) to one thread while helpers share the cores:
    its pool, spinning between batches, took their cores (65 s instead of 55 s for 1M rows)."""
    name = "TOKENIZERS_PARALLELISM"
    old = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _row_batches(files: Sequence[Path]) -> Iterator[Any]:
    """The rows of these shards, in order, a record batch at a time (streamed: memory holds one batch)."""
    import pyarrow as pa

    for f in files:
        with pa.OSFile(str(f)) as source:
            yield from pa.ipc.open_stream(source)


def _finish_rows(
    staging: Path, shards: Sequence[Path], packing: bool, max_length: int, packed_name: str
) -> tuple[list[str], int]:
    """The trainer's files from the chunks' shards, and how many rows they hold: the shards that hold rows as
    they are, or (packing) the rows packed into one file; the shards left over are removed."""
    import pyarrow as pa

    if packing:
        count = _write_rows(_packed_rows(_row_batches(shards), max_length), staging / packed_name, packing)
        for f in shards:
            f.unlink()
        return [packed_name], count
    kept, count = [], 0
    for f in shards:
        with pa.memory_map(str(f)) as source:
            rows = pa.ipc.open_stream(source).read_all().num_rows
        if rows:
            kept.append(f.name)
            count += rows
        else:
            f.unlink()
    return kept, count


def _packed_rows(batches: Iterable[Any], max_length: int) -> Iterator[dict[str, list]]:
    """The batches' samples through encode.packed, the one packing loop."""
    pairs = (
        pair
        for batch in batches
        for pair in zip(
            batch.column("input_ids").to_pylist(), batch.column("labels").to_pylist(), strict=True
        )
    )
    return packed(pairs, max_length)


def _write_rows(rows: Iterator[dict[str, list]], target: Path, packing: bool) -> int:
    import pyarrow as pa

    names = ["input_ids", "labels", *(["position_ids", "seq_lengths"] if packing else [])]
    schema = pa.schema([(n, pa.list_(pa.int32())) for n in names])
    count = 0
    with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        chunk: list[dict[str, list]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= BATCH:
                writer.write_batch(pa.RecordBatch.from_pylist(chunk, schema=schema))
                count += len(chunk)
                chunk = []
        if chunk:
            writer.write_batch(pa.RecordBatch.from_pylist(chunk, schema=schema))
            count += len(chunk)
    return count


def _no_usable_rows(origin: str, skipped: Counter[str]) -> DataError:
    why = ", ".join(f"{n} {r}" for r, n in skipped.most_common()) or "the data set is empty"
    return DataError(f"{origin}: no usable rows ({why})")


def prepare_data(
    recipe: Recipe,
    tokenizer: Any = None,
    prepared: Prepared | None = None,
    progress: StatsProgress | None = None,
    every: int = 20_000,
    use_cache: bool = True,
    waiting: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> PreparedData:
    """The recipe's encoded train and eval sets: read from the cache, or encoded and cached.

    ``progress`` gets the growing statistics while rows are encoded; returning False cancels
    (a :class:`DataError` is raised and nothing is cached). ``prepared`` reuses an already loaded
    tokenizer, rows and encoder (the Preview has them).

    One key is built by one builder at a time, in this process or any other: the others wait on the
    key's lock (``waiting`` hears who builds it and since when; ``cancelled`` ends the wait) and then read
    the entry the winner put in place.
    """
    if prepared is None:
        prepared = prepare(recipe, tokenizer=tokenizer)
    if getattr(
        prepared.encoder, "vision", False
    ):  # train/trainer/vlmtrain.py encodes image rows when the run starts
        raise DataError(
            f"{recipe.name}: the prepared-data cache keeps text rows only; image rows are encoded as the run starts"
        )
    tokenizer = prepared.tokenizer
    key = cache_key(recipe, tokenizer)
    final = prepared_root() / key
    if use_cache and (hit := _hit(recipe, tokenizer, final, key, progress)) is not None:
        return hit
    try:
        with folder_lock(final, f"preparing the data of {recipe.name}", waiting, cancelled):
            if use_cache and (hit := _hit(recipe, tokenizer, final, key, progress)) is not None:
                return hit  # built by the builder this one waited for
            stats = _build(prepared, recipe, final, key, progress, every)
    except LockWaitCancelled:
        raise DataError("preparing the data was cancelled") from None
    entry = _load_entry(final, key)
    if entry is None:  # pragma: no cover - just written
        raise DataError(f"{final}: the prepared data could not be read back")
    remember(recipe, tokenizer, key)
    evict(keep=final)
    entry.stats = stats
    entry.from_cache = False
    return entry


def _hit(
    recipe: Recipe, tokenizer: Any, final: Path, key: str, progress: StatsProgress | None
) -> PreparedData | None:
    """The complete entry at ``final``, marked as used; None when it is absent or damaged."""
    if not (final / META).exists():
        return None
    entry = _load_entry(final, key)
    if entry is None:
        return None
    touch(final)
    remember(recipe, tokenizer, key)
    if progress is not None:
        progress(entry.stats)
    return entry


def _staging_name(key: str, role: str) -> str:
    """A hidden name no other builder uses (pid, thread and a random part): builders never share a folder."""
    return f".{key}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex[:12]}.{role}.tmp"


def _put_in_place(staging: Path, final: Path) -> None:
    """Rename the built ``staging`` to ``final``. An entry already there (rebuilt with ``use_cache=False``, or
    damaged) is first renamed aside, not deleted in place, so a reader that has its files open keeps them."""
    old = final.parent / _staging_name(final.name, "old")
    with contextlib.suppress(FileNotFoundError):
        os.replace(final, old)
    try:
        os.replace(staging, final)
    except OSError:  # a builder that did not take the lock placed it between the renames; theirs is as good
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def _build(
    prepared: Prepared,
    recipe: Recipe,
    final: Path,
    key: str,
    progress: StatsProgress | None,
    every: int,
) -> DatasetStats:
    """Encode the entry into a staging folder of its own and rename it to ``final``; its statistics."""
    encoder, rows = prepared.encoder, prepared.rows
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / _staging_name(key, "build")
    staging.mkdir()
    try:
        import numpy as np

        total = len(rows.rows)
        held = None
        if not recipe.data.eval_split:  # named eval data wins over any hold-out
            chosen = held_out(total, recipe.data.eval_fraction, recipe.train.seed)
            if chosen:
                held = np.zeros(total, dtype=bool)
                held[np.array(chosen, dtype=np.int64)] = True
        stats = DatasetStats(format=encoder.format, rows=total)
        chunks, fast_shapes, slow_shapes = _encode_samples(
            prepared, recipe, rows.rows, staging, SAMPLES, stats, progress, every, held
        )
        stats.done = True
        if progress is not None:
            progress(stats)
        packing, max_length = recipe.train.packing, recipe.model.max_seq_length
        train_files, n_train = _finish_rows(staging, [c.train for c in chunks], packing, max_length, TRAIN)
        if n_train == 0:
            raise _no_usable_rows(rows.origin, stats.skipped)
        eval_files: list[str] = []
        n_eval = 0
        if held is not None:
            eval_files, n_eval = _finish_rows(staging, [c.eval for c in chunks], packing, max_length, EVAL)
            if n_eval == 0:
                raise _no_usable_rows(rows.origin, stats.skipped)
        else:
            for c in chunks:
                c.eval.unlink()
        if recipe.data.eval_split:
            eval_rows = load_rows(recipe.data, split=recipe.data.eval_split)
            eval_stats = DatasetStats(format=encoder.format, rows=len(eval_rows.rows))
            every_row = np.ones(len(eval_rows.rows), dtype=bool)
            eval_chunks, _, _ = _encode_samples(
                prepared, recipe, eval_rows.rows, staging, "eval_samples", eval_stats, None, every, every_row
            )
            for c in eval_chunks:
                c.train.unlink()
            eval_files, n_eval = _finish_rows(
                staging, [c.eval for c in eval_chunks], packing, max_length, EVAL
            )
            if n_eval == 0 and eval_rows.rows:
                raise _no_usable_rows(eval_rows.origin, eval_stats.skipped)
        meta = {
            "key": key,
            "recipe": recipe.name,
            "source": recipe.data.source,
            "origin": rows.origin,
            "format": encoder.format,
            "template": encoder.template_name,
            "rows": total,
            "train_rows": n_train,
            "eval_rows": n_eval,
            "train_files": train_files,
            "eval_files": eval_files,
            "skipped": dict(stats.skipped),
            "skipped_rows": stats.skipped_rows,
            "encoder_version": ENCODER_VERSION,
            "fast_shapes": fast_shapes,
            "slow_shapes": slow_shapes,
            "created": time.time(),
        }
        (staging / META).write_text(json.dumps(meta, indent=1))  # written last: it marks the entry complete
        _put_in_place(staging, final)
    except Cancelled:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError("preparing the data was cancelled") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return stats
