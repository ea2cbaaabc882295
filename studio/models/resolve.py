"""Resolve a recipe's model name to something loadable, and load its tokenizer."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from lorastudio import hub
from lorastudio.errors import StudioError
from lorastudio.models.tiny import ensure_tiny_model
from lorastudio.models.vlm import TINY_VISION, ensure_tiny_vision
from lorastudio.progress import Progress
from lorastudio.recipe import ModelSection

TINY = "tiny"


def resolve_model_path(model: ModelSection, progress: Progress | None = None) -> str:
    """``tiny`` (and ``tiny-vision``) become the cached offline models (built on first use); other names pass
    through."""
    wait_for_imports()
    if model.name == TINY:
        return str(ensure_tiny_model(progress))
    if model.name == TINY_VISION:
        return str(ensure_tiny_vision(progress))
    from lorastudio.models.ggufload import ensure_dequantized, gguf_path_for
    from lorastudio.models.offline import ensure_offline_model, is_offline_model

    if is_offline_model(model.name):
        gguf = ensure_offline_model(model.name, _stage(progress, 0.0, 0.3))
        return str(ensure_dequantized(gguf, _stage(progress, 0.3, 1.0)))
    gguf_path = gguf_path_for(model.name, model.gguf_file)
    if gguf_path is not None:
        return str(ensure_dequantized(gguf_path, progress))
    local = Path(model.name).expanduser()
    if local.exists():
        return str(local.resolve())
    hub.settle()  # before the first request: an unreachable hub costs minutes of retries per file
    return model.name


def text_only(model: ModelSection) -> bool:
    """True when ``model.name`` is known to be a text model without resolving it (which would build the tiny
    model, or dequantize a GGUF file): the tiny text model, the offline models, GGUF files."""
    from lorastudio.models.ggufload import is_gguf_name
    from lorastudio.models.offline import is_offline_model

    return (
        model.name == TINY
        or is_offline_model(model.name)
        or bool(model.gguf_file)
        or is_gguf_name(model.name)
    )


def _stage(progress: Progress | None, low: float, high: float) -> Progress | None:
    """Map a stage's 0..1 progress into ``low..high`` of the whole."""
    if progress is None:
        return None
    return lambda fraction, message: progress(low + (high - low) * fraction, message)


def throttled(progress: Progress, every_s: float) -> Progress:
    """Pass on the first report, the last (fraction 1.0) and at most one per ``every_s`` seconds between."""
    import time

    last = {"t": -1e9}

    def report(fraction: float, message: str) -> None:
        now = time.monotonic()
        if fraction >= 1.0 or now - last["t"] >= every_s:
            last["t"] = now
            progress(fraction, message)

    return report


def hub_error(name: str, exc: BaseException) -> StudioError:
    choices = "use a local path, a .gguf file, or an offline model ('smollm2-135m-instruct', 'tiny')"
    first = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(".")
    offline = hub.settle()
    if offline is not None and not Path(name).expanduser().exists():
        return StudioError(
            f"model.name: {name!r} is not in the local Hugging Face cache, and {offline}; {choices}"
        )
    return StudioError(
        f"model.name: cannot load {name!r}: {first}. No model can be fetched without the hub; {choices}"
    )


_IMPORTING = threading.Lock()


def warm_up_imports() -> None:
    """Import what loading a tokenizer needs, so the first load is quick (the TUI does this early).

    A model folder's ``config.json`` makes transformers import the model's config class, and
    those import torch (about a second); the activations module is where that chain ends. Held
    under a lock: another thread importing transformers meanwhile can find it half-initialised
    ("cannot import name 'AutoTokenizer'"), so model work waits (:func:`wait_for_imports`).
    """
    with _IMPORTING:
        import transformers.activations  # noqa: F401
        from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerFast  # noqa: F401


def warming_up() -> bool:
    """Whether model work started now would first wait for imports (a warm-up holds them, or none ran yet)."""
    import sys

    if _IMPORTING.acquire(blocking=False):
        _IMPORTING.release()
        return "transformers.activations" not in sys.modules
    return True


def wait_for_imports() -> None:
    """Return once no warm-up is importing (at once outside the TUI, where none runs)."""
    with _IMPORTING:
        pass


def load_tokenizer(model: ModelSection, progress: Progress | None = None) -> Any:
    path = resolve_model_path(model, progress)  # it waits for a warm-up's imports first
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path,
            revision=model.revision,
            trust_remote_code=model.trust_remote_code,
            local_files_only=hub.offline_set(),
        )
    except Exception as exc:  # OSError for missing repos, connection errors from the hub client
        raise hub_error(model.name, exc) from None
    if tokenizer.pad_token is None:
        if model.add_pad_token:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
        else:
            tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "is_fast", False):
        raise StudioError(
            f"model.name: {model.name!r} has no fast tokenizer; masking needs character offsets"
        )
    return tokenizer
