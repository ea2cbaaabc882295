"""What a target is served as, by which engine, and the engine's own command line.

A target is read as ``studio chat`` reads it (a run, ``RUN@best``, a checkpoint, an export folder, a model folder,
a GGUF file) into a :class:`ServeTarget`: a base model with an adapter, a whole model folder, or a GGUF file.
``auto`` picks llama.cpp for a GGUF, vLLM on CUDA when it is installed, and transformers' own server elsewhere.
An engine that is not installed is refused with the package to install, before anything starts. Several runs'
adapters on one base (:func:`combine_targets`) are served the vLLM multi-LoRA way, each under its run's name; the
other engines serve one model and say so.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from lorastudio.errors import StudioError
from lorastudio.serve.servedir import Engine

ENGINES = ("auto", "vllm", "llamacpp", "transformers")
KEY_ENV = "STUDIO_SERVE_API_KEY"
"""Where the API key reaches studio's launcher of transformers' server (never on a command line, which ps shows)."""


@dataclass(frozen=True)
class ServeTarget:
    """What to serve: a base model (with an adapter on it) or a whole model folder, or a GGUF file."""

    name: str
    """The model name requests ask for (the run's or folder's name)."""
    base: str | None = None
    """A loadable model: a local folder or a hub id; None for a GGUF target."""
    adapter: Path | None = None
    """The LoRA adapter folder to put on ``base``."""
    run_dir: Path | None = None
    """The run the adapter belongs to (transformers merges it through ``studio export``'s merged format)."""
    checkpoint: int | None = None
    """The run's checkpoint step the adapter is; None for its final adapter."""
    gguf: Path | None = None
    """A GGUF file, served by llama.cpp."""
    more: tuple[tuple[str, Path], ...] = ()
    """Further (model name, adapter folder) pairs on the same base, served beside ``adapter`` (vLLM multi-LoRA)."""

    @property
    def loras(self) -> tuple[tuple[str, Path], ...]:
        """Every (model name, adapter folder) served on the base: this target's own, then the others."""
        own = ((self.name, self.adapter),) if self.adapter is not None else ()
        return own + self.more


def combine_targets(targets: list[str], resolved: list[ServeTarget]) -> ServeTarget:
    """One target serving every adapter on their shared base; refused (named) when one has no adapter, their bases
    differ, or two would be served under one name."""
    first = resolved[0]
    for given, one in zip(targets, resolved, strict=True):
        if one.adapter is None:
            raise StudioError(
                f"{given}: several targets serve runs' adapters on one base, and this one has no adapter "
                "(a model folder or GGUF file is served alone: studio serve " + given + ")"
            )
        if one.base != first.base:
            raise StudioError(
                f"{given}: its base is {one.base}, but {targets[0]}'s is {first.base}; adapters served together "
                "share one base (serve each base with its own studio serve, on its own --port)"
            )
    names = [one.name for one in resolved]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise StudioError(f"{', '.join(twice)}: named twice; give each run (or checkpoint) once")
    return ServeTarget(
        name=first.name,
        base=first.base,
        adapter=first.adapter,
        run_dir=first.run_dir,
        checkpoint=first.checkpoint,
        more=tuple((one.name, one.adapter) for one in resolved[1:] if one.adapter is not None),
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def resolve_target(target: str) -> ServeTarget:
    """Read ``target`` as chat does; a run without an adapter, a missing path: a :class:`StudioError`."""
    from lorastudio.chat.engine import engine_for
    from lorastudio.chat.targets import gguf_in, is_export_target, run_of_target
    from lorastudio.models.resolve import resolve_model_path

    path = Path(target).expanduser()
    gguf = gguf_in(path) if (path.suffix.lower() == ".gguf" or is_export_target(path)) else None
    if gguf is not None:
        if not gguf.is_file():
            raise StudioError(f"{target}: no such GGUF file")
        return ServeTarget(name=_slug(gguf.stem), gguf=gguf.resolve())
    chat = engine_for(target)  # reads the target only; nothing loads
    base = resolve_model_path(chat.recipe.model)
    if chat.adapter_dir is None:
        name = path.resolve().name if path.exists() else chat.recipe.name
        return ServeTarget(name=_slug(name), base=base)
    adapter = chat.adapter_dir.resolve()
    run_dir = run_of_target(target)
    step = re.fullmatch(r"checkpoint-(\d+)", adapter.name)
    name = run_dir.name if run_dir is not None else adapter.name
    if step is not None:
        name += f"-step{step.group(1)}"
    return ServeTarget(
        name=_slug(name),
        base=base,
        adapter=adapter,
        run_dir=run_dir,
        checkpoint=int(step.group(1)) if step else None,
    )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _cuda() -> bool:
    if not _importable("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def llama_server_binary() -> str | None:
    return shutil.which("llama-server")


MISSING = {
    "vllm": "vLLM is not installed: pip install vllm (it needs a CUDA GPU)",
    "llamacpp": (
        "llama.cpp's server is not installed: pip install 'llama-cpp-python[server]', "
        "or put a llama-server binary on PATH"
    ),
    "transformers": "transformers' server needs FastAPI and uvicorn: pip install 'transformers[serving]'",
}


LLAMA_CPP_SERVER = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)
"""What ``python -m llama_cpp.server`` imports (its ``[server]`` extra): llama_cpp alone cannot serve."""


def installed(engine: str) -> bool:
    if engine == "vllm":
        return _importable("vllm")
    if engine == "llamacpp":
        return llama_server_binary() is not None or (all(map(_importable, LLAMA_CPP_SERVER)))
    return _importable("fastapi") and _importable("uvicorn") and _importable("transformers.cli.serve")


def choose_engine(wanted: str, target: ServeTarget) -> Engine:
    """The engine that serves ``target``; refused with the package to install, or why it cannot serve it."""
    if wanted not in ENGINES:
        raise StudioError(f"--engine {wanted}: choose one of {', '.join(ENGINES)}")
    engine_asked = wanted
    if wanted == "auto":
        if target.gguf is not None:
            wanted = "llamacpp"
        elif _cuda() and installed("vllm"):
            wanted = "vllm"
        else:
            wanted = "transformers"
    if target.more and wanted != "vllm":
        what = "transformers' server (--engine transformers) loads one model"
        if wanted == "llamacpp":
            what = "llama.cpp's server (--engine llamacpp) serves one GGUF file"
        elif engine_asked == "auto":
            what += " (auto's choice here: vLLM needs a CUDA GPU with vllm installed)"
        raise StudioError(
            f"{len(target.loras)} adapters on one base are served by vLLM's multi-LoRA (--engine vllm, on a CUDA "
            f"GPU); {what}: serve each run with its own studio serve, on its own --port"
        )
    if target.gguf is not None and wanted != "llamacpp":
        raise StudioError(
            f"{target.gguf.name}: a GGUF file is served by llama.cpp (--engine llamacpp); "
            "serve the run or its merged export for --engine " + wanted
        )
    if target.gguf is None and wanted == "llamacpp":
        raise StudioError(
            "--engine llamacpp serves a GGUF file: export one (studio export RUN --format gguf) and serve that"
        )
    if not installed(wanted):
        raise StudioError(MISSING[wanted])
    if wanted == "vllm" and not _cuda():
        raise StudioError("--engine vllm needs a CUDA GPU; use --engine transformers on this machine")
    if wanted == "transformers" and target.adapter is not None and target.run_dir is None:
        raise StudioError(
            f"{target.adapter}: transformers' server takes no adapter, and studio merges only a run's "
            "adapter; serve the run (RUN or RUN@best) or a merged export (studio export RUN --format merged)"
        )
    return wanted  # type: ignore[return-value]


VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""The ``--max-lora-rank`` values vLLM accepts; its default (16) refuses an adapter of a higher rank."""


def lora_rank(adapter: Path) -> int:
    """The smallest rank vLLM takes that holds the adapter's own (``r`` in its ``adapter_config.json``)."""
    import json

    try:
        rank = int(json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get("r", 16))
    except (OSError, ValueError, TypeError, AttributeError):
        rank = 16
    return next((r for r in VLLM_LORA_RANKS if r >= rank), VLLM_LORA_RANKS[-1])


def engine_command(
    engine: Engine, target: ServeTarget, model: str, host: str, port: int
) -> tuple[list[str], str, tuple[str, ...]]:
    """(the command line, the environment variable that carries the API key, the model names served).

    ``model`` is what transformers' server loads, relative to the server directory (its working directory), so
    the model's name in the API is the short name, not a path. The key's variable is returned by name only; the
    caller sets it in the engine's environment.
    """
    if engine == "transformers":
        cmd = [sys.executable, "-m", "lorastudio.serve.hfserve", model, "--host", host, "--port", str(port)]
        return cmd, KEY_ENV, (model,)
    if engine == "vllm":
        assert target.base is not None
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", target.base]
        cmd += ["--host", host, "--port", str(port)]
        if target.adapter is None:
            cmd += ["--served-model-name", target.name]
            return cmd, "VLLM_API_KEY", (target.name,)
        base_name = _slug(Path(target.base).name)
        loras = target.loras
        rank = max(lora_rank(adapter) for _, adapter in loras)
        cmd += ["--served-model-name", base_name, "--enable-lora", "--max-lora-rank", str(rank)]
        # every adapter fits in one batch, so requests for different runs are never queued behind a swap
        cmd += ["--max-loras", str(len(loras)), "--lora-modules"]
        cmd += [f"{name}={adapter}" for name, adapter in loras]
        return cmd, "VLLM_API_KEY", (*(name for name, _ in loras), base_name)
    assert target.gguf is not None
    binary = llama_server_binary()
    if binary is not None:
        cmd = [binary, "-m", str(target.gguf), "--host", host, "--port", str(port), "--alias", target.name]
        cmd.append("--metrics")  # its /metrics page: the Serve panel's tokens per second (figures.py)
        return cmd, "LLAMA_API_KEY", (target.name,)
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(target.gguf)]
    cmd += ["--host", host, "--port", str(port), "--model_alias", target.name]
    return cmd, "API_KEY", (target.name,)  # llama_cpp.server's settings read the environment
