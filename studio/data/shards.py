"""Encoding a large data set on every core: one contiguous shard of rows per process.

Each shard goes to a fresh process that gets the recipe, the tokenizer and its slice of the rows
(an Arrow slice pickles as a reference to the memory-mapped file), builds the same encoder
``prepare`` builds, and writes its own Arrow stream file. Per-batch statistics come back over its stdout, so progress keeps streaming.
Processes are started fresh, not forked: the caller may be a thread of the TUI, and a forked copy
of a threaded process can hang. The helpers hold the Rust tokenizer to one thread each.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.data.encode import DatasetStats
from lorastudio.errors import DataError
from lorastudio.recipe import Recipe

MIN_ROWS_PER_PROCESS = 150_000
"""Below this many rows per process, starting one (about 2.5 s of imports) costs more than it saves. On 2 cores,
with the word-cached encoder: 200k Dolly rows took 8.2 s in one process or two, 300k took 11.2 s in one and
9.3 s in two, 600k 16.8 s and 13.4 s."""

WORKERS_ENV = "STUDIO_PREPARE_WORKERS"
NICENESS = 10


@dataclass
class ShardJob:
    """One shard: rows ``start``.. of the data set, and what rebuilds the encoder ``prepare`` built."""

    index: int
    start: int
    rows: Any  # a RowTable slice
    target: Path  # the Arrow stream file it writes
    recipe: Recipe
    tokenizer: Any
    columns: list[str]
    sample_rows: list[dict[str, Any]]  # the rows the format was detected from
    origin: str


def worker_count(rows: int) -> int:
    """How many processes encode ``rows`` rows: one per core, never more than the rows justify."""
    wanted = os.environ.get(WORKERS_ENV, "")
    if wanted.isdigit() and int(wanted) > 0:
        cores = int(wanted)
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        cores = min(cores, 8)
    return max(1, min(cores, rows // MIN_ROWS_PER_PROCESS))


def shard_main(job: ShardJob, send: Callable[[tuple[str, int, Any]], None]) -> None:
    """Encode one shard; every outcome is a message, never a traceback."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"
    with contextlib.suppress(OSError):  # bulk work: the TUI that asked for it (or a run) keeps its share of the cores
        os.nice(NICENESS)
    try:
        from lorastudio.data.cache import BATCH, encode_batches
        from lorastudio.data.encode import make_encoder
        from lorastudio.data.fastencode import FastEncoder

        encoder = make_encoder(job.tokenizer, job.recipe, job.columns, job.sample_rows, job.origin)
        fast = FastEncoder(encoder)

        def sent(part: DatasetStats) -> bool:
            send(("batch", job.index, part))
            return True

        encode_batches(fast, job.rows.batches(BATCH), job.target, sent, job.start)
        send(("done", job.index, (fast.fast_shapes, fast.slow_shapes)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        send(("error", job.index, _picklable(exc)))


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001
        return DataError(f"{type(exc).__name__}: {exc}")


def _main() -> None:
    """``python -m lorastudio.data.shards``: a job arrives pickled on stdin, messages leave on stdout."""
    job = pickle.load(sys.stdin.buffer)
    out = sys.stdout.buffer

    def send(message: tuple[str, int, Any]) -> None:
        pickle.dump(message, out)
        out.flush()

    shard_main(job, send)


def encode_in_processes(jobs: Sequence[ShardJob], merge: Callable[[DatasetStats], bool]) -> tuple[int, int]:
    """Encode every job at once, each in a fresh ``python -m lorastudio.data.shards`` process.

    Not multiprocessing: that would import the caller's ``__main__`` again in each process. This
    process only merges: ``merge`` gets every batch's statistics (False cancels everything). When
    it encoded a shard itself, its tokenizer's thread pool (several threads, spinning between
    batches) took the helpers' cores: 65 s instead of 55 s for 1M rows on 2 cores. Returns the fast
    and slow shape counts summed over the jobs, and raises what a process raised.
    """
    inbox: queue.Queue[tuple[str, int, Any]] = queue.Queue()
    processes: dict[int, subprocess.Popen[bytes]] = {}
    shapes = [0, 0]
    finished: set[int] = set()

    def read(index: int, stream: Any) -> None:
        try:
            while True:
                inbox.put(pickle.load(stream))
        except (EOFError, OSError, pickle.UnpicklingError):
            inbox.put(("eof", index, None))

    def handle(kind: str, index: int, payload: Any) -> None:
        if kind == "batch":
            if merge(payload) is False:
                raise Cancelled
        elif kind == "done":
            finished.add(index)
            shapes[0] += payload[0]
            shapes[1] += payload[1]
        elif kind == "error":
            raise payload
        elif index not in finished:  # its output ended without a word: it was killed or crashed
            code = processes[index].wait()
            raise DataError(f"encoding process {index + 1} of {len(jobs)} ended unexpectedly (exit code {code})")

    try:
        for job in jobs:
            process = subprocess.Popen([sys.executable, "-m", "lorastudio.data.shards"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            processes[job.index] = process
            threading.Thread(target=read, args=(job.index, process.stdout), daemon=True,
                             name=f"studio-encode-{job.index}").start()
            assert process.stdin is not None
            pickle.dump(job, process.stdin)
            process.stdin.close()
        while len(finished) < len(jobs):
            handle(*inbox.get())
        for process in processes.values():
            process.wait()
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return shapes[0], shapes[1]


class Cancelled(Exception):
    """Raised when the progress callback asks to stop."""


if __name__ == "__main__":
    _main()
