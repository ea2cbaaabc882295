"""Encoding a large data set on every core: contiguous chunks of rows, handed out as processes free up.

The rows are cut into chunks of ``CHUNK_ROWS``, each written to its own Arrow stream file (named
by its position, so the files in name order are the rows in order). Fresh helper processes take
the next chunk whenever they finish one; a caller on the main thread (``studio prepare``, the
training worker) encodes chunks itself meanwhile, so no core waits for a helper's start-up. A
caller on another thread (the TUI) leaves all of it to the helpers and keeps its GIL for the
screen. A helper gets the recipe and the tokenizer with its first chunk, builds the same encoder
``prepare`` builds, and keeps it (and its word cache) for the next. Per-batch statistics come back
over its stdout, so progress keeps streaming.
Where the caller is the only thread of its process (``studio prepare``), the helpers are forked:
each starts with the caller's encoder, so none spends seconds importing and unpickling the
tokenizer. Anywhere else they are started fresh: the caller may be a thread of the TUI, and a
forked copy of a threaded process can hang. The helpers hold the Rust tokenizer to one thread each.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any, BinaryIO, Protocol

from lorastudio.data.encode import DatasetStats, make_encoder
from lorastudio.data.prepared.arrowwriter import Cancelled, Targets, encode_chunk
from lorastudio.data.prepared.fastencode import FastEncoder
from lorastudio.errors import DataError
from lorastudio.recipe import Recipe
from lorastudio.settings import variable

MIN_ROWS_FOR_HELPERS = 150_000
"""Below this many rows, one process encodes them all: a helper's start-up (about 1.1 s of imports) would
pay for itself on a few chunks at most."""

CHUNK_ROWS = 20_000
"""Rows per chunk: small enough that the processes finish together, large enough that handing one out
(a pickled slice of the memory-mapped table) costs nothing next to encoding it (about 0.3 s)."""

WORKERS_ENV = variable("prepare_workers")
NICENESS = 10


@dataclass
class ShardJob:
    """One chunk: rows ``start``.. of the data set, and what rebuilds the encoder ``prepare`` built
    (left out, None, once a helper has it)."""

    index: int
    start: int
    rows: Any  # a RowTable slice
    targets: Targets  # the Arrow stream files it writes
    recipe: Recipe | None
    tokenizer: Any
    columns: list[str]
    sample_rows: list[dict[str, Any]]  # the rows the format was detected from
    origin: str
    held: Any = None  # numpy bool per row: held out for evaluation (None: none is)

    def light(self) -> ShardJob:
        """The same chunk without the encoder's makings (the helper already built its encoder)."""
        return replace(self, recipe=None, tokenizer=None, columns=[], sample_rows=[])


def worker_count(rows: int) -> int:
    """How many processes encode ``rows`` rows: one per core when there are enough rows, else one."""
    if rows < MIN_ROWS_FOR_HELPERS:
        return 1
    from lorastudio.settings import read_settings

    wanted = read_settings().prepare_workers
    if wanted is not None:
        return wanted
    from lorastudio.models.threads import usable_cores

    return max(1, min(usable_cores(), 8))


def chunk_starts(rows: int) -> range:
    """Where each chunk of ``rows`` rows starts."""
    return range(0, rows, CHUNK_ROWS)


def shard_main(job: ShardJob, send: Callable[[tuple[str, int, Any]], None], kept: dict[str, Any]) -> None:
    """Encode one chunk; every outcome is a message, never a traceback. ``kept`` holds the encoder across chunks."""
    try:
        if job.tokenizer is not None:
            assert job.recipe is not None
            kept["fast"] = FastEncoder(
                make_encoder(job.tokenizer, job.recipe, job.columns, job.sample_rows, job.origin)
            )

        def sent(part: DatasetStats) -> bool:
            send(("batch", job.index, part))
            return True

        done = encode_chunk(kept["fast"], job.rows, job.targets, job.start, sent, job.held)
        send(("done", job.index, done))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        send(("error", job.index, _picklable(exc)))


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001
        return DataError(f"{type(exc).__name__}: {exc}")


def _serve_jobs(jobs_in: BinaryIO, out: BinaryIO, kept: dict[str, Any]) -> None:
    """A helper's loop: chunks arrive pickled (None: no more), messages leave pickled."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"
    with contextlib.suppress(
        OSError
    ):  # bulk work: the TUI that asked for it (or a run) keeps its share of the cores
        os.nice(NICENESS)

    def send(message: tuple[str, int, Any]) -> None:
        pickle.dump(message, out)
        out.flush()

    with contextlib.suppress(EOFError):  # the caller went away (it was killed): nothing is waiting for us
        while (job := pickle.load(jobs_in)) is not None:
            shard_main(job, send, kept)


def _main() -> None:
    """``python -m lorastudio.data.prepared.shards``: chunks on stdin, messages on stdout."""
    _serve_jobs(sys.stdin.buffer, sys.stdout.buffer, {})


class _Helper(Protocol):
    """A helper process as ``encode_in_processes`` drives it (a ``Popen``, or a forked :class:`_Forked`)."""

    stdin: IO[bytes] | None
    stdout: IO[bytes] | None

    def wait(self) -> int: ...
    def poll(self) -> int | None: ...
    def kill(self) -> None: ...


class _Forked:
    """A forked helper: it starts with the caller's encoder; chunks and messages go over two pipes."""

    def __init__(self, fast: FastEncoder, closed_in_child: list[IO[bytes]]) -> None:
        jobs_read, jobs_write = os.pipe()
        messages_read, messages_write = os.pipe()
        # The other helpers' pipe ends stay open in a fork unless closed: a helper would then never see
        # the end of its input when the caller dies.
        inherited = [f.fileno() for f in closed_in_child] + [jobs_write, messages_read]
        self._process = multiprocessing.get_context("fork").Process(
            target=_forked_main,
            args=(jobs_read, messages_write, inherited, fast),
            daemon=True,
            name="studio-encode",
        )
        self._process.start()
        os.close(jobs_read)
        os.close(messages_write)
        self.stdin: IO[bytes] | None = os.fdopen(jobs_write, "wb")
        self.stdout: IO[bytes] | None = os.fdopen(messages_read, "rb")

    def wait(self) -> int:
        self._process.join()
        return self._process.exitcode if self._process.exitcode is not None else -1

    def poll(self) -> int | None:
        return self._process.exitcode

    def kill(self) -> None:
        self._process.kill()


def _forked_main(jobs_fd: int, messages_fd: int, inherited: list[int], fast: FastEncoder) -> None:
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    with os.fdopen(jobs_fd, "rb") as jobs_in, os.fdopen(messages_fd, "wb") as out:
        _serve_jobs(jobs_in, out, {"fast": fast})


IDLE_THREADS = frozenset({"tqdm_monitor"})
"""Threads that may be running when helpers are forked: they sleep between rare wake-ups and hold no lock a
helper takes (tqdm's monitor, started by the progress bars of ``datasets``)."""


def can_fork() -> bool:
    """Whether helpers may be forked from here: Linux, on the main thread, with no other thread running but the
    idle ones."""
    return (
        sys.platform.startswith("linux")
        and threading.current_thread() is threading.main_thread()
        and all(t is threading.main_thread() or t.name in IDLE_THREADS for t in threading.enumerate())
    )


EncodeHere = Callable[[ShardJob, Callable[[DatasetStats], bool]], tuple[int, int]]
"""Encodes a chunk in the calling process (its batches' statistics to the callback); returns its shape counts."""


def encode_in_processes(
    jobs: Sequence[ShardJob],
    merge: Callable[[DatasetStats], bool],
    helpers: int,
    encode_here: EncodeHere | None = None,
    fork_from: FastEncoder | None = None,
) -> tuple[int, int]:
    """Encode every chunk, on ``helpers`` helper processes and, when ``encode_here`` is given, in this
    process too; each takes the next chunk as it finishes one.

    With ``fork_from`` (and :func:`can_fork`), the helpers are forks that start with that encoder;
    otherwise fresh ``python -m lorastudio.data.prepared.shards`` processes (not multiprocessing's spawn: that
    would import the caller's ``__main__`` again in each). ``merge`` gets every batch's statistics
    (False cancels everything). Returns the fast and slow shape counts summed over the chunks, and
    raises what a process raised.
    """
    pending = deque(jobs)
    lock = threading.Lock()
    inbox: queue.Queue[tuple[str, int, Any]] = queue.Queue()
    processes: dict[int, _Helper] = {}
    forked = fork_from is not None and can_fork()
    shapes = [0, 0]
    done = [0]

    def take() -> ShardJob | None:
        with lock:
            return pending.popleft() if pending else None

    def serve(helper: int, process: _Helper) -> None:
        """Hand this helper chunk after chunk and relay what it says (a thread per helper)."""
        assert process.stdin is not None and process.stdout is not None
        first = not forked  # a fork has its encoder already
        try:
            while (job := take()) is not None:
                pickle.dump(job if first else job.light(), process.stdin)
                process.stdin.flush()
                first = False
                while True:
                    message = pickle.load(process.stdout)
                    inbox.put(message)
                    if message[0] != "batch":
                        break
                if message[0] == "error":
                    return
            pickle.dump(None, process.stdin)
            process.stdin.close()
        except (EOFError, OSError, pickle.UnpicklingError, ValueError):
            inbox.put(("eof", helper, None))

    def handle(kind: str, index: int, payload: Any) -> None:
        if kind == "batch":
            if merge(payload) is False:
                raise Cancelled
        elif kind == "done":
            done[0] += 1
            shapes[0] += payload[0]
            shapes[1] += payload[1]
        elif kind == "error":
            raise payload
        else:  # its output ended without a word: it was killed or crashed
            code = processes[index].wait()
            raise DataError(
                f"encoding helper process {index + 1} of {len(processes)} ended unexpectedly "
                f"(exit code {code})"
            )

    def drain(part: DatasetStats) -> bool:
        """This process's own batch, then whatever the helpers said meanwhile."""
        if merge(part) is False:
            return False
        while True:
            try:
                handle(*inbox.get_nowait())
            except queue.Empty:
                return True

    try:
        for helper in range(helpers):
            if forked:
                assert fork_from is not None
                ends = [f for p in processes.values() for f in (p.stdin, p.stdout) if f is not None]
                processes[helper] = _Forked(fork_from, ends)
            else:
                processes[helper] = subprocess.Popen(
                    [sys.executable, "-m", "lorastudio.data.prepared.shards"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
        # Every fork is made before the first thread starts: a fork copies only the thread that made it.
        for helper, process in processes.items():
            threading.Thread(
                target=serve, args=(helper, process), daemon=True, name=f"studio-encode-{helper}"
            ).start()
        if encode_here is not None:
            while (job := take()) is not None:
                fast, slow = encode_here(job, drain)
                done[0] += 1
                shapes[0] += fast
                shapes[1] += slow
        while done[0] < len(jobs):
            handle(*inbox.get())
        for process in processes.values():
            process.wait()
    finally:
        with lock:
            pending.clear()  # nothing more is handed out
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return shapes[0], shapes[1]


if __name__ == "__main__":
    _main()
