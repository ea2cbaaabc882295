"""Choose and drive the training backend: unsloth on CUDA when it imports, else transformers + peft.

The pure decisions (which backend, which precision, gradient checkpointing or not)
are plain functions so they can be tested without a GPU.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lorastudio.errors import StudioError
from lorastudio.progress import Progress
from lorastudio.recipe import Recipe


@dataclass(frozen=True)
class Hardware:
    """What the machine offers, as far as training cares."""

    cuda: bool
    bf16: bool
    device_name: str


def detect_hardware() -> Hardware:
    import torch

    if torch.cuda.is_available():
        return Hardware(True, torch.cuda.is_bf16_supported(), torch.cuda.get_device_name(0))
    return Hardware(False, False, "cpu")


def choose_backend(
    hw: Hardware,
    unsloth_importable: bool | None = None,
    env: Mapping[str, str] | None = None,
    devices: int = 1,
) -> str:
    """``unsloth`` when CUDA is present and unsloth is installed, unless ``STUDIO_BACKEND`` says otherwise.

    unsloth trains on one device: with more, the automatic choice is transformers + peft (under accelerate),
    and an explicit ``STUDIO_BACKEND=unsloth`` is refused with a message saying so.
    """
    from lorastudio.settings import read_settings

    forced = read_settings(env).backend
    if forced == "hf":
        return "hf"
    if devices > 1:
        if forced == "unsloth":
            raise StudioError(
                f"STUDIO_BACKEND=unsloth trains on one device, but train.devices asks for {devices}: "
                "set train.devices: 1, or unset STUDIO_BACKEND to train on all of them with "
                "transformers + peft"
            )
        return "hf"
    if unsloth_importable is None:
        unsloth_importable = importlib.util.find_spec("unsloth") is not None
    if forced == "unsloth" and not (hw.cuda and unsloth_importable):
        raise RuntimeError(
            "STUDIO_BACKEND=unsloth needs a CUDA GPU and the 'gpu' extra (pip install 'lorastudio[gpu]')"
        )
    return "unsloth" if hw.cuda and unsloth_importable else "hf"


def resolve_precision(recipe: Recipe, hw: Hardware) -> str:
    """bf16 / fp16 / fp32: the recipe's choice, with ``auto`` and impossible choices settled by the hardware."""
    wanted = recipe.train.precision
    if not hw.cuda:
        return (
            "fp32" if wanted in ("auto", "fp16") else wanted
        )  # fp16 autocast is GPU-only; bf16 works on CPU
    if wanted == "auto":
        return "bf16" if hw.bf16 else "fp16"
    if wanted == "bf16" and not hw.bf16:
        return "fp16"
    return wanted


def resolve_gradient_checkpointing(recipe: Recipe, hw: Hardware) -> bool:
    setting = recipe.train.gradient_checkpointing
    return hw.cuda if setting == "auto" else setting == "on"


def compute_dtype(recipe: Recipe, hw: Hardware):
    import torch

    name = recipe.model.compute_dtype
    if name == "auto":
        if not hw.cuda:
            return torch.float32
        return torch.bfloat16 if hw.bf16 else torch.float16
    if name == "bfloat16" and hw.cuda and not hw.bf16:
        return torch.float16
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def load_for_training(
    recipe: Recipe, backend: str, hw: Hardware, progress: Progress | None = None
) -> tuple[Any, Any]:
    """(peft model, tokenizer) ready for the trainer."""
    from lorastudio.models.resolve import resolve_model_path

    path = resolve_model_path(recipe.model, progress)
    if (
        recipe.train.tuning != "lora"
    ):  # full or freeze: the plain model (transformers), see train/trainer/fulltune.py
        return load_full_for_training(recipe, path, hw)
    if backend == "unsloth":
        return _load_unsloth(recipe, path, hw)
    return _load_hf(recipe, path, hw)


def _load_unsloth(recipe: Recipe, path: str, hw: Hardware) -> tuple[Any, Any]:
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=path,
        max_seq_length=recipe.model.max_seq_length,
        dtype=None,
        load_in_4bit=recipe.model.load_in_4bit,
        trust_remote_code=recipe.model.trust_remote_code,
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=recipe.lora.r,
        lora_alpha=recipe.lora.alpha,
        lora_dropout=recipe.lora.dropout,
        target_modules=recipe.lora.target_modules,
        bias=recipe.lora.bias,
        use_rslora=recipe.lora.use_rslora,
        use_gradient_checkpointing="unsloth" if resolve_gradient_checkpointing(recipe, hw) else False,
        random_state=recipe.train.seed,
        max_seq_length=recipe.model.max_seq_length,
        modules_to_save=_embedding_modules(recipe, model).get("modules_to_save"),
    )
    return model, tokenizer


def _embedding_modules(recipe: Recipe, model: Any) -> dict[str, Any]:
    """``modules_to_save`` for LoRA with ``train.embedding_learning_rate``: the embeddings train in full."""
    if recipe.train.embedding_learning_rate is None:
        return {}
    from lorastudio.train.trainer.fulltune import modules_to_save

    return {"modules_to_save": modules_to_save(model)}


def load_base_model(
    recipe: Recipe, path: str, hw: Hardware, tokenizer: Any, auto_class: Any = None, **extra: Any
) -> Any:
    """The base model with the recipe's quantization, for training or for chat, its embeddings grown to
    cover tokens the tokenizer added (a pad token, for recipes that ask for one). ``auto_class`` (a causal LM
    unless given) and ``extra`` (its own arguments) load it with another head: a reward model's score."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {
        "trust_remote_code": recipe.model.trust_remote_code,
        "revision": recipe.model.revision,
        **extra,
    }
    dtype = compute_dtype(recipe, hw)
    if recipe.model.load_in_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=recipe.model.quant_type,
            bnb_4bit_use_double_quant=recipe.model.double_quant,
            bnb_4bit_compute_dtype=dtype,
            # FSDP flattens quantized and plain weights together: they must be stored in one dtype (FSDP-QLoRA)
            **({"bnb_4bit_quant_storage": dtype} if recipe.train.distributed == "fsdp" else {}),
        )
        kwargs["device_map"] = {"": _local_gpu()} if hw.cuda else {"": "cpu"}
    else:
        kwargs["dtype"] = dtype if hw.cuda else torch.float32
        if hw.cuda:
            kwargs["device_map"] = {"": _local_gpu()}
    model = (auto_class or AutoModelForCausalLM).from_pretrained(path, **kwargs)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return model


def _local_gpu() -> int:
    """The GPU this process trains on: its local rank under ``accelerate launch``, else the first."""
    try:
        return int(os.environ.get("LOCAL_RANK", 0))
    except ValueError:
        return 0


def _load_hf(recipe: Recipe, path: str, hw: Hardware) -> tuple[Any, Any]:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from lorastudio.models.resolve import load_tokenizer

    tokenizer = load_tokenizer(recipe.model)
    model = load_base_model(recipe, path, hw, tokenizer)
    gc = resolve_gradient_checkpointing(recipe, hw)
    if recipe.model.load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc)
    from lorastudio.train.trainer.loravariants import check_adapter, peft_kwargs

    check_adapter(recipe)  # again here: the model may have been downloaded since the run was started
    kwargs = peft_kwargs(recipe)
    embeddings = _embedding_modules(recipe, model)
    if embeddings:  # beside any lora.modules_to_save
        kwargs["modules_to_save"] = sorted(
            set(kwargs.get("modules_to_save") or []) | set(embeddings["modules_to_save"])
        )
    config = LoraConfig(**kwargs)
    from transformers import set_seed

    set_seed(
        recipe.train.seed
    )  # the LoRA initialisation follows the recipe's seed, whatever ran before in this process
    return get_peft_model(model, config), tokenizer


def load_full_for_training(recipe: Recipe, path: str, hw: Hardware) -> tuple[Any, Any]:
    """(model, tokenizer) for ``train.tuning`` full or freeze: the plain model, its trainable part chosen."""
    from transformers import set_seed

    from lorastudio.models.resolve import load_tokenizer
    from lorastudio.train.trainer.fulltune import apply_tuning

    tokenizer = load_tokenizer(recipe.model)
    set_seed(recipe.train.seed)
    model = load_base_model(recipe, path, hw, tokenizer)
    if resolve_gradient_checkpointing(recipe, hw) and recipe.train.tuning == "freeze":
        # with the embeddings frozen the checkpointed blocks' inputs need grad, or nothing below trains
        model.enable_input_require_grads()
    return apply_tuning(model, recipe), tokenizer


def oom_cause(message: str) -> str:
    """``CUDA out of memory`` with the figures torch's message gives: what was asked, what was free, of what
    total ("Tried to allocate X GiB. GPU 0 has a total capacity of Y GiB of which Z GiB is free")."""
    import re

    asked = re.search(r"Tried to allocate ([\d.]+ [KMGT]?i?B)", message)
    total = re.search(r"total capacity of ([\d.]+ [KMGT]?i?B)", message)
    free = re.search(r"of which ([\d.]+ [KMGT]?i?B) is free", message)
    parts = [f"asked {asked.group(1)}"] if asked else []
    if free and total:
        parts.append(f"{free.group(1)} free of {total.group(1)}")
    return "CUDA out of memory" + (f": {', '.join(parts)}" if parts else "")


OOM_HINTS = [
    "train.batch_size: lower it (raise train.gradient_accumulation to keep the effective batch)",
    "model.max_seq_length: shorten it",
    "model.load_in_4bit: true (QLoRA)",
    "train.gradient_checkpointing: on",
]
