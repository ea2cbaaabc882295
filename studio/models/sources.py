"""Resolve a recipe's model name to something loadable, and load its tokenizer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lorastudio.errors import StudioError
from lorastudio.models.tiny import Progress, ensure_tiny_model
from lorastudio.recipe import ModelSection

TINY = "tiny"


def resolve_model_path(model: ModelSection, progress: Progress | None = None) -> str:
    """``tiny`` becomes the cached offline model (built on first use); other names pass through."""
    if model.name == TINY:
        return str(ensure_tiny_model(progress))
    local = Path(model.name).expanduser()
    if local.exists():
        return str(local.resolve())
    return model.name


def hub_error(name: str, exc: BaseException) -> StudioError:
    first = (str(exc).splitlines() or [type(exc).__name__])[0]
    return StudioError(
        f"model.name: cannot load {name!r}: {first}. No model can be fetched without the hub; "
        "use a local path or the offline 'tiny' model"
    )


def load_tokenizer(model: ModelSection, progress: Progress | None = None) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model_path(model, progress)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, revision=model.revision, trust_remote_code=model.trust_remote_code,
            local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1",
        )
    except Exception as exc:  # OSError for missing repos, connection errors from the hub client
        raise hub_error(model.name, exc) from None
    if tokenizer.pad_token is None:
        if model.add_pad_token:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
        else:
            tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "is_fast", False):
        raise StudioError(f"model.name: {model.name!r} has no fast tokenizer; masking needs character offsets")
    return tokenizer
