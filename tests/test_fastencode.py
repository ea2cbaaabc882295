"""The fast encoder gives exactly the prefix-rendering encoder's input_ids and labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lorastudio.data.encode import make_encoder
from lorastudio.data.formats import SkipRow
from lorastudio.data.prepared.fastencode import FastEncoder
from lorastudio.models.templates import TEMPLATES
from lorastudio.recipe import Recipe

_TRICKY = [
    "assistant",
    "  padded reply  ",
    "Line one\n\nLine two\n",
    "émojis 🦜 ünïcode",
    "42",
    "user\nsystem",
    "it's 2024's\ttab \x0b\x1c",
    "<|im_end|> or <|eot_id|> typed in",
    "trailing  \n ",
]


def _chat(i: int) -> tuple[str, str]:
    return f"Question {i}: {_TRICKY[i % len(_TRICKY)]}?", _TRICKY[(i + 1) % len(_TRICKY)] + f" answer {i}"


def _rows(fmt: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(8):
        q, a = _chat(i)
        if fmt == "alpaca":
            rows.append({"instruction": q, "input": "" if i % 2 else "ctx " * i, "output": a})
        elif fmt == "dolly":
            rows.append({"instruction": q, "context": "" if i % 3 else "some context", "response": a})
        elif fmt == "prompt_completion":
            rows.append({"prompt": q, "completion": a})
        elif fmt == "messages":
            turns = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            if i % 2:
                turns = [
                    {"role": "system", "content": "Be brief."},
                    *turns,
                    {"role": "user", "content": "And more?"},
                    {"role": "assistant", "content": "More. " + a},
                ]
            rows.append({"messages": turns})
        elif fmt == "sharegpt":
            rows.append(
                {
                    "conversations": [
                        {"from": "human", "value": q},
                        {"from": "gpt", "value": a},
                        {"from": "human", "value": "ok"},
                        {"from": "gpt", "value": "fine"},
                    ]
                }
            )
        elif fmt == "text":
            rows.append({"text": f"{q} {a}"})
        elif fmt == "guanaco":
            rows.append({"text": f"### Human: {q}### Assistant: {a}### Human: thanks### Assistant: welcome"})
        elif fmt == "human_assistant":
            rows.append({"text": f"###Human: {q} ### Assistant: {a}"})
        elif fmt == "llama2":
            rows.append({"text": f"<s>[INST] <<SYS>>\nsys\n<</SYS>>\n\n{q} [/INST] {a} </s>"})
    rows.append({key: None for key in rows[0]})  # a row every format skips
    return rows


FORMATS = [
    "alpaca",
    "dolly",
    "prompt_completion",
    "messages",
    "sharegpt",
    "text",
    "guanaco",
    "human_assistant",
    "llama2",
]


def _recipe(fmt: str, template: str, train_on: str, system_prompt: str | None, max_len: int) -> Recipe:
    return Recipe.model_validate(
        {
            "name": "t",
            "model": {"name": "tiny", "chat_template": template, "max_seq_length": max_len},
            "data": {"source": "x.jsonl", "format": fmt, "system_prompt": system_prompt},
            "train": {"train_on": train_on},
        }
    )


def _slow(encoder, row):
    try:
        return encoder.encode_row(row)
    except SkipRow as skip:
        return str(skip)


def _check_equivalent(
    tok, fmt: str, template: str, train_on: str, system_prompt: str | None, max_len: int
) -> None:
    rows = _rows(fmt)
    rec = _recipe(fmt, template, train_on, system_prompt, max_len)
    encoder = make_encoder(tok, rec, list(rows[0]), rows, "test")
    expected = [_slow(encoder, row) for row in rows]
    fast = FastEncoder(encoder, verify=0)  # no row check to fall back on: the fast path itself must be exact
    assert (
        fast.word_cache
    )  # both test tokenizers are GPT-2-style byte-level BPE: ASCII rows skip the Rust encoder
    got = fast.encode_rows(rows)
    for index, (want, have) in enumerate(zip(expected, got, strict=True)):
        if isinstance(want, str):
            assert have == want, (index, want, have)
        else:
            assert not isinstance(have, str), (index, have)
            assert have.input_ids == want.input_ids, index
            assert have.labels == want.labels, index
            assert (have.truncated, have.full_length) == (want.truncated, want.full_length)
    _check_columns(fast.encode_columns(rows), expected)  # the flat arrays the cache stores: the same rows
    _check_columns(fast.encode_table(_arrow(rows)), expected)  # and read from Arrow a column at a time


def _arrow(rows: list[dict[str, Any]]) -> Any:
    """The rows as the data set loader gives them to the encoder: a pyarrow.Table batch."""
    from datasets import Dataset

    return next(iter(Dataset.from_list(rows).with_format("arrow").iter(batch_size=len(rows))))


def _check_columns(cols: Any, expected: list[Any]) -> None:
    for index, want in enumerate(expected):
        first, stop = cols.offsets[index], cols.offsets[index + 1]
        if isinstance(want, str):
            assert (cols.skip[index], stop - first) == (want, 0), index
        else:
            assert cols.skip[index] is None
            assert cols.ids[first:stop].tolist() == want.input_ids, index
            assert cols.labels[first:stop].tolist() == want.labels, index
            assert (cols.truncated[index], cols.full_length[index], cols.trained[index]) == (
                want.truncated,
                want.full_length,
                want.trained_count,
            )


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_dir: Path):
    """The real SmolLM2 tokenizer (the shared, dequantized GGUF's folder)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_dir))


def _matrix(tok) -> None:
    for fmt in FORMATS:
        for template in ["tokenizer", *TEMPLATES]:
            for train_on in ("responses", "all"):
                _check_equivalent(tok, fmt, template, train_on, None, 2048)
        _check_equivalent(tok, fmt, "tokenizer", "responses", "You are a pirate.", 2048)
        _check_equivalent(tok, fmt, "chatml", "responses", None, 24)  # truncation, and rows with nothing left


def test_fast_path_equals_prefix_rendering_on_tiny_tokenizer(tiny_tokenizer) -> None:
    _matrix(tiny_tokenizer)


@pytest.mark.slow
def test_fast_path_equals_prefix_rendering_on_smollm2(smollm2_tokenizer) -> None:
    _matrix(smollm2_tokenizer)


@pytest.mark.slow
def test_a_default_system_prompt_is_tokenized_once_per_shape(smollm2_tokenizer) -> None:
    """SmolLM2's template opens every chat with its own system prompt: that head is not re-tokenized per row."""
    rows = _rows("dolly")
    encoder = make_encoder(
        smollm2_tokenizer, _recipe("dolly", "tokenizer", "responses", None, 2048), list(rows[0]), rows, "test"
    )
    fast = FastEncoder(encoder, verify=0)
    got = fast.encode_rows(rows[:2])
    (layout,) = [v for v in fast._layouts.values() if v is not None]
    assert (
        layout.pieces[0][: layout.head].endswith("<|im_end|>\n<|im_start|>") and "SmolLM" in layout.pieces[0]
    )
    first = got[0]
    assert not isinstance(first, str) and first.input_ids[: len(layout.head_ids)] == layout.head_ids
    assert got == [_slow(encoder, row) for row in rows[:2]]


def test_every_named_template_is_linear_for_chat_shapes(tiny_tokenizer) -> None:
    """The fast path is really taken (not a silent fallback) for the shipped templates."""
    rows = _rows("messages")
    for template in ["tokenizer", *TEMPLATES]:
        encoder = make_encoder(
            tiny_tokenizer, _recipe("messages", template, "responses", None, 2048), ["messages"], rows, "test"
        )
        fast = FastEncoder(encoder)
        fast.encode_rows(rows)
        assert fast.fast_shapes == 2 and fast.slow_shapes == 0, template


def test_a_template_that_rewrites_earlier_turns_falls_back(tiny_tokenizer) -> None:
    """Content-dependent templates are caught by the row check and use prefix rendering."""
    tok = tiny_tokenizer
    rows = _rows("prompt_completion")
    encoder = make_encoder(
        tok,
        _recipe("prompt_completion", "chatml", "responses", None, 2048),
        ["prompt", "completion"],
        rows,
        "test",
    )
    from lorastudio.data.encode import _compile

    encoder._compiled = _compile(
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] }}"
        "{% if 'answer 1' in m['content'] %}{{ ' (!)' }}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    fast = FastEncoder(encoder, verify=len(rows))
    got = fast.encode_rows(rows)
    assert fast.slow_shapes == 1
    for row, have in zip(rows, got, strict=True):
        want = _slow(encoder, row)
        if isinstance(want, str):
            assert have == want
        else:
            assert not isinstance(have, str) and have.labels == want.labels


# -- the word plans and the Arrow columns, with the real Llama-3.1 and Qwen3 tokenizers (issue 22) ------------------
_CONTENTS = [
    "Ahoy there, matey.",
    "two  spaces",
    "a \n newline beside a space",
    "tab\there and\t",
    " leading space",
    "trailing space ",
    "\n\nopens with blank lines",
    "numbers 1,234,567 and 3.14159 in 2024",
    "it's the captain's log, isn't it?",
    "Zürich — ça fait 東京 👍🏽 Привет",
    "\u00a0no-break\u3000ideographic space",
    "<|im_end|> and <|eot_id|> typed in",
    "a < b and c > d",
    "x",
]


def _real_rows(seed: int, count: int) -> list[dict[str, Any]]:
    import random

    rng = random.Random(seed)

    def text() -> str:
        return " ".join(rng.choice(_CONTENTS) for _ in range(rng.randint(1, 3)))

    rows = []
    for i in range(count):
        turns = [{"role": "system", "content": text()}] if i % 3 == 0 else []
        for _ in range(1 + i % 2):
            turns += [{"role": "user", "content": text()}, {"role": "assistant", "content": text()}]
        rows.append({"messages": turns})
    return rows


@pytest.mark.parametrize("family", ["qwen3", "llama3_1"])
@pytest.mark.parametrize("template", ["tokenizer", "chatml"])
def test_word_plans_and_arrow_columns_equal_prefix_rendering(family: str, template: str, request) -> None:
    """Contents with spaces beside other white space, added tokens typed in, every script: the plan of each shape
    (constant runs, stretches per content) and the Arrow column reader give exactly ``encode_row``'s ids and
    labels, through the plan for most rows, and through the whole-render path for the rest."""
    tok = request.getfixturevalue("qwen3_tokenizer" if family == "qwen3" else "llama3_tokenizer")
    rows = _real_rows(seed=7, count=300)
    encoder = make_encoder(
        tok, _recipe("messages", template, "responses", None, 4096), ["messages"], rows, "t"
    )
    expected = [_slow(encoder, row) for row in rows]
    fast = FastEncoder(encoder, verify=0)
    _check_columns(fast.encode_table(_arrow(rows)), expected)
    layouts = [v for v in fast._layouts.values() if v is not None]
    assert layouts and all(layout.plan is not None for layout in layouts)
    words = fast._words
    assert words is not None and words._by_spaces
    plans = [fast.layout(tuple(t["role"] for t in row["messages"])) for row in rows]
    assert all(layout is not None and layout.plan is not None for layout in plans)
    planned = sum(
        words.encode_plan(layout.plan, [t["content"] for t in row["messages"]]) is not None
        for layout, row in zip(plans, rows, strict=True)
        if layout is not None and layout.plan is not None
    )
    assert len(rows) // 3 < planned < len(rows)  # both paths were taken


@pytest.mark.parametrize("family", ["qwen3", "llama3_1"])
@pytest.mark.parametrize("train_on", ["responses", "last_response", "all"])
def test_the_plan_row_encoder_agrees_with_encode_plan(family: str, train_on: str, request) -> None:
    """The per-plan row encoder (the path almost every row of a data set takes) gives exactly
    ``encode_plan``'s ids and trained ranges, or None and leaves the row to it; most rows it takes itself,
    including the ones whose trained span starts inside a stretch's first chunk (Llama-3's own template)."""
    tok = request.getfixturevalue("qwen3_tokenizer" if family == "qwen3" else "llama3_tokenizer")
    import random

    rng = random.Random(3)
    plain = [
        "Ahoy",
        "matey,",
        "the",
        "captain's",
        "log",
        "1,234",
        "in",
        "2024.",
        "Zürich",
        "東京",
        "Привет",
        "—",
    ]

    def said() -> str:
        return " ".join(rng.choices(plain, k=rng.randint(1, 12)))

    typical = [
        {
            "messages": [
                *([{"role": "system", "content": said()}] if k % 3 == 0 else []),
                {"role": "user", "content": said() + "?"},
                {"role": "assistant", "content": said() + "."},
            ]
        }
        for k in range(200)
    ]
    rows = typical + _real_rows(seed=11, count=300)  # then white space beside spaces, typed-in tokens
    for template in ("tokenizer", "chatml"):
        encoder = make_encoder(
            tok, _recipe("messages", template, train_on, None, 4096), ["messages"], rows, "t"
        )
        fast = FastEncoder(encoder, verify=0)
        words = fast._words
        assert words is not None
        taken = 0
        for row in rows:
            layout = fast.layout(tuple(t["role"] for t in row["messages"]))
            assert layout is not None and layout.plan is not None and layout.plan_rows is not None
            given = [f(t["content"]) for f, t in zip(layout.transforms, row["messages"], strict=True)]
            got = layout.plan_rows([t["content"] for t in row["messages"]])  # it applies the transforms
            if got is not None:
                assert got == words.encode_plan(layout.plan, given), row
                taken += 1
        assert taken >= len(typical), (template, taken)
