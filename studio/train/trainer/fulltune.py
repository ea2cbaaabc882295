"""Full and freeze tuning (``train.tuning``), and the embeddings' own learning rate.

``full`` trains every weight of the model as loaded (no peft wrap); ``freeze`` trains only the last
``freeze_trainable_layers`` decoder layers and/or the ``freeze_trainable_modules`` named, as LLaMA-Factory's
freeze tuning does. Both save the whole model (``config.json`` and safetensors) in the run's ``model/``
folder, and the trainer saves it in every checkpoint, so chat, export and resume read a model folder where a
LoRA run has an adapter folder (see ``train/trainer/adapters.py``).

``train.embedding_learning_rate`` puts ``embed_tokens`` and ``lm_head`` into an optimizer group of their own
(as unsloth's continued pretraining does); with LoRA they train in full through peft's ``modules_to_save``.
"""

from __future__ import annotations

from typing import Any

from lorastudio.errors import RecipeError
from lorastudio.recipe import Recipe

EMBEDDING_MODULES = ("embed_tokens", "lm_head")
"""The input embeddings and the output head, as Llama-style models name them."""


def decoder_layers(model: Any) -> tuple[str, int]:
    """(dotted name of the decoder layers' ModuleList, how many layers): the longest ModuleList in the model,
    which for every causal LM transformers ships is its stack of blocks (``model.layers``, ``transformer.h``)."""
    import torch

    found = [
        (len(module), name)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0
    ]
    if not found:
        raise RecipeError(
            "train.tuning: freeze needs a model with a stack of decoder layers; this one has none"
        )
    count, name = max(found)
    return name, count


def _parts(name: str) -> list[str]:
    return name.split(".")


def trainable_names(model: Any, recipe: Recipe) -> set[str]:
    """The parameters ``train.tuning: freeze`` trains; a layer count or module the model lacks is refused,
    naming the field."""
    t = recipe.train
    stack, count = decoder_layers(model)
    prefix = stack + "."
    # every name a weight has: a tied lm_head's weight is the embeddings' under a second name
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    if t.freeze_trainable_layers is not None and t.freeze_trainable_layers > count:
        raise RecipeError(
            f"train.freeze_trainable_layers: {t.freeze_trainable_layers}, but {recipe.model.name} has "
            f"{count} layers; give 1 to {count}"
        )
    first = count - (t.freeze_trainable_layers or count)

    def layer_of(name: str) -> int | None:
        if not name.startswith(prefix):
            return None
        head = name[len(prefix) :].split(".", 1)[0]
        return int(head) if head.isdigit() else None

    def in_layers(name: str) -> bool:
        layer = layer_of(name)
        return layer is not None and layer >= first

    modules = t.freeze_trainable_modules
    if modules is None:
        return {n for n in names if in_layers(n)}
    known = {part for n in names for part in _parts(n)[:-1] if not part.isdigit()}
    missing = [m for m in modules if m not in known]
    if missing:
        inside = sorted(
            {part for n in names if layer_of(n) is not None for part in _parts(n[len(prefix) :])[1:-1]}
        )
        outside = sorted(
            {part for n in names if layer_of(n) is None for part in _parts(n)[:-1]} - set(_parts(stack))
        )
        raise RecipeError(
            f"train.freeze_trainable_modules: {', '.join(repr(m) for m in missing)} "
            f"{'is not a module' if len(missing) == 1 else 'are not modules'} of {recipe.model.name} "
            f"(its layers have {', '.join(inside)}; outside them: {', '.join(outside)})"
        )
    chosen = set()
    for n in names:
        if not set(modules) & set(_parts(n)[:-1]):
            continue
        # modules outside the layers (lm_head) are not limited by freeze_trainable_layers
        if layer_of(n) is None or in_layers(n):
            chosen.add(n)
    return chosen


def apply_tuning(model: Any, recipe: Recipe) -> Any:
    """Set ``requires_grad`` as ``train.tuning`` says (full: every weight; freeze: the chosen part alone)."""
    if recipe.train.tuning == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    chosen = trainable_names(model, recipe)
    trained = {id(p) for n, p in model.named_parameters(remove_duplicate=False) if n in chosen}
    for param in model.parameters():
        param.requires_grad_(id(param) in trained)
    if not any(p.requires_grad for p in model.parameters()):
        raise RecipeError(
            "train.freeze_trainable_modules: the modules named hold no weights; nothing would train"
        )
    return model


def modules_to_save(model: Any) -> list[str]:
    """``embed_tokens`` and ``lm_head`` where the model has them as modules of their own, for LoRA with
    ``train.embedding_learning_rate``; a tied ``lm_head`` is the embeddings, so it is left to them."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    return [m for m in EMBEDDING_MODULES if m in names and not (tied and m == "lm_head")]


def is_embedding_param(name: str) -> bool:
    return any(m in _parts(name) for m in EMBEDDING_MODULES)


def split_embedding_groups(optimizer: Any, model: Any, lr: float) -> int:
    """Move the trainable embedding and ``lm_head`` parameters of ``optimizer``'s groups into groups of their
    own at ``lr`` (one per weight-decay setting); returns how many parameters moved. Done before the first step,
    so no optimizer state is lost, and before the scheduler is made, so it scales their lr as the others'."""
    ids = {id(p) for n, p in model.named_parameters() if p.requires_grad and is_embedding_param(n)}
    moved = 0
    extra = []
    for group in optimizer.param_groups:
        mine = [p for p in group["params"] if id(p) in ids]
        if not mine:
            continue
        group["params"] = [p for p in group["params"] if id(p) not in ids]
        extra.append({**{k: v for k, v in group.items() if k != "params"}, "params": mine, "lr": lr})
        moved += len(mine)
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
    for group in extra:
        optimizer.add_param_group(group)
    return moved


def install_embedding_lr(trainer: Any, recipe: Recipe) -> None:
    """Make ``trainer`` build its optimizer with the embeddings' own group (``train.embedding_learning_rate``)."""
    lr = recipe.train.embedding_learning_rate
    if lr is None:
        return
    build = trainer.create_optimizer

    def create_optimizer(model: Any = None) -> Any:
        fresh = trainer.optimizer is None
        optimizer = build(model) if model is not None else build()
        if fresh:
            split_embedding_groups(optimizer, trainer.model, lr)
        return optimizer

    trainer.create_optimizer = create_optimizer


def check_freeze(recipe: Recipe) -> None:
    """Refuse a freeze recipe naming layers or modules its model lacks, before its run directory exists: judged on
    the model built from its ``config.json`` on the meta device (no weights); left to the worker, which judges
    the loaded model the same way, when the config is not on disk."""
    if recipe.train.tuning != "freeze":
        return
    from lorastudio.models.estimate import find_model_config

    found = find_model_config(recipe)
    if not found or "model_type" not in found:
        return
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.for_model(**found)
        with torch.device("meta"):  # thread-local, unlike accelerate's init_empty_weights
            model = AutoModelForCausalLM.from_config(config)
    except Exception:  # an architecture this transformers cannot build here: the worker says what it finds
        return
    trainable_names(model, recipe)


def check_memory(recipe: Recipe) -> None:
    """Refuse a full or freeze run that will not fit the memory free here, before its run directory exists
    (GPU 0's free memory by NVML when there is a GPU, else the host's available RAM)."""
    if recipe.train.tuning == "lora":
        return
    import psutil

    from lorastudio.models.estimate import check_fits
    from lorastudio.train.trainer.telemetry import Nvml

    nvml = Nvml()
    readings = nvml.sample() if nvml.available else []
    if readings and readings[0].memory_total_mb is not None and readings[0].memory_used_mb is not None:
        free = (readings[0].memory_total_mb - readings[0].memory_used_mb) * 2**20
        check_fits(recipe, True, free)
    else:
        check_fits(recipe, False, psutil.virtual_memory().available)
