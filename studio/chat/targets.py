"""Chat targets other than a run: an export folder (merged or adapter) and, soon, a ``.gguf`` file.

Export folders are recognised by their files (``recipe.yaml`` plus ``config.json`` or
``adapter_config.json``), not through the export stage, which chat must never import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lorastudio.errors import StudioError

if TYPE_CHECKING:
    from lorastudio.chat.engine import ChatEngine


def is_export_target(path: Path) -> bool:
    return path.is_dir() and (path / "recipe.yaml").is_file() and not (path / "run.json").exists()


def gguf_in(path: Path) -> Path | None:
    """The GGUF file a target names: the file itself, or the only one in an export folder."""
    if path.suffix.lower() == ".gguf":
        return path
    found = sorted(path.glob("*.gguf")) if path.is_dir() else []
    return found[0] if len(found) == 1 else None


def engine_for_gguf(path: Path, base_only: bool = False) -> ChatEngine:
    """A GGUF file chats through the GGUF model source (dequantized once into the cache); it has no adapter."""
    from lorastudio.chat.engine import ChatEngine, recipe_for_model_path

    if not path.is_file():
        raise StudioError(f"{path}: no such GGUF file")
    return ChatEngine(recipe_for_model_path(str(path.resolve())))


def engine_for_export(path: Path, base_only: bool = False) -> ChatEngine:
    """A merged export loads as a plain model; an adapter export loads its base plus the adapter."""
    from lorastudio import registry
    from lorastudio.chat.engine import ChatEngine

    recipe = registry.load_file(path / "recipe.yaml", files=registry.discover())
    if (path / "adapter_config.json").is_file():
        return ChatEngine(recipe) if base_only else ChatEngine(recipe, path)
    if (path / "config.json").is_file():
        if base_only:
            return ChatEngine(recipe)
        model = recipe.model.model_copy(update={"name": str(path.resolve()), "revision": None,
                                                "chat_template": "tokenizer", "add_pad_token": False})
        return ChatEngine(recipe.model_copy(update={"model": model}))
    gguf = gguf_in(path)
    if gguf is not None:
        return engine_for_gguf(gguf, base_only)
    raise StudioError(f"{path}: not an export folder studio can chat with (no config.json, adapter_config.json "
                      "or .gguf)")
