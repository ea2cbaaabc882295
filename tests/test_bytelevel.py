"""The word-cached byte-level encoder gives the Rust tokenizer's own ids, and the same label ranges as its offsets."""

from __future__ import annotations

import random
import unicodedata
from pathlib import Path

import pytest

from lorastudio.data.prepared import bytelevel
from lorastudio.data.prepared.bytelevel import ByteLevelWords
from lorastudio.data.prepared.fastencode import _ranges

# Characters where the split could go wrong: every class boundary of the GPT-2 expression, the
# contractions, whitespace runs before words, ASCII controls the engine does not count as space,
# and the added tokens (and pieces of them) of both tokenizers.
_PIECES = [
    "a",
    "Z",
    "word",
    " the",
    "9",
    "42",
    " 7",
    ".",
    ",",
    "!?",
    " (",
    "'",
    "'s",
    "'ll",
    "'re",
    "'ve",
    "'m",
    "'d",
    "'t",
    "'S",
    " ",
    "  ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x00",
    "\x7f",
    "<",
    "|",
    "<|im_end|>",
    "<|im_start|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|im",
    "_end|>",
    "<|endoftext|>",
]


def _texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(_PIECES, k=rng.randint(0, 40))) for _ in range(count)]


@pytest.fixture(scope="module")
def smollm2_backend(smollm2_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_dir))._tokenizer


def _check_against_rust(backend, texts: list[str], allow_refusal: bool = False) -> int:
    """Compare with the Rust tokenizer; returns how many texts the word path took (the others it refused)."""
    words = ByteLevelWords.for_backend(backend)
    assert words is not None
    rng = random.Random(1)
    taken = 0
    for text in texts:
        want = backend.encode(text, add_special_tokens=False)
        spans = sorted((rng.randint(0, len(text)), rng.randint(0, len(text))) for _ in range(2))
        spans = [(a, b) for a, b in spans if a <= b]
        got = words.encode(text, spans)
        if got is None and allow_refusal:
            continue
        assert got is not None
        taken += 1
        blob, ranges = got
        from array import array

        assert array("i", blob).tolist() == want.ids, repr(text)
        expected = _ranges(want.offsets, spans)
        assert [r for r in ranges if r[1] > r[0]] == expected, (repr(text), spans)
    return taken


def test_ids_and_label_ranges_match_the_tiny_tokenizer(tiny_tokenizer) -> None:
    _check_against_rust(tiny_tokenizer._tokenizer, _texts(3000, seed=0))


@pytest.mark.slow
def test_ids_and_label_ranges_match_smollm2(smollm2_backend) -> None:
    _check_against_rust(smollm2_backend, _texts(3000, seed=1))


def test_the_word_cache_starting_again_changes_nothing(tiny_tokenizer, monkeypatch) -> None:
    monkeypatch.setattr(bytelevel, "CACHE_WORDS", 8)
    _check_against_rust(tiny_tokenizer._tokenizer, _texts(300, seed=2))


def test_text_whose_exactness_is_not_proven_is_left_to_the_rust_tokenizer(
    tiny_tokenizer, qwen3_tokenizer
) -> None:
    words = ByteLevelWords.for_backend(tiny_tokenizer._tokenizer)
    assert words is not None
    assert words.encode("caf\u00e9") is not None and words.encode("\u201cquoted\u201d") is not None
    assert words.encode("unassigned \U000e0fff here") is None and words.encode("private \ue000") is None
    assert words.encode("a\u0301", [(0, 1)]) is not None  # the tiny tokenizer does not normalize
    nfc = ByteLevelWords.for_backend(qwen3_tokenizer._tokenizer)
    assert nfc is not None
    assert nfc.encode("a\u0301") is None and nfc.encode("\u00e1") is not None  # Qwen normalizes to NFC
    # A span edge inside a word beyond ASCII: its tokens hold bytes, so the Rust tokenizer places it.
    assert words.encode("Zürich", [(2, 6)]) is None and words.encode("Zürich", [(0, 6)]) is not None


# -- beyond ASCII, and the Split expressions of Llama-3 and Qwen (issue 22) ---------------------------------------
def _every_assigned_character() -> list[str]:
    return [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Co", "Cs")]


_CONTEXTS = ["a{0}a", "{0}1", "1{0}", " {0}", "{0}{0}", "'{0}", "\n{0}", "{0} ", "{0}\r\n", "9{0}9{0}9"]


@pytest.mark.parametrize("family", ["tiny", "llama3_1", "qwen3"])
def test_split_matches_the_rust_pre_tokenizer_on_every_assigned_character(family: str, request) -> None:
    """Every character this Python assigns, in contexts that meet each class of the expression (letters,
    numbers, white space, line breaks, the rest, contractions): split as the tokenizer's own pre-tokenizer does."""
    fixture = {"tiny": "tiny_tokenizer", "llama3_1": "llama3_tokenizer", "qwen3": "qwen3_tokenizer"}[family]
    backend = request.getfixturevalue(fixture)._tokenizer
    words = ByteLevelWords.for_backend(backend)
    assert words is not None
    chars = _every_assigned_character()
    spell = words._byte_chars
    for start in range(0, len(chars), 5000):
        text = "|".join(
            _CONTEXTS[k % len(_CONTEXTS)].format(c) for k, c in enumerate(chars[start : start + 5000], start)
        )
        ours = ["".join(spell[b] for b in unit.encode()) for unit in words._unicode_words.findall(text)]
        theirs = [piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(text)]
        assert ours == theirs, next(
            (ours[k - 1 : k + 2], theirs[k - 1 : k + 2]) for k in range(len(ours)) if ours[k] != theirs[k]
        )


def _mixed_texts(count: int, seed: int) -> list[str]:
    """Random texts drawing on every Unicode general category (a few characters of each) and the ASCII pieces."""
    rng = random.Random(seed)
    by_category: dict[str, list[str]] = {}
    for c in _every_assigned_character():
        by_category.setdefault(unicodedata.category(c), []).append(c)
    pool = [
        *_PIECES,
        "Zürich",
        "naïve",
        "東京",
        "Привет",
        "مرحبا",
        "🎉",
        "👍🏽",
        "１２３",
        "٣",
        "ⅷ",
        " —",
        "\u00a0",
        "\u3000",
    ]
    for chars in by_category.values():
        pool += rng.sample(chars, min(12, len(chars)))
    return ["".join(rng.choices(pool, k=rng.randint(0, 30))) for _ in range(count)]


@pytest.mark.parametrize("family", ["tiny", "llama3_1", "qwen3"])
def test_ids_and_label_ranges_match_beyond_ascii(family: str, request) -> None:
    import unicodedata as ud

    fixture = {"tiny": "tiny_tokenizer", "llama3_1": "llama3_tokenizer", "qwen3": "qwen3_tokenizer"}[family]
    backend = request.getfixturevalue(fixture)._tokenizer
    words = ByteLevelWords.for_backend(backend)
    assert words is not None
    texts = [ud.normalize("NFC", t) for t in _mixed_texts(3000, seed=3)]
    taken = _check_against_rust(backend, texts, allow_refusal=True)
    assert taken > len(texts) // 2  # most rows take the word path; the rest were refused, never wrong


def test_other_kinds_of_tokenizer_are_not_taken() -> None:
    """A different pre-tokenizer, a normalizer or a trimming post-processor: the Rust tokenizer does it all."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    def bpe() -> Tokenizer:
        tok = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "ab": 2}, merges=[("a", "b")]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        return tok

    assert ByteLevelWords.for_backend(bpe()) is not None
    whitespace = bpe()
    whitespace.pre_tokenizer = pre_tokenizers.Whitespace()
    lowered = bpe()
    lowered.normalizer = normalizers.Lowercase()
    prefixed = bpe()
    prefixed.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    trimmed = bpe()
    trimmed.post_processor = processors.ByteLevel(trim_offsets=True)
    for tok in (whitespace, lowered, prefixed, trimmed):
        assert ByteLevelWords.for_backend(tok) is None


@pytest.mark.parametrize("family", ["tiny", "llama3_1", "qwen3"])
def test_space_separated_chunks_split_as_the_expression(family: str, request) -> None:
    """Where no space cut at has white space beside it, a text's words are its space-separated chunks' words (the
    premise of looking stretches up a chunk at a time), and the chunks' ids are the Rust tokenizer's."""
    from array import array

    fixture = {"tiny": "tiny_tokenizer", "llama3_1": "llama3_tokenizer", "qwen3": "qwen3_tokenizer"}[family]
    backend = request.getfixturevalue(fixture)._tokenizer
    words = ByteLevelWords.for_backend(backend)
    assert words is not None and words._by_spaces
    no_added = [p for p in _PIECES if "<" not in p and "|" not in p]
    rng = random.Random(5)
    texts = [unicodedata.normalize("NFC", t) for t in _mixed_texts(2000, seed=4) if "<" not in t]
    texts += ["".join(rng.choices([*no_added, " ", " x", "x "], k=rng.randint(0, 40))) for _ in range(3000)]
    chunked = 0
    for text in texts:
        if words._space_beside_space.search(text) is not None:
            continue
        chunks = text.split(" ")
        split = words._unicode_words.findall
        assert [w for k, c in enumerate(chunks) for w in split(c if k == 0 else " " + c)] == split(text), (
            repr(text)
        )
        if text.isascii() or words._proven(text):
            got = words._chunks(text)
            assert got is not None
            assert array("i", b"".join(got[1])).tolist() == backend.encode(text, add_special_tokens=False).ids
            chunked += 1
    assert chunked > len(texts) // 3


def test_the_space_gate_finds_every_space_beside_white_space(tiny_tokenizer) -> None:
    """The gate before the chunk path: a space with any White_Space character before or after it, found."""
    words = ByteLevelWords.for_backend(tiny_tokenizer._tokenizer)
    assert words is not None
    spaces = set(bytelevel.WHITE_SPACE.replace("\u2000-\u200a", "".join(map(chr, range(0x2000, 0x200B)))))
    rng = random.Random(9)
    for _ in range(20000):
        text = "".join(
            rng.choices([" ", "\n", "\t", "a", "\u3000", "\u00a0", "\x1c", "."], k=rng.randint(0, 8))
        )
        beside = any(
            c == " " and ((k and text[k - 1] in spaces) or (k + 1 < len(text) and text[k + 1] in spaces))
            for k, c in enumerate(text)
        )
        assert (words._space_beside_space.search(text) is not None) == beside, repr(text)
