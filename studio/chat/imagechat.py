"""Chat with an image: ``studio chat RUN --image PATH --prompt "..."`` for a vision-language model's run.

The run (or model folder) is resolved as for text chat (``engine_for``); the prompt is the user's turn with the
image before its text, rendered by the processor's chat template and expanded by the processor, as in training.
The Chat screen does not take images yet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.errors import StudioError
from lorastudio.recipe import ChatSection


@dataclass(frozen=True)
class ImageReply:
    """The reply to one prompt about one image."""

    text: str
    image: str
    tokens: int
    seconds: float
    adapter: bool


def image_reply(
    target: str | None,
    image: str,
    prompt: str,
    sampling: ChatSection | None = None,
    base_only: bool = False,
    system: str | None = None,
) -> ImageReply:
    """Load the run's VLM (and adapter), answer ``prompt`` about ``image``."""
    import torch

    from lorastudio.chat.engine import engine_for, generate_kwargs
    from lorastudio.data.imagerows import open_image
    from lorastudio.models.resolve import hub_error, resolve_model_path
    from lorastudio.models.vlm import is_vision_config, load_processor, load_vlm

    picture = open_image(Path(image).expanduser(), "--image")  # refused before the model loads
    engine = engine_for(target, base_only=base_only)
    recipe = engine.recipe
    path = resolve_model_path(recipe.model)
    if not is_vision_config(path):
        raise StudioError(
            f"--image: model {recipe.model.name!r} is text-only; chat with an image needs a vision-language model's run"
        )
    try:
        processor = load_processor(path, recipe.model.trust_remote_code)
        model: Any = load_vlm(path, dtype=torch.float32, trust_remote_code=recipe.model.trust_remote_code)
    except OSError as exc:
        raise hub_error(recipe.model.name, exc) from None
    if engine.adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(engine.adapter_dir))
    model.eval()
    sampling = sampling or recipe.chat
    system = system or sampling.system_prompt or recipe.data.system_prompt
    messages: list[dict[str, Any]] = (
        [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
    )
    messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]})
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[[picture]], return_tensors="pt", add_special_tokens=False)
    tokenizer = processor.tokenizer
    stops = {tokenizer.eos_token_id}
    for end in ("<|eot_id|>", "<end_of_utterance>", "<|im_end|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(end)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            stops.add(tid)
    started = time.monotonic()
    with torch.no_grad():
        out = model.generate(
            **inputs,
            **generate_kwargs(sampling),
            eos_token_id=[s for s in stops if s is not None],
            pad_token_id=tokenizer.pad_token_id,
        )
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    return ImageReply(
        tokenizer.decode(new, skip_special_tokens=True).strip(),
        str(image),
        len(new),
        round(time.monotonic() - started, 3),
        engine.adapter_dir is not None,
    )
