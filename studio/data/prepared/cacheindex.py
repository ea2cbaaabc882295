"""Finding a prepared-data entry without the tokenizer, reading its statistics, and eviction.

The key needs the tokenizer's contents, and loading a tokenizer means importing transformers
(seconds). A small locator file per recipe remembers which entry the recipe led to and the size
and mtime of every file the tokenizer was loaded from; while those (and the model file or folder
the recipe names) are unchanged, ``studio prepare`` finds the entry with a few stat calls and
reads its statistics with pyarrow alone. Entries beyond a size budget go, least recently used first.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.data.encode import DatasetStats
from lorastudio.data.prepared.cachekey import (
    META,
    SAMPLES,
    data_identity,
    digest,
    prepared_root,
    recipe_parts,
)
from lorastudio.recipe import Recipe
from lorastudio.settings import variable

_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5")


def _locator(recipe: Recipe) -> Path:
    parts = recipe_parts(recipe)
    name = recipe.model.name
    if (
        Path(name).expanduser().exists()
    ):  # a local model file or folder: a new file there means a new tokenizer
        parts["model_files"] = data_identity(name)
    return prepared_root() / "by-recipe" / f"{digest(parts)}.json"


def _file_stats(files: Iterable[Path]) -> list[list[Any]]:
    out = []
    for f in files:
        st = f.stat()
        out.append([str(f), st.st_size, st.st_mtime_ns])
    return out


def _tokenizer_files(tokenizer: Any) -> list[list[Any]] | None:
    """The files a tokenizer was loaded from, when it came from a local folder (hub ids: None)."""
    folder = Path(str(getattr(tokenizer, "name_or_path", "") or ""))
    if not folder.is_absolute() or not folder.is_dir():
        return None
    return _file_stats(sorted(f for f in folder.iterdir() if f.is_file() and f.suffix not in _WEIGHTS))


def remember(recipe: Recipe, tokenizer: Any, key: str) -> None:
    files = _tokenizer_files(tokenizer)
    if files is None:
        return
    locator = _locator(recipe)
    try:
        locator.parent.mkdir(parents=True, exist_ok=True)
        staging = locator.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps({"key": key, "tokenizer_files": files}))
        os.replace(staging, locator)
    except OSError:  # the locator only saves time; the entry itself is complete
        pass


@dataclass
class CachedSummary:
    """What ``studio prepare`` prints for a cache hit, read without transformers or datasets."""

    path: Path
    meta: dict[str, Any]
    stats: DatasetStats


def lookup(recipe: Recipe) -> CachedSummary | None:
    """The recipe's cache entry by its locator, when every file behind it is unchanged."""
    try:
        found = json.loads(_locator(recipe).read_text())
        files = [Path(name) for name, _, _ in found["tokenizer_files"]]
        if _file_stats(files) != found["tokenizer_files"]:
            return None
        path = prepared_root() / found["key"]
        meta = json.loads((path / META).read_text())
        files = sample_files(path)
        if not files or not all((path / name).exists() for name in meta["train_files"] + meta["eval_files"]):
            return None
        stats = stats_from(read_table(files), meta)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    touch(path)
    return CachedSummary(path, meta, stats)


def touch(path: Path) -> None:
    """Mark an entry as just used (eviction removes the least recently used first)."""
    with contextlib.suppress(OSError):
        os.utime(path / META)


# -- reading an entry's rows and statistics ---------------------------------------------------------
def read_table(files: Sequence[Path]) -> Any:
    """The Arrow stream files as one memory-mapped table (nothing is copied into memory)."""
    import pyarrow as pa

    tables = []
    for f in files:
        with pa.memory_map(str(f)) as source:
            tables.append(pa.ipc.open_stream(source).read_all())
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def sample_files(path: Path) -> list[Path]:
    """An entry's encoded-row shards, in row order."""
    return sorted(path.glob(f"{SAMPLES}-*.arrow"))


def stats_from(table: Any, meta: dict[str, Any]) -> DatasetStats:
    """The statistics of every row, from the encoded rows' columns and the entry's metadata."""
    import pyarrow.compute as pc

    used = pc.is_null(table["skip"])
    lengths = pc.filter(table["length"], used).to_pylist()
    stats = DatasetStats(
        format=meta["format"],
        rows=len(table),
        used=len(lengths),
        lengths=lengths,
        truncated=int(pc.sum(pc.filter(table["truncated"], used)).as_py() or 0),
        tokens=sum(lengths),
        trained_tokens=int(pc.sum(table["trained"]).as_py() or 0),
        done=True,
    )
    stats.skipped = Counter(meta["skipped"])
    stats.skipped_rows = {k: list(v) for k, v in meta["skipped_rows"].items()}
    return stats


# -- eviction ------------------------------------------------------------------------------------
BUDGET_ENV = variable("prepared_cache_gb")
DEFAULT_BUDGET_GB = 20.0
STALE_STAGING_S = 24 * 3600


def _budget_bytes() -> int:
    from lorastudio.settings import read_settings

    return int(read_settings().prepared_cache_gb * 1e9)


def evict(keep: Path | None = None) -> list[Path]:
    """Remove the least recently used entries beyond the budget (``$STUDIO_PREPARED_CACHE_GB``, 20 GB).

    The entry just written is never removed; neither are builds in progress, unless a day old
    (a killed ``prepare`` left them). Returns the removed folders.
    """
    root = prepared_root()
    removed: list[Path] = []
    entries = []
    try:
        children = list(root.iterdir())
    except OSError:
        return removed
    now = time.time()
    for child in children:
        try:
            if child.name.startswith(".") and child.name.endswith(".tmp"):
                if now - child.stat().st_mtime > STALE_STAGING_S:
                    shutil.rmtree(child, ignore_errors=True)
                    removed.append(child)
                continue
            if not child.is_dir() or not (child / META).exists():
                continue
            size = sum(f.stat().st_size for f in child.iterdir() if f.is_file())
            entries.append(((child / META).stat().st_mtime, size, child))
        except OSError:
            continue
    used, budget = 0, _budget_bytes()
    for _, size, child in sorted(entries, reverse=True):  # newest use first
        used += size
        if used > budget and child != keep:
            shutil.rmtree(child, ignore_errors=True)
            with contextlib.suppress(OSError):  # its build lock (models/cachelock) goes with it
                (root / f".{child.name}.lock").unlink()
            removed.append(child)
    return removed
