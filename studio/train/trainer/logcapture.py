"""Route the worker's Python warnings and library log warnings into ``log`` events.

The worker's stdout/stderr go to ``worker.log``, but readers (the Monitor's log box,
``studio attach``) follow ``events.jsonl``; a warning that only reaches a file nobody
reads is lost. Each captured message becomes ``{"kind": "log", "level": "warning",
"message": ...}``; the same message is written once only, so a warning raised every
step does not flood the event log.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import TextIO

from lorastudio.train.run.eventlog import EventWriter
from lorastudio.train.run.events import LogEvent

LIBRARY_LOGGERS = ("transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes", "torch")
MAX_DISTINCT = 200


class _EventHandler(logging.Handler):
    def __init__(self, sink: _Sink) -> None:
        super().__init__(level=logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a log line must never take training down
            self.sink(record.levelname.lower(), f"{record.name}: {record.getMessage()}")


class _Sink:
    def __init__(self, writer: EventWriter) -> None:
        self.writer = writer
        self.seen: set[str] = set()

    def __call__(self, level: str, message: str) -> None:
        message = message.strip()
        if not message or message in self.seen or len(self.seen) >= MAX_DISTINCT:
            return
        self.seen.add(message)
        self.writer.emit(LogEvent(level=level, message=message))


def capture_warnings(writer: EventWriter) -> None:
    """Install the hooks for this process (the worker calls it once, after :func:`quiet_libraries`)."""
    sink = _Sink(writer)

    def showwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        sink("warning", f"{category.__name__}: {message}")

    warnings.showwarning = showwarning
    handler = _EventHandler(sink)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        # quiet_libraries() lowers these to errors to keep the terminal calm; the worker has no terminal
        # (its stdio is worker.log), and a warning it gets is what the Monitor's log box is for.
        logger.setLevel(logging.WARNING)
        logger.addHandler(handler)
