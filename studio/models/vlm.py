"""Vision-language models: the offline tiny VLM, telling a VLM from a text model, and loading one with its
processor.

``tiny-vision`` is an Idefics3 (SmolVLM's architecture) built on this machine with no hub: the tiny text
model (studio/models/tiny.py) as its language model, its weights copied in, with a small random SigLIP-style
vision tower and connector, the tiny tokenizer with Idefics3's image tokens added, and an image processor
built from its class with explicit sizes (32 px, no splitting: four image tokens per image).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from lorastudio.errors import StudioError
from lorastudio.models.cachelock import folder_lock
from lorastudio.models.templates import TEMPLATES
from lorastudio.paths import cache_dir
from lorastudio.progress import Progress

TINY_VISION = "tiny-vision"
BUILD_VERSION = 1
"""Bump when the architecture, tokens or template change: caches are rebuilt."""
MARKER = "studio-tiny-vision.json"
IMAGE_SIZE = 32
"""Pixels per side the vision tower sees (the image processor resizes to it)."""
VISION_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": IMAGE_SIZE,
    "patch_size": 8,
}
SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (IMAGE_SIZE // 8) ** 2 // SCALE_FACTOR**2
"""Image tokens per image: (32 / 8)^2 patches, merged 2x2 by the connector."""
IMAGE_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
# The tiny model's own llama-3 layout, with a message's content either a string or a list of parts (an image
# part renders as the processor's ``<image>`` placeholder, which the processor expands).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' }}"
    "{% if m['content'] is string %}{{ m['content'] | trim }}{% else %}{% for part in m['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% elif part['type'] == 'text' %}{{ part['text'] | trim }}"
    "{% endif %}{% endfor %}{% endif %}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
assert TEMPLATES["llama-3"].end_of_turn == "<|eot_id|>"

VISION_MODULES = r".*(vision_model|vision_tower|visual|connector|multi_modal_projector|vision_encoder).*"
"""Module paths of the vision side of the VLMs studio knows (Idefics3/SmolVLM, Qwen2-VL, Llama 3.2 Vision,
Gemma 3): LoRA leaves them alone unless ``model.finetune_vision``."""


def tiny_vision_dir() -> Path:
    return cache_dir() / "tiny-vision"


def is_built(path: Path | None = None) -> bool:
    try:
        return json.loads(((path or tiny_vision_dir()) / MARKER).read_text()).get("version") == BUILD_VERSION
    except (OSError, ValueError):
        return False


def ensure_tiny_vision(progress: Progress | None = None, path: Path | None = None) -> Path:
    """The tiny VLM's folder, built first when the cache lacks it (a few seconds once the tiny model exists)."""
    target = path or tiny_vision_dir()
    if is_built(target):
        return target
    with folder_lock(target, "building the tiny vision model", progress):
        if not is_built(target):  # another process may have built it while we waited
            build(target, progress)
    return target


def build_processor(tokenizer: Any) -> Any:
    """The tiny VLM's processor around ``tokenizer`` (its image tokens added here): no file is read."""
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tokenizer.add_special_tokens({"additional_special_tokens": IMAGE_TOKENS})
    tokenizer.chat_template = CHAT_TEMPLATE
    images = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
    )
    return Idefics3Processor(
        image_processor=images, tokenizer=tokenizer, image_seq_len=IMAGE_SEQ_LEN, chat_template=CHAT_TEMPLATE
    )


def build(target: Path, progress: Progress | None = None) -> Path:
    import torch
    from transformers import AutoTokenizer, Idefics3Config, Idefics3ForConditionalGeneration, LlamaForCausalLM

    from lorastudio.models.tiny import SEED, ensure_tiny_model

    started = time.monotonic()
    text_dir = ensure_tiny_model(progress)
    if progress is not None:
        progress(0.9, "building the tiny vision model")
    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(text_dir)
    processor = build_processor(tokenizer)
    text_model = LlamaForCausalLM.from_pretrained(text_dir)
    config = Idefics3Config(
        text_config={**text_model.config.to_dict(), "vocab_size": len(tokenizer)},
        vision_config=VISION_CONFIG,
        scale_factor=SCALE_FACTOR,
        image_token_id=processor.image_token_id,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Idefics3ForConditionalGeneration(config)
    # The language model is the tiny text model, so the VLM already speaks; the new image-token rows stay random.
    own = model.model.text_model.state_dict()
    for name, weight in text_model.model.state_dict().items():
        rows = weight.shape[0]
        own[name][:rows] = weight
    model.model.text_model.load_state_dict(own)
    model.tie_weights()
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    (staging / MARKER).write_text(
        json.dumps(
            {
                "version": BUILD_VERSION,
                "seconds": round(time.monotonic() - started, 1),
                "parameters": sum(p.numel() for p in model.parameters()),
            }
        )
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    if progress is not None:
        progress(1.0, f"built the tiny vision model in {time.monotonic() - started:.1f} s")
    return target


def is_vision_config(folder: str | Path) -> bool:
    """Whether the model's ``config.json`` (in its folder, or of a hub id in the local hub cache) is a
    vision-language model's (it has a vision config). Never asks the hub."""
    file = Path(folder) / "config.json"
    if not file.is_file() and "/" in str(folder) and not Path(folder).exists():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(str(folder), "config.json")
        except Exception:  # not a valid repo id
            return False
        if not isinstance(cached, str):
            return False
        file = Path(cached)
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "vision_config" in config


def load_processor(path: str, trust_remote_code: bool = False) -> Any:
    """The model's processor (tokenizer and image processor), its tokenizer padded with eos when it has no pad."""
    from transformers import AutoProcessor

    from lorastudio import hub

    try:
        processor = AutoProcessor.from_pretrained(
            path, trust_remote_code=trust_remote_code, local_files_only=hub.offline_set()
        )
    except ValueError as exc:
        if "Missing optional dependencies" not in str(exc):
            raise
        # transformers up to 5.17 has no PIL-only image processor for some models (Idefics3: torchvision)
        raise StudioError(f"{path}: the image processor cannot load here: {exc}") from None
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return processor


def load_vlm(path: str, dtype: Any = None, device_map: Any = None, trust_remote_code: bool = False) -> Any:
    """The VLM with its language-model head (``AutoModelForImageTextToText``)."""
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    return AutoModelForImageTextToText.from_pretrained(path, **kwargs)


def lora_config(recipe: Any) -> Any:
    """The recipe's LoRA on the language model; the vision tower and connector too when
    ``model.finetune_vision`` (their ``q_proj``… share the language model's names, so without it they are
    excluded by path)."""
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.lora.r,
        lora_alpha=recipe.lora.alpha,
        lora_dropout=recipe.lora.dropout,
        target_modules=recipe.lora.target_modules,
        exclude_modules=None if recipe.model.finetune_vision else VISION_MODULES,
        bias=recipe.lora.bias,
        use_rslora=recipe.lora.use_rslora,
        task_type="CAUSAL_LM",
    )
