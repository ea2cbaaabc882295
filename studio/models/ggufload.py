"""GGUF files as a model source: dequantized once through transformers, then cached as safetensors.

The cached copy is a plain Hugging Face folder (config, safetensors weights, tokenizer with its
chat template), so training, chat and a saved adapter's ``base_model_name_or_path`` all point
at something ``from_pretrained`` loads quickly without the ``gguf`` package.

The cache folder is named for the file's content (sha256) and size; an index maps a file's
path, size and mtime to its hash so an unchanged file is not hashed again. A conversion is
written to a temporary folder and renamed into place: a folder without the marker is never used.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lorastudio.errors import StudioError
from lorastudio.models.cachelock import folder_lock
from lorastudio.models.filehash import sha256_file
from lorastudio.paths import cache_dir
from lorastudio.progress import Progress

GGUF_MAGIC = b"GGUF"
MARKER = "studio-gguf.json"
CONVERSION_VERSION = 1
"""Bump when the conversion changes: cached copies are converted again."""


class GgufError(StudioError):
    """A GGUF file that cannot be used; the message names the file and what is wrong."""


def gguf_cache_root() -> Path:
    return cache_dir() / "gguf"


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)


def is_gguf_name(name: str) -> bool:
    return name.lower().endswith(".gguf")


def gguf_path_for(name: str, gguf_file: str | None = None) -> Path | None:
    """The GGUF file a recipe's ``model.name`` (+ ``model.gguf_file``) names, or None when it names none."""
    if gguf_file:
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise GgufError(f"model.gguf_file: model.name {name!r} must be a folder holding {gguf_file!r}")
        path = folder / gguf_file
    elif is_gguf_name(name):
        path = Path(name).expanduser()
    else:
        return None
    if not path.is_file():
        raise GgufError(f"{path}: no such GGUF file")
    return path.resolve()


# -- checking ------------------------------------------------------------------------------------
def check_magic(path: Path) -> None:
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise GgufError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")


def read_header(path: Path) -> Any:
    """Parse the file with gguf's reader: a clear error for a file that is not GGUF or is cut short."""
    check_magic(path)
    from gguf import GGUFReader

    size = path.stat().st_size
    try:
        reader = GGUFReader(path)
    except (ValueError, IndexError, OSError, KeyError) as exc:
        raise GgufError(f"{path}: truncated or corrupt GGUF file ({size} bytes; {exc})") from None
    end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=reader.data_offset)
    if end > size:
        raise GgufError(f"{path}: truncated GGUF file ({size} bytes, its tensors need {end})")
    return reader


def architecture(reader: Any) -> str:
    field = reader.fields.get("general.architecture")
    if field is None:
        return "unknown"
    try:
        return str(field.contents())
    except Exception:  # older gguf without contents()
        return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")


def supported_architectures() -> list[str]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return list(GGUF_SUPPORTED_ARCHITECTURES)


def check_gguf(path: Path) -> str:
    """Validate magic, completeness and architecture; returns the architecture name."""
    reader = read_header(path)
    arch = architecture(reader)
    known = supported_architectures()
    # transformers renames a few llama.cpp names (qwen2moe -> qwen2_moe, t5encoder -> t5) while loading
    if arch not in known and arch.replace("moe", "_moe") not in known and not arch.startswith("t5"):
        raise GgufError(
            f"{path}: unsupported architecture {arch!r}: transformers loads GGUF files of "
            f"{', '.join(sorted(known))}"
        )
    return arch


# -- identity ------------------------------------------------------------------------------------
def _index_file() -> Path:
    return gguf_cache_root() / "index.json"


def content_hash(path: Path, progress: Progress | None = None) -> str:
    """sha256 of the file, remembered per (path, size, mtime) so an unchanged file is hashed once."""
    stat = path.stat()
    key = str(path.resolve())
    index_path = _index_file()
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    known = index.get(key)
    if known and known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
        return str(known["sha256"])
    sha = sha256_file(path, lambda done: _report(progress, 0.1 * done, "hashing the GGUF file"))
    index[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}
    _atomic_write(index_path, json.dumps(index, indent=1))
    return sha


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def cache_folder(path: Path, sha: str) -> Path:
    return gguf_cache_root() / f"{path.stem}-{path.stat().st_size}-{sha[:16]}"


def is_converted(folder: Path) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()).get("version") == CONVERSION_VERSION
    except (OSError, ValueError):
        return False


def converted_folder(path: Path) -> Path | None:
    """The GGUF file's converted folder if it is already there, without hashing (None otherwise): for
    screens that only want to read its ``config.json``."""
    try:
        stat = path.stat()
        known = json.loads(_index_file().read_text()).get(str(path.resolve()))
    except (OSError, ValueError, AttributeError):
        return None
    if not known or known.get("size") != stat.st_size or known.get("mtime_ns") != stat.st_mtime_ns:
        return None
    target = cache_folder(path, str(known["sha256"]))
    return target if is_converted(target) else None


def ensure_dequantized(path: str | Path, progress: Progress | None = None) -> Path:
    """The cached safetensors folder for a GGUF file, converting it first if the cache lacks it."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise GgufError(f"{path}: no such GGUF file")
    check_magic(path)  # before hashing: a wrong file fails at once
    sha = content_hash(path, progress)
    target = cache_folder(path, sha)
    if is_converted(target):
        return target
    with folder_lock(target, f"dequantizing {path.name}", progress):
        if not is_converted(target):  # another process may have converted it while we waited
            convert(path, target, sha, progress)
    return target


# -- conversion ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _tensor_progress(progress: Progress | None, low: float, high: float) -> Iterator[None]:
    """Route transformers' per-tensor dequantization loop to ``progress`` (its own bar stays quiet)."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = getattr(gguf_utils, "tqdm", None)
    if original is None:  # another transformers layout: convert without per-tensor progress
        yield
        return

    def tracked(iterable: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        items = list(iterable)
        for i, item in enumerate(items):
            if i % 8 == 0:
                _report(
                    progress,
                    low + (high - low) * i / max(len(items), 1),
                    f"dequantizing tensor {i + 1}/{len(items)}",
                )
            yield item

    gguf_utils.tqdm = tracked
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _dtype_for(path: Path) -> Any:
    import torch

    # fp32 keeps dequantized values exact; above 2 GB of GGUF that would be too large a copy
    return torch.float32 if path.stat().st_size < (2 << 30) else torch.bfloat16


def convert(path: Path, target: Path, sha: str, progress: Progress | None = None) -> Path:
    """Dequantize ``path`` into ``target`` (written elsewhere first, then renamed into place)."""
    started = time.monotonic()
    _report(progress, 0.1, f"checking {path.name}")
    arch = check_gguf(path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _report(progress, 0.15, "reading the tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        with _tensor_progress(progress, 0.2, 0.8):
            model = AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, dtype=_dtype_for(path)
            )
    except GgufError:
        raise
    except (ValueError, KeyError, NotImplementedError, OSError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        if "not supported" in first:
            raise GgufError(f"{path}: unsupported architecture {arch!r} ({first})") from None
        raise GgufError(f"{path}: cannot load this GGUF file ({first})") from None
    _report(progress, 0.82, "saving the dequantized copy")
    # the copy is a plain checkpoint: without this marker from_pretrained would look for the GGUF again
    for holder in (model.config, getattr(model, "generation_config", None)):
        if holder is not None and hasattr(holder, "quantization_config"):
            with contextlib.suppress(AttributeError):
                delattr(holder, "quantization_config")
    model.hf_quantizer = None
    with contextlib.suppress(AttributeError):
        model.is_quantized = False
    if getattr(model.generation_config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        seconds = round(time.monotonic() - started, 1)
        (staging / MARKER).write_text(
            json.dumps(
                {
                    "version": CONVERSION_VERSION,
                    "source": str(path),
                    "size": path.stat().st_size,
                    "mtime_ns": path.stat().st_mtime_ns,
                    "sha256": sha,
                    "architecture": arch,
                    "seconds": seconds,
                    "dtype": str(_dtype_for(path)).removeprefix("torch."),
                },
                indent=1,
            )
        )
        staging.chmod(0o755)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _report(progress, 1.0, f"dequantized {path.name} in {time.monotonic() - started:.1f} s")
    return target
