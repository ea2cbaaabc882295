"""The word-cached byte-level encoder gives the Rust tokenizer's own ids, and the same label ranges as its offsets."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from lorastudio.data import bytelevel
from lorastudio.data.bytelevel import ByteLevelWords
from lorastudio.data.fastencode import _ranges

# Characters where the split could go wrong: every class boundary of the GPT-2 expression, the
# contractions, whitespace runs before words, ASCII controls the engine does not count as space,
# and the added tokens (and pieces of them) of both tokenizers.
_PIECES = ["a", "Z", "word", " the", "9", "42", " 7", ".", ",", "!?", " (", "'", "'s", "'ll", "'re", "'ve", "'m",
           "'d", "'t", "'S", " ", "  ", "\t", "\n", "\n\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x00", "\x7f", "<", "|",
           "<|im_end|>", "<|im_start|>", "<|eot_id|>", "<|start_header_id|>", "<|im", "_end|>", "<|endoftext|>"]


def _texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(_PIECES, k=rng.randint(0, 40))) for _ in range(count)]


@pytest.fixture(scope="module")
def smollm2_backend(smollm2_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_dir))._tokenizer


def _check_against_rust(backend, texts: list[str]) -> None:
    words = ByteLevelWords.for_backend(backend)
    assert words is not None
    rng = random.Random(1)
    for text in texts:
        want = backend.encode(text, add_special_tokens=False)
        spans = sorted((rng.randint(0, len(text)), rng.randint(0, len(text))) for _ in range(2))
        spans = [(a, b) for a, b in spans if a <= b]
        got = words.encode(text, spans)
        assert got is not None
        blob, ranges = got
        from array import array

        assert array("i", blob).tolist() == want.ids, repr(text)
        expected = _ranges(want.offsets, spans)
        assert [r for r in ranges if r[1] > r[0]] == expected, (repr(text), spans)


def test_ids_and_label_ranges_match_the_tiny_tokenizer(tiny_tokenizer) -> None:
    _check_against_rust(tiny_tokenizer._tokenizer, _texts(3000, seed=0))


@pytest.mark.slow
def test_ids_and_label_ranges_match_smollm2(smollm2_backend) -> None:
    _check_against_rust(smollm2_backend, _texts(3000, seed=1))


def test_the_word_cache_starting_again_changes_nothing(tiny_tokenizer, monkeypatch) -> None:
    monkeypatch.setattr(bytelevel, "CACHE_WORDS", 8)
    _check_against_rust(tiny_tokenizer._tokenizer, _texts(300, seed=2))


def test_text_beyond_ascii_is_left_to_the_rust_tokenizer(tiny_tokenizer) -> None:
    words = ByteLevelWords.for_backend(tiny_tokenizer._tokenizer)
    assert words is not None
    assert words.encode("caf\u00e9") is None and words.encode("\u201cquoted\u201d") is None
    assert words.encode("plain") is not None


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
