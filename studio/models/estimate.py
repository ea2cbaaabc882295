"""Rough VRAM estimates for the picker's details pane."""

from __future__ import annotations

from lorastudio.recipe import Recipe

TINY_PARAMS_B = 0.00087


def params_billion(recipe: Recipe) -> float | None:
    if recipe.model.params_billion:
        return recipe.model.params_billion
    return TINY_PARAMS_B if recipe.model.name == "tiny" else None


def estimate_vram_gb(recipe: Recipe) -> float | None:
    """Weights (4-bit ~0.55 byte/param with quant constants, else 2 bytes) + LoRA/optimizer + activations."""
    params = params_billion(recipe)
    if params is None:
        return None
    weights = params * (0.55 if recipe.model.load_in_4bit else 2.0)
    adapter = params * 0.02 * (recipe.lora.r / 16) * 12  # fp32 weights, grads and Adam moments for ~1% params
    tokens = recipe.train.batch_size * recipe.model.max_seq_length
    activations = tokens * (params ** 0.5) * 0.00012  # grows with width; checkpointing keeps it small
    return round(weights + adapter + activations + 0.5, 1)
