"""The prepared-data cache: what it holds, that it is reused, and that any key change re-encodes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from lorastudio.data import cache
from lorastudio.data.encode import IGNORE_INDEX, compute_stats, encode_all, pack
from lorastudio.data.prepare import prepare
from lorastudio.data.sources import train_eval_split
from lorastudio.recipe import Recipe


def _recipe(source: Path, **changes: Any) -> Recipe:
    data: dict[str, Any] = {"name": "c", "model": {"name": "tiny", "max_seq_length": 64},
                            "data": {"source": str(source)}, "train": {}}
    for dotted, value in changes.items():
        section, field = dotted.split("__")
        data[section][field] = value
    return Recipe.model_validate(data)


def _data(path: Path, n: int = 30) -> Path:
    rows = [{"instruction": f"Question {i}?", "context": "", "response": f"Arr, answer {i}." * (1 + i % 4)}
            for i in range(n)]
    rows[5]["response"] = ""  # skipped: empty response
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def xdg_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "studio" / "prepared"


def test_cache_holds_what_the_encoder_gives(tmp_path: Path, tiny_tokenizer, xdg_cache: Path) -> None:
    rec = _recipe(_data(tmp_path / "d.jsonl"), data__eval_fraction=0.2)
    prepared = prepare(rec, tokenizer=tiny_tokenizer)
    got = cache.prepare_data(rec, prepared=prepared)
    assert not got.from_cache and got.path.parent == xdg_cache and (got.path / cache.META).exists()
    rows = list(prepared.rows.rows)
    train_raw, eval_raw = train_eval_split(rows, 0.2, rec.train.seed)
    eval_raw.sort(key=rows.index)  # the cache keeps held-out rows in file order (it streams the encoded rows)
    want_train = encode_all(prepared.encoder, train_raw, "x")
    want_eval = encode_all(prepared.encoder, eval_raw, "x")
    assert got.train["input_ids"] == [s.input_ids for s in want_train]
    assert got.train["labels"] == [s.labels for s in want_train]
    assert got.eval["labels"] == [s.labels for s in want_eval]
    assert got.stats.to_json() == compute_stats(prepared.encoder, rows).to_json()
    assert got.stats.skipped == {"empty response": 1}
    again = cache.prepare_data(rec, prepared=prepared)
    assert again.from_cache and again.key == got.key and again.train["labels"] == got.train["labels"]
    assert again.stats.to_json() == got.stats.to_json()


def test_packed_cache_matches_pack(tmp_path: Path, tiny_tokenizer, xdg_cache: Path) -> None:
    rec = _recipe(_data(tmp_path / "d.jsonl"), train__packing=True)
    prepared = prepare(rec, tokenizer=tiny_tokenizer)
    got = cache.prepare_data(rec, prepared=prepared)
    want = pack(encode_all(prepared.encoder, list(prepared.rows.rows), "x"), 64)
    assert got.train.to_list() == want
    assert all(row["labels"][0] == IGNORE_INDEX for row in want)


@pytest.mark.parametrize("change", [
    {"model__max_seq_length": 32}, {"model__chat_template": "chatml"}, {"data__format": "dolly"},
    {"data__system_prompt": "Talk like a pirate."}, {"data__eval_fraction": 0.1}, {"data__limit": 10},
    {"data__columns": {"response": "response"}}, {"train__packing": True}, {"train__train_on": "all"},
    {"train__seed": 1},
])
def test_any_key_field_change_re_encodes(tmp_path: Path, tiny_tokenizer, xdg_cache: Path,
                                         change: dict[str, Any]) -> None:
    source = _data(tmp_path / "d.jsonl")
    base = cache.prepare_data(_recipe(source), tokenizer=tiny_tokenizer)
    changed_recipe = _recipe(source, **change)
    changed = cache.prepare_data(changed_recipe, tokenizer=tiny_tokenizer)
    assert changed.key != base.key and not changed.from_cache
    fresh = cache.prepare_data(changed_recipe, tokenizer=tiny_tokenizer, use_cache=False)
    assert changed.train.to_list() == fresh.train.to_list()
    assert cache.prepare_data(_recipe(source), tokenizer=tiny_tokenizer).from_cache  # the old entry still serves


def test_touching_or_editing_the_data_re_encodes(tmp_path: Path, tiny_tokenizer, xdg_cache: Path) -> None:
    source = _data(tmp_path / "d.jsonl")
    rec = _recipe(source)
    first = cache.prepare_data(rec, tokenizer=tiny_tokenizer)
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = cache.prepare_data(rec, tokenizer=tiny_tokenizer)
    assert touched.key != first.key and not touched.from_cache
    source.write_text(json.dumps({"instruction": "Only?", "context": "", "response": "One."}) + "\n")
    edited = cache.prepare_data(rec, tokenizer=tiny_tokenizer)
    assert not edited.from_cache and len(edited.train) == 1 and edited.stats.rows == 1


def test_a_different_tokenizer_re_encodes(tmp_path: Path, tiny_tokenizer, xdg_cache: Path) -> None:
    import copy

    source = _data(tmp_path / "d.jsonl")
    first = cache.prepare_data(_recipe(source), tokenizer=tiny_tokenizer)
    other = copy.deepcopy(tiny_tokenizer)
    other.add_special_tokens({"additional_special_tokens": ["<|new|>"]})
    assert cache.prepare_data(_recipe(source), tokenizer=other).key != first.key


def test_incomplete_entry_is_never_used(tmp_path: Path, tiny_tokenizer, xdg_cache: Path) -> None:
    source = _data(tmp_path / "d.jsonl")
    first = cache.prepare_data(_recipe(source), tokenizer=tiny_tokenizer)
    first_rows = first.train.to_list()
    damaged = first.path / cache.TRAIN
    damaged.unlink()  # (a new inode: rewriting a memory-mapped file in place would pull it from under readers)
    damaged.write_bytes(b"garbage")  # a damaged disk, or a file cut short
    again = cache.prepare_data(_recipe(source), tokenizer=tiny_tokenizer)
    assert not again.from_cache and again.train.to_list() == first_rows
    assert not [p for p in xdg_cache.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_studio_prepare_encodes_then_reads_the_cache(tiny_model: Path) -> None:
    import subprocess

    from conftest import STUDIO_BIN

    cmd = [STUDIO_BIN, "prepare", "tiny-pirate", "data.eval_fraction=0.1", "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert not out["from_cache"] and out["format"] == "dolly" and Path(out["cache"]).is_dir()
    assert out["train_rows"] + out["eval_rows"] == out["stats"]["used"] == out["stats"]["rows"]
    second = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert second["from_cache"] and second["cache"] == out["cache"] and second["stats"] == out["stats"]
    text = subprocess.run(cmd[:-1], capture_output=True, text=True, check=True).stdout
    assert "read from cache" in text and f"cache: {out['cache']}" in text


def test_worker_trains_from_the_cached_arrow_sets(tiny_model: Path) -> None:
    from conftest import run_worker

    from lorastudio import registry
    from lorastudio.train import runs
    from lorastudio.train.events import EVENTS_FILE, read_all

    overrides = ["data.eval_fraction=0.1", "train.packing=true", "train.max_steps=2", "train.save_steps=2"]
    recipe = registry.load("tiny-pirate", overrides)
    run_dir = runs.create_run(recipe)
    result = run_worker(run_dir)
    assert result.returncode == 0, result.stderr
    events = read_all(run_dir / EVENTS_FILE)
    assert events[-1]["status"] == "done"
    from lorastudio.models.sources import load_tokenizer

    entry = cache.cached(recipe, load_tokenizer(recipe.model))
    assert entry is not None and "position_ids" in entry.train.column_names  # packed, and kept for next time
    assert any(e.get("message", "").startswith(f"{len(entry.train)} training samples (dolly), {len(entry.eval)} eval")
               for e in events)


def test_several_processes_give_what_one_gives(tmp_path: Path, tiny_tokenizer, xdg_cache: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Large data sets are encoded in shards, one process each; the entry is the same row for row."""
    from lorastudio.data import shards

    data = _data(tmp_path / "d.jsonl", n=90)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[70]["response"] = ""  # skipped in the last shard: its row number must stay global
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rec = _recipe(data, data__eval_fraction=0.1)
    prepared = prepare(rec, tokenizer=tiny_tokenizer)
    one = cache.prepare_data(rec, prepared=prepared, use_cache=False)
    monkeypatch.setattr(shards, "MIN_ROWS_PER_PROCESS", 20)
    monkeypatch.setenv(shards.WORKERS_ENV, "3")
    seen: list[int] = []
    many = cache.prepare_data(rec, prepared=prepared, use_cache=False, every=10,
                              progress=lambda stats: seen.append(stats.used + sum(stats.skipped.values())))
    assert len(list(many.path.glob("samples-*.arrow"))) == 3
    assert many.train["input_ids"] == one.train["input_ids"] and many.train["labels"] == one.train["labels"]
    assert many.eval["labels"] == one.eval["labels"]
    assert many.stats.to_json() == one.stats.to_json()
    assert many.stats.skipped_rows == {"empty response": [5, 70]}
    assert seen == sorted(seen) and seen[-1] == 90 and len(seen) >= 2
