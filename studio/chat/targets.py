"""Chat targets other than a run: an export folder (merged or adapter), a ``.gguf`` file, a model folder.

Export folders are recognised by their files (``recipe.yaml`` plus ``config.json`` or
``adapter_config.json``), not through the export stage, which chat must never import. This module says
which recipe (and adapter) a target means; ``engine`` builds the engine from that, so the two never import
each other both ways.
"""

from __future__ import annotations

from pathlib import Path

from lorastudio.errors import StudioError
from lorastudio.recipe import DataSection, ModelSection, Recipe

Target = tuple[Recipe, Path | None]
"""The recipe to load and the adapter to put on it (None: the model alone)."""


def is_export_target(path: Path) -> bool:
    return path.is_dir() and (path / "recipe.yaml").is_file() and not (path / "run.json").exists()


def gguf_in(path: Path) -> Path | None:
    """The GGUF file a target names: the file itself, or the only one in an export folder."""
    if path.suffix.lower() == ".gguf":
        return path
    found = sorted(path.glob("*.gguf")) if path.is_dir() else []
    return found[0] if len(found) == 1 else None


def recipe_for_model_path(path: str) -> Recipe:
    """A minimal recipe for chatting with a bare model folder."""
    return Recipe(
        name=Path(path).name or "model",
        model=ModelSection(name=path),
        data=DataSection(source="none", format="messages"),
    )


def gguf_target(path: Path) -> Target:
    """A GGUF file chats through the GGUF model source (dequantized once into the cache); it has no adapter."""
    if not path.is_file():
        raise StudioError(f"{path}: no such GGUF file")
    return recipe_for_model_path(str(path.resolve())), None


def export_target(path: Path, base_only: bool = False) -> Target:
    """A merged export loads as a plain model; an adapter export loads its base plus the adapter."""
    from lorastudio import registry

    recipe = registry.load_snapshot(path / "recipe.yaml")  # the export's own copy: no recipe registry needed
    if (path / "adapter_config.json").is_file():
        return recipe, None if base_only else path
    if (path / "config.json").is_file():
        if base_only:
            return recipe, None
        model = recipe.model.model_copy(
            update={
                "name": str(path.resolve()),
                "revision": None,
                "chat_template": "tokenizer",
                "add_pad_token": False,
            }
        )
        return recipe.model_copy(update={"model": model}), None
    gguf = gguf_in(path)
    if gguf is not None:
        return gguf_target(gguf)
    raise StudioError(
        f"{path}: not an export folder studio can chat with (no config.json, adapter_config.json or .gguf)"
    )


def run_of_target(target: str | None) -> Path | None:
    """The run a chat target belongs to, where its feedback and transcripts go; None for a target outside runs.

    A run's name (``NAME``, ``NAME@best``, ``latest``) is found as ``studio chat`` finds it. A path is mapped
    back to the run directory it lies in, however deep: ``RUN/adapter`` (what the Runs screen's picker hands
    the Chat for the final adapter), ``RUN/checkpoints/checkpoint-N``, ``RUN/exports/merged``, a GGUF file in
    ``RUN/exports/gguf-q8_0``; a path relative to the runs folder as well, as ``engine_for`` reads one.
    """
    from lorastudio.errors import RunError
    from lorastudio.paths import runs_dir
    from lorastudio.train.launch.runs import find_run
    from lorastudio.train.run.rundir import RUN_FILE
    from lorastudio.train.trainer.adapters import split_target

    name = split_target(target or "latest")[0]
    path = Path(name).expanduser()
    if not path.exists() and not path.is_absolute() and (runs_dir() / path).exists():
        path = runs_dir() / path
    if path.exists():
        path = path.resolve()
        return next((d for d in (path, *path.parents) if (d / RUN_FILE).is_file()), None)
    if path.is_absolute():
        return None  # a path that is not there names no run
    try:
        return find_run(name)
    except RunError:
        return None
