"""A linear template's render as the word encoder sees it: constant token runs, and the stretches that hold contents.

The tokenizer cuts its input at added tokens (``<|im_start|>``) before it splits words, so every
stretch of a render between two added tokens is tokenized on its own. Where the template puts an
added token between turns, most stretches are wholly constant (the role names, an empty think
block): their ids are found once, here, and a row only splits and looks up the stretches that hold
its contents, with the constant text beside them. The edges of each trained span are placed once
too: an edge in a constant run is a fixed token of it, and an edge in a stretch is a fixed
distance into one of its constant parts.

This holds only while no added token can begin inside a content (a content holding an added
token's first character goes to :meth:`ByteLevelWords.encode` with the whole render) and none can
reach from a piece into the content after it (such a layout gets no plan). A row is encoded with
its plan by :meth:`ByteLevelWords.encode_plan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lorastudio.data.prepared.bytelevel import ByteLevelWords, Edge, Segment, WordPlan


@dataclass
class _Atom:
    kind: str  # "text", "added" or "content"
    text: str  # for a content: ""
    piece: int  # the piece it comes from (a content: its index)
    start: int  # its offset in that piece
    segment: int = -1
    part: int = -1  # -1: in a constant run, ``offset`` chars into the run's text
    offset: int = 0


class _NoPlan(Exception):
    """A constant the word encoder cannot place exactly."""


def make_plan(
    words: ByteLevelWords, pieces: Sequence[str], spans: Sequence[tuple[int, int, int, int]]
) -> WordPlan | None:
    """The plan of the render ``pieces[0] + c0 + pieces[1] + ... + pieces[n]``. ``spans``: each trained span as
    (piece of its start, offset in that piece, piece of its end, offset in that piece). None where a plan
    would not be exact."""
    added = words.added_tokens
    if any(piece.endswith(t[:j]) for piece in pieces[:-1] for t in added for j in range(1, len(t))):
        return None  # an added token could begin in a piece and end in the content after it
    atoms: list[_Atom] = []
    for index, piece in enumerate(pieces):
        at = 0
        for k, text in enumerate(words.split_added(piece)):
            atoms.append(_Atom("added" if k % 2 else "text", text, index, at))
            at += len(text)
        if index < len(pieces) - 1:
            atoms.append(_Atom("content", "", index, 0))
    segments: list[Segment] = []
    runs: dict[int, tuple[list[str], list[bytes]]] = {}
    run: list[_Atom] = []
    group: list[_Atom] = []

    def close_run() -> None:
        if not run:
            return
        text, at = "", 0
        for atom in run:
            atom.segment, atom.part, atom.offset = len(segments), -1, at
            at += len(atom.text)
            text += atom.text
        units = words.units_of(text)
        if units is None:
            raise _NoPlan
        runs[len(segments)] = units
        segments.append(b"".join(units[1]))
        run.clear()

    def close_group() -> None:
        if not any(a.kind == "content" for a in group):
            run.extend(group)  # a wholly constant stretch joins the run
            group.clear()
            return
        close_run()
        parts: list[str | int] = [""]
        for atom in group:
            if atom.kind == "content":
                parts += (atom.piece, "")
            else:
                atom.segment, atom.part, atom.offset = len(segments), len(parts) - 1, len(str(parts[-1]))
                parts[-1] = str(parts[-1]) + atom.text
        segments.append(tuple(parts))
        group.clear()

    try:
        for atom in atoms:
            if atom.kind == "added":
                close_group()
                run.append(atom)
            else:
                group.append(atom)
        close_group()
        close_run()
        edges = []
        for start_piece, start_at, end_piece, end_at in spans:
            first = _edge(atoms, start_piece, start_at, runs, words, after=False)
            stop = _edge(atoms, end_piece, end_at, runs, words, after=True)
            edges.append((first, stop))
    except _NoPlan:
        return None
    guard = "".join(sorted({t[0] for t in added}))
    inside = frozenset(edge[0] for pair in edges for edge in pair if edge[1] >= 0)
    return WordPlan(tuple(segments), tuple(edges), guard, inside)


def _edge(
    atoms: Sequence[_Atom],
    piece: int,
    at: int,
    runs: dict[int, tuple[list[str], list[bytes]]],
    words: ByteLevelWords,
    after: bool,
) -> Edge:
    """Where char ``at`` of piece ``piece`` falls: in the atom holding it, else in the one it ends."""
    mine = [a for a in atoms if a.piece == piece and a.kind != "content"]
    found = [a for a in mine if a.start <= at < a.start + len(a.text)] or [
        a for a in mine if a.start + len(a.text) == at
    ][-1:]
    if not found:
        raise _NoPlan
    atom = found[0]
    offset = atom.offset + at - atom.start
    if atom.part >= 0:
        return atom.segment, atom.part, offset
    units, ids = runs[atom.segment]
    token = words.token_at(units, ids, offset, after)
    if token is None:
        raise _NoPlan
    return atom.segment, -1, token
