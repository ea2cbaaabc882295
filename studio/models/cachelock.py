"""One process at a time builds a cached model folder; the others wait, then find it built.

A wait is never silent: the builder writes its pid into the lock file, and a waiter reports through its
progress callback what it waits for, for whom and since when ("waiting for another studio process (pid 812)
building the tiny model, 0:42"), about once a second, so the Preview, the Monitor's log and the CLI's
stderr say why nothing moves (a tiny model build or a GGUF dequantize takes minutes on a small machine).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from lorastudio.progress import Progress

POLL_S = 0.1
"""How often a waiter tries the lock again (flock cannot time out, so the wait is a loop of tries)."""
REPORT_EVERY_S = 1.0
"""How often a waiter says it still waits."""
WAITING = "waiting for another"
"""How every wait message starts (the Monitor finds the worker's in its log by it)."""


def lock_path(target: Path) -> Path:
    """The lock file of ``target``: beside it, hidden."""
    return target.parent / f".{target.name}.lock"


def holder_pid(handle: IO[str]) -> int | None:
    """The pid the lock's holder wrote in it (None: not written yet, or not a number)."""
    try:
        handle.seek(0)
        return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def waiting_message(what: str, pid: int | None, waited_s: float) -> str:
    """``waiting for another studio process (pid N) building the tiny model, 0:42``."""
    minutes, seconds = divmod(int(waited_s), 60)
    if pid is None:
        who = "studio process"
    elif pid == os.getpid():
        who = f"thread of this process (pid {pid})"
    else:
        who = f"studio process (pid {pid})"
    return f"{WAITING} {who} {what}, {minutes}:{seconds:02d}"


@contextlib.contextmanager
def folder_lock(
    target: Path,
    what: str = "building this cache entry",
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Iterator[None]:
    """An ``flock`` beside ``target`` (released by the kernel if the holder dies), held while building it.

    While another holder has it, ``progress`` hears (fraction 0) who builds ``what`` and for how long this
    one has waited; ``cancelled`` returning True ends the wait with :class:`LockWaitCancelled`. The lock also
    keeps threads of one process apart (each opens its own file description).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # "a+", not "w": opening must not erase the holder's pid, which the waiters read
    with open(lock_path(target), "a+") as handle:
        _acquire(handle, what, progress, cancelled)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()} {threading.get_ident()}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class LockWaitCancelled(Exception):
    """The waiter gave up (its ``cancelled`` said so) before the lock was free."""


def _acquire(
    handle: IO[str], what: str, progress: Progress | None, cancelled: Callable[[], bool] | None
) -> None:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    started = time.monotonic()
    reported = -REPORT_EVERY_S
    while True:
        waited = time.monotonic() - started
        if progress is not None and waited - reported >= REPORT_EVERY_S:
            reported = waited
            progress(0.0, waiting_message(what, holder_pid(handle), waited))
        if cancelled is not None and cancelled():
            raise LockWaitCancelled(what)
        time.sleep(POLL_S)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            continue
