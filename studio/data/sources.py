"""Load the rows of a recipe's data set: local csv/json/jsonl/parquet/txt files, or the hub."""

from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.errors import DataError
from lorastudio.recipe import DataSection

Row = dict[str, Any]


@dataclass(frozen=True)
class Rows:
    """The loaded rows and where they came from."""

    rows: list[Row]
    columns: list[str]
    origin: str


def is_local(source: str) -> bool:
    path = Path(source).expanduser()
    return path.exists() or path.suffix.lower() in (".csv", ".json", ".jsonl", ".parquet", ".txt")


def _columns(rows: list[Row]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows[:100]:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def _read_jsonl(path: Path) -> list[Row]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
            if not isinstance(value, dict):
                raise DataError(f"{path}: line {number} is not a JSON object")
            rows.append(value)
    return rows


def _read_json(path: Path) -> list[Row]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            value = lists[0]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise DataError(f"{path}: expected a JSON list of objects (or an object holding one such list)")
    return value


def _read_csv(path: Path) -> list[Row]:
    try:
        # utf-8-sig: Excel writes a byte-order mark, which would otherwise stick to the first column's name.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            sample = handle.read(4096)
            if "\x00" in sample:
                raise DataError(f"{path}: not a CSV text file (binary content)")
            handle.seek(0)
            reader = csv.DictReader(handle)
            fieldnames = reader.fieldnames  # read while the file is open: it is lazy, and an empty file has none
            rows = [dict(r) for r in reader]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a CSV text file (not UTF-8)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: invalid CSV: {exc}") from None
    if not fieldnames:
        raise DataError(f"{path}: the CSV file is empty (no header row)")
    for number, row in enumerate(rows, 2):
        if None in row:
            raise DataError(f"{path}: row on line {number} has more fields than the header")
    return rows


def _read_parquet(path: Path) -> list[Row]:
    with path.open("rb") as handle:
        if handle.read(4) != b"PAR1":
            raise DataError(f"{path}: not a Parquet file (missing PAR1 magic)")
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _read_txt(path: Path) -> list[Row]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    # Blank lines separate documents, as in most plain-text corpora.
    docs = [d.strip() for d in text.split("\n\n")]
    return [{"text": d} for d in docs if d]


READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet,
           ".txt": _read_txt}


def load_local(path: Path) -> Rows:
    path = path.expanduser()
    if not path.exists():
        raise DataError(f"data.source: no such file {path}")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"data.source: {path}: unsupported extension (use one of {', '.join(READERS)})")
    try:
        rows = reader(path)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text, so not a {path.suffix} file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    return Rows(rows, _columns(rows), str(path))


def load_hub(source: str, split: str, revision: str | None = None) -> Rows:
    hint = "use a local file instead (data.source: path/to/file.jsonl)"
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise DataError(f"data.source: cannot reach the hub for {source!r} (offline mode); {hint}")
    try:
        import datasets

        ds = datasets.load_dataset(source, split=split, revision=revision)
    except Exception as exc:  # network, auth and missing-split errors all come here
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if any(word in text.lower() for word in ("connect", "offline", "resolve", "network", "timed out", "couldn't")):
            raise DataError(f"data.source: cannot reach the hub for {source!r}; {hint}") from None
        raise DataError(f"data.source: cannot load {source!r} split {split!r}: {text}") from None
    rows = ds.to_list()
    return Rows(rows, list(ds.column_names), f"hub:{source}")


def load_rows(data: DataSection, split: str | None = None) -> Rows:
    """All rows of the recipe's split (``limit`` applied)."""
    if is_local(data.source):
        loaded = load_local(Path(data.source))
    else:
        loaded = load_hub(data.source, split or data.split)
    if data.limit is not None:
        loaded = Rows(loaded.rows[: data.limit], loaded.columns, loaded.origin)
    return loaded


DEFAULT_EVAL_FRACTION = 0.05
DEFAULT_EVAL_MIN, DEFAULT_EVAL_MAX = 16, 256
DEFAULT_EVAL_MIN_ROWS = 32
"""The default hold-out when a recipe names no eval data: 5% of the rows, at least 16 and at most 256,
and none for data sets under 32 rows (too few to spare any)."""


def eval_holdout_size(rows: int, fraction: float | None) -> int:
    """How many of ``rows`` rows :func:`train_eval_split` holds out: ``fraction`` None is the default rule,
    0 none, anything else that fraction (at least one row, and always at least one row left to train on)."""
    if fraction is None:
        if rows < DEFAULT_EVAL_MIN_ROWS:
            return 0
        return min(DEFAULT_EVAL_MAX, max(DEFAULT_EVAL_MIN, round(rows * DEFAULT_EVAL_FRACTION)))
    if fraction <= 0 or rows < 2:
        return 0
    return min(rows - 1, max(1, int(rows * fraction)))


def train_eval_split(rows: list[Row], fraction: float | None, seed: int) -> tuple[list[Row], list[Row]]:
    """Hold out rows for evaluation, chosen by a shuffle with the recipe's seed (so the same every run).

    ``fraction`` is the recipe's ``data.eval_fraction``: None (unset) applies the default rule (see
    :func:`eval_holdout_size`), 0 holds out nothing. Training rows keep their original order.
    """
    cut = eval_holdout_size(len(rows), fraction)
    if not cut:
        return rows, []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:cut])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in order[:cut]]


def describe_eval_split(data: DataSection, rows: int) -> str:
    """A few words for the Preview stats and the Launch sheet: where the eval loss will come from."""
    if data.eval_split:
        return f"split {data.eval_split!r}"
    if data.eval_fraction == 0:
        return "off (eval_fraction 0)"
    held = eval_holdout_size(rows, data.eval_fraction)
    if not held:
        return f"none (< {DEFAULT_EVAL_MIN_ROWS} rows)" if data.eval_fraction is None else "none"
    return f"{held} rows held out" + (" (5%)" if data.eval_fraction is None else f" ({data.eval_fraction:g})")
