"""``studio export``: one entry point for the three formats, with the size estimated before and measured after.

Every format is written into a hidden temporary folder and renamed into place when complete
(see :mod:`staging`); ``export.json`` inside the folder records what was exported, from what, and how big.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lorastudio.export.modelfile import OllamaTemplate
from lorastudio.export.origin import ExportSource, load_tokenizer_for, resolve_source
from lorastudio.export.staging import ExportError, folder_size, staged_dir
from lorastudio.progress import Progress

FORMATS = ("adapter", "merged", "gguf")
MANIFEST = "export.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)


@dataclass(frozen=True)
class ExportRequest:
    """What to export and where; the CLI flags and the Export screen fill one in."""

    run: str
    format: str = "merged"
    checkpoint: int | None = None
    quant: str = "f16"
    out: Path | None = None
    force: bool = False
    dtype: str = "auto"


@dataclass
class ExportResult:
    out: Path
    format: str
    quant: str | None
    estimated_bytes: int | None
    measured_bytes: int
    seconds: float
    files: list[str] = field(default_factory=list)
    source: str = ""
    notes: list[str] = field(default_factory=list)
    """What the export left out and why (no Ollama Modelfile for a template it cannot render, say)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        return data


def check_request(request: ExportRequest) -> None:
    from lorastudio.export.ggufwrite import check_quant

    if request.format not in FORMATS:
        raise ExportError(f"--format {request.format}: choose one of {', '.join(FORMATS)}")
    if request.format == "gguf":
        check_quant(request.quant)


def default_out(source: ExportSource, fmt: str, quant: str) -> Path:
    name = fmt if fmt != "gguf" else f"gguf-{quant.lower()}"
    if source.checkpoint is not None:
        name += f"-step{source.checkpoint}"
    return source.run_dir / "exports" / name


def out_dir(request: ExportRequest, source: ExportSource) -> Path:
    out = request.out or default_out(source, request.format, request.quant)
    return Path(out).expanduser().resolve()


# -- estimate ---------------------------------------------------------------------------------------
def _tokenizer_bytes(source: ExportSource) -> int:
    return sum(
        (source.adapter_dir / f).stat().st_size for f in TOKENIZER_FILES if (source.adapter_dir / f).exists()
    )


def _param_shapes(config: Any) -> list[tuple[str, tuple[int, ...]]]:
    import torch
    from transformers import AutoModelForCausalLM

    # torch's device context is thread-local; accelerate's init_empty_weights patches nn.Module globally and
    # would give meta weights to a model another thread (chat, a test) builds at the same moment
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    tied = getattr(config, "tie_word_embeddings", False)  # not tied on the meta device, so drop it by name
    return [(n, tuple(p.shape)) for n, p in model.named_parameters() if not (tied and n == "lm_head.weight")]


def estimate_bytes(request: ExportRequest, source: ExportSource | None = None) -> int | None:
    """Bytes the export will take, from the adapter's files and the base config (no weights loaded)."""
    import math

    source = source or resolve_source(request.run, request.checkpoint)
    tok = _tokenizer_bytes(source)
    if request.format == "adapter":
        return (
            folder_size(source.adapter_dir)
            - sum(
                p.stat().st_size
                for p in source.adapter_dir.iterdir()
                if p.is_file()
                and p.name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json")
            )
            + 4_000
        )
    from lorastudio.export.merge import base_config, resolve_dtype

    try:
        config = base_config(source)
        shapes = _param_shapes(config)
    except Exception:
        return None
    if request.format == "merged":
        itemsize = 4 if str(resolve_dtype(request.dtype, config)).endswith("float32") else 2
        return sum(math.prod(s) for _, s in shapes) * itemsize + tok + 8_000
    from lorastudio.export.ggufwrite import check_architecture, tensor_bytes, tensor_type

    check_architecture(config)
    total = sum(tensor_bytes(s, tensor_type(n, s, request.quant.lower())) for n, s in shapes)
    return total + tok + 8_000


# -- export -----------------------------------------------------------------------------------------
def _write_common(
    staging: Path,
    source: ExportSource,
    fmt: str,
    files: list[str],
    quant: str | None = None,
    notes: list[str] | None = None,
) -> None:
    from lorastudio.export.card import model_card
    from lorastudio.train.run.runstate import load_state

    recipe_yaml = (source.run_dir / "recipe.yaml").read_text(encoding="utf-8")
    (staging / "recipe.yaml").write_text(recipe_yaml, encoding="utf-8")
    state = load_state(source.run_dir, curves=False)
    steps = source.checkpoint or state.step or None
    listing = sorted({*files, "README.md", "recipe.yaml", MANIFEST})
    try:
        lora = json.loads((source.adapter_dir / "adapter_config.json").read_text())
    except (OSError, ValueError):
        lora = {}
    (staging / "README.md").write_text(
        model_card(
            source.recipe,
            recipe_yaml,
            fmt,
            source.label,
            listing,
            quant,
            steps,
            lora.get("r"),
            lora.get("lora_alpha"),
            notes,
        ),
        encoding="utf-8",
    )


def export(request: ExportRequest, progress: Progress | None = None) -> ExportResult:
    """Export a run's adapter as ``adapter``, ``merged`` or ``gguf``; raises :class:`ExportError` on bad input."""
    from lorastudio.models.resolve import wait_for_imports

    wait_for_imports()  # the TUI may still be importing transformers in its warm-up
    report = progress or (lambda f, m: None)
    started = time.monotonic()
    check_request(request)
    source = resolve_source(request.run, request.checkpoint)
    if request.format == "adapter" and source.full:
        raise ExportError(
            f"--format adapter: run {source.run_dir.name} trained the whole model "
            f"(train.tuning: {source.recipe.train.tuning}), so it has no adapter; export --format merged "
            "(the model itself) or gguf"
        )
    if request.format != "adapter":
        from lorastudio.models.resolve import resolve_model_path
        from lorastudio.models.vlm import is_vision_config

        if is_vision_config(resolve_model_path(source.recipe.model)):  # merging a VLM is not done yet
            raise ExportError(
                f"--format {request.format}: run {source.run_dir.name} tuned a vision-language model "
                f"({source.recipe.model.name}); only --format adapter exports it for now"
            )
    out = out_dir(request, source)
    from lorastudio.export.staging import check_target

    check_target(out, request.force)
    if request.format == "gguf":
        from lorastudio.export.ggufwrite import check_architecture
        from lorastudio.export.merge import base_config

        check_architecture(base_config(source))  # refuse before any heavy loading
    report(0.01, "estimating size")
    estimated = estimate_bytes(request, source)
    quant = request.quant.lower() if request.format == "gguf" else None
    notes: list[str] = []
    with staged_dir(out, request.force) as staging:
        if request.format == "adapter":
            files = _export_adapter(source, staging, report)
        elif request.format == "merged":
            files = _export_merged(source, staging, request.dtype, report)
        else:
            files = _export_gguf(source, staging, request.quant.lower(), report, notes)
        _write_common(staging, source, request.format, files, quant, notes)
        measured = folder_size(staging)
        result = ExportResult(
            out,
            request.format,
            quant,
            estimated,
            measured,
            0.0,
            sorted(p.name for p in staging.iterdir()) + [MANIFEST],
            source.label,
            notes,
        )
        result.seconds = round(time.monotonic() - started, 2)
        manifest = {
            "format": 1,
            "export": result.to_json(),
            "run": str(source.run_dir),
            "checkpoint": source.checkpoint,
            "base_model": source.recipe.model.name,
            "recipe": source.recipe.name,
            "created": time.time(),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        result.measured_bytes = folder_size(staging)
    report(1.0, f"exported to {out}")
    return result


def _export_adapter(source: ExportSource, staging: Path, report: Progress) -> list[str]:
    report(0.2, "copying the adapter")
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        if (source.adapter_dir / name).exists():
            shutil.copy2(source.adapter_dir / name, staging / name)
    report(0.5, "saving the tokenizer and chat template")
    tokenizer, _chat = load_tokenizer_for(source)
    tokenizer.save_pretrained(str(staging))
    return sorted(p.name for p in staging.iterdir())


def _export_merged(source: ExportSource, staging: Path, dtype_name: str, report: Progress) -> list[str]:
    from lorastudio.export.merge import base_config, generation_config_for, load_merged, resolve_dtype

    tokenizer, chat = load_tokenizer_for(source)
    dtype = resolve_dtype(dtype_name, base_config(source))
    model = load_merged(source, tokenizer, dtype, report)
    report(0.6, f"saving safetensors ({str(dtype).removeprefix('torch.')})")
    model = model.to(dtype)
    model.generation_config = generation_config_for(model, tokenizer, chat.end_of_turn, source.recipe.chat)
    model.save_pretrained(str(staging), safe_serialization=True)
    report(0.9, "saving the tokenizer and chat template")
    tokenizer.save_pretrained(str(staging))
    return sorted(p.name for p in staging.iterdir())


def gguf_file_name(source: ExportSource, quant: str) -> str:
    from lorastudio.train.launch.runs import _slug

    return f"{_slug(source.recipe.name)}-{quant}.gguf"


def _export_gguf(
    source: ExportSource, staging: Path, quant: str, report: Progress, notes: list[str]
) -> list[str]:
    import torch

    from lorastudio.export.ggufwrite import write_gguf
    from lorastudio.export.merge import load_merged
    from lorastudio.export.modelfile import modelfile_text

    tokenizer, chat = load_tokenizer_for(source)
    prompts, runtime_bos, refused = ollama_prompts(source, tokenizer, chat)
    model = load_merged(source, tokenizer, torch.float32, lambda f, m: report(f * 0.5, m))
    name = gguf_file_name(source, quant)
    write_gguf(
        model,
        tokenizer,
        staging / name,
        quant,
        name=f"{source.recipe.name} ({source.label})",
        chat_template=chat.jinja,
        end_of_turn=chat.end_of_turn,
        chat=source.recipe.chat,
        add_bos=bool(runtime_bos) if chat.jinja else None,
        progress=lambda f, m: report(0.5 + f * 0.45, m),
    )
    if prompts is None:
        notes.append(f"no Ollama Modelfile: {refused}")
    else:
        stops = [s for s in (chat.end_of_turn, tokenizer.eos_token) if s]
        (staging / "Modelfile").write_text(
            modelfile_text(name, prompts, stops, source.recipe.chat), encoding="utf-8"
        )
    return sorted(p.name for p in staging.iterdir())


def ollama_prompts(source: ExportSource, tokenizer: Any, chat: Any) -> tuple[OllamaTemplate | None, str, str]:
    """The Modelfile's checked template and system prompt (None and why where Ollama cannot render prompts as
    training did), and the BOS text the runtime must add itself: the one a trained render starts with."""
    from lorastudio.export.modelfile import (
        TemplateNotExpressible,
        ollama_template,
        runtime_bos,
        tokenizer_render,
    )

    if not chat.jinja:
        return None, "", f"the run has no chat template ({chat.name!r}): nothing to render prompts with"

    render = tokenizer_render(tokenizer)
    bos = runtime_bos(tokenizer, render)
    system = source.recipe.chat.system_prompt or source.recipe.data.system_prompt
    try:
        return ollama_template(render, system, bos), bos, ""
    except TemplateNotExpressible as exc:
        return (
            None,
            bos,
            f"its Go template cannot render prompts as the chat template {chat.name!r} does ({exc})",
        )


def is_export_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file()
