"""The prepared-data cache: what it holds, that it is reused, and that any key change re-encodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lorastudio.data.datasource import train_eval_split
from lorastudio.data.encode import IGNORE_INDEX, encode_all, pack
from lorastudio.data.prepare import prepare
from lorastudio.data.prepared import cache, cacheindex
from lorastudio.data.prepared.fastencode import compute_stats
from lorastudio.recipe import Recipe


def _recipe(source: Path, **changes: Any) -> Recipe:
    data: dict[str, Any] = {
        "name": "c",
        "model": {"name": "tiny", "max_seq_length": 64},
        "data": {"source": str(source)},
        "train": {},
    }
    for dotted, value in changes.items():
        section, field = dotted.split("__")
        data[section][field] = value
    return Recipe.model_validate(data)


def _data(path: Path, n: int = 30) -> Path:
    rows = [
        {"instruction": f"Question {i}?", "context": "", "response": f"Arr, answer {i}." * (1 + i % 4)}
        for i in range(n)
    ]
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


@pytest.mark.parametrize("packing", [False, True])
def test_a_named_eval_split_is_the_eval_set(
    tmp_path: Path, tiny_tokenizer, xdg_cache: Path, packing: bool
) -> None:
    """With ``data.eval_split`` every training row trains and the named split's rows evaluate, packed or not."""
    from datasets import Dataset, DatasetDict

    rows = [json.loads(line) for line in _data(tmp_path / "d.jsonl").read_text().splitlines()]
    DatasetDict({"train": Dataset.from_list(rows[:20]), "test": Dataset.from_list(rows[20:])}).save_to_disk(
        tmp_path / "saved"
    )
    rec = _recipe(tmp_path / "saved", data__eval_split="test", train__packing=packing)
    prepared = prepare(rec, tokenizer=tiny_tokenizer)
    got = cache.prepare_data(rec, prepared=prepared)
    want_train = encode_all(prepared.encoder, rows[:20], "x")
    want_eval = encode_all(prepared.encoder, rows[20:], "x")
    if packing:
        assert got.train.to_list() == pack(want_train, 64) and got.eval.to_list() == pack(want_eval, 64)
    else:
        assert got.train["input_ids"] == [s.input_ids for s in want_train]  # row 5 skipped, none held out
        assert got.eval["labels"] == [s.labels for s in want_eval]
    assert cache.prepare_data(rec, prepared=prepared).from_cache


@pytest.mark.parametrize(
    "change",
    [
        {"model__max_seq_length": 32},
        {"model__chat_template": "chatml"},
        {"data__format": "dolly"},
        {"data__system_prompt": "Talk like a pirate."},
        {"data__eval_fraction": 0.1},
        {"data__limit": 10},
        {"data__columns": {"response": "response"}},
        {"train__packing": True},
        {"train__train_on": "all"},
        {"train__seed": 1},
    ],
)
def test_any_key_field_change_re_encodes(
    tmp_path: Path, tiny_tokenizer, xdg_cache: Path, change: dict[str, Any]
) -> None:
    source = _data(tmp_path / "d.jsonl")
    base = cache.prepare_data(_recipe(source), tokenizer=tiny_tokenizer)
    changed_recipe = _recipe(source, **change)
    changed = cache.prepare_data(changed_recipe, tokenizer=tiny_tokenizer)
    assert changed.key != base.key and not changed.from_cache
    fresh = cache.prepare_data(changed_recipe, tokenizer=tiny_tokenizer, use_cache=False)
    assert changed.train.to_list() == fresh.train.to_list()
    assert cache.prepare_data(
        _recipe(source), tokenizer=tiny_tokenizer
    ).from_cache  # the old entry still serves


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
    damaged = first.path / json.loads((first.path / cache.META).read_text())["train_files"][0]
    damaged.unlink()  # (a new inode: rewriting a memory-mapped file in place would pull it from under readers)
    damaged.write_bytes(b"garbage")  # a damaged disk, or a file cut short
    again = cache.prepare_data(_recipe(source), tokenizer=tiny_tokenizer)
    assert not again.from_cache and again.train.to_list() == first_rows
    assert not [p for p in xdg_cache.iterdir() if p.name.endswith(".tmp")]  # no staging folder left behind


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


@pytest.mark.slow
def test_worker_trains_from_the_cached_arrow_sets(tiny_model: Path) -> None:
    from conftest import run_worker

    from lorastudio import registry
    from lorastudio.train.launch import runs
    from lorastudio.train.run.eventlog import EVENTS_FILE, read_all

    overrides = ["data.eval_fraction=0.1", "train.packing=true", "train.max_steps=2", "train.save_steps=2"]
    recipe = registry.load("tiny-pirate", overrides)
    run_dir = runs.create_run(recipe)
    result = run_worker(run_dir)
    assert result.returncode == 0, result.stderr
    events = read_all(run_dir / EVENTS_FILE)
    assert events[-1]["status"] == "done"
    from lorastudio.models.resolve import load_tokenizer

    entry = cache.cached(recipe, load_tokenizer(recipe.model))
    assert entry is not None and "position_ids" in entry.train.column_names  # packed, and kept for next time
    assert any(
        e.get("message", "").startswith(
            f"{len(entry.train)} training samples (dolly), {len(entry.eval)} eval"
        )
        for e in events
    )


@pytest.mark.slow  # starts helper processes that import the tokenizer stack
@pytest.mark.parametrize("caller", ["main thread", "other thread"])
def test_several_processes_give_what_one_gives(
    tmp_path: Path, tiny_tokenizer, xdg_cache: Path, monkeypatch: pytest.MonkeyPatch, caller: str
) -> None:
    """Large data sets are encoded in chunks by helper processes (and by the caller itself on the main
    thread, as studio prepare; not from the TUI's thread); the entry is the same row for row. From the main
    thread the helpers are forks that start with the caller's encoder, from another they are fresh processes."""
    import threading

    from lorastudio.data.prepared import shards

    data = _data(tmp_path / "d.jsonl", n=90)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[70]["response"] = ""  # skipped in a later chunk: its row number must stay global
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rec = _recipe(data, data__eval_fraction=0.1)
    prepared = prepare(rec, tokenizer=tiny_tokenizer)
    one = cache.prepare_data(rec, prepared=prepared, use_cache=False)
    monkeypatch.setattr(shards, "MIN_ROWS_FOR_HELPERS", 20)
    monkeypatch.setattr(shards, "CHUNK_ROWS", 13)
    monkeypatch.setenv(shards.WORKERS_ENV, "3")
    seen: list[int] = []
    got: list[cache.PreparedData] = []
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    forks: list[int] = []

    class Forked(shards._Forked):
        def __init__(self, *args: Any) -> None:
            forks.append(os.getpid())
            super().__init__(*args)

    monkeypatch.setattr(shards, "_Forked", Forked)
    # pytest-xdist's own thread would make the main thread fall back to fresh processes.
    monkeypatch.setattr(shards, "IDLE_THREADS", frozenset(t.name for t in threading.enumerate()))

    def run() -> None:
        got.append(
            cache.prepare_data(
                rec,
                prepared=prepared,
                use_cache=False,
                every=10,
                progress=lambda stats: seen.append(stats.used + sum(stats.skipped.values())),
            )
        )

    if caller == "main thread":
        run()
    else:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(120)
    (many,) = got
    assert len(list(many.path.glob("samples-*.arrow"))) == 7  # 90 rows in chunks of 13
    assert many.train["input_ids"] == one.train["input_ids"] and many.train["labels"] == one.train["labels"]
    assert many.eval["labels"] == one.eval["labels"]
    assert many.stats.to_json() == one.stats.to_json()
    assert many.stats.skipped_rows == {"empty response": [5, 70]}
    assert seen == sorted(seen) and seen[-1] == 90 and len(seen) >= 2
    assert os.environ.get("TOKENIZERS_PARALLELISM") == before  # held to one thread only while encoding
    assert len(forks) == (2 if caller == "main thread" else 0)  # three processes: this one and two helpers


def _tokenizer_copy(tiny_model: Path, folder: Path) -> Path:
    import shutil

    folder.mkdir()
    for f in tiny_model.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy(f, folder / f.name)
    return folder


def test_a_recipe_finds_its_entry_without_loading_the_tokenizer(
    tmp_path: Path, tiny_model: Path, xdg_cache: Path
) -> None:
    tokdir = _tokenizer_copy(tiny_model, tmp_path / "tok")
    data = _data(tmp_path / "d.jsonl")
    rec = _recipe(data, model__name=str(tokdir))
    assert cacheindex.lookup(rec) is None
    built = cache.prepare_data(rec)
    hit = cacheindex.lookup(rec)
    assert hit is not None and hit.path == built.path
    assert hit.stats.to_json() == built.stats.to_json() and hit.meta["train_rows"] == len(built.train)
    data.write_text(
        data.read_text() + json.dumps({"instruction": "New?", "context": "", "response": "Arr."}) + "\n"
    )
    assert cacheindex.lookup(rec) is None  # the data changed
    rebuilt = cache.prepare_data(rec)
    found = cacheindex.lookup(rec)
    assert rebuilt.key != built.key and found is not None and found.path == rebuilt.path
    config = tokdir / "tokenizer_config.json"
    config.write_text(config.read_text().replace("}", ', "model_max_length": 77}', 1))
    assert (
        cacheindex.lookup(rec) is None
    )  # a tokenizer file changed: only the full key can tell if it matters
    assert cacheindex.lookup(_recipe(data, model__name=str(tokdir), train__seed=1)) is None  # another split


def test_studio_prepare_reads_a_hit_without_transformers(
    tmp_path: Path, tiny_model: Path, xdg_cache: Path
) -> None:
    tokdir = _tokenizer_copy(tiny_model, tmp_path / "tok")
    args = [
        "prepare",
        "tiny-pirate",
        f"data.source={_data(tmp_path / 'd.jsonl')}",
        f"model.name={tokdir}",
        "--json",
    ]
    script = (
        "import json, sys\nfrom lorastudio.cli import main\nrc = main(sys.argv[1:])\n"
        "print(json.dumps({'rc': rc, 'transformers': 'transformers' in sys.modules}))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300)
        for _ in range(2)
    ]
    (cold, cold_tail), (warm, warm_tail) = [
        (json.loads(r.stdout[: r.stdout.rindex("\n{")]), json.loads(r.stdout.splitlines()[-1])) for r in runs
    ]
    assert not cold["from_cache"] and cold_tail == {"rc": 0, "transformers": True}
    assert warm["from_cache"] and warm_tail == {"rc": 0, "transformers": False}
    assert warm["stats"] == cold["stats"] and warm["cache"] == cold["cache"] and warm["train_rows"] == 29


def test_eviction_keeps_the_newest_entries_within_the_budget(
    tmp_path: Path, tiny_tokenizer, xdg_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = []
    for seed in range(3):
        rec = _recipe(_data(tmp_path / "d.jsonl"), train__seed=seed)
        entries.append(cache.prepare_data(rec, tokenizer=tiny_tokenizer).path)
        os.utime(entries[-1] / cache.META, (1000 + seed, 1000 + seed))  # used in this order
    stale = xdg_cache / ".abc.123.tmp"
    stale.mkdir()
    os.utime(stale, (0, 0))
    size = sum(f.stat().st_size for f in entries[0].iterdir())
    monkeypatch.setenv(cacheindex.BUDGET_ENV, str(2.5 * size / 1e9))
    cacheindex.touch(entries[0])  # reading an entry counts as a use
    removed = cacheindex.evict()
    assert sorted(removed) == sorted([stale, entries[1]])
    assert entries[0].exists() and entries[2].exists() and not entries[1].exists()
    assert sorted(p.name for p in xdg_cache.glob(".*.lock")) == sorted(
        f".{e.name}.lock" for e in entries if e.exists()
    )
    monkeypatch.setenv(cacheindex.BUDGET_ENV, "0")
    assert cacheindex.evict(keep=entries[2]) == [entries[0]] and entries[2].exists()


BUILDER = """
import hashlib, json, sys, time
from pathlib import Path
from lorastudio.data.prepared import cache
from lorastudio.data.prepare import prepare
from lorastudio.recipe import Recipe

rec = Recipe.model_validate(json.loads(sys.argv[1]))
prepared = prepare(rec)  # the tokenizer and rows loaded before the start, as a Preview has them
print("ready", flush=True)
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
got = cache.prepare_data(rec, prepared=prepared)
ids = hashlib.sha256(json.dumps(got.train.to_dict(), sort_keys=True).encode()).hexdigest()
print(json.dumps({"key": got.key, "ids": ids, "built": not got.from_cache}), flush=True)
"""


def _rows_digest(entry: cache.PreparedData) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(entry.train.to_dict(), sort_keys=True).encode()).hexdigest()


def test_one_key_built_by_many_threads_and_processes_at_once(
    tmp_path: Path, tiny_model: Path, xdg_cache: Path
) -> None:
    """Issue 38: two Previews prepared one key at once and broke each other's staging folder (FileExistsError,
    FileNotFoundError). Three threads here and three other processes start together: one builds, the others
    wait for it and read its entry; all give the same rows, none fails, nothing temporary is left."""
    import threading

    tokdir = _tokenizer_copy(tiny_model, tmp_path / "tok")
    rec = _recipe(_data(tmp_path / "d.jsonl", n=600), model__name=str(tokdir), data__eval_fraction=0.1)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER, rec.model_dump_json(), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr
        prepared = [prepare(rec) for _ in range(3)]  # a tokenizer each: one is not for several threads
        start = threading.Barrier(3)
        results: list[cache.PreparedData] = []
        errors: list[BaseException] = []

        def build(mine: Any) -> None:
            start.wait()
            try:
                results.append(cache.prepare_data(rec, prepared=mine))
            except BaseException as exc:  # noqa: BLE001 - the test reports it
                errors.append(exc)

        threads = [threading.Thread(target=build, args=(p,)) for p in prepared]
        for thread in threads:
            thread.start()
        go.touch()
        for thread in threads:
            thread.join(240)
        outs = [proc.communicate(timeout=240) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert errors == []
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outs]
    others = [json.loads(out.splitlines()[-1]) for out, _ in outs]
    assert len(results) == 3
    want = _rows_digest(results[0])
    assert {_rows_digest(r) for r in results} | {o["ids"] for o in others} == {want}
    assert {r.key for r in results} | {o["key"] for o in others} == {results[0].key}
    assert len(results[0].train) + len(results[0].eval) == results[0].stats.used == 599
    builders = [not r.from_cache for r in results] + [o["built"] for o in others]
    assert builders.count(True) == 1  # the others waited for the one builder and read its entry
    left = sorted(p.name for p in xdg_cache.iterdir())
    assert [n for n in left if n.endswith(".tmp")] == []  # no staging folder left behind
    assert results[0].key in left
