"""The run listing's cache: each run's folded state, so listing runs does not re-read every event.

``studio runs`` and the Runs screen show a line per run folded from its ``events.jsonl``; a run of many
steps holds tens of thousands of events, and the Runs screen lists every run again every tick. So each
run's :class:`RunState` (its scalar fields, ``curves=False``) is kept with the byte offset it was folded to:

- an events file whose size and mtime are the ones recorded is not opened at all;
- one that grew (a live run) is folded from the recorded offset only, after checking that the bytes just
  before that offset are still the ones recorded (``fingerprint``), so a rewritten file is not mistaken
  for an appended one;
- anything else (smaller, rewritten, an entry that does not load as a state of this version, a cache file
  that is not JSON) is ignored and the whole file folded again. The cache is never trusted over the file.

Where it lives: the worker owns the run directory and readers only read it, so the cache lives in
``$XDG_CACHE_HOME/studio/run-summaries.json`` (one file for every run, written atomically, losing it costs
one fold per run). The process keeps the index in memory, so the Runs screen's ticks cost one ``stat`` per
unchanged run.

A first listing (a new machine, a cleared cache, runs copied from elsewhere) would still fold every event
of every run, so whoever writes a run's events also leaves the same entry in the run directory
(:class:`SummarizingWriter`, ``summary.json``, without size and mtime): the fold of ``events.jsonl`` up to
an offset, with the fingerprint of the bytes before it. It is read back by exactly the rules above, so
events it has not seen (another writer's, or a run that died before writing it again) are folded from its
offset, and a stale or foreign one costs only the full fold it replaces. Runs written before it existed
are folded once, as before.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from lorastudio.paths import cache_dir
from lorastudio.train.run.eventlog import EVENTS_FILE, EventWriter
from lorastudio.train.run.events import EVENTS_VERSION, E, StatusEvent, parse_event
from lorastudio.train.run.runstate import RunReader, RunState

CACHE_FILE = "run-summaries.json"
CACHE_VERSION = 1
"""Bump when an entry's meaning changes (RunState's fields are checked on load anyway)."""
FINGERPRINT_BYTES = 64
SAVE_EVERY_S = 5.0
RUN_SUMMARY_FILE = "summary.json"
"""A run's own summary of its events (see the module docstring), beside ``events.jsonl``."""
RUN_SUMMARY_EVERY_S = 5.0
"""How often a writer brings ``summary.json`` up to date while it writes (and at every status, and on close)."""


class SummaryCache:
    """Run directory -> its folded :class:`RunState` (scalars only), checked against the events file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_dir() / CACHE_FILE
        self._entries: dict[str, dict[str, Any]] | None = None
        self._dirty = False
        self._lock = threading.Lock()
        self._saved: float | None = None
        self._memo: dict[str, tuple[int, int, RunState]] = {}
        """key -> (size, mtime_ns, state) of this process's latest answer, so an unchanged run costs a stat."""
        self.reads = 0
        """Events files opened (the tests count them: an unchanged run is never opened)."""
        self.folded_bytes = 0

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                ok = isinstance(data, dict) and data.get("version") == [CACHE_VERSION, EVENTS_VERSION]
                entries = data.get("runs") if ok else None
                self._entries = entries if isinstance(entries, dict) else {}
            except (OSError, ValueError, RecursionError):
                self._entries = {}
        return self._entries

    def state(self, run_dir: Path) -> RunState:
        """The run's state as its events file is now."""
        key = str(run_dir.absolute())
        events = run_dir / EVENTS_FILE
        try:
            stat = events.stat()
        except OSError:
            return RunState(curves=False)
        with self._lock:
            entry = self._load().get(key)
        state, offset = self._reuse(entry, events, stat)
        if state is None:  # not in this cache yet: start from the writer's own summary where it has one
            state, offset = self._reuse(read_run_summary(run_dir), events, stat, check=True)
        if (
            state is not None
            and offset == stat.st_size
            and entry
            and entry.get("mtime_ns") == stat.st_mtime_ns
        ):
            return state
        reader = RunReader(
            run_dir,
            state if state is not None else RunState(curves=False),
            offset if state is not None else 0,
        )
        reader.update()
        self.reads += reader.tail.reads
        self.folded_bytes += reader.offset - (offset if state is not None else 0)
        with self._lock:
            self._load()[key] = {
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "offset": reader.offset,
                "fingerprint": _fingerprint(events, reader.offset),
                "state": reader.state.scalars_json(),
            }
            self._dirty = True
            self._memo[key] = (stat.st_size, stat.st_mtime_ns, reader.state)
        return reader.state

    def _reuse(
        self, entry: Any, events: Path, stat: os.stat_result, check: bool = False
    ) -> tuple[RunState | None, int]:
        """(the cached state, the offset to fold on from), or (None, 0) when the entry cannot be used."""
        state, offset, fingerprinted = _reusable(entry, events, stat.st_size, stat, check)
        self.reads += fingerprinted
        return state, offset

    def forget_missing(self, root: Path, listed: list[Path]) -> None:
        """Drop the entries of runs under ``root`` that are gone (deleted run directories)."""
        prefix = str(root.absolute()) + os.sep
        keep = {str(p.absolute()) for p in listed}
        with self._lock:
            entries = self._load()
            for key in [k for k in entries if k.startswith(prefix) and k not in keep]:
                del entries[key]
                self._memo.pop(key, None)
                self._dirty = True

    def save(self, force: bool = False) -> None:
        """Write the index if it changed, at most every ``SAVE_EVERY_S`` (a live run changes it every tick;
        what a later process misses it folds from the older offset). A failure (read-only cache folder)
        only costs the next process a fold."""
        with self._lock:
            if not self._dirty or self._entries is None:
                return
            now = time.monotonic()
            if not force and self._saved is not None and now - self._saved < SAVE_EVERY_S:
                return
            self._saved = now
            data = json.dumps({"version": [CACHE_VERSION, EVENTS_VERSION], "runs": self._entries})
            self._dirty = False
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(data, encoding="utf-8")
            tmp.replace(self.path)
        except OSError:
            tmp.unlink(missing_ok=True)


def read_run_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run directory's ``summary.json`` as a cache entry, or None when absent or not of this version."""
    try:
        data = json.loads((run_dir / RUN_SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deep to read
        return None
    if not isinstance(data, dict) or data.get("version") != [CACHE_VERSION, EVENTS_VERSION]:
        return None
    return data


class SummarizingWriter(EventWriter):
    """An :class:`EventWriter` that also keeps the run directory's ``summary.json`` current.

    The summary is the fold of the file itself (read back from where the last one ended), not of what this
    writer wrote, so events appended by another process in between are in it too. Writing it is never a
    reason for a run to fail: an error only leaves the previous summary, which readers check anyway.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._summary_lock = threading.Lock()
        self._reader: RunReader | None = None
        self._summarised = -RUN_SUMMARY_EVERY_S

    def emit(self, event: E) -> E:
        written = super().emit(event)
        if isinstance(event, StatusEvent) or time.monotonic() - self._summarised >= RUN_SUMMARY_EVERY_S:
            self.write_summary()
        return written

    def close(self) -> None:
        super().close()
        self.write_summary()

    def write_summary(self) -> None:
        run_dir = self.path.parent
        with self._summary_lock:
            self._summarised = time.monotonic()
            tmp = run_dir / f".{RUN_SUMMARY_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
            try:
                if self._reader is None:
                    self._reader = _resumed_reader(run_dir)
                self._reader.update()
                offset = self._reader.offset
                entry = {
                    "version": [CACHE_VERSION, EVENTS_VERSION],
                    "offset": offset,
                    "fingerprint": _fingerprint(self.path, offset),
                    "state": self._reader.state.scalars_json(),
                }
                tmp.write_text(json.dumps(entry, default=str), encoding="utf-8")
                tmp.replace(run_dir / RUN_SUMMARY_FILE)
            except Exception:  # a full disk or a read-only folder: readers fold the events instead
                tmp.unlink(missing_ok=True)


def _resumed_reader(run_dir: Path) -> RunReader:
    """A reader that folds on from the run's existing summary when it still matches the file (a resumed
    run's writer then reads only what came after it), else from the start."""
    events = run_dir / EVENTS_FILE
    try:
        size = events.stat().st_size
    except OSError:
        size = 0
    state, offset, _ = _reusable(read_run_summary(run_dir), events, size, check=True)
    return RunReader(run_dir, state or RunState(curves=False), offset)


def _reusable(
    entry: Any, events: Path, size: int, stat: os.stat_result | None = None, check: bool = False
) -> tuple[RunState | None, int, bool]:
    """(the entry's state, the offset to fold on from, whether the file was opened to check it), or
    (None, 0, …) when the entry cannot be used. With ``stat``, an entry recorded at the file's own size and
    mtime is taken as it is; otherwise the bytes before its offset must be the ones it recorded, and with
    ``check`` (a run's own ``summary.json``, which anyone may have written) its figures must agree with the
    events before its offset (:func:`_agrees`)."""
    opened = False
    if not isinstance(entry, dict):
        return None, 0, opened
    try:
        offset = entry["offset"]
        if not isinstance(offset, int) or not 0 <= offset <= size:
            return None, 0, opened
        if stat is None or entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns:
            opened = True
            before = _bytes_before(events, offset, TAIL_CHECK_BYTES if check else FINGERPRINT_BYTES)
            if before is None or before[-FINGERPRINT_BYTES:].hex() != entry.get("fingerprint"):
                return None, 0, opened  # not the file that was folded: start again
            state = RunState.from_scalars(entry["state"])
            if check and not _agrees(state, before, whole=len(before) == offset):
                return None, 0, opened  # its figures are not its events': the events win
            return state, offset, opened
        return RunState.from_scalars(entry["state"]), offset, opened
    except (KeyError, TypeError, ValueError):
        return None, 0, opened


TAIL_CHECK_BYTES = 8192
"""How much of the events before a ``summary.json``'s offset is folded again to check its figures."""
_AGREEING = (
    "status",
    "cause",
    "step",
    "max_steps",
    "epoch",
    "last_loss",
    "last_reward",
    "best_loss",
    "last_eval_loss",
    "best_checkpoint",
    "adapter",
)
"""The figures that folding an event a second time leaves as they were (each the latest, highest or lowest)."""
_IDLE_KINDS = (b'"telemetry"', b'"log"', b'"sample"', b'"completions"')
"""Lines of these kinds set none of :data:`_AGREEING`: not parsed (most of a window is telemetry). A quoted
word inside a JSON string is escaped (``\\"log\\"``), so only a kind (or a key) matches; skipping a line
more than needed only checks less, it never drops a good summary."""


def _agrees(state: RunState, before: bytes, whole: bool) -> bool:
    """The summary's figures are the ones its last events set: those events, folded again onto it, change none
    of :data:`_AGREEING`. So a summary that says ``failed`` over events whose last status is ``done`` (edited,
    or written by a buggy writer) is dropped and the events folded instead."""
    lines = before.split(b"\n")
    again = copy.copy(state)  # scalars only (curves=False): folding assigns new values, appends to nothing
    for raw in lines if whole else lines[1:]:  # the first piece of a window is the end of a line
        if raw.strip() and not any(kind in raw for kind in _IDLE_KINDS):
            try:
                again.apply(parse_event(json.loads(raw)))
            except (ValueError, RecursionError):
                continue
    return all(_same(getattr(again, name), getattr(state, name)) for name in _AGREEING)


def _same(a: Any, b: Any) -> bool:
    return a == b or (a != a and b != b)  # NaN is itself here


def _bytes_before(events: Path, offset: int, count: int) -> bytes | None:
    try:
        with events.open("rb") as handle:
            handle.seek(max(0, offset - count))
            return handle.read(min(offset, count))
    except OSError:
        return None


def _fingerprint(events: Path, offset: int) -> str | None:
    try:
        with events.open("rb") as handle:
            handle.seek(max(0, offset - FINGERPRINT_BYTES))
            return handle.read(min(offset, FINGERPRINT_BYTES)).hex()
    except OSError:
        return None


_CACHES: dict[Path, SummaryCache] = {}
_CACHES_LOCK = threading.Lock()


def summary_cache() -> SummaryCache:
    """This process's cache for the current ``$XDG_CACHE_HOME``."""
    path = cache_dir() / CACHE_FILE
    with _CACHES_LOCK:
        cache = _CACHES.get(path)
        if cache is None:
            cache = _CACHES[path] = SummaryCache(path)
        return cache
