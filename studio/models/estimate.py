"""What a recipe will cost in memory: a rough figure for the picker, an itemised one for the Launch sheet.

The Launch sheet's estimate (:func:`estimate_memory`) is computed from the model's ``config.json``
(the tiny model's, a local folder's, or a hub model's if it is already in the hub cache):

- **parameters** from the architecture: embeddings ``V*h`` (plus an untied ``lm_head`` ``V*h``) and per
  layer attention ``h*q + 2*h*kv + q*h`` (``q = heads*head_dim``, ``kv = kv_heads*head_dim``), a gated MLP
  ``3*h*I`` (``2*h*I`` for a plain one), and two norms ``2*h``.
- **weights**: the linear layers inside the blocks take 0.5 byte/param in 4-bit plus a fp32 absmax per
  64 weights (+0.0625 byte; +0.016 with double quantization), else the compute dtype (2 bytes on GPU,
  4 on CPU); embeddings, ``lm_head`` and norms stay in the compute dtype.
- **LoRA**: ``r*(in+out)`` per adapted module per layer (``r`` from ``lora.rank_pattern`` where a key names the
  module), plus ``out`` for DoRA's magnitude vector, plus every parameter of ``lora.modules_to_save``
  (``lm_head`` / ``embed_tokens``: ``V*h``; a block's module: its ``in*out`` per layer), all trained: kept in
  fp32 (4 bytes) with its gradient (4).
- **optimizer**: Adam's two fp32 moments (8 bytes per LoRA param; 2 for 8-bit optimizers).
- **activations** for ``T = batch * max_length`` tokens, per layer and token ``(15*h + 19*I/4)`` values
  (Korthikanti et al. 2022's ``34*h`` for ``I = 4h``, without the ``s*s`` score term that SDPA never
  stores), in the compute dtype. With gradient checkpointing only each layer's input (``h`` values) is
  kept, plus one layer's activations while it is recomputed. The logits add ``T*V*4*2`` bytes (fp32
  logits and their gradient).
- **full / freeze tuning** (``train.tuning``): no LoRA; the trainable part (every weight, or the layers and
  modules ``freeze`` names) has a gradient in the weights' dtype and Adam's two moments in it too (torch
  keeps them in the parameter's dtype; 2 bytes per parameter for 8-bit optimizers). A recipe that will not
  fit is refused before its run directory is made (:func:`check_fits`).
- **overhead**: 0.6 GB for the CUDA context and allocator slack (0.4 GB of Python and torch on CPU).

It is an estimate (fragmentation, sequence padding and kernels' workspaces vary), meant to say early
whether a recipe will fit, not to the last hundred MB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: memory_label is asked before the recipes are imported
    from lorastudio.recipe import Recipe

TINY_PARAMS_B = 0.00087
GB = 1024**3
GATED_ACTS = ("silu", "swiglu", "gelu_pytorch_tanh", "geglu")  # llama/qwen/mistral/gemma style MLPs


def params_billion(recipe: Recipe) -> float | None:
    if recipe.model.params_billion:
        return recipe.model.params_billion
    return TINY_PARAMS_B if recipe.model.name == "tiny" else None


def memory_label(on_gpu: bool, detail: bool = False) -> str:
    """What a memory estimate is of: VRAM where training runs on a GPU, host RAM where it runs on the CPU.

    The one rule the Launch sheet (``detail``: says why it is host RAM) and the Recipes pane both name their
    figure by, so the two never disagree on a machine without a GPU.
    """
    if on_gpu:
        return "est. VRAM"
    return "est. host RAM (CPU training)" if detail else "est. RAM"


FSDP_GATHER_SHARE = 0.1
"""Share of the whole model FSDP holds unsharded at once (the layer being computed, plus the next prefetched)."""


def estimate_vram_gb(
    recipe: Recipe, devices: int | None = None, distributed: str | None = None
) -> float | None:
    """Per-device GiB: weights (4-bit ~0.55 byte/param with quant constants, else 2 bytes) + LoRA/optimizer
    + activations.

    ``devices`` / ``distributed`` default to the recipe's ``train.devices`` (``all`` counts as 1: the number
    is only known on the machine) and ``train.distributed``. DDP replicates: each device holds everything, so
    the figure does not fall with more devices. FSDP shards weights and adapter states across devices and
    gathers one layer or so at a time.
    """
    params = params_billion(recipe)
    if params is None:
        return None
    if devices is None:
        devices = recipe.train.devices if isinstance(recipe.train.devices, int) else 1
    distributed = distributed or recipe.train.distributed
    weights = params * (0.55 if recipe.model.load_in_4bit else 2.0)
    adapter = params * 0.02 * (recipe.lora.r / 16) * 12  # fp32 weights, grads and Adam moments for ~1% params
    if recipe.train.tuning != "lora":  # bf16 grads and moments for every weight (freeze: at most that)
        adapter = params * (2.0 + (2.0 if "8bit" in recipe.train.optimizer else 4.0))
    if distributed == "fsdp" and devices > 1:
        weights = weights / devices + weights * FSDP_GATHER_SHARE
        adapter = adapter / devices
    tokens = recipe.train.batch_size * recipe.model.max_seq_length  # batch_size is per device
    activations = tokens * (params**0.5) * 0.00012  # grows with width; checkpointing keeps it small
    return round(weights + adapter + activations + 0.5, 1)


def find_model_config(recipe: Recipe) -> dict[str, Any] | None:
    """The model's ``config.json`` if it is on disk (never downloads)."""
    if recipe.model.name == "tiny" and find_model_config_path(recipe) is None:
        from lorastudio.models.tiny import CONFIG

        return {**CONFIG, "vocab_size": 640, "hidden_act": "silu"}
    path = find_model_config_path(recipe)
    return _read_json(path) if path is not None else None


def find_model_config_path(recipe: Recipe) -> Path | None:
    """Where the model's ``config.json`` is on disk (the tiny model's once built, a local folder's, a converted
    GGUF's or the hub cache's); None when it is not there yet (never downloads)."""
    name = recipe.model.name
    if name == "tiny":
        from lorastudio.paths import tiny_model_dir

        built = tiny_model_dir() / "config.json"
        return built if built.exists() else None
    converted = _converted_gguf(recipe)
    if converted is not None:
        return converted / "config.json"
    local = Path(name).expanduser()
    if local.is_dir():
        return local / "config.json" if (local / "config.json").is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json", revision=recipe.model.revision)
    except Exception:  # an id that is not a valid repo name, or no hub client
        return None
    return Path(cached) if isinstance(cached, str) else None


def _converted_gguf(recipe: Recipe) -> Path | None:
    """The converted folder of an offline model or a GGUF file, once a Preview or a run has made it."""
    from lorastudio.models.ggufload import GgufError, converted_folder, gguf_path_for
    from lorastudio.models.offline import is_offline_model, is_ready, offline_model_path

    name = recipe.model.name
    if is_offline_model(name):
        return converted_folder(offline_model_path(name)) if is_ready(name) else None
    try:
        path = gguf_path_for(name, recipe.model.gguf_file)
    except GgufError:
        return None
    return converted_folder(path) if path is not None else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("text_config", data) if isinstance(data, dict) else None


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by item, and where they come from."""

    device: str  # "gpu" or "cpu"
    params: int
    lora_params: int
    weights: float
    lora: float
    optimizer: float
    activations: float
    overhead: float
    gradient_checkpointing: bool
    source: str  # "config.json" or "model.params_billion"
    trainable: str = "LoRA"
    """What ``lora_params``/``lora`` count: the adapter, or the ``gradients`` of a full or freeze run's
    trainable weights."""

    @property
    def total(self) -> float:
        return self.weights + self.lora + self.optimizer + self.activations + self.overhead

    @property
    def total_gb(self) -> float:
        return self.total / GB

    def breakdown(self) -> str:
        if self.source != "config.json":
            return "rough: from model.params_billion (no config.json on disk)"
        parts = [
            ("weights", self.weights),
            (self.trainable, self.lora),
            ("optimizer", self.optimizer),
            ("activations", self.activations),
            ("overhead", self.overhead),
        ]
        return ", ".join(f"{name} {_fmt(value)}" for name, value in parts)


def _fmt(value: float) -> str:
    return f"{value / GB:.2f} GB" if value >= 0.01 * GB else f"{value / 2**20:.1f} MB"


def _module_shapes(cfg: dict[str, Any]) -> dict[str, tuple[int, int]]:
    h = int(cfg["hidden_size"])
    heads = int(cfg.get("num_attention_heads") or 1)
    head_dim = int(cfg.get("head_dim") or h // heads)
    kv = int(cfg.get("num_key_value_heads") or heads) * head_dim
    q = heads * head_dim
    inter = int(cfg.get("intermediate_size") or 4 * h)
    return {
        "q_proj": (h, q),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (q, h),
        "gate_proj": (h, inter),
        "up_proj": (h, inter),
        "down_proj": (inter, h),
    }


def estimate_memory(
    recipe: Recipe,
    gpu: bool,
    config: dict[str, Any] | None = None,
    gradient_checkpointing: bool | None = None,
) -> MemoryEstimate | None:
    """Peak training memory on a GPU (``gpu=True``) or in host RAM (CPU training); None when unknown."""
    cfg = config if config is not None else find_model_config(recipe)
    compute = 2 if gpu else 4  # bf16/fp16 on GPU; fp32 on CPU
    gc = (
        gradient_checkpointing
        if gradient_checkpointing is not None
        else (
            gpu
            if recipe.train.gradient_checkpointing == "auto"
            else recipe.train.gradient_checkpointing == "on"
        )
    )
    tokens = recipe.train.batch_size * recipe.model.max_seq_length
    if not cfg or "hidden_size" not in cfg or "num_hidden_layers" not in cfg:
        rough = estimate_vram_gb(recipe)
        if rough is None:
            return None
        total = rough * GB
        p = int((params_billion(recipe) or 0) * 1e9)
        return MemoryEstimate("gpu" if gpu else "cpu", p, 0, total, 0, 0, 0, 0, gc, "model.params_billion")
    h, layers = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
    vocab = int(cfg.get("vocab_size") or 32000)
    shapes = _module_shapes(cfg)
    gated = str(cfg.get("hidden_act", "silu")) in GATED_ACTS
    if not gated:
        shapes.pop("gate_proj")
    inter = shapes["up_proj"][1]
    block_linear = sum(i * o for i, o in shapes.values())
    embed = vocab * h * (1 if cfg.get("tie_word_embeddings") else 2)
    other = embed + layers * 2 * h + h
    params = layers * block_linear + other
    if recipe.model.load_in_4bit:
        per = 0.5 + 4 / 64 - (4 / 64 - (1 / 64 + 4 / (64 * 256))) * recipe.model.double_quant
        weights = layers * block_linear * per + other * compute
    else:
        weights = params * compute
    targets = recipe.lora.target_modules
    names = list(shapes) if targets == "all-linear" else [t for t in targets if t in shapes]
    lora_params = layers * sum(
        _rank(recipe, n) * (shapes[n][0] + shapes[n][1]) + (shapes[n][1] if recipe.lora.use_dora else 0)
        for n in names
    )
    lora_params += _saved_params(recipe, shapes, layers, vocab * h)
    if recipe.train.embedding_learning_rate is not None:  # modules_to_save: the embeddings train in full
        lora_params += embed
    eight_bit = "8bit" in recipe.train.optimizer
    if recipe.train.tuning != "lora":
        frozen_part = _trainable_params(
            recipe, shapes, layers, h, vocab, bool(cfg.get("tie_word_embeddings"))
        )
        trainable = params if frozen_part is None else frozen_part
    per_layer_token = (15 * h + 19 * inter / 4) * compute
    if gc:
        activations = tokens * (layers * h * compute + per_layer_token)
    else:
        activations = tokens * layers * per_layer_token
    activations += tokens * vocab * 4 * 2
    if recipe.train.tuning != "lora":
        return MemoryEstimate(
            device="gpu" if gpu else "cpu",
            params=params,
            lora_params=trainable,
            weights=weights,
            lora=trainable * compute,
            optimizer=trainable * (2 if eight_bit else 2 * compute),
            activations=activations,
            overhead=(0.6 if gpu else 0.4) * GB,
            gradient_checkpointing=gc,
            source="config.json",
            trainable="gradients",
        )
    return MemoryEstimate(
        device="gpu" if gpu else "cpu",
        params=params,
        lora_params=lora_params,
        weights=weights,
        lora=lora_params * 8,
        optimizer=lora_params * (2 if eight_bit else 8),
        activations=activations,
        overhead=(0.6 if gpu else 0.4) * GB,
        gradient_checkpointing=gc,
        source="config.json",
    )


def _rank(recipe: Recipe, module: str) -> int:
    """The rank of ``module``: the first ``lora.rank_pattern`` key that names it, else ``lora.r``."""
    for key, rank in recipe.lora.rank_pattern.items():
        if key == module or key.endswith(f".{module}"):
            return rank
    return recipe.lora.r


def _saved_params(recipe: Recipe, shapes: dict[str, tuple[int, int]], layers: int, embedding: int) -> int:
    """Parameters ``lora.modules_to_save`` trains in full: a copy of each module named."""
    total = 0
    for name in recipe.lora.modules_to_save:
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("lm_head", "embed_tokens", "wte", "embed_out"):
            total += embedding
        elif leaf in shapes:
            total += layers * shapes[leaf][0] * shapes[leaf][1]
    return total


_GROUPS = {
    "self_attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
}


def _trainable_params(
    recipe: Recipe, shapes: dict[str, tuple[int, int]], layers: int, h: int, vocab: int, tied: bool
) -> int | None:
    """Weights ``train.tuning: freeze`` trains (None for full: all of them)."""
    t = recipe.train
    if t.tuning != "freeze":
        return None
    count = min(t.freeze_trainable_layers or layers, layers)
    block = sum(i * o for i, o in shapes.values()) + 2 * h
    if t.freeze_trainable_modules is None:
        return count * block
    total = 0
    for name in t.freeze_trainable_modules:
        parts = _GROUPS.get(name, (name,))
        total += count * sum(shapes[p][0] * shapes[p][1] for p in parts if p in shapes)
        if name == "embed_tokens" or (name == "lm_head" and not tied):
            total += vocab * h
    return total


def check_fits(recipe: Recipe, gpu: bool, free_bytes: float | None) -> None:
    """Refuse a full or freeze recipe whose estimate exceeds the memory free for it, naming both figures and
    what to change (LoRA recipes are judged by the Launch sheet's estimate alone, as before)."""
    from lorastudio.errors import RecipeError

    if recipe.train.tuning == "lora" or free_bytes is None:
        return
    est = estimate_memory(recipe, gpu=gpu)
    if est is None or est.total <= free_bytes:
        return
    raise RecipeError(
        f"train.tuning: {recipe.train.tuning} needs about {est.total_gb:.1f} GB "
        f"({est.breakdown()}) and {'the GPU' if gpu else 'this machine'} has {free_bytes / GB:.1f} GB free; "
        "train fewer weights (train.tuning: freeze, or lora), use an 8-bit optimizer (train.optimizer: "
        "adamw_8bit), or lower train.batch_size / model.max_seq_length"
    )
