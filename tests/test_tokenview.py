"""Trained and masked tokens stay distinguishable with and without colour."""

from __future__ import annotations

from lorastudio.data.encode import Encoded
from lorastudio.data.tokenview import Piece, render, sample_json

PIECES = [
    Piece("<s>", 1, False, True),
    Piece("Q?", 2, False, False),
    Piece("Arr", 3, True, False),
    Piece("!", 4, True, False),
    Piece("<eot>", 5, True, True),
]


def _styles(text) -> dict[str, str]:
    return {text.plain[span.start : span.end]: str(span.style) for span in text.spans}


def test_colour_rendering_marks_trained_tokens() -> None:
    text = render(PIECES)
    assert text.plain == "<s>Q?⟦Arr!<eot>⟧"
    styles = _styles(text)
    assert "green" in styles["Arr"] and "underline" in styles["Arr"]
    assert styles["Q?"] == "dim"


def test_no_color_uses_underline_and_brackets_only() -> None:
    text = render(PIECES, no_color=True)
    assert text.plain == "<s>Q?⟦Arr!<eot>⟧"
    styles = _styles(text)
    assert styles["Arr"] == "underline" and "green" not in " ".join(styles.values())
    assert "Q?" not in styles or styles["Q?"] == ""


def test_toggles_boundaries_ids_and_specials() -> None:
    assert render(PIECES, boundaries=True).plain.count("│") == len(PIECES) - 1
    assert "Arr(3)" in render(PIECES, show_ids=True).plain
    assert "<s>" not in render(PIECES, show_special=False).plain


def test_sample_json_lists_each_token() -> None:
    sample = Encoded([1, 2, 3, 4, 5], [-100, -100, 3, 4, 5], False, 5)
    data = sample_json(PIECES, sample, 7)
    assert data["index"] == 7 and data["trained_tokens"] == 3
    assert [p["trained"] for p in data["pieces"]] == [False, False, True, True, True]
