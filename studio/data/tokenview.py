"""Render an encoded sample as text where trained and masked tokens look different.

Shared by ``studio preview`` and the Preview screen. Without colour (``NO_COLOR``)
trained tokens are still told apart: they are underlined and bracketed by
``⟦ ⟧`` at the edges of each trained run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from lorastudio.data.encode import IGNORE_INDEX, Encoded

TRAINED_STYLE = "bold green underline"
MASKED_STYLE = "dim"
SPECIAL_STYLE = "magenta"


@dataclass(frozen=True)
class Piece:
    """One token as shown: its text, id, whether loss is taken on it, and whether it is special."""

    text: str
    token_id: int
    trained: bool
    special: bool


def pieces(tokenizer: Any, sample: Encoded, context: Sequence[int] = ()) -> list[Piece]:
    """The sample's tokens as shown; ``context`` is the ids before them (a reply's prompt), read for the
    first pieces' spacing only."""
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special_ids |= {i for i, t in added.items() if getattr(t, "special", False)}
    texts = piece_texts(tokenizer, list(sample.input_ids), context)
    shown = [
        Piece(text, token_id, label != IGNORE_INDEX, token_id in special_ids)
        for text, token_id, label in zip(texts, sample.input_ids, sample.labels, strict=True)
    ]
    # An image's tokens (a vision sample's, studio/data/imagerows.py) show as one marked span: [image 1: 384x384].
    for number, span in reversed(list(enumerate(getattr(sample, "image_spans", ()), 1))):
        first = sample.input_ids[span.start] if span.start < len(sample.input_ids) else -1
        shown[span.start : span.end] = [Piece(span.label(number), first, False, True)]
    return shown


PARTIAL = "\ufffd"
"""What a decode ends with while a character's UTF-8 bytes are split over tokens still to come."""


def piece_texts(tokenizer: Any, ids: list[int], context: Sequence[int] = ()) -> list[str]:
    """Each token's share of the decoded text, so that the pieces joined are the decoded whole.

    A token decoded on its own is not its share: SentencePiece tokenizers (Llama-2, Mistral, Gemma) drop
    the space it starts with ("▁the" alone is "the"), and a character whose bytes span tokens (emoji, CJK)
    comes out as one "\ufffd" per token. So each token is decoded after the one or two before it and
    given what it adds (the incremental detokenizing servers stream with); a token ending inside a
    character adds nothing, and the one completing it adds the whole character.
    """

    def decode(part: Sequence[int]) -> str:
        return str(
            tokenizer.decode(list(part), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        )

    full_ids = [*context[-4:], *ids]
    start = len(full_ids) - len(ids)
    out: list[str] = []
    prefix_at, read_at = max(0, start - 1), start  # decoded context: full_ids[prefix_at:read_at] is shown
    for i in range(start, len(full_ids)):
        before = decode(full_ids[prefix_at:read_at])
        after = decode(full_ids[prefix_at : i + 1])
        if after.endswith(PARTIAL) and i + 1 < len(full_ids) and i + 1 - read_at < 4:
            out.append("")  # the character is finished by a later token (4 bytes at most)
            continue
        out.append(after[len(before) :] if after.startswith(before) else decode(full_ids[read_at : i + 1]))
        prefix_at, read_at = read_at, i + 1
    return out


def render(
    items: list[Piece],
    *,
    boundaries: bool = False,
    show_special: bool = True,
    show_ids: bool = False,
    no_color: bool = False,
    highlight: str | None = None,
    documents: Sequence[int] = (),
) -> Text:
    """``documents``: where each document of a packed sequence starts (a marker line before each but the first)."""
    text = Text()
    previous_trained = False
    starts = set(documents)
    for index, piece in enumerate(items):
        if index in starts and index:
            if previous_trained:
                text.append("⟧", style="bold")
                previous_trained = False
            text.append(
                f"\n── document {sorted(starts).index(index) + 1} (positions restart at 0) ──\n",
                style="bold cyan",
            )
        if piece.special and not show_special:
            continue
        shown = piece.text
        if show_ids:
            shown = f"{shown}({piece.token_id})"
        if boundaries and index:
            text.append("│", style="dim")
        if piece.trained and not previous_trained:
            text.append("⟦", style="bold")
        if not piece.trained and previous_trained:
            text.append("⟧", style="bold")
        previous_trained = piece.trained
        if no_color:
            style = "underline" if piece.trained else ""
        else:
            style = (
                TRAINED_STYLE
                if piece.trained
                else (SPECIAL_STYLE + " dim" if piece.special else MASKED_STYLE)
            )
        text.append(shown, style=style)
    if previous_trained:
        text.append("⟧", style="bold")
    if highlight:
        text.highlight_words([highlight], style="reverse", case_sensitive=False)
    return text


def legend(no_color: bool = False) -> Text:
    text = Text()
    text.append("⟦trained⟧", style="underline" if no_color else TRAINED_STYLE)
    text.append("  ")
    text.append("masked (label -100)", style="" if no_color else MASKED_STYLE)
    return text


def sample_json(items: list[Piece], sample: Encoded, index: int) -> dict[str, Any]:
    return {
        "index": index,
        "tokens": len(sample.input_ids),
        "trained_tokens": sample.trained_count,
        "truncated": sample.truncated,
        "full_length": sample.full_length,
        "notes": list(sample.notes),
        "pieces": [
            {"id": p.token_id, "text": p.text, "trained": p.trained, "special": p.special} for p in items
        ],
    }
