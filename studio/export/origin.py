"""What an export starts from: a run (or one of its checkpoints), its recipe, its tokenizer and chat template."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.errors import StudioError
from lorastudio.export.staging import ExportError
from lorastudio.recipe import Recipe
from lorastudio.train.trainer.adapters import final_weights, holds_weights

ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class ExportSource:
    """A run's adapter (final or a checkpoint's) and the recipe it was trained with."""

    run_dir: Path
    recipe: Recipe
    adapter_dir: Path
    checkpoint: int | None
    """None for the run's final adapter."""

    @property
    def full(self) -> bool:
        """The run trained the whole model (``train.tuning`` full or freeze): ``adapter_dir`` is a model folder."""
        from lorastudio.train.trainer.adapters import is_full_model

        return is_full_model(self.adapter_dir)

    @property
    def label(self) -> str:
        return f"{self.run_dir.name}" + (
            f" checkpoint {self.checkpoint}" if self.checkpoint is not None else ""
        )


def checkpoints(run_dir: Path) -> list[int]:
    """Steps of the checkpoints that hold an adapter, ascending."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    steps = [
        int(m.group(1))
        for p in folder.iterdir()
        if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and holds_weights(p)
    ]
    return sorted(steps)


def resolve_source(run: str | Path, checkpoint: int | None = None) -> ExportSource:
    """Find the run and the adapter to export; clear errors for an unknown run, checkpoint or missing adapter."""
    from lorastudio.train.launch.runs import find_run, load_run_recipe

    run_dir = find_run(str(run))
    recipe = load_run_recipe(run_dir)
    if checkpoint is not None:
        adapter = run_dir / "checkpoints" / f"checkpoint-{checkpoint}"
        if not holds_weights(adapter):
            have = checkpoints(run_dir)
            raise ExportError(
                f"--checkpoint {checkpoint}: run {run_dir.name} has no such checkpoint "
                f"(it has: {', '.join(map(str, have)) if have else 'none'})"
            )
    else:
        final = final_weights(run_dir)
        if final is None:
            have = checkpoints(run_dir)
            hint = f"; export a checkpoint with --checkpoint {have[-1]}" if have else ""
            raise ExportError(
                f"run {run_dir.name} has no adapter yet (it is saved when training ends or stops){hint}"
            )
        adapter = final
    return ExportSource(run_dir, recipe, adapter, checkpoint)


@dataclass(frozen=True)
class ChatFormat:
    """The chat template the run trained with, and the token that ends an assistant turn."""

    name: str
    jinja: str | None
    end_of_turn: str | None


def load_tokenizer_for(source: ExportSource) -> tuple[Any, ChatFormat]:
    """The tokenizer saved with the adapter (else the base model's), carrying the template the run trained with."""
    from lorastudio.data.encode import Encoder
    from lorastudio.models.resolve import load_tokenizer
    from lorastudio.models.templates import TEMPLATES

    if (source.adapter_dir / "tokenizer_config.json").exists():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(source.adapter_dir))
    else:
        tokenizer = load_tokenizer(source.recipe.model)
    fmt = source.recipe.data.format if source.recipe.data.format != "auto" else "messages"
    try:
        encoder = Encoder(tokenizer, source.recipe, fmt)
    except StudioError:
        return tokenizer, ChatFormat("none", None, tokenizer.eos_token)
    jinja = None
    if encoder._compiled is not None:
        named = TEMPLATES.get(encoder.template_name)
        jinja = named.jinja if named is not None else tokenizer.chat_template
        tokenizer.chat_template = jinja
    return tokenizer, ChatFormat(encoder.template_name, jinja, encoder.end_of_turn)
