"""The Launch sheet's memory line: the estimate beside what the GPU or the host has free.

The figures and the fit rule are the engine's (``train/launch/memoryfit.py``, which chat admission uses too); this
module only words and colours them.
"""

from __future__ import annotations

from rich.text import Text

from lorastudio.recipe import Recipe

HEADROOM = 0.9  # above 90 % of what is free, fragmentation and other processes make it a gamble


def describe(recipe: Recipe, gpu: tuple[float, float, str] | None | bool = True) -> tuple[Text, bool | None]:
    """One or two lines for the sheet and whether it fits (None when unknown).

    ``gpu=True`` asks NVML; tests pass a (free MB, total MB, name) tuple or None for "no GPU".
    """
    from lorastudio.models.estimate import estimate_memory, memory_label
    from lorastudio.train.launch import memoryfit

    found = (
        memoryfit.free_gpu()
        if gpu is True
        else (memoryfit.FreeMemory(gpu[2], gpu[0], gpu[1]) if gpu else None)
    )
    on_gpu = found is not None
    est = estimate_memory(recipe, gpu=on_gpu)
    text = Text()
    what = memory_label(on_gpu, detail=True)
    if est is None:
        text.append(f"{what}: unknown ", style="bold")
        text.append("(no config.json on disk; set model.params_billion)", style="dim")
        return text, None
    text.append(f"{what} {est.total_gb:.2f} GB", style="bold")
    text.append(
        f"  ({est.breakdown()}{', grad. checkpointing' if est.gradient_checkpointing else ''})\n", style="dim"
    )
    if found is not None:
        where = f"free on {found.device.strip()}"
    else:
        found = memoryfit.free_host()
        if found is None:
            text.append("no NVIDIA GPU: trains on the CPU", style="dim")
            return text, None
        where = "RAM available (no NVIDIA GPU: trains on the CPU)"
    fit = memoryfit.memory_fit(est.total / 2**20, found.free_mb, headroom_mb=found.free_mb * (1 - HEADROOM))
    style = {"fits": "bold green", "tight": "bold yellow"}.get(fit.verdict, "bold red")
    text.append(f"{found.free_mb / 1024:.1f} of {found.total_mb / 1024:.1f} GB {where}", style=style)
    if fit.verdict == "short":
        text.append("  will not fit: lower batch size or max length, or turn on 4-bit", style="bold red")
    elif fit.verdict == "tight":
        text.append("  tight: little headroom", style="bold yellow")
    return text, fit.verdict != "short"
