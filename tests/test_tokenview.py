"""Trained and masked tokens stay distinguishable with and without colour."""

from __future__ import annotations

import pytest

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
    assert "green" in styles["Arr"]
    assert "underline" in styles["Arr"]
    assert styles["Q?"] == "dim"


def test_no_color_uses_underline_and_brackets_only() -> None:
    text = render(PIECES, no_color=True)
    assert text.plain == "<s>Q?⟦Arr!<eot>⟧"
    styles = _styles(text)
    assert styles["Arr"] == "underline"
    assert "green" not in " ".join(styles.values())
    assert "Q?" not in styles or styles["Q?"] == ""


def test_toggles_boundaries_ids_and_specials() -> None:
    assert render(PIECES, boundaries=True).plain.count("│") == len(PIECES) - 1
    assert "Arr(3)" in render(PIECES, show_ids=True).plain
    assert "<s>" not in render(PIECES, show_special=False).plain


def test_sample_json_lists_each_token() -> None:
    sample = Encoded([1, 2, 3, 4, 5], [-100, -100, 3, 4, 5], False, 5)
    data = sample_json(PIECES, sample, 7)
    assert data["index"] == 7
    assert data["trained_tokens"] == 3
    assert [p["trained"] for p in data["pieces"]] == [False, False, True, True, True]


@pytest.mark.parametrize("family", ["llama2", "llama3_1", "qwen3"])
def test_pieces_join_to_the_decoded_text_with_the_real_tokenizers(family: str) -> None:
    """Each token is shown as its share of the text: Llama-2's SentencePiece pieces keep their spaces (decoded
    alone, "▁the" is "the", and the Preview read "Whatcolouristhepearl?"), and an emoji or a CJK character
    whose bytes span tokens is shown whole on the token that completes it, not as one "\ufffd" per token."""
    from conftest import npm_tokenizer_dir
    from transformers import AutoTokenizer

    from lorastudio.data.tokenview import pieces

    tok = AutoTokenizer.from_pretrained(npm_tokenizer_dir(family))
    text = "[INST] What colour is the pearl? [/INST] Arr, héllo 日本語 🏴‍☠️  two  spaces\n\nok"
    ids = tok.encode(text)
    shown = pieces(tok, Encoded(ids, ids, False, len(ids)))
    assert [p.token_id for p in shown] == ids
    joined = "".join(p.text for p in shown)
    assert joined == tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert "What colour is the pearl?" in joined
    assert "日本語 🏴‍☠️  two  spaces\n\nok" in joined
    assert "\ufffd" not in joined
    # a reply shown apart from its prompt keeps its first space (the Method Preview's chosen and rejected)
    prompt, reply = tok.encode("Where is it?"), tok.encode(" the sea", add_special_tokens=False)
    first = pieces(tok, Encoded(reply, reply, False, len(reply)), context=prompt)[0].text
    assert first.startswith(" ")
