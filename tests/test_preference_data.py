"""Preference, KTO and GRPO rows: formats detected, bad rows skipped with reasons, masking equal to SFT's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lorastudio.data.encode import IGNORE_INDEX, make_encoder
from lorastudio.data.formats import Example
from lorastudio.data.preference import (
    EncodedPair,
    EncodedPrompt,
    EncodedUnpaired,
    encode_rows,
    method_encoder,
)
from lorastudio.data.prepared.methodcache import prepare_method_data
from lorastudio.errors import DataError
from lorastudio.recipe import KtoSection, Recipe


def recipe(source: Path | str, method: str = "dpo", **sections: Any) -> Recipe:
    data = {"source": str(source), **sections.pop("data", {})}
    model = {"name": "tiny", **sections.pop("model", {})}
    train = {"method": method, **sections.pop("train", {})}
    if method == "grpo" and "grpo" not in sections:
        sections["grpo"] = {"num_generations": 2, "rewards": [{"keywords": ["arr"]}]}
    return Recipe.model_validate({"name": "t", "model": model, "data": data, "train": train, **sections})


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_trained(tok, turns: list[dict]) -> tuple[list[int], list[int]]:
    """The SFT encoder's ids and trained positions for a whole conversation."""
    rec = Recipe.model_validate(
        {"name": "s", "model": {"name": "tiny"}, "data": {"source": "x.jsonl", "format": "messages"}}
    )
    enc = make_encoder(tok, rec, ["messages"], [], "x").encode_example(Example(turns=tuple(turns)))
    return enc.input_ids, [i for i, label in enumerate(enc.labels) if label != IGNORE_INDEX]


PAIR = {
    "prompt": "Where does a bee live?",
    "chosen": "Arr, a bee be livin' in a hive, matey!",
    "rejected": "A bee lives in a hive.",
}


def test_chosen_and_rejected_masking_equals_sft_masking(tmp_path: Path, tiny_tokenizer) -> None:
    src = write_jsonl(tmp_path / "p.jsonl", [PAIR])
    encoder, rows = method_encoder(recipe(src), tiny_tokenizer)
    assert encoder.format == "preference"
    pair = encoder.encode_row(rows.rows[0])
    assert isinstance(pair, EncodedPair)
    for reply, ids in ((PAIR["chosen"], pair.chosen_ids), (PAIR["rejected"], pair.rejected_ids)):
        turns = [{"role": "user", "content": PAIR["prompt"]}, {"role": "assistant", "content": reply}]
        sft_ids, trained = sft_trained(tiny_tokenizer, turns)
        # the prompt is every token before the first trained one; the reply is exactly the trained tokens
        assert pair.prompt_ids == sft_ids[: trained[0]]
        assert ids == [sft_ids[i] for i in trained]
        assert trained == list(range(trained[0], trained[0] + len(ids)))
        assert reply in tiny_tokenizer.decode(ids)
    assert PAIR["prompt"] in tiny_tokenizer.decode(pair.prompt_ids)


def test_message_list_shapes_and_hh_are_detected(tmp_path: Path, tiny_tokenizer) -> None:
    user = {"role": "user", "content": "Where does a bee live?"}
    ultra = {
        "prompt": user["content"],
        "chosen": [user, {"role": "assistant", "content": PAIR["chosen"]}],
        "rejected": [user, {"role": "assistant", "content": PAIR["rejected"]}],
    }
    trl = {
        "prompt": [user],
        "chosen": [{"role": "assistant", "content": PAIR["chosen"]}],
        "rejected": [{"role": "assistant", "content": PAIR["rejected"]}],
    }
    hh = {
        "chosen": f"\n\nHuman: {user['content']}\n\nAssistant: {PAIR['chosen']}",
        "rejected": f"\n\nHuman: {user['content']}\n\nAssistant: {PAIR['rejected']}",
    }
    want = None
    for name, row, fmt in (
        ("u", ultra, "preference_messages"),
        ("t", trl, "preference_messages"),
        ("h", hh, "hh"),
        ("s", PAIR, "preference"),
    ):
        encoder, rows = method_encoder(recipe(write_jsonl(tmp_path / f"{name}.jsonl", [row])), tiny_tokenizer)
        assert encoder.format == fmt
        got = encoder.encode_row(rows.rows[0])
        want = want or got
        assert got == want  # every shape of the same pair encodes to the same ids


def test_bad_pairs_are_counted_with_reasons_and_rows(tmp_path: Path, tiny_tokenizer) -> None:
    rows: list[dict[str, Any]] = [
        PAIR,
        {"prompt": "Q?", "chosen": "a"},
        {"prompt": "Q?", "chosen": "same", "rejected": "same"},
        {"prompt": "  ", "chosen": "a", "rejected": "b"},
        {"prompt": "Q?", "chosen": 3, "rejected": "b"},
        {"prompt": "Q?", "chosen": "a", "rejected": None},
        PAIR,
    ]
    encoder, loaded = method_encoder(recipe(write_jsonl(tmp_path / "bad.jsonl", rows)), tiny_tokenizer)
    encoded, stats = encode_rows(encoder, loaded.rows)
    assert len(encoded) == stats.used == 2
    assert dict(stats.skipped) == {
        "missing rejected": 2,
        "chosen equals rejected": 1,
        "empty prompt": 1,
        "non-string chosen": 1,
    }
    assert stats.skipped_rows["missing rejected"] == [1, 5]
    assert stats.skipped_rows["chosen equals rejected"] == [2]


def test_no_usable_pair_is_refused_naming_the_first_row(tmp_path: Path, tiny_tokenizer) -> None:
    src = write_jsonl(tmp_path / "none.jsonl", [{"prompt": "Q", "chosen": "x", "rejected": "x"}] * 3)
    with pytest.raises(DataError, match=r"no usable rows .*3 chosen equals rejected \(first: row 0\)"):
        prepare_method_data(recipe(src, data={"eval_fraction": 0}), tiny_tokenizer)


NAN = float("nan")


@pytest.mark.parametrize(
    ("parse", "row", "reason"),
    [
        ("pair", {"prompt": "Q?", "chosen": NAN, "rejected": "b"}, "chosen is NaN"),
        ("pair", {"prompt": "Q?", "chosen": "a", "rejected": NAN}, "rejected is NaN"),
        ("pair", {"prompt": NAN, "chosen": "a", "rejected": "b"}, "prompt is NaN"),
        ("pair", {"prompt": "Q?", "chosen": None, "rejected": "b"}, "missing chosen"),
        ("unpaired", {"prompt": "Q?", "completion": "a", "label": NAN}, "label is NaN"),
        ("unpaired", {"prompt": "Q?", "completion": NAN, "label": True}, "completion is NaN"),
        ("unpaired", {"prompt": "Q?", "completion": "a", "label": None}, "missing label"),
        ("prompt", {"prompt": NAN}, "prompt is NaN"),
    ],
)
def test_a_nan_cell_is_named_as_nan_not_as_missing(parse: str, row: dict, reason: str) -> None:
    """pandas and JSON write "no value" as NaN: the skip reason says so, where it used to say missing or
    non-string."""
    from lorastudio.data.formats import SkipRow
    from lorastudio.data.preference import to_pair, to_prompt, to_unpaired

    call = {
        "pair": lambda: to_pair(row, "preference", {}, None),
        "unpaired": lambda: to_unpaired(row, {}, None),
        "prompt": lambda: to_prompt(row, {}, None),
    }[parse]
    with pytest.raises(SkipRow) as skip:
        call()
    assert str(skip.value) == reason


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.jsonl", "", "the data has no rows (is the file empty?); train.method dpo needs some"),
        ("blank.jsonl", "\n\n", "the data has no rows (is the file empty?); train.method dpo needs some"),
        (
            "bad.jsonl",
            json.dumps({"prompt": "Q", "chosen": NAN, "rejected": "x"})
            + "\n"
            + json.dumps({"prompt": "Q", "chosen": "x", "rejected": "x"})
            + "\n",
            "no usable rows for train.method dpo (1 chosen is NaN (first: row 0), 1 chosen equals rejected "
            "(first: row 1))",
        ),
    ],
)
def test_data_with_no_usable_row_is_refused_before_a_run_directory_exists(
    tmp_path: Path, studio_home: Path, name: str, text: str, message: str
) -> None:
    """`studio prepare` knew; a run created its directory and loaded the model first. Now start_run refuses it
    (no tokenizer needed: the rows are parsed as the encoder parses them)."""
    from lorastudio.train.launch.runs import start_run

    (tmp_path / name).write_text(text)
    root = tmp_path / "runs"
    with pytest.raises(DataError) as err:
        start_run(recipe(tmp_path / name), root=root, start=False)
    assert str(err.value) == f"{tmp_path / name}: {message}"
    assert not root.exists() or not any(root.iterdir())
    (tmp_path / name).write_text(json.dumps(PAIR) + "\n")
    assert start_run(recipe(tmp_path / name), root=root, start=False).parent == root


def test_missing_columns_are_named(tmp_path: Path, tiny_tokenizer) -> None:
    src = write_jsonl(tmp_path / "sft.jsonl", [{"instruction": "a", "response": "b"}])
    with pytest.raises(DataError, match="train.method dpo needs the columns prompt, chosen, rejected"):
        method_encoder(recipe(src), tiny_tokenizer)


def test_truncation_keeps_the_prompt_end_and_counts_it(tmp_path: Path, tiny_tokenizer) -> None:
    long = {"prompt": "word " * 80 + "Where?", "chosen": "Arr " * 60, "rejected": "No " * 60}
    src = write_jsonl(tmp_path / "long.jsonl", [long])
    encoder, rows = method_encoder(
        recipe(src, model={"max_seq_length": 64}, dpo={"max_prompt_length": 16}), tiny_tokenizer
    )
    encoded, stats = encode_rows(encoder, rows.rows)
    pair = encoded[0]
    assert isinstance(pair, EncodedPair)
    assert len(pair.prompt_ids) == 16 and stats.prompt_truncated == 1 and stats.reply_truncated == 1
    assert len(pair.prompt_ids) + len(pair.chosen_ids) == 64
    assert "Where?" in tiny_tokenizer.decode(pair.prompt_ids)


def test_kto_rows_and_labels(tmp_path: Path, tiny_tokenizer) -> None:
    rows: list[dict[str, Any]] = [
        {"prompt": "Q?", "completion": "Arr!", "label": True},
        {"prompt": "Q?", "completion": "No.", "label": False},
        {"prompt": "Q?", "completion": "x", "label": "maybe"},
    ]
    encoder, loaded = method_encoder(recipe(write_jsonl(tmp_path / "k.jsonl", rows), "kto"), tiny_tokenizer)
    encoded, stats = encode_rows(encoder, loaded.rows)
    assert [type(e) for e in encoded] == [EncodedUnpaired, EncodedUnpaired]
    assert stats.labels == {"desirable": 1, "undesirable": 1}
    assert stats.skipped == {"label is not a boolean": 1}


def test_grpo_prompts_keep_their_extra_columns(tmp_path: Path, tiny_tokenizer) -> None:
    rows: list[dict[str, Any]] = [
        {"prompt": "What is two plus two?", "answer": "4"},
        {"prompt": [{"role": "user", "content": "What is one plus one?"}], "answer": "2"},
    ]
    encoder, loaded = method_encoder(recipe(write_jsonl(tmp_path / "g.jsonl", rows), "grpo"), tiny_tokenizer)
    first, second = (encoder.encode_row(r) for r in loaded.rows)
    assert isinstance(first, EncodedPrompt) and first.extra == {"answer": "4"}
    assert first.prompt == encoder.render_prompt([{"role": "user", "content": "What is two plus two?"}])
    assert first.prompt_ids == tiny_tokenizer(first.prompt, add_special_tokens=False)["input_ids"]
    assert isinstance(second, EncodedPrompt) and second.row()["answer"] == "2"


def test_mismatched_method_section_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError) as info:
        recipe("x.jsonl", "dpo", grpo={"rewards": [{"regex": "Arr"}]})
    assert info.value.errors()[0]["loc"] == ("grpo",)
    assert "for train.method: grpo, but train.method is dpo" in str(info.value)
    with pytest.raises(ValidationError, match="needs a grpo: section"):
        Recipe.model_validate(
            {"name": "t", "model": {"name": "tiny"}, "data": {"source": "x"}, "train": {"method": "grpo"}}
        )
    with pytest.raises(ValidationError, match="exactly one of"):
        recipe("x.jsonl", "grpo", grpo={"rewards": [{"regex": "a", "keywords": ["b"]}]})
    with pytest.raises(ValidationError, match="beta"):
        recipe("x.jsonl", "dpo", dpo={"beta": -1})
    kto = recipe("x.jsonl", "kto").method_section()
    assert isinstance(kto, KtoSection) and kto.beta == 0.1


# -- the prepared-data cache for method rows (data/prepared/methodcache.py) ----------------------------------------
def pairs_and_bad_rows() -> list[dict]:
    good = [
        {"prompt": f"Question {i}?", "chosen": f"Arr, answer {i}!", "rejected": f"Answer {i}."}
        for i in range(12)
    ]
    return [*good, {"prompt": "Q", "chosen": "same", "rejected": "same"}]


def test_method_rows_are_cached_and_a_second_start_reads_them_back(
    tmp_path: Path, tiny_tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lorastudio.data.preference import MethodEncoder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs_and_bad_rows())
    first = prepare_method_data(recipe(src, data={"eval_fraction": 0.25}), tiny_tokenizer)
    assert first.cached is None and first.train and first.eval

    def no_encoding(self: MethodEncoder, row: dict) -> None:
        raise AssertionError("a cache hit must not encode")

    monkeypatch.setattr(MethodEncoder, "encode_row", no_encoding)
    again = prepare_method_data(recipe(src, data={"eval_fraction": 0.25}), tiny_tokenizer)
    assert again.cached is not None and (again.train, again.eval) == (first.train, first.eval)
    assert again.stats.to_json() == first.stats.to_json() and again.encoder.format == "preference"
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    other = prepare_method_data(  # a field that changes the encoding: its own entry
        recipe(src, data={"eval_fraction": 0.25}, dpo={"max_prompt_length": 4}), tiny_tokenizer
    )
    assert other.cached is None and other.stats.prompt_truncated > 0


def test_changed_data_or_a_damaged_entry_is_encoded_again(
    tmp_path: Path, tiny_tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from lorastudio.data.prepared.methodcache import TRAIN_ROWS

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = write_jsonl(tmp_path / "pairs.jsonl", pairs_and_bad_rows())
    first = prepare_method_data(recipe(src, data={"eval_fraction": 0}), tiny_tokenizer)
    assert first.cached is None
    entry = prepare_method_data(recipe(src, data={"eval_fraction": 0}), tiny_tokenizer).cached
    assert entry is not None
    lines = (entry / TRAIN_ROWS).read_text().splitlines()
    (entry / TRAIN_ROWS).write_text("\n".join(lines[:-1]) + "\n")  # a row lost: counts no longer match
    assert prepare_method_data(recipe(src, data={"eval_fraction": 0}), tiny_tokenizer).cached is None
    rows = pairs_and_bad_rows()
    rows[0]["chosen"] = "Arr, a different answer!"
    write_jsonl(src, rows)
    os.utime(src, ns=(1, 1))  # a new mtime, whatever the clock's resolution
    changed = prepare_method_data(recipe(src, data={"eval_fraction": 0}), tiny_tokenizer)
    assert changed.cached is None and changed.train[0] != first.train[0]
    assert not list((tmp_path / "cache" / "studio" / "prepared").glob(".*.tmp"))  # no staging left behind


def test_grpo_rows_keep_their_columns_through_the_cache(
    tmp_path: Path, tiny_tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rows: list[dict[str, Any]] = [
        {"prompt": f"What is {i} plus {i}?", "answer": 2 * i, "meta": {"level": [i, "x"]}} for i in range(5)
    ]
    src = write_jsonl(tmp_path / "prompts.jsonl", rows)
    first = prepare_method_data(recipe(src, method="grpo"), tiny_tokenizer)
    again = prepare_method_data(recipe(src, method="grpo"), tiny_tokenizer)
    assert again.cached is not None and again.train == first.train
    assert again.train[3]["answer"] == 6 and again.train[3]["meta"] == {"level": [3, "x"]}


def test_studio_prepare_fills_the_cache_for_a_dpo_recipe(tmp_path: Path, tiny_model: Path) -> None:
    import subprocess

    from conftest import STUDIO_BIN

    src = write_jsonl(tmp_path / "pairs.jsonl", pairs_and_bad_rows())
    cmd = [STUDIO_BIN, "prepare", "tiny-pirate", "train.method=dpo", f"data.source={src}", "data.format=auto"]
    cmd += ["data.eval_fraction=0", "--json"]

    def prepare(*extra: str) -> dict:
        done = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first, again, forced = prepare(), prepare(), prepare("--force")
    assert (first["cached"], again["cached"], forced["cached"]) == (False, True, False)
    assert again["train_rows"] == first["train_rows"] == 12 and again["stats"] == first["stats"]
    assert again["stats"]["skipped"] == {"chosen equals rejected": 1}
