"""A run's ``events.jsonl`` on disk: the writer that appends the typed events of ``events.py`` and the tail
that reads what was appended since the last read.

Writers flush every line; readers keep a byte offset, so a long run costs the same per refresh as a short
one, and a half-written last line is left for the next read. Readers fold what they read through
``runstate.RunState``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from pathlib import Path

from lorastudio.train.run.events import E, Event, MalformedEvent, RawEvent, UnknownEvent, parse_event

EVENTS_FILE = "events.jsonl"


def checked_event(event: E) -> E:
    """``event`` stamped now when its ``t`` is None, and read back from its JSON form as a reader will read it:
    a numpy scalar becomes the number it is, a value of the wrong type raises :class:`MalformedEvent`."""
    if event.t is None:
        event = dataclasses.replace(event, t=round(time.time(), 3))
    if isinstance(event, UnknownEvent):
        return event
    checked = parse_event(event.to_json())
    if type(checked) is not type(event):
        raise MalformedEvent(f"{type(event).__name__} is not a registered kind")
    return checked


class EventWriter:
    """Appends events; safe to call from the trainer thread and the telemetry thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._handle = path.open("a", encoding="utf-8")

    def emit(self, event: E) -> E:
        """Write ``event`` (stamped now when its ``t`` is None) as the line a reader will read; returns it as
        read back. A value of the wrong type raises :class:`MalformedEvent` and writes nothing."""
        checked = checked_event(event)
        line = json.dumps(checked.to_json(), default=str) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()
        return checked

    def close(self) -> None:
        with self._lock:
            if not self._handle.closed:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()


class EventTail:
    """Reads the lines appended since the last call; a half-written last line waits for its newline."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self.skipped = 0
        """Lines that were not JSON objects with a kind, or (for :meth:`read_events`) malformed events."""
        self.reads = 0
        """How many times the file was opened (the listing cache's tests count them)."""
        self.lines = 0
        """Complete lines read (blank and skipped ones too)."""
        self.first_bad: tuple[int, str] | None = None
        """(its number among :attr:`lines`, why) of the first line :meth:`read_events` skipped."""
        self.pending = 0
        """Bytes after the last complete line: a line being written, or one cut off."""

    def _complete_lines(self, max_bytes: int | None) -> list[bytes]:
        try:
            with self.path.open("rb") as handle:
                self.reads += 1
                handle.seek(self.offset)
                chunk = handle.read(max_bytes) if max_bytes else handle.read()
                size = os.fstat(handle.fileno()).st_size
        except OSError:  # missing, or not a readable file (a folder): nothing to read; damage.py says why
            return []
        end = chunk.rfind(b"\n")
        self.pending = max(0, size - self.offset - (end + 1))
        if end < 0:
            return []  # nothing complete yet
        self.offset += end + 1
        return chunk[:end].split(
            b"\n"
        )  # by newlines alone, as the writer ends lines (and `sed -n Np` counts)

    def _skip(self, index: int, why: str) -> None:
        self.skipped += 1
        if self.first_bad is None:
            self.first_bad = (self.lines + index + 1, why)

    def read_new(self, max_bytes: int | None = None) -> list[RawEvent]:
        """The new lines as JSON objects (readers fold :meth:`read_events` instead)."""
        events = []
        lines = self._complete_lines(max_bytes)
        for raw in lines:
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except (ValueError, RecursionError):  # RecursionError: nested too deep for Python's reader
                self.skipped += 1
                continue
            if isinstance(value, dict) and "kind" in value:
                events.append(value)
            else:
                self.skipped += 1
        self.lines += len(lines)
        return events

    def read_events(self, max_bytes: int | None = None) -> list[Event]:
        """The new lines as typed events; malformed lines are skipped and counted in ``skipped``."""
        events = []
        lines = self._complete_lines(max_bytes)
        for index, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                events.append(parse_event(json.loads(raw)))
            except MalformedEvent as exc:
                self._skip(index, str(exc))
            except (ValueError, RecursionError):  # not JSON, not UTF-8 text, or nested too deep to read
                self._skip(index, "not JSON")
        self.lines += len(lines)
        return events


def read_all(path: Path) -> list[RawEvent]:
    """Every complete line as JSON (for tests and tools that check what the file holds)."""
    return EventTail(path).read_new()


def read_events(path: Path) -> list[Event]:
    """Every complete line as a typed event."""
    return EventTail(path).read_events()
