"""Run references: the one reading of what names a run, for every command, the TUI and the MCP server.

A reference is tried as, in this order:

1. a path to a run directory (it holds ``run.json``): absolute, relative to the current folder, or relative
   to the runs folder (``NAME/``, as a shell completes it); ``RUN/checkpoints/checkpoint-N`` and
   ``RUN/adapter`` too where a checkpoint is taken;
2. a run's exact name;
3. ``latest``: the newest run (by creation time);
4. a recipe's name: that recipe's newest run (``tiny-pirate`` is the newest ``tiny-pirate-YYYYMMDD-HHMMSS``,
   never a ``tiny-pirate-grpo-…`` run);
5. a unique prefix of one run's name.

Where a command takes a checkpoint (chat, ``--from``, ``model.adapter``) the reference may end in ``@best``,
``@latest``, ``@final`` or ``@checkpoint-N`` (``@N``). Refused with one line naming the reference and the
candidates: an empty reference, a glob metacharacter (``* ? [ ]``: nothing is ever globbed), a path that is
not a run directory, a prefix several runs share, a checkpoint where the command takes a run. Destructive
commands (``runs delete``, ``stop``) take only an exact name or a path: ``latest``, a recipe's name or a
prefix is refused with the run it would have meant, so a script's unset ``$RUN`` deletes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lorastudio.errors import RunError
from lorastudio.train.run.rundir import RUN_FILE, read_meta

WILDCARDS = "*?[]"
"""Glob metacharacters: a reference holding one is refused, never matched (a run's name never holds one)."""
STAMP = r"-\d{8}-\d{6}(-\d+)?"
"""What ``create_run`` puts after a recipe's name: ``-YYYYMMDD-HHMMSS``, ``-K`` when that second was taken."""
FOUND_BY = {
    "latest": "the newest run",
    "recipe": "its recipe's newest run",
    "prefix": "the one run whose name starts so",
}
"""How a loose reference found its run, said wherever it is taken (the run may not be the one meant)."""
SHOWN = 5
"""Candidates named in a message; the rest are counted."""


@dataclass(frozen=True)
class RunRef:
    """A resolved reference: the run directory, the checkpoint named after ``@`` and how the run was found."""

    reference: str
    """As given."""
    path: Path
    """The run directory."""
    which: str | None = None
    """``best``, ``latest``, ``final`` or ``checkpoint-N``; None when none was named (the final adapter)."""
    how: str = "name"
    """``path``, ``name`` (exact), ``latest``, ``recipe`` (its newest run) or ``prefix``."""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def exact(self) -> bool:
        """The reference named this run itself, not the newest or only run matching it."""
        return self.how in ("path", "name")


def _is_run_dir(path: Path) -> bool:
    try:
        return (path / RUN_FILE).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


def run_dirs(root: Path) -> list[Path]:
    """Every run directory under ``root``, newest first (by ``run.json``'s creation time, then name)."""
    try:
        found = [p for p in root.iterdir() if _is_run_dir(p)]
    except OSError:
        return []
    return sorted(found, key=lambda p: (float(read_meta(p).get("created") or 0), p.name), reverse=True)


def candidates(paths: list[Path]) -> str:
    """``a, b, c`` (at most ``SHOWN``, then how many more)."""
    names = [p.name for p in paths[:SHOWN]]
    more = f" and {len(paths) - SHOWN} more (see `studio runs`)" if len(paths) > SHOWN else ""
    return ", ".join(names) + more


def _newest(root: Path) -> str:
    runs = run_dirs(root)
    return f"newest: {candidates(runs)}" if runs else f"no runs yet in {root}"


def split_checkpoint(reference: str) -> tuple[str, str | None]:
    """``NAME@WHICH`` -> (NAME, WHICH normalised: best, latest, final or checkpoint-N); (reference, None) when
    it has no ``@`` or is a path that exists as written. An unknown WHICH is refused."""
    try:
        exists = Path(reference).expanduser().exists()
    except (OSError, ValueError):
        exists = False
    if "@" not in reference or exists:
        return reference, None
    name, which = reference.rsplit("@", 1)
    if which in ("best", "latest", "final"):
        return name, which
    if which == "adapter":
        return name, "final"
    if m := re.fullmatch(r"(?:checkpoint-)?(\d+)", which):
        return name, f"checkpoint-{int(m.group(1))}"
    raise RunError(
        f"{reference!r}: {f'unknown checkpoint {which!r}' if which else 'nothing'} after the @ "
        "(say @best, @latest, @final or @checkpoint-N)"
    )


def _looks_like_path(reference: str) -> bool:
    return "/" in reference or reference.startswith(("~", ".")) or reference in (".", "..")


def _in_run(path: Path) -> tuple[Path, str] | None:
    """(run directory, which) when ``path`` is a run's ``checkpoints/checkpoint-N`` or ``adapter`` folder."""
    if path.name in ("adapter", "model") and _is_run_dir(path.parent):  # model: a full or freeze run's
        return path.parent, "final"
    checkpoint = re.fullmatch(r"checkpoint-\d+", path.name) and path.parent.name == "checkpoints"
    if checkpoint and _is_run_dir(path.parent.parent):
        return path.parent.parent, path.name
    return None


def resolve_run(
    reference: str | Path,
    root: Path | None = None,
    *,
    checkpoint: bool = False,
    exact: str | None = None,
) -> RunRef:
    """The run ``reference`` names (see the module docstring), or a :class:`RunError` naming it.

    ``checkpoint``: the command takes ``@best``/``@latest``/``@final``/``@checkpoint-N`` and checkpoint folder
    paths. ``exact``: what the command does (``delete``, ``stop``), for a destructive command: only an exact
    name or a path is taken.
    """
    from lorastudio.paths import runs_dir

    text = str(reference)
    root = root or runs_dir()
    if not text.strip():
        raise RunError(
            f"empty run reference {text!r}: name a run, give its path, or say latest ({_newest(root)})"
        )
    given = _path_ref(text, root, checkpoint)
    if given is not None:
        return given
    name, which = split_checkpoint(text) if "@" in text else (text, None)
    if not name.strip():
        raise RunError(f"{text!r}: no run named before the @ ({_newest(root)})")
    if which is not None and not checkpoint:
        raise RunError(f"{text!r}: this command takes a run, not one of its checkpoints (give {name!r})")
    if which is not None and (run := _path_ref(name, root, False)) is not None:
        return RunRef(text, run.path, which, "path")
    if any(c in name for c in WILDCARDS):
        raise RunError(
            f"{text!r}: run references take no wildcards ({' '.join(WILDCARDS)}); name one run ({_newest(root)})"
        )
    if _looks_like_path(name):
        raise RunError(f"{name!r} is not a run directory (no {RUN_FILE} in it; see `studio runs`)")
    if _is_run_dir(root / name):
        return RunRef(text, root / name, which, "name")
    found = _loose(name, root)
    if found is None:
        raise RunError(f"no such run: {name!r} (see `studio runs`)")
    path, how = found
    if exact:
        raise RunError(
            f"{text!r} is not a run's exact name (it means {path.name}, {FOUND_BY[how]}); "
            f"to {exact} a run give its exact name or path"
        )
    return RunRef(text, path, which, how)


def _path_ref(text: str, root: Path, checkpoint: bool) -> RunRef | None:
    """A reference that is a run directory's path (or, with ``checkpoint``, a checkpoint folder's)."""
    try:
        given = Path(text).expanduser()
    except (RuntimeError, ValueError):  # ~nosuchuser
        return None
    tries = [given] if given.is_absolute() or not _looks_like_path(text) else [given, root / given]
    for path in tries:
        if _is_run_dir(path):
            return RunRef(text, _entry(path, root), None, "path")
        inside = _in_run(path) if checkpoint else None
        if inside is not None:
            return RunRef(text, inside[0].resolve(), inside[1], "path")
    return None


def _entry(path: Path, root: Path) -> Path:
    """The run directory's absolute path; a link in the runs folder stays the link, the run as listed (so
    ``runs delete`` by path, as by name, takes the link away and keeps the folder it points to)."""
    try:
        if path.is_symlink() and path.parent.resolve() == root.resolve():
            return root.resolve() / path.name
    except OSError:
        pass
    return path.resolve()


def _loose(name: str, root: Path) -> tuple[Path, str] | None:
    """``latest``, a recipe's newest run, or the one run whose name starts with ``name`` (None: no match)."""
    runs = run_dirs(root)
    if name == "latest":
        if not runs:
            raise RunError(f"'latest': no runs yet in {root}")
        return runs[0], "latest"
    own = [p for p in runs if re.fullmatch(re.escape(name) + STAMP, p.name)]
    if own:
        return own[0], "recipe"
    matches = [p for p in runs if p.name.startswith(name)]
    if len(matches) > 1:
        raise RunError(
            f"{name!r} is the start of {len(matches)} runs' names: {candidates(matches)}; give one's full name"
        )
    return (matches[0], "prefix") if matches else None


def describe(ref: RunRef, adapter: Path | None) -> str:
    """``run NAME, checkpoint-8 (its best)``: which run and adapter a reference took, for a line on stderr."""
    if adapter is None:
        part = "the base model alone"
    elif adapter.name == "adapter":
        part = "its final adapter"
    elif adapter.name == "model" and adapter.parent == ref.path:
        part = "its final model"
    else:
        part = adapter.name + {"best": " (its best)", "latest": " (its latest)"}.get(ref.which or "", "")
    found = f" ({FOUND_BY[ref.how]})" if ref.how in FOUND_BY else ""
    return f"run {ref.name}{found}, {part}"
