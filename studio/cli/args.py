"""The CLI's command-line rules beyond argparse: overrides anywhere on the line, the TUI only at a terminal.

argparse fills a ``nargs="*"`` positional from one run of words, so in ``studio train R --no-start
train.max_steps=12`` the override after the flag is left over as an "unrecognized argument". :func:`parse` gives
every such left-over word to the command's overrides, in command-line order, for the commands that declared
them (:func:`takes_overrides`); a left-over flag, or a word for a command without overrides, is still refused
naming it. A malformed override (``max_steps``, no ``=``) reaches the registry, whose message names it.

:func:`require_terminal` refuses to open the TUI when stdin or stdout is not a terminal: drawn into a pipe, the
TUI would wait for keys forever; the message names the command to use instead.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from lorastudio.errors import StudioError

_SPEC = "_overrides_spec"
"""Namespace attribute: (the dest of the command's name words, the dest its overrides go to)."""

_OVERRIDE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*=")


def takes_overrides(parser: argparse.ArgumentParser, into: str = "overrides", name: str = "recipe") -> None:
    """Let ``parser``'s command take dotted overrides anywhere on its line.

    ``into`` is the dest of its ``nargs="*"`` overrides positional, ``name`` the dest of the recipe it names (a
    single word, or a list of words as ``validate FILE...``: then ``into`` is filled by the override words)."""
    parser.set_defaults(**{_SPEC: (name, into)})


def looks_like_override(word: str) -> bool:
    """``train.max_steps=12`` (a key, ``=``): an override, unless a file of that name is there."""
    return bool(_OVERRIDE.match(word)) and not Path(word).exists()


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args``, with words left over after a flag given to the command's overrides."""
    args, extra = parser.parse_known_args(argv)
    spec = getattr(args, _SPEC, None)
    flags = [word for word in extra if word.startswith("-")]
    if flags or (extra and spec is None):
        parser.error(f"unrecognized arguments: {' '.join(flags or extra)}")
    if spec is not None:
        name, into = spec
        _place(args, name, into, extra)
        delattr(args, _SPEC)
    return args


def _place(args: argparse.Namespace, name: str, into: str, extra: list[str]) -> None:
    """Split the command's positional words into its name(s) and its overrides, each in line order."""
    named = getattr(args, name, None)
    if isinstance(named, list):  # validate FILE... [overrides]: every word that is not an override is a file
        words = [*named, *(getattr(args, into, None) or []), *extra]
        files = [w for w in words if not looks_like_override(w)] or named[:1]  # only overrides: load names it
        setattr(args, name, files)
        setattr(args, into, [w for w in words if w not in files])
        return
    words = ([named] if named is not None else []) + [*getattr(args, into), *extra]
    # An override before the name (``train x=1 RECIPE``) took the name's place: the name is the first word
    # that is not an override, wherever it stands.
    first = next((w for w in words if not looks_like_override(w)), None)
    if named is not None and first is None:
        first = named  # only overrides: leave the name as given, the registry names it
    if first is not None:
        words.remove(first)
    setattr(args, name, first)
    setattr(args, into, words)


def require_terminal(command: str, opens: str, instead: str) -> None:
    """Refuse (exit 2 through :class:`StudioError`) to open the TUI unless stdin and stdout are terminals."""
    missing = [name for name, stream in (("stdin", sys.stdin), ("stdout", sys.stdout)) if not _tty(stream)]
    if missing:
        raise StudioError(
            f"{command} opens {opens}, which needs a terminal ({' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not one); {instead}"
        )


def _tty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
