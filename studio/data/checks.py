"""What ``studio validate`` can check about a recipe without loading a model or reading its data."""

from __future__ import annotations

from pathlib import Path

from lorastudio.data.datasource import READERS, data_kind, is_local, local_files
from lorastudio.errors import DataError
from lorastudio.models.templates import TEMPLATES
from lorastudio.recipe import Recipe


def offline_problems(recipe: Recipe, where: str) -> list[str]:
    """Problems found in the chat template name and a local data source; each names the file and field."""
    problems = []
    template = recipe.model.chat_template
    if template != "tokenizer" and template not in TEMPLATES:
        problems.append(
            f"{where}: model.chat_template: unknown template {template!r} "
            f"(known: tokenizer, {', '.join(TEMPLATES)})"
        )
    for field, source in (("data.source", recipe.data.source),):
        if not is_local(source):
            continue  # a hub id: checking it needs the network
        path = Path(source).expanduser()
        if not path.exists():
            problems.append(f"{where}: {field}: no such file {path}")
        elif path.is_file() and data_kind(path) not in READERS:
            problems.append(
                f"{where}: {field}: {path}: unsupported extension "
                f"(use one of {', '.join(READERS)}, or a folder of such files)"
            )
        elif path.is_dir():
            try:
                local_files(path)
            except DataError as exc:
                problems.append(f"{where}: {field}: {exc}")
    return problems
