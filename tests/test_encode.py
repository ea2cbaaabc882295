"""Formats, masking oracles, truncation, packing and bad data."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from lorastudio.data.datasource import RowTable, load_rows
from lorastudio.data.encode import IGNORE_INDEX, Encoder, encode_all, make_encoder, pack
from lorastudio.data.formats import SkipRow
from lorastudio.data.prepared.fastencode import compute_stats
from lorastudio.errors import DataError, TemplateError
from lorastudio.models.templates import TEMPLATES
from lorastudio.recipe import DataSection, Recipe


def recipe(source: Path | str, fmt: str = "auto", template: str = "tokenizer", **sections: Any) -> Recipe:
    data = {"source": str(source), "format": fmt, **sections.pop("data", {})}
    model = {"name": "tiny", "chat_template": template, **sections.pop("model", {})}
    return Recipe.model_validate({"name": "t", "model": model, "data": data, **sections})


def encoder_for(tok, rec: Recipe) -> tuple[Encoder, RowTable]:
    rows = load_rows(rec.data)
    return make_encoder(tok, rec, rows.columns, rows.rows[:20], rows.origin), rows.rows


def trained_text(tok, enc) -> str:
    return tok.decode(
        [i for i, label in zip(enc.input_ids, enc.labels, strict=True) if label != IGNORE_INDEX]
    )


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- formats, in the real schemas of the data sets the built-in recipes name ------------------------
FORMAT_CASES: dict[str, list[dict[str, Any]]] = {
    "alpaca": [{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}],
    "dolly": [
        {
            "instruction": "Who wrote it?",
            "context": "A book.",
            "response": "Arr, a pirate.",
            "category": "closed_qa",
        }
    ],
    "messages": [
        {
            "messages": [
                {"role": "system", "content": "Sys."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
            ]
        }
    ],
    "sharegpt": [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}],
    "prompt_completion": [{"prompt": "Say yes", "completion": "yes"}],
}


@pytest.mark.parametrize("fmt", sorted(FORMAT_CASES))
def test_json_formats_are_detected_and_masked(tmp_path: Path, tiny_tokenizer, fmt: str) -> None:
    source = write_jsonl(tmp_path / f"{fmt}.jsonl", FORMAT_CASES[fmt])
    enc, rows = encoder_for(tiny_tokenizer, recipe(source))
    assert enc.format == fmt
    sample = enc.encode_row(rows[0])
    reply = {
        "alpaca": "5",
        "dolly": "Arr, a pirate.",
        "messages": "Hello!",
        "sharegpt": "Hello!",
        "prompt_completion": "yes",
    }[fmt]
    assert trained_text(tiny_tokenizer, sample) == reply + "<|eot_id|>"


def test_guanaco_text_in_parquet(tmp_path: Path, tiny_tokenizer) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = "### Human: Can you help?### Assistant: Sure, ask away.### Human: Thanks!### Assistant: Any time."
    pq.write_table(pa.table({"text": [text]}), tmp_path / "guanaco.parquet")
    enc, rows = encoder_for(tiny_tokenizer, recipe(tmp_path / "guanaco.parquet"))
    assert enc.format == "guanaco" and enc.template_name == "guanaco"
    sample = enc.encode_row(rows[0])
    assert tiny_tokenizer.decode(sample.input_ids) == text.replace("away.", "away.<|eot_id|>") + "<|eot_id|>"
    assert trained_text(tiny_tokenizer, sample) == "Sure, ask away.<|eot_id|>Any time.<|eot_id|>"


def test_llama2_text_in_csv(tmp_path: Path, tiny_tokenizer) -> None:
    path = tmp_path / "medical.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerow(
            ["<s>[INST] What is Paracetamol poisoning? [/INST] Paracetamol poisoning is harm. </s>"]
        )
    enc, rows = encoder_for(tiny_tokenizer, recipe(path))
    assert enc.format == "llama2"
    sample = enc.encode_row(rows[0])
    assert trained_text(tiny_tokenizer, sample).strip() == "Paracetamol poisoning is harm. <|eot_id|>".strip()


def test_csv_concepts_with_column_mapping(tmp_path: Path, tiny_tokenizer) -> None:
    from lorastudio import registry

    shipped = registry.load("qwen-csv-concepts")
    rec = recipe(
        shipped.data.source,
        "prompt_completion",
        "human-assistant",
        data={"columns": {"prompt": "concept", "completion": "description"}},
    )
    enc, rows = encoder_for(tiny_tokenizer, rec)
    sample = enc.encode_row(rows[0])
    assert tiny_tokenizer.decode(sample.input_ids).startswith("###Human: Gradient descent ### Assistant: An ")
    assert trained_text(tiny_tokenizer, sample).startswith("An optimisation method")


def test_plain_text_trains_everything(tmp_path: Path, tiny_tokenizer) -> None:
    (tmp_path / "corpus.txt").write_text("The sky is blue.\n\nThe grass is green.\n")
    enc, rows = encoder_for(tiny_tokenizer, recipe(tmp_path / "corpus.txt"))
    assert enc.format == "text" and len(rows) == 2
    sample = enc.encode_row(rows[0])
    assert sample.labels == sample.input_ids


def test_system_prompt_added_where_missing(tmp_path: Path, tiny_tokenizer) -> None:
    source = write_jsonl(tmp_path / "d.jsonl", FORMAT_CASES["alpaca"])
    enc, rows = encoder_for(tiny_tokenizer, recipe(source, data={"system_prompt": "Talk like a pirate."}))
    text = tiny_tokenizer.decode(enc.encode_row(rows[0]).input_ids)
    assert "<|start_header_id|>system<|end_header_id|>\n\nTalk like a pirate.<|eot_id|>" in text


def test_multi_turn_trains_every_assistant_turn_and_nothing_else(tmp_path: Path, tiny_tokenizer) -> None:
    turns = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "first reply"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "second reply"},
    ]
    source = write_jsonl(tmp_path / "m.jsonl", [{"messages": turns}])
    enc, rows = encoder_for(tiny_tokenizer, recipe(source))
    sample = enc.encode_row(rows[0])
    # Oracle 3: decoding the trained tokens gives exactly the assistant contents, each with its end of turn.
    assert trained_text(tiny_tokenizer, sample) == "first reply<|eot_id|>second reply<|eot_id|>"
    all_rec = recipe(source, train={"train_on": "all"})
    everything = encoder_for(tiny_tokenizer, all_rec)[0].encode_row(rows[0])
    assert everything.labels == everything.input_ids


GENERATION_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' }}"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] + '<|eot_id|>' }}{% endgeneration %}"
    "{% else %}{{ m['content'] + '<|eot_id|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def test_oracle_generation_markers(tmp_path: Path, tiny_tokenizer) -> None:
    """Oracle 1: with {% generation %} markers, our mask equals return_assistant_tokens_mask."""
    tok = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    tok.chat_template = GENERATION_TEMPLATE
    conversations = [
        [
            {"role": "user", "content": "What colour is the sky?"},
            {"role": "assistant", "content": "Arr, blue!"},
        ],
        [
            {"role": "system", "content": "Be a pirate."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Ahoy there."},
            {"role": "user", "content": "And the sea?"},
            {"role": "assistant", "content": "The sea be wet, matey."},
        ],
    ]
    source = write_jsonl(tmp_path / "g.jsonl", [{"messages": c} for c in conversations])
    enc, rows = encoder_for(tok, recipe(source))
    for row, conversation in zip(rows, conversations, strict=True):
        ours = enc.encode_row(row)
        theirs = tok.apply_chat_template(
            conversation, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        assert ours.input_ids == theirs["input_ids"]
        assert [int(label != IGNORE_INDEX) for label in ours.labels] == theirs["assistant_masks"]


def test_oracle_llama31_marker_masking(tmp_path: Path, tiny_tokenizer) -> None:
    """Oracle 2: llama-3.1 labels equal masking by instruction/response marker strings (unsloth's approach)."""
    instruction, response = (
        "<|start_header_id|>user<|end_header_id|>\n\n",
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    )
    conversation = [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Ahoy, matey!"},
        {"role": "user", "content": "Sky colour?"},
        {"role": "assistant", "content": "Arr, the sky be blue."},
    ]
    source = write_jsonl(tmp_path / "l.jsonl", [{"messages": conversation}])
    enc, rows = encoder_for(tiny_tokenizer, recipe(source, template="llama-3.1"))
    ours = enc.encode_row(rows[0])
    text = enc.render(conversation)
    tokens = tiny_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert tokens["input_ids"] == ours.input_ids
    # Independent oracle: train from the end of each response marker to the start of the next instruction marker.
    trained_chars: set[int] = set()
    position = 0
    while (start := text.find(response, position)) >= 0:
        begin = start + len(response)
        end = text.find(instruction, begin)
        end = len(text) if end < 0 else end
        trained_chars.update(range(begin, end))
        position = end
    expected = [
        tid if any(c in trained_chars for c in range(s, e)) else IGNORE_INDEX
        for tid, (s, e) in zip(tokens["input_ids"], tokens["offset_mapping"], strict=True)
    ]
    assert ours.labels == expected


def test_template_that_rewrites_history_is_located_in_the_whole_render(
    tmp_path: Path, tiny_tokenizer
) -> None:
    tok = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    # A template that prints the number of messages first: every prefix renders differently, yet the reply is
    # found in the render of the whole conversation, after its own header.
    tok.chat_template = "{{ messages|length }}" + TEMPLATES["llama-3"].jinja
    source = write_jsonl(tmp_path / "r.jsonl", FORMAT_CASES["messages"])
    enc, rows = encoder_for(tok, recipe(source))
    sample = enc.encode_row(rows[0])
    conversation = rows[0]["messages"]
    assert sample.input_ids == list(
        tok.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
    )
    assert trained_text(tok, sample) == "Hello!<|eot_id|>"


def test_template_whose_replies_cannot_be_located_is_refused(tmp_path: Path, tiny_tokenizer) -> None:
    tok = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    # Each reply written twice and the history rewritten: neither the sentinels nor the prefixes can place it.
    tok.chat_template = (
        "{{ messages|length }}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + m['content'] }}"
        "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    )
    source = write_jsonl(tmp_path / "r.jsonl", FORMAT_CASES["messages"])
    enc, rows = encoder_for(tok, recipe(source))
    with pytest.raises(TemplateError, match="cannot be located"):
        enc.encode_row(rows[0])


# -- truncation and packing ----------------------------------------------------------------------
def test_truncation_is_counted(tmp_path: Path, tiny_tokenizer) -> None:
    rows = [
        {"prompt": "short", "completion": "ok"},
        {"prompt": "word " * 8, "completion": "long answer " * 20},
    ]
    source = write_jsonl(tmp_path / "t.jsonl", rows)
    enc, loaded = encoder_for(tiny_tokenizer, recipe(source, model={"max_seq_length": 48}))
    long = enc.encode_row(loaded[1])
    assert long.truncated and len(long.input_ids) == 48 and long.full_length > 48
    stats = compute_stats(enc, loaded)
    assert stats.truncated == 1 and stats.used == 2 and stats.percentile(100) == 48


def test_prompt_longer_than_max_length_is_skipped(tmp_path: Path, tiny_tokenizer) -> None:
    source = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "word " * 80, "completion": "late"}])
    enc, loaded = encoder_for(tiny_tokenizer, recipe(source, model={"max_seq_length": 20}))
    with pytest.raises(SkipRow, match="no trained tokens within max_seq_length"):
        enc.encode_row(loaded[0])


def test_packing_keeps_labels_inside_their_sample(tmp_path: Path, tiny_tokenizer) -> None:
    rows = [{"prompt": f"question {i}", "completion": f"answer {i}"} for i in range(10)]
    source = write_jsonl(tmp_path / "p.jsonl", rows)
    enc, loaded = encoder_for(tiny_tokenizer, recipe(source))
    samples = encode_all(enc, loaded, "p")
    packed = pack(samples, 64)
    assert len(packed) < len(samples)
    assert sum(len(p["input_ids"]) for p in packed) == sum(len(s.input_ids) for s in samples)
    for seq in packed:
        assert len(seq["input_ids"]) <= 64
        starts = [i for i, pos in enumerate(seq["position_ids"]) if pos == 0]
        for start in starts:
            assert seq["labels"][start] == IGNORE_INDEX  # never predicted from the previous sample
    flat_labels = [label for p in packed for label in p["labels"]]
    trained = [label for s in samples for label in s.labels[1:] if label != IGNORE_INDEX]
    assert [label for label in flat_labels if label != IGNORE_INDEX] == trained


# -- bad data ----------------------------------------------------------------------------------
def test_missing_columns_name_both_lists(tmp_path: Path, tiny_tokenizer) -> None:
    source = write_jsonl(tmp_path / "c.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DataError) as err:
        encoder_for(tiny_tokenizer, recipe(source, "alpaca"))
    assert "expects columns instruction, output" in str(err.value) and "has question, answer" in str(
        err.value
    )


def test_bad_rows_are_skipped_and_counted(tmp_path: Path, tiny_tokenizer) -> None:
    rows: list[dict[str, Any]] = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"messages": [{"role": "user", "content": "no reply"}]},
        {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]},
    ]
    source = write_jsonl(tmp_path / "b.jsonl", rows)
    enc, loaded = encoder_for(tiny_tokenizer, recipe(source))
    stats = compute_stats(enc, loaded)
    assert stats.used == 1
    assert dict(stats.skipped) == {
        "no assistant turn": 1,
        "empty user content": 1,
        "non-string user content": 1,
    }
    assert stats.skipped_rows["no assistant turn"] == [1]


def test_zero_usable_rows_is_an_error(tmp_path: Path, tiny_tokenizer) -> None:
    source = write_jsonl(tmp_path / "z.jsonl", [{"prompt": "", "completion": "x"}])
    enc, loaded = encoder_for(tiny_tokenizer, recipe(source))
    with pytest.raises(DataError, match=r"no usable rows \(1 empty prompt\)"):
        encode_all(enc, loaded, str(source))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"prompt": "a", "completion": "b"}\nnot json\n', "line 2 is not valid JSON"),
        ("bad.parquet", "just text", "not a Parquet file"),
        ("bad.json", "[1, 2", "not valid JSON"),
    ],
)
def test_file_not_what_its_extension_says(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_rows(recipe(tmp_path / name).data)
    assert name in str(err.value)


def test_hub_offline_is_a_clear_message() -> None:
    with pytest.raises(
        DataError, match="'someone/some-data' split 'train' is not in the local datasets cache.*offline mode"
    ):
        load_rows(recipe("someone/some-data").data)


def test_csv_with_excel_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Excel's UTF-8 CSV starts with a BOM; it must not become part of the first column's name."""
    path = tmp_path / "excel.csv"
    path.write_bytes("instruction,response\r\nSay hi,Hi there\r\n".encode("utf-8-sig"))
    rows = load_rows(DataSection(source=str(path)))
    assert rows.columns == ["instruction", "response"]
    assert rows.rows == [{"instruction": "Say hi", "response": "Hi there"}]


def test_empty_csv_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: the CSV file is empty \(no header row\)"):
        load_rows(DataSection(source=str(path)))


def test_columns_match_case_insensitively_when_unambiguous(tmp_path: Path, tiny_tokenizer) -> None:
    """The seed notebook's CSV says Concept,Description; the recipe maps concept,description."""
    path = tmp_path / "concepts.csv"
    path.write_text("Concept,Description\nGradient descent,An optimisation method.\n")
    rec = recipe(
        path,
        "prompt_completion",
        "human-assistant",
        data={"columns": {"prompt": "concept", "completion": "description"}},
    )
    enc, rows = encoder_for(tiny_tokenizer, rec)
    assert trained_text(tiny_tokenizer, enc.encode_row(rows[0])).startswith("An optimisation method.")
    # Capitalised Alpaca headers with no mapping at all are detected too.
    alpaca = tmp_path / "alpaca.csv"
    alpaca.write_text("Instruction,Output\nSay hi,Hi there\n")
    enc, rows = encoder_for(tiny_tokenizer, recipe(alpaca))
    assert (
        enc.format == "alpaca"
        and trained_text(tiny_tokenizer, enc.encode_row(rows[0])) == "Hi there<|eot_id|>"
    )


def test_columns_differing_only_in_case_stay_ambiguous(tmp_path: Path, tiny_tokenizer) -> None:
    path = tmp_path / "twice.csv"
    path.write_text("Prompt,PROMPT,completion\na,b,c\n")
    with pytest.raises(DataError, match="missing: prompt"):
        encoder_for(tiny_tokenizer, recipe(path, "prompt_completion"))


def test_length_figures_are_nearest_rank_and_even_buckets() -> None:
    """The figures the Preview redraws while rows stream in (numpy, cached while the list only grows)."""
    import math
    import random
    from collections import Counter

    from lorastudio.data.encode import DatasetStats

    rng = random.Random(0)
    for n in (1, 2, 7, 1000):
        stats = DatasetStats(format="dolly", lengths=[rng.randint(3, 300) for _ in range(n)])
        ordered = sorted(stats.lengths)
        for q in (0, 1, 50, 90, 99, 100):
            assert stats.percentile(q) == ordered[min(n - 1, max(0, math.ceil(q / 100 * n) - 1))], (n, q)
        low, high = ordered[0], ordered[-1]
        width = max(1, math.ceil((high - low + 1) / 8))
        counts = Counter((x - low) // width for x in ordered)
        assert stats.histogram(8) == [
            (low + b * width, low + (b + 1) * width - 1, counts.get(b, 0))
            for b in range(8)
            if low + b * width <= high
        ]
        assert stats.max_length == high
        snapshot = stats.snapshot()
        stats.lengths += [1000]  # the original grows on; the snapshot and the cache follow what they hold
        assert stats.max_length == 1000 and snapshot.max_length == high
    assert DatasetStats(format="dolly").percentile(50) == 0 and DatasetStats(format="dolly").histogram() == []
