"""The prepared-data cache for preference and RL rows (``train.method`` dpo, kto, orpo or grpo).

As for SFT (``cache``), an entry is ``$XDG_CACHE_HOME/studio/prepared/<key>/`` under a key of the data's
identity, the tokenizer's own contents and every recipe field that changes the encoding (here also the
method, its ``max_prompt_length`` and the method encoder's own code); it is built in a staging folder and
renamed into place, so a half-written one is never read, and ``cacheindex.evict`` ages it out with the SFT
entries (it has their ``meta.json``). Two things differ, on purpose:

- the rows are JSON lines, not Arrow: a GRPO row carries the data's own columns (any JSON value) to the
  reward functions, and TRL's trainers take these rows as a Python list anyway;
- the entry keeps the format it detected and the data's column names, so a hit builds the encoder from
  them without reading the data again.

A cache that cannot be written (a read-only or full disk) only costs the next start an encode.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.data.preference import (
    MethodData,
    MethodStats,
    encode_rows,
    make_method_encoder,
    method_encoder,
    no_usable_rows,
)
from lorastudio.data.prepared.cacheindex import evict
from lorastudio.data.prepared.cachekey import META, digest, prepared_root, recipe_parts, tokenizer_identity
from lorastudio.recipe import Recipe

KIND = "method"
"""``meta.json``'s ``kind``: tells these entries from SFT ones (which ``cacheindex.lookup`` reads)."""
TRAIN_ROWS, EVAL_ROWS = "method-train.jsonl", "method-eval.jsonl"


@dataclass(frozen=True)
class MethodEntry:
    """A cache hit: what was stored beside the rows, and the rows."""

    path: Path
    meta: dict[str, Any]
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]


def method_key(recipe: Recipe, tokenizer: Any, code: Sequence[str]) -> str:
    """The entry's key; ``code`` is the source of the modules that encode these rows."""
    section = recipe.method_section()
    return digest(
        {
            **recipe_parts(recipe),
            "tokenizer": tokenizer_identity(tokenizer),
            "method": [recipe.train.method, getattr(section, "max_prompt_length", None)],
            "code": hashlib.sha256("\n".join(code).encode()).hexdigest(),
        }
    )


def read_entry(key: str) -> MethodEntry | None:
    """The entry, or None when absent, not a method entry, or damaged (row counts not the ones recorded)."""
    path = prepared_root() / key
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("kind") != KIND:
            return None
        train = _read_rows(path / TRAIN_ROWS)
        evals = _read_rows(path / EVAL_ROWS)
        if (len(train), len(evals)) != (meta["train_rows"], meta["eval_rows"]):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    with suppress(OSError):
        os.utime(path / META)  # just used: eviction removes the least recently used first
    return MethodEntry(path, meta, train, evals)


def write_entry(
    key: str, meta: dict[str, Any], train: Sequence[dict[str, Any]], evals: Sequence[dict[str, Any]]
) -> Path | None:
    """Store the rows under ``key`` (built aside, renamed into place); None when it could not be written."""
    root = prepared_root()
    target = root / key
    # a name no other builder uses, in this process or another: builders never write into one folder
    staging = root / f".{key}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        staging.mkdir(parents=True)
        _write_rows(staging / TRAIN_ROWS, train)
        _write_rows(staging / EVAL_ROWS, evals)
        full = {**meta, "kind": KIND, "train_rows": len(train), "eval_rows": len(evals)}
        (staging / META).write_text(json.dumps(full, default=str), encoding="utf-8")
        if target.exists() and read_entry(key) is not None:  # another builder was first; theirs is as good
            shutil.rmtree(staging, ignore_errors=True)
            return target
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)  # a damaged entry under the same key
        staging.rename(target)
    except (OSError, TypeError, ValueError):  # TypeError: a data column JSON cannot hold (left uncached)
        shutil.rmtree(staging, ignore_errors=True)
        return None
    evict(keep=target)
    return target


def _write_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def prepare_method_data(recipe: Recipe, tokenizer: Any = None, use_cache: bool = True) -> MethodData:
    """Every row encoded for the method (what ``studio prepare`` prints and the worker trains on), read from
    the prepared-data cache when this data, tokenizer and recipe were encoded before (``methodcache``);
    ``use_cache=False`` encodes again (and stores the result)."""
    from lorastudio.data.datasource import train_eval_split

    if tokenizer is None:
        from lorastudio.models.resolve import load_tokenizer

        tokenizer = load_tokenizer(recipe.model)
    key = method_key(recipe, tokenizer, _encoding_code())
    hit = read_entry(key) if use_cache else None
    if hit is not None:
        meta = hit.meta
        stored = recipe.model_copy(update={"data": recipe.data.model_copy(update={"format": meta["format"]})})
        encoder = make_method_encoder(tokenizer, stored, meta["columns"], [], meta["origin"])
        return MethodData(encoder, hit.train, hit.eval, MethodStats.from_state(meta["stats"]), hit.path)
    encoder, rows = method_encoder(recipe, tokenizer)
    all_rows = list(rows.rows)
    # GRPO evaluation would sample replies for every held-out prompt: too slow to be on by default.
    fraction = recipe.data.eval_fraction if recipe.train.method != "grpo" else 0.0
    train_rows, eval_rows = train_eval_split(all_rows, fraction, recipe.train.seed)
    train, stats = encode_rows(encoder, train_rows)
    if not train:
        raise no_usable_rows(stats, rows.origin)
    evals, _ = encode_rows(encoder, eval_rows)
    data = MethodData(encoder, [s.row() for s in train], [s.row() for s in evals], stats)
    meta = {
        "format": encoder.format,
        "columns": list(rows.columns),
        "origin": rows.origin,
        "stats": stats.state(),
    }
    write_entry(key, meta, data.train, data.eval)
    return data


def _encoding_code() -> list[str]:
    """The source of the modules that turn a row into these ids: a change to them must not reuse an entry."""
    import inspect

    from lorastudio.data import encode, formats, preference

    return [inspect.getsource(module) for module in (preference, encode, formats)]
