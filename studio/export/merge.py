"""The merged model: the base reloaded unquantized (even when the run trained in 4-bit), the adapter folded in;
for a full or freeze run (``train.tuning``) the trained model itself, loaded from its folder."""

from __future__ import annotations

from typing import Any

from lorastudio.export.origin import ExportSource
from lorastudio.export.staging import ExportError
from lorastudio.progress import Progress

DTYPES = ("auto", "float16", "bfloat16", "float32")


def base_config(source: ExportSource) -> Any:
    """The base model's config, read without loading weights (fails early and clearly when it is unreachable)."""
    from transformers import AutoConfig

    from lorastudio.models.resolve import hub_error, resolve_model_path

    model = source.recipe.model
    try:
        if source.full:  # a full or freeze run: the trained model's own config
            config = AutoConfig.from_pretrained(
                str(source.adapter_dir), trust_remote_code=model.trust_remote_code
            )
        else:
            config = AutoConfig.from_pretrained(
                resolve_model_path(model), revision=model.revision, trust_remote_code=model.trust_remote_code
            )
    except Exception as exc:  # OSError for missing repos, connection errors from the hub client
        raise hub_error(model.name, exc) from None
    if getattr(config, "quantization_config", None):
        raise ExportError(
            f"model.name: {model.name!r} is stored pre-quantized, so it cannot be reloaded in 16-bit "
            "for merging; point model.name at the unquantized original and export again"
        )
    return config


def resolve_dtype(name: str, config: Any):
    """``auto``: the base checkpoint's own 16-bit dtype, else float16 (a float32 base such as the tiny model)."""
    import torch

    if name not in DTYPES:
        raise ExportError(f"--dtype {name}: choose one of {', '.join(DTYPES)}")
    if name != "auto":
        return getattr(torch, name)
    own = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(own, str):
        own = getattr(torch, own, None)
    return own if own in (torch.float16, torch.bfloat16) else torch.float16


def _work_dtype(config: Any, wanted):
    """Merge in float32 when it fits comfortably in host memory (exact); else in the 16-bit dtype saved."""
    import psutil
    import torch

    hidden = getattr(config, "hidden_size", 0) or 0
    layers = getattr(config, "num_hidden_layers", 0) or 0
    inter = getattr(config, "intermediate_size", 0) or 4 * hidden
    vocab = getattr(config, "vocab_size", 0) or 0
    params = layers * (4 * hidden * hidden + 3 * hidden * inter) + 2 * vocab * hidden
    return torch.float32 if params * 4 < psutil.virtual_memory().available * 0.5 else wanted


def load_merged(source: ExportSource, tokenizer: Any, dtype, progress: Progress | None = None) -> Any:
    """Base (unquantized) + adapter, merged; parameters in float32 where memory allows, else in ``dtype``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lorastudio.models.resolve import hub_error, resolve_model_path

    report = progress or (lambda f, m: None)
    if source.recipe.train.method == "reward":
        raise ExportError(
            f"{source.label}: a reward model (train.method: reward) has a score head, not a language model's: "
            "it scores replies for a GRPO run (grpo.rewards: [{model: RUN}]) and has nothing to chat with"
        )
    model_section = source.recipe.model
    config = base_config(source)
    if source.full:  # a full or freeze run saved the whole trained model: nothing to merge
        report(0.05, f"loading the trained model ({source.label})")
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(source.adapter_dir),
                dtype=_work_dtype(config, dtype),
                trust_remote_code=model_section.trust_remote_code,
            )
        except Exception as exc:
            raise ExportError(
                f"{source.adapter_dir}: cannot load the trained model: "
                f"{(str(exc).splitlines() or [type(exc).__name__])[0]}"
            ) from None
        model.eval()
        return model
    report(0.05, f"loading {model_section.name} unquantized")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            resolve_model_path(model_section),
            dtype=_work_dtype(config, dtype),
            revision=model_section.revision,
            trust_remote_code=model_section.trust_remote_code,
        )
    except Exception as exc:
        raise hub_error(model_section.name, exc) from None
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))  # the recipe added a pad token, as training did
    report(0.35, f"merging the adapter ({source.label})")
    try:
        peft_model = PeftModel.from_pretrained(model, str(source.adapter_dir))
    except Exception as exc:
        raise ExportError(
            f"{source.adapter_dir}: cannot load the adapter onto {model_section.name}: "
            f"{(str(exc).splitlines() or [type(exc).__name__])[0]}"
        ) from None
    merged = peft_model.merge_and_unload()
    merged.eval()
    return merged


def generation_config_for(model: Any, tokenizer: Any, end_of_turn: str | None, chat: Any) -> Any:
    """Stop on eos and the end-of-turn token; sample the way the recipe's chat section says."""
    from transformers import GenerationConfig

    stops = [tokenizer.eos_token_id]
    if end_of_turn:
        tid = tokenizer.convert_tokens_to_ids(end_of_turn)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in stops:
            stops.append(tid)
    stops = [s for s in stops if s is not None]
    config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stops if len(stops) > 1 else (stops or [None])[0],
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=chat.max_new_tokens,
    )
    if not (chat.greedy or chat.temperature == 0):
        config.do_sample = True
        config.temperature = chat.temperature
        config.top_p = chat.top_p
        config.top_k = chat.top_k or None
        if chat.min_p:
            config.min_p = chat.min_p
    if chat.repetition_penalty != 1.0:
        config.repetition_penalty = chat.repetition_penalty
    return config
