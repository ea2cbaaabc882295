"""What names a prepared-data cache entry, and where entries live.

The key hashes the data's identity (path, size and modification time of every file) and
everything that changes the encoding: the tokenizer's own contents, the recipe's model, data
and packing/train_on/seed fields, the split rule's code and :data:`ENCODER_VERSION`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

from lorastudio.data.datasource import eval_holdout_size, held_out, is_local
from lorastudio.data.prepared.fastencode import ENCODER_VERSION
from lorastudio.paths import cache_dir
from lorastudio.recipe import Recipe

SAMPLES, TRAIN, EVAL, META = "samples", "train.arrow", "eval.arrow", "meta.json"
"""Names in a cache entry: every row's statistics (``samples-NNNNN.arrow``, one per chunk, in row order), the
trainer's rows and the held-out rows (``train-…``/``eval-…`` shards as each chunk's process wrote them, or
``train.arrow``/``eval.arrow`` once packed; ``meta.json`` lists them), and the metadata, written last."""


def prepared_root() -> Path:
    """Where the entries live: ``$XDG_CACHE_HOME/studio/prepared``."""
    return cache_dir() / "prepared"


# -- the key ---------------------------------------------------------------------------------------
def data_identity(source: str) -> list[Any]:
    """What changes when the data changes: every file's path, size and mtime (hub ids: the id)."""
    if not is_local(source):
        return ["hub", source]
    path = Path(source).expanduser().resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out: list[Any] = [str(path)]
    for f in files:
        st = f.stat()
        out.append([str(f.relative_to(path)) if f != path else "", st.st_size, st.st_mtime_ns])
    return out


def tokenizer_identity(tokenizer: Any) -> str:
    """A digest of the tokenizer itself (vocabulary, merges, specials, chat template)."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    digest.update(backend.to_str().encode() if backend is not None else repr(tokenizer.get_vocab()).encode())
    digest.update(
        json.dumps(
            [
                str(getattr(tokenizer, "chat_template", None)),
                tokenizer.special_tokens_map,
                tokenizer.eos_token_id,
                tokenizer.pad_token_id,
                tokenizer.bos_token_id,
                getattr(tokenizer, "split_special_tokens", False),
            ],
            default=str,
        ).encode()
    )
    return digest.hexdigest()


def split_rule_digest() -> str:
    """The hold-out rule's code is part of the key: a new rule must not reuse an old split."""
    digest = hashlib.sha256()
    for rule in (held_out, eval_holdout_size):
        try:
            digest.update(inspect.getsource(rule).encode())
        except (OSError, TypeError):  # no source shipped: the bytecode says as much
            digest.update(rule.__code__.co_code)
    return digest.hexdigest()


def recipe_parts(recipe: Recipe) -> dict[str, Any]:
    """Everything in the key but the tokenizer's own contents."""
    m, d, t = recipe.model, recipe.data, recipe.train
    return {
        "encoder": ENCODER_VERSION,
        "split_rule": split_rule_digest(),
        "data": data_identity(d.source),
        "model": [m.name, m.revision, m.chat_template, m.max_seq_length, m.add_pad_token, m.gguf_file],
        "recipe_data": d.model_dump(mode="json"),
        # packed entries gained a seq_lengths column: entries packed before it are not reused
        "train": [t.packing, t.train_on, t.seed, *(["seq_lengths"] if t.packing else [])],
    }


def digest(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cache_key(recipe: Recipe, tokenizer: Any) -> str:
    return digest({**recipe_parts(recipe), "tokenizer": tokenizer_identity(tokenizer)})
