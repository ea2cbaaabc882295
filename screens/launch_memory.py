"""The Launch sheet's memory line: the estimate beside what the GPU (NVML) or the host has free."""

from __future__ import annotations

from rich.text import Text

from lorastudio.recipe import Recipe

HEADROOM = 0.9  # above 90 % of what is free, fragmentation and other processes make it a gamble


def free_gpu_mb() -> tuple[float, float, str] | None:
    """(free MB, total MB, name) of GPU 0 from NVML, or None without a GPU."""
    from lorastudio.train.telemetry import Nvml

    nvml = Nvml()
    for gpu in nvml.sample():
        if gpu.memory_total_mb is not None and gpu.memory_used_mb is not None:
            return (
                gpu.memory_total_mb - gpu.memory_used_mb,
                gpu.memory_total_mb,
                f"GPU {gpu.index} {gpu.name or ''}",
            )
    return None


def free_host_mb() -> tuple[float, float] | None:
    try:
        import psutil

        vm = psutil.virtual_memory()
    except Exception:
        return None
    return vm.available / 2**20, vm.total / 2**20


def describe(recipe: Recipe, gpu: tuple[float, float, str] | None | bool = True) -> tuple[Text, bool | None]:
    """One or two lines for the sheet and whether it fits (None when unknown).

    ``gpu=True`` asks NVML; tests pass a (free MB, total MB, name) tuple or None for "no GPU".
    """
    from lorastudio.models.estimate import estimate_memory, memory_label

    found = free_gpu_mb() if gpu is True else gpu or None
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
    if on_gpu:
        free_mb, total_mb, name = found  # type: ignore[misc]
        where = f"free on {name.strip()}"
    else:
        host = free_host_mb()
        if host is None:
            text.append("no NVIDIA GPU: trains on the CPU", style="dim")
            return text, None
        free_mb, total_mb = host
        where = "RAM available (no NVIDIA GPU: trains on the CPU)"
    need_mb = est.total / 2**20
    fits = need_mb <= free_mb
    style = "bold green" if need_mb <= free_mb * HEADROOM else ("bold yellow" if fits else "bold red")
    text.append(f"{free_mb / 1024:.1f} of {total_mb / 1024:.1f} GB {where}", style=style)
    if not fits:
        text.append("  will not fit: lower batch size or max length, or turn on 4-bit", style="bold red")
    elif need_mb > free_mb * HEADROOM:
        text.append("  tight: little headroom", style="bold yellow")
    return text, fits
