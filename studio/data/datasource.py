"""Load the rows of a recipe's data set: local csv/json/jsonl/parquet/txt files (the text kinds may be
gzip-compressed, ``train.jsonl.gz``), folders of such shards, ``save_to_disk`` folders, or hub ids.

JSON, JSON lines and Parquet go through ``datasets`` into a memory-mapped Arrow cache; when that
fails, the plain readers below read the file again so the message names the file and the line.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar, overload

from lorastudio import hub
from lorastudio.errors import DataError
from lorastudio.recipe import DataSection, Recipe

Row = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Rows:
    """The loaded rows and where they came from."""

    rows: RowTable
    columns: list[str]
    origin: str


COMPRESSED = ".gz"
"""The compression the readers (and ``datasets``) open transparently, for the text kinds only."""
_TEXT_KINDS = (".csv", ".json", ".jsonl", ".txt", ".md")


def data_kind(path: Path) -> str:
    """The data file's kind by its name: ``.jsonl`` for ``train.jsonl`` and ``train.jsonl.gz`` alike.

    A compressed file of a kind that is not text (``.parquet.gz``) keeps its full suffix, so it is refused.
    """
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if len(suffixes) == 2 and suffixes[1] == COMPRESSED and suffixes[0] in _TEXT_KINDS:
        return suffixes[0]
    return path.suffix.lower()


def _open_text(path: Path, encoding: str = "utf-8", newline: str | None = None) -> IO[str]:
    if path.suffix.lower() == COMPRESSED:
        return gzip.open(path, "rt", encoding=encoding, newline=newline)
    return path.open(encoding=encoding, newline=newline)


def _read_all_text(path: Path) -> str:
    with _open_text(path) as handle:
        return handle.read()


def is_local(source: str) -> bool:
    path = Path(source).expanduser()
    return path.exists() or data_kind(path) in READERS


def _columns(rows: list[Row]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows[:100]:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def _read_jsonl(path: Path, limit: int | None = None) -> list[Row]:
    """Every row (or the first ``limit``), naming the line of the first that is not a JSON object."""
    rows: list[Row] = []
    with _open_text(path) as handle:
        for number, line in enumerate(handle, 1):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise DataError(f"{path}: line {number} is nested too deeply to read") from None
            if not isinstance(value, dict):
                raise DataError(f"{path}: line {number} is not a JSON object")
            rows.append(value)
    return rows


def _read_json(path: Path) -> list[Row]:
    try:
        value = json.loads(_read_all_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:  # e.g. arrays nested 100,000 deep: Python's parser gives up, it is not a row list
        raise DataError(
            f"{path}: the JSON is nested too deeply to read "
            "(expected a list of objects, or an object holding one such list)"
        ) from None
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            value = lists[0]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise DataError(f"{path}: expected a JSON list of objects (or an object holding one such list)")
    return value


def _read_csv(path: Path, limit: int | None = None) -> list[Row]:
    """Every row (or the first ``limit``) as strings, naming the line of a row with extra fields."""
    try:
        # utf-8-sig: Excel writes a byte-order mark, which would otherwise stick to the first column's name.
        with _open_text(path, encoding="utf-8-sig", newline="") as handle:
            sample = handle.read(4096)
            if "\x00" in sample:
                raise DataError(f"{path}: not a CSV text file (binary content)")
            handle.seek(0)
            reader = csv.DictReader(handle)
            fieldnames = (
                reader.fieldnames
            )  # read while the file is open: it is lazy, and an empty file has none
            rows = [dict(r) for r in itertools.islice(reader, limit)]  # limit None: every row
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a CSV text file (not UTF-8)") from None
    except (gzip.BadGzipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc})") from None
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
        text = _read_all_text(path)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    # Blank lines separate documents, as in most plain-text corpora.
    docs = [d.strip() for d in text.split("\n\n")]
    return [{"text": d} for d in docs if d]


READERS = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
    ".txt": _read_txt,
    ".md": _read_txt,  # prose for continued pretraining (train.method: pretrain), read as plain text
}
# Formats the ``datasets`` packaged builders read straight into a memory-mapped Arrow cache.
_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class RowTable(Sequence[Row]):
    """Rows as a read-only sequence of dicts, backed by an Arrow :class:`datasets.Dataset` where possible.

    Indexing and slicing give dicts (as the plain lists did); :meth:`batches` streams them without
    turning the whole table into Python objects.
    """

    def __init__(self, data: Any) -> None:
        self._data = data

    @property
    def dataset(self) -> Any:
        """The Arrow dataset, or None when the rows only exist as Python objects."""
        return None if isinstance(self._data, list) else self._data

    def __len__(self) -> int:
        return len(self._data)

    @overload
    def __getitem__(self, index: int) -> Row: ...

    @overload
    def __getitem__(self, index: slice) -> list[Row]: ...

    def __getitem__(self, index: int | slice) -> Row | list[Row]:
        if isinstance(self._data, list):
            return self._data[index]
        if isinstance(index, slice):
            return list(_rows_of(self._data[index]))
        if index < 0:
            index += len(self._data)
        if not 0 <= index < len(self._data):
            raise IndexError(index)
        return self._data[index]

    def batches(self, size: int = 1000) -> Iterator[list[Row]]:
        if isinstance(self._data, list):
            for start in range(0, len(self._data), size):
                yield self._data[start : start + size]
            return
        for batch in self._data.iter(batch_size=size):
            yield list(_rows_of(batch))

    def encoding_batches(self, size: int = 1000) -> Iterator[Any]:
        """Batches for the fast encoder: ``pyarrow.Table`` slices where the rows are Arrow (it reads the
        plain rows a column at a time), else lists of dicts."""
        if isinstance(self._data, list):
            yield from self.batches(size)
            return
        yield from self._data.with_format("arrow").iter(batch_size=size)

    def __iter__(self) -> Iterator[Row]:
        for batch in self.batches():
            yield from batch

    def slice(self, start: int, stop: int) -> RowTable:
        """Rows ``start`` to ``stop``; an Arrow slice stays a reference to the memory-mapped file."""
        if isinstance(self._data, list):
            return RowTable(self._data[start:stop])
        return RowTable(self._data.select(range(start, min(stop, len(self._data)))))

    def head(self, count: int) -> RowTable:
        return self.slice(0, count)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RowTable | list):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def decoded_rows(table: Any) -> list[Row]:
    """The rows of a ``pyarrow.Table`` batch of a data set as dicts, decoded by its features as indexing does
    (a ``Json`` column's values come back as objects, not text)."""
    from datasets import Features
    from datasets.formatting import PythonFormatter

    return list(
        _rows_of(PythonFormatter(features=Features.from_arrow_schema(table.schema)).format_batch(table))
    )


def _rows_of(batch: Mapping[str, list]) -> Iterator[Row]:
    keys = list(batch)
    for values in zip(*(batch[k] for k in keys), strict=True):
        yield dict(zip(keys, values, strict=True))


def local_files(path: Path) -> list[Path]:
    """The data files of a folder of shards (sorted), all of one supported extension."""
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and data_kind(p) in READERS
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise DataError(f"{path}: the folder holds no data files (looked for {', '.join(READERS)})")
    if not {data_kind(p) for p in files} <= {".md", ".txt"}:
        files = [p for p in files if data_kind(p) != ".md"]  # a data set's README.md beside its data files
    kinds = sorted({data_kind(p).replace(".md", ".txt") for p in files})  # .md and .txt are both plain text
    if len(kinds) > 1:
        raise DataError(
            f"{path}: the folder mixes data files of several kinds ({', '.join(kinds)}); keep one"
        )
    return files


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / "state.json").exists()


def _datasets_cache() -> str:
    from lorastudio.paths import cache_dir

    return str(cache_dir() / "datasets")


def _load_saved(path: Path, split: str) -> Any:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(f"{path}: cannot read the saved data set: {_first_line(exc)}") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"data.split: {path} has no split {split!r} (it has {', '.join(loaded)})")
        loaded = loaded[split]
    return loaded


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


_DEEP = b"[" * 64
"""Arrays opened 64 deep in a row: no data set of rows looks like this, and Arrow's JSON reader crashes the
process (a segmentation fault, not an exception) on nesting some thousands deep, so such files go to the
checking readers, which name the file and line."""


def _too_deep(path: Path, chunk: int = 16 << 20) -> bool:
    opener = gzip.open if path.suffix.lower() == COMPRESSED else open
    tail = b""
    try:
        with opener(path, "rb") as handle:
            while block := handle.read(chunk):
                if _DEEP in tail + block[: len(_DEEP)] or _DEEP in block:
                    return True
                tail = block[-len(_DEEP) :]
    except (OSError, EOFError):
        return False  # unreadable: the loaders below say so
    return False


def build_arrow(files: list[Path]) -> Any:
    """The files through their ``datasets`` builder into its Arrow cache (converted once, then read from there),
    or None where the builder fails. The same call in every process, so a conversion one process made (see
    ``arrowwarm``) is the one another finds; the builder's own lock makes a second caller wait for the first."""
    import datasets

    # The builders log their own parse errors ("Failed to load JSON from file ...") before raising;
    # the checking readers say it better (file and line), so that log is held back.
    builders_log = logging.getLogger("datasets.packaged_modules")
    level = builders_log.level
    builders_log.setLevel(logging.CRITICAL)
    try:
        return datasets.load_dataset(
            _BUILDERS[data_kind(files[0])],
            data_files=[str(f) for f in files],
            split="train",
            cache_dir=_datasets_cache(),
        )
    except Exception:
        return None
    finally:
        builders_log.setLevel(level)


def builder_files(data: DataSection) -> list[Path] | None:
    """The local files ``load_rows`` would give to a ``datasets`` builder, or None where it would not."""
    if not is_local(data.source):
        return None
    try:
        files = _local_source(Path(data.source).expanduser())
    except DataError:
        return None
    if not files or data_kind(files[0]) not in _BUILDERS:
        return None
    return files


def too_deep_for_arrow(files: list[Path]) -> bool:
    """Whether the JSON builder must not see these files (see ``_DEEP``): they go to the checking readers."""
    return _BUILDERS[data_kind(files[0])] == "json" and any(_too_deep(f) for f in files)


def _load_with_builder(files: list[Path]) -> Any:
    """Arrow through ``datasets``; any failure re-reads the files with the checking readers for the message."""
    import datasets

    builder = _BUILDERS[data_kind(files[0])]  # datasets opens .gz files itself
    if too_deep_for_arrow(files):
        deep: list[Row] = []
        for f in files:
            deep.extend(_read_checked(f))  # a row this deep cannot be read: this names it
        return datasets.Dataset.from_list(deep)
    ds = build_arrow(files)
    if ds is not None and builder == "json" and len(ds) == 1 and len(ds.column_names) == 1:
        # {"data": [{...}, ...]}: an object holding one list of rows, as the plain reader accepts.
        (field,) = ds.column_names
        value = ds[0][field]
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            ds = None
    if ds is not None:
        return ds
    rows: list[Row] = []
    for f in files:
        rows.extend(_read_checked(f))  # raises the DataError naming the file and line
    try:
        return datasets.Dataset.from_list(rows)
    except Exception:  # mixed types in a column: Arrow cannot hold them, Python can
        return rows


def _read_checked(path: Path) -> list[Row]:
    try:
        return READERS[data_kind(path)](path)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text, so not a {data_kind(path)} file") from None
    except RecursionError:
        raise DataError(f"{path}: nested too deeply to read") from None
    except (gzip.BadGzipFile, EOFError) as exc:  # before OSError: BadGzipFile is one
        raise DataError(f"{path}: not a readable gzip file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None


def _table(files: list[Path]) -> Any:
    suffix = data_kind(files[0])
    if suffix == ".parquet":
        for f in files:
            with f.open("rb") as handle:
                if handle.read(4) != b"PAR1":
                    raise DataError(f"{f}: not a Parquet file (missing PAR1 magic)")
    if suffix in _BUILDERS:
        return _load_with_builder(files)
    rows: list[Row] = []  # csv and txt: the plain readers keep every cell a string, as the formats expect
    for f in files:
        rows.extend(_read_checked(f))
    return rows


def _local_source(path: Path) -> list[Path] | None:
    """The data files of a local source, or None for a ``save_to_disk`` folder; a DataError where there are none
    (no such path, an empty folder, an unsupported extension)."""
    if not path.exists():
        raise DataError(f"data.source: no such file {path}")
    if path.is_dir():
        return None if _is_saved_dataset(path) else local_files(path)
    if data_kind(path) not in READERS:
        raise DataError(
            f"data.source: {path}: unsupported extension (use one of {', '.join(READERS)}; "
            f"the text kinds may end in {COMPRESSED})"
        )
    return [path]


def load_local(path: Path, split: str = "train") -> Rows:
    path = path.expanduser()
    files = _local_source(path)
    table = _load_saved(path, split) if files is None else _table(files)
    rows = RowTable(table)
    columns = _columns(table) if isinstance(table, list) else list(table.column_names)
    return Rows(rows, columns, str(path))


def load_hub(source: str, split: str, revision: str | None = None) -> Rows:
    hint = "use a local file instead (data.source: path/to/file.jsonl)"
    offline = hub.settle()  # before the first request: an unreachable hub costs minutes of retries
    if offline is None and hub.offline_set(("HF_DATASETS_OFFLINE",)):
        offline = "offline mode is set (HF_DATASETS_OFFLINE)"  # datasets reads it itself
    try:
        import datasets

        # Offline, this finds a data set loaded before in the datasets cache without a request.
        ds = datasets.load_dataset(source, split=split, revision=revision)
    except Exception as exc:  # network, auth and missing-split errors all come here
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if offline is not None:
            raise DataError(
                f"data.source: {source!r} split {split!r} is not in the local datasets cache, and {offline}; {hint}"
            ) from None
        if any(
            word in text.lower()
            for word in ("connect", "offline", "resolve", "network", "timed out", "couldn't")
        ):
            raise DataError(f"data.source: cannot reach the hub for {source!r}; {hint}") from None
        raise DataError(f"data.source: cannot load {source!r} split {split!r}: {text}") from None
    return Rows(RowTable(ds), list(ds.column_names), f"hub:{source}")


HEAD_ROWS = 64


def head_rows(data: DataSection, count: int = HEAD_ROWS) -> Rows | None:
    """The first rows of a single local JSON-lines or CSV file, read without loading the rest.

    The Preview shows its first sample from these while the whole file loads. None when there is
    no such shortcut (other kinds, folders, the hub, a split other than train) or the head does
    not parse: the whole load then says what is wrong, naming the line.
    """
    path = Path(data.source).expanduser()
    suffix = data_kind(path)
    if data.split != "train" or not path.is_file() or suffix not in (".jsonl", ".csv"):
        return None
    count = min(count, data.limit) if data.limit is not None else count
    try:
        rows = (_read_csv if suffix == ".csv" else _read_jsonl)(path, count)
    except (DataError, OSError, UnicodeDecodeError, EOFError):
        return None
    return Rows(RowTable(rows), _columns(rows), str(path)) if rows else None


def load_rows(data: DataSection, split: str | None = None) -> Rows:
    """All rows of the recipe's split (``limit`` applied), as a lazily read :class:`RowTable`."""
    if is_local(data.source):
        loaded = load_local(Path(data.source), split or data.split)
    else:
        loaded = load_hub(data.source, split or data.split)
    if data.limit is not None:
        loaded = Rows(loaded.rows.head(data.limit), loaded.columns, loaded.origin)
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


def held_out(rows: int, fraction: float | None, seed: int) -> list[int]:
    """The row numbers held out for evaluation, chosen by a shuffle with the recipe's seed (so the same every run).

    ``fraction`` is the recipe's ``data.eval_fraction``: None (unset) applies the default rule (see
    :func:`eval_holdout_size`), 0 holds out nothing.
    """
    cut = eval_holdout_size(rows, fraction)
    if not cut:
        return []
    order = list(range(rows))
    random.Random(seed).shuffle(order)
    return order[:cut]


def train_eval_split(rows: Sequence[T], fraction: float | None, seed: int) -> tuple[Sequence[T], list[T]]:
    """The rows :func:`held_out` does not hold out (in their original order), and those it does."""
    held = held_out(len(rows), fraction, seed)
    if not held:
        return rows, []
    out = set(held)
    return [r for i, r in enumerate(rows) if i not in out], [rows[i] for i in held]


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


def train_rows_count(data: DataSection) -> int | None:
    """Rows the training split holds (the hold-out taken off) for one local JSON-lines or CSV file, counted
    without parsing the rows (the Launch sheet asks while it is shown); None for anything else: the hub is not
    fetched and a folder or parquet file not built into arrow just to count it."""
    path = Path(data.source).expanduser()
    kind = data_kind(path)
    if data.split != "train" or not path.is_file() or kind not in (".jsonl", ".csv"):
        return None
    try:
        if kind == ".jsonl":
            with _open_text(path) as handle:
                rows = sum(1 for line in handle if line.strip())
        else:
            with _open_text(path, encoding="utf-8-sig", newline="") as handle:
                rows = max(0, sum(1 for record in csv.reader(handle) if record) - 1)  # less the header
    except (OSError, UnicodeDecodeError, EOFError, csv.Error):
        return None
    if data.limit is not None:
        rows = min(rows, data.limit)
    return rows if data.eval_split else rows - eval_holdout_size(rows, data.eval_fraction)


def max_steps_note(recipe: Recipe, rows: int | None) -> str:
    """Beside the epochs field when ``max_steps`` is set: that it wins, and how many epochs it makes of
    ``rows`` training rows (a GRPO step samples ``num_generations`` replies per prompt); "" without max_steps."""
    train = recipe.train
    if train.max_steps is None:
        return ""
    if not rows:
        return f"max_steps {train.max_steps} wins over epochs"
    devices = train.devices if isinstance(train.devices, int) else 1  # `all`: known only on the machine
    per_step: float = train.batch_size * train.gradient_accumulation * devices * train.nodes
    if recipe.train.method == "grpo" and recipe.grpo is not None:
        per_step /= recipe.grpo.num_generations
    return f"max_steps {train.max_steps} wins: {train.max_steps * per_step / rows:.2f} epochs"
