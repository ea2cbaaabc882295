"""Issue 14: `studio validate` checks without a model; data loading through datasets (Arrow) keeps its messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lorastudio.data.datasource import load_rows
from lorastudio.errors import DataError
from lorastudio.recipe import DataSection


def _validate(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lorastudio.cli", "validate", *map(str, files)], capture_output=True, text=True
    )


def _recipe(path: Path, template: str, source: str) -> Path:
    path.write_text(
        f"name: {path.stem}\nmodel:\n  name: tiny\n  chat_template: {template}\ndata:\n  source: {source}\n"
    )
    return path


def test_validate_checks_template_and_data_without_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.tsv").write_text("a\tb\n")
    (tmp_path / "ok.jsonl").write_text('{"text": "hi"}\n')
    bad_template = _recipe(tmp_path / "one.yaml", "chatmll", "ok.jsonl")
    missing = _recipe(tmp_path / "two.yaml", "chatml", "nowhere.jsonl")
    wrong_ext = _recipe(tmp_path / "three.yaml", "tokenizer", str(tmp_path / "notes.tsv"))
    good = _recipe(tmp_path / "four.yaml", "llama-3.1", "ok.jsonl")
    out = _validate(bad_template, missing, wrong_ext, good)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"{bad_template}: model.chat_template: unknown template 'chatmll' (known: tokenizer," in out.stderr
    assert f"{missing}: data.source: no such file {tmp_path / 'nowhere.jsonl'}" in out.stderr
    assert f"{wrong_ext}: data.source: {tmp_path / 'notes.tsv'}: unsupported extension" in out.stderr
    assert out.stdout.strip() == f"{good}: ok"


def test_validate_accepts_a_folder_of_shards_and_refuses_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "part-0.jsonl").write_text('{"text": "hi"}\n')
    (tmp_path / "empty").mkdir()
    ok = _recipe(tmp_path / "ok.yaml", "chatml", "shards")
    bad = _recipe(tmp_path / "bad.yaml", "chatml", "empty")
    out = _validate(ok, bad)
    assert out.stdout.strip() == f"{ok}: ok"
    assert f"{bad}: data.source: {tmp_path / 'empty'}: the folder holds no data files" in out.stderr


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_is_arrow_backed_and_reads_like_a_list(tmp_path: Path) -> None:
    rows = [{"instruction": f"q{i}", "response": f"a{i}"} for i in range(5)]
    loaded = load_rows(DataSection(source=str(_jsonl(tmp_path / "d.jsonl", rows))))
    assert loaded.rows.dataset is not None  # memory-mapped Arrow, not Python lists
    assert loaded.columns == ["instruction", "response"]
    assert len(loaded.rows) == 5 and loaded.rows[3] == rows[3] and loaded.rows[-1] == rows[4]
    assert loaded.rows[:2] == rows[:2] and list(loaded.rows) == rows and loaded.rows == rows
    assert load_rows(DataSection(source=str(tmp_path / "d.jsonl"), limit=2)).rows == rows[:2]


def test_folder_of_shards_and_save_to_disk_folder(tmp_path: Path) -> None:
    import datasets

    shards = tmp_path / "shards"
    shards.mkdir()
    _jsonl(shards / "part-1.jsonl", [{"text": "b"}])
    _jsonl(shards / "part-0.jsonl", [{"text": "a"}])
    assert list(load_rows(DataSection(source=str(shards))).rows) == [{"text": "a"}, {"text": "b"}]
    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"text": "t"}]),
            "test": datasets.Dataset.from_list([{"text": "e"}]),
        }
    ).save_to_disk(str(saved))
    assert list(load_rows(DataSection(source=str(saved))).rows) == [{"text": "t"}]
    assert list(load_rows(DataSection(source=str(saved), split="test")).rows) == [{"text": "e"}]
    with pytest.raises(DataError, match="has no split 'dev'"):
        load_rows(DataSection(source=str(saved), split="dev"))


def test_json_object_holding_a_list_and_json_lines_named_json(tmp_path: Path) -> None:
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": [{"text": "a"}, {"text": "b"}]}))
    assert list(load_rows(DataSection(source=str(tmp_path / "wrapped.json"))).rows) == [
        {"text": "a"},
        {"text": "b"},
    ]
    (tmp_path / "lines.json").write_text('{"text": "a"}\n{"text": "b"}\n')
    assert list(load_rows(DataSection(source=str(tmp_path / "lines.json"))).rows) == [
        {"text": "a"},
        {"text": "b"},
    ]


def test_malformed_line_is_named_with_file_and_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n{"text": \n{"text": "d"}\n')
    with pytest.raises(DataError, match=r"broken\.jsonl: line 3 is not valid JSON"):
        load_rows(DataSection(source=str(path)))
    path.write_text('{"text": "a"}\n{bad json\n')  # the datasets builder logs this one before raising
    with pytest.raises(DataError, match=r"broken\.jsonl: line 2 is not valid JSON"):
        load_rows(DataSection(source=str(path)))
    assert "Failed to load JSON" not in capfd.readouterr().err  # only our message, not the builder's log too
    shards = tmp_path / "shards"
    shards.mkdir()
    _jsonl(shards / "a.jsonl", [{"text": "ok"}])
    (shards / "b.jsonl").write_text('{"text": "ok"}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"b\.jsonl: line 2 is not a JSON object"):
        load_rows(DataSection(source=str(shards)))


def test_csv_extra_field_row_is_named(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("instruction,response\na,b\nc,d,e\n")
    with pytest.raises(DataError, match=r"wide\.csv: row on line 3 has more fields than the header"):
        load_rows(DataSection(source=str(path)))


def test_mixed_types_still_load(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [{"text": "a", "id": 1}, {"text": "b", "id": "two"}]
    loaded = load_rows(DataSection(source=str(_jsonl(tmp_path / "mixed.jsonl", rows))))
    assert list(loaded.rows) == rows


def test_head_rows_read_the_start_of_a_big_file_only(tmp_path: Path) -> None:
    """The Preview's first sample comes from the first lines; a broken line further on is the whole load's to name."""
    from lorastudio.data.datasource import head_rows

    lines = [json.dumps({"instruction": f"Q{i}?", "context": "", "response": f"A{i}."}) for i in range(200)]
    lines[150] = "{broken"
    data = tmp_path / "big.jsonl"
    data.write_text("\n".join(lines) + "\n")
    head = head_rows(DataSection(source=str(data)), count=10)
    assert (
        head is not None
        and len(head.rows) == 10
        and head.rows[3] == {"instruction": "Q3?", "context": "", "response": "A3."}
    )
    assert head.columns == ["instruction", "context", "response"] and head.origin == str(data)
    with pytest.raises(DataError, match=r"big\.jsonl: line 151 is not valid JSON"):
        load_rows(DataSection(source=str(data)))
    first_four = head_rows(DataSection(source=str(data), limit=4))
    assert first_four is not None and len(first_four.rows) == 4
    csv_file = tmp_path / "excel.csv"
    csv_file.write_text("\ufeffConcept,Description\nsail,Arr\nmast,Aye\n", encoding="utf-8")
    excel = head_rows(DataSection(source=str(csv_file)))
    assert excel is not None and excel.rows[1] == {"Concept": "mast", "Description": "Aye"}
    parquet = tmp_path / "x.parquet"
    parquet.write_bytes(b"PAR1")
    assert (
        head_rows(DataSection(source=str(parquet))) is None
    )  # no shortcut: the whole load is quick or says why
    assert head_rows(DataSection(source=str(data), split="test")) is None


def test_preview_head_encodes_the_first_sample_as_the_whole_file_does(tmp_path: Path, tiny_tokenizer) -> None:
    from lorastudio.data.prepare import prepare, prepare_head
    from lorastudio.recipe import Recipe

    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(
            json.dumps({"instruction": f"Question {i}?", "context": "c" * (i % 2), "response": f"Arr {i}."})
            + "\n"
            for i in range(300)
        )
    )
    recipe = Recipe.model_validate({"name": "h", "model": {"name": "tiny"}, "data": {"source": str(data)}})
    head = prepare_head(recipe)
    assert head is not None
    whole = prepare(recipe, tokenizer=head.tokenizer)
    assert len(head.rows.rows) < len(whole.rows.rows) == 300
    assert head.encoder.format == whole.encoder.format == "dolly"
    for i in range(3):
        assert head.encoder.encode_row(head.rows.rows[i]) == whole.encoder.encode_row(whole.rows.rows[i])


# -- compressed files and pathological JSON ---------------------------------------------------------------
def _gzip(path: Path, text: str) -> Path:
    import gzip

    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(text)
    return path


def test_gzip_compressed_files_load_like_plain_ones(tmp_path: Path) -> None:
    from lorastudio.data.datasource import head_rows

    rows = [{"instruction": f"q{i}", "response": f"a{i}"} for i in range(5)]
    jsonl = _gzip(tmp_path / "train.jsonl.gz", "".join(json.dumps(r) + "\n" for r in rows))
    whole = _gzip(tmp_path / "train.json.gz", json.dumps(rows))
    table = _gzip(
        tmp_path / "train.csv.gz", "instruction,response\n" + "".join(f"q{i},a{i}\n" for i in range(5))
    )
    for path in (jsonl, whole, table):
        loaded = load_rows(DataSection(source=str(path)))
        assert list(loaded.rows) == rows, path.name
        assert loaded.columns == ["instruction", "response"]
    head = head_rows(DataSection(source=str(jsonl)), count=2)  # the Preview's fast first lines, decompressed
    assert head is not None and list(head.rows) == rows[:2]
    table_head = head_rows(DataSection(source=str(table)), count=3)
    assert table_head is not None and list(table_head.rows) == rows[:3]
    shards = tmp_path / "shards"
    shards.mkdir()
    _gzip(shards / "part-0.jsonl.gz", "".join(json.dumps(r) + "\n" for r in rows[:2]))
    _gzip(shards / "part-1.jsonl.gz", "".join(json.dumps(r) + "\n" for r in rows[2:]))
    assert list(load_rows(DataSection(source=str(shards))).rows) == rows
    broken = _gzip(tmp_path / "broken.jsonl.gz", '{"text": "a"}\n{"text": \n')
    with pytest.raises(DataError, match=r"broken\.jsonl\.gz: line 2 is not valid JSON"):
        load_rows(DataSection(source=str(broken)))
    (tmp_path / "x.parquet.gz").write_bytes(b"")
    with pytest.raises(DataError, match="unsupported extension"):
        load_rows(DataSection(source=str(tmp_path / "x.parquet.gz")))


def test_validate_and_prepare_accept_a_compressed_file(tmp_path: Path, tiny_model: Path) -> None:
    rows = [{"instruction": f"What is {i}?", "context": "", "response": f"It is {i}."} for i in range(40)]
    _gzip(tmp_path / "train.jsonl.gz", "".join(json.dumps(r) + "\n" for r in rows))
    recipe = _recipe(tmp_path / "gz.yaml", "chatml", "train.jsonl.gz")
    assert _validate(recipe).stdout.strip() == f"{recipe}: ok"
    out = subprocess.run(
        [sys.executable, "-m", "lorastudio.cli", "prepare", str(recipe), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["stats"]["rows"] == 40 and summary["stats"]["used"] == 40


def test_json_nested_too_deeply_is_one_line_naming_the_file(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"deep\.json: .*nested too deeply"):
        load_rows(DataSection(source=str(deep)))
    lines = tmp_path / "deep.jsonl"
    lines.write_text('{"text": "ok"}\n{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(DataError, match=r"deep\.jsonl: .*nested too deeply"):
        load_rows(DataSection(source=str(lines)))
    recipe = _recipe(tmp_path / "deep.yaml", "chatml", "deep.json")
    out = subprocess.run(
        [sys.executable, "-m", "lorastudio.cli", "preview", str(recipe)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr and "RecursionError" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("studio: ") and str(deep) in out.stderr


def _children_running(module: str) -> list[int]:
    """This process's child processes whose command line names ``module`` (read from /proc)."""
    import os

    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                if module in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(pid))
            except OSError:
                continue
    return found


def test_a_helper_converts_a_large_file_to_arrow_and_load_rows_reads_its_conversion(tmp_path: Path) -> None:
    """``arrowwarm``: a helper process makes the datasets conversion while its caller loads the tokenizer;
    the caller's ``load_rows`` then reads the very Arrow files the helper wrote, with the same rows."""
    from lorastudio.data import arrowwarm
    from lorastudio.paths import cache_dir

    rows = [{"text": f"row {k} of the ship's log, {k * 7} leagues"} for k in range(3000)]
    path = tmp_path / "big.jsonl"
    _jsonl(path, rows)
    data = DataSection(source=str(path))
    assert arrowwarm.start(data) is None  # a small file: converting it here is quicker than a helper
    warming = arrowwarm.start(data, at_least=0)
    assert warming is not None
    assert warming.process.wait(timeout=120) == 0
    written = {p: p.stat().st_mtime_ns for p in (cache_dir() / "datasets").rglob("*.arrow")}
    assert written  # the helper's conversion, in the cache load_rows uses
    loaded = load_rows(data)
    warming.close()
    used = [Path(f["filename"]) for f in loaded.rows.dataset.cache_files]
    assert used and all(written.get(p) == p.stat().st_mtime_ns for p in used)  # read, not converted again
    assert len(loaded.rows) == len(rows) and loaded.rows[0] == rows[0] and loaded.rows[-1] == rows[-1]
    assert arrowwarm.start(DataSection(source=str(tmp_path / "nowhere.jsonl")), at_least=0) is None


def test_a_helper_that_cannot_convert_leaves_the_message_and_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed file: the helper fails quietly and ``load_rows`` names the file and line; a failing
    ``prepare`` (a model that is not there) stops its helper, so no process outlives it."""
    from lorastudio import registry
    from lorastudio.data import arrowwarm
    from lorastudio.data.prepare import prepare
    from lorastudio.errors import StudioError

    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n{"text": \n')
    warming = arrowwarm.start(DataSection(source=str(path)), at_least=0)
    assert warming is not None
    warming.process.wait(timeout=120)
    with pytest.raises(DataError, match=r"broken\.jsonl: line 3 is not valid JSON"):
        load_rows(DataSection(source=str(path)))
    warming.close()
    good = tmp_path / "good.jsonl"
    _jsonl(good, [{"text": f"row {k}"} for k in range(50_000)])
    recipe = registry.load("tiny-pirate", [f"data.source={good}", f"model.name={tmp_path / 'no-model-here'}"])
    started: list[arrowwarm.Warming] = []
    real_start = arrowwarm.start

    def start(data: DataSection, at_least: int | None = None) -> arrowwarm.Warming | None:
        started.append(real_start(data, at_least=0))  # type: ignore[arg-type]
        return started[-1]

    monkeypatch.setattr(arrowwarm, "start", start)
    with pytest.raises(StudioError):
        prepare(recipe)
    assert started and started[0] is not None and started[0].process.returncode is not None
    assert _children_running("lorastudio.data.arrowwarm") == []
