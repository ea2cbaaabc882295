"""Rough VRAM estimates for the picker's details pane."""

from __future__ import annotations

from lorastudio.recipe import Recipe

TINY_PARAMS_B = 0.00087


def params_billion(recipe: Recipe) -> float | None:
    if recipe.model.params_billion:
        return recipe.model.params_billion
    return TINY_PARAMS_B if recipe.model.name == "tiny" else None


FSDP_GATHER_SHARE = 0.1
"""Share of the whole model FSDP holds unsharded at once (the layer being computed, plus the next prefetched)."""


def estimate_vram_gb(recipe: Recipe, devices: int | None = None, distributed: str | None = None) -> float | None:
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
    if distributed == "fsdp" and devices > 1:
        weights = weights / devices + weights * FSDP_GATHER_SHARE
        adapter = adapter / devices
    tokens = recipe.train.batch_size * recipe.model.max_seq_length  # batch_size is per device
    activations = tokens * (params ** 0.5) * 0.00012  # grows with width; checkpointing keeps it small
    return round(weights + adapter + activations + 0.5, 1)
