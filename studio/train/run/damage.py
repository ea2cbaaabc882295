"""Damaged run directories: what is wrong with a run's own files, in one line that names the file.

A run directory is written by studio, but anything can happen to it afterwards: a disk that filled up, a copy
cut short, an editor, a script. One damaged run must never break the listing of the others, nor any reader
(``studio runs``, compare, samples, resume, the Runs screen, the MCP tools): the listing shows it with the
status ``damaged`` and the reason as its cause, and the commands that need its records refuse it with that
reason (:func:`check_intact`). Nothing is repaired or deleted here; ``studio runs delete`` removes a run
whatever its state, and ``studio runs note RUN --clear`` replaces a note that is not text.

What counts as damage, first found first:

- ``run.json`` missing, unreadable, not UTF-8 JSON, not an object, or a known field of the wrong type
  (:func:`rundir.inspect_meta`);
- ``events.jsonl`` not a readable file (a folder), a line that is not an event (not JSON, not UTF-8, a field
  of the wrong type: the fold skips it and names the first), or, with no live worker, a last line cut off
  (bytes after the last newline: a live worker may be writing it);
- ``note.txt`` not UTF-8 text, or not a file;
- ``checkpoints`` not a folder.

``summary.json`` is no record: it is a cache of the events, checked against them and dropped when it does not
match (``summaries.py``), so a garbage one never makes a run damaged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from lorastudio.errors import RunError
from lorastudio.train.run.eventlog import EVENTS_FILE
from lorastudio.train.run.events import Status
from lorastudio.train.run.rundir import CHECKPOINTS_DIR, NOTE_FILE, inspect_meta
from lorastudio.train.run.runstate import RunState, load_state

DAMAGED: Status = "damaged"
"""The listing's status of a run whose files are damaged (its cause says which and how)."""


def events_problem(path: Path, state: RunState, live: Callable[[], bool] | None = None) -> str | None:
    """What is wrong with the run's ``events.jsonl`` as ``state`` (its fold) saw it, or None. ``live`` is
    called (only) when the file ends in a cut-off line, to tell a line being written from one that never
    will be."""
    events = path / EVENTS_FILE
    if events.is_dir():
        return f"{EVENTS_FILE} is a folder, not the run's event log"
    if events.exists() and not os.access(events, os.R_OK):
        return f"{EVENTS_FILE} cannot be read (permission denied)"
    if state.bad_line is not None:
        more = f" ({state.skipped} such lines)" if state.skipped > 1 else ""
        return f"{EVENTS_FILE}: {state.bad_line}{more}"
    if state.partial_bytes and not (live is not None and live()):
        return f"{EVENTS_FILE}: its last line is cut off ({state.partial_bytes} bytes after the last newline)"
    return None


def note_problem(path: Path) -> str | None:
    """What is wrong with the run's ``note.txt`` (not text, not a file), or None (also when it has none)."""
    note = path / NOTE_FILE
    try:
        note.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return f"{NOTE_FILE} is a folder, not the run's note"
    except OSError as exc:
        return f"{NOTE_FILE} cannot be read ({exc.strerror or exc})"
    except UnicodeDecodeError as exc:
        return (
            f"{NOTE_FILE} is not text (binary data at byte {exc.start}); "
            f"`studio runs note {path.name} --clear` replaces it"
        )
    return None


def other_problem(path: Path) -> str | None:
    """The run's side files: its note and its checkpoints folder."""
    checkpoints = path / CHECKPOINTS_DIR
    if checkpoints.exists() and not checkpoints.is_dir():
        return f"{CHECKPOINTS_DIR} is a file, not the folder of the run's checkpoints"
    return note_problem(path)


def run_problem(
    path: Path, state: RunState, meta_problem: str | None, live: Callable[[], bool] | None = None
) -> str | None:
    """The first thing wrong with the run's files (see the module docstring), or None."""
    return meta_problem or events_problem(path, state, live) or other_problem(path)


def check_intact(path: Path, live: Callable[[], bool], curves: bool = True) -> RunState:
    """The run's fold, for a command that needs the run's records (compare, samples); a damaged run is
    refused with a :class:`RunError` naming the file. ``live``: whether the run's worker is alive
    (``manage.intact_state`` passes it)."""
    meta_problem = inspect_meta(path)[1]
    state = load_state(path, curves=curves)
    problem = run_problem(path, state, meta_problem, live)
    if problem is not None:
        raise RunError(f"run {path.name} is damaged: {problem}")
    return state
