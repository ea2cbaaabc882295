"""Does a model fit in the memory free now: the one rule the Launch sheet and chat admission both apply.

The memory free is read here too: NVML's free VRAM of the first GPU that reports it, or the host's
available RAM (psutil). What a model needs comes from ``models/estimate.py``; what each caller keeps free
beyond it (its headroom) is the caller's: the Launch sheet warns above 90 % of what is free, a chat beside a
live run keeps a fixed margin since the run's memory still grows between steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MB = 2**20


@dataclass(frozen=True)
class FreeMemory:
    """What one device has free now."""

    device: str
    """``GPU 0 NVIDIA H100 80GB HBM3`` (the index, then NVML's name when it has one) or ``CPU``."""
    free_mb: float
    """Free VRAM (GPU) or available RAM (CPU), MiB."""
    total_mb: float

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("GPU")


def free_gpu() -> FreeMemory | None:
    """The first GPU NVML reports memory figures for, or None (no GPU, no NVML)."""
    from lorastudio.train.trainer.telemetry import Nvml

    for gpu in Nvml().sample():
        if gpu.memory_total_mb is not None and gpu.memory_used_mb is not None:
            name = f"GPU {gpu.index} {gpu.name or ''}".strip()
            return FreeMemory(name, gpu.memory_total_mb - gpu.memory_used_mb, gpu.memory_total_mb)
    return None


def free_host() -> FreeMemory | None:
    """The host's available RAM, or None when psutil cannot read it."""
    try:
        import psutil

        vm = psutil.virtual_memory()
    except Exception:  # noqa: BLE001 - no psutil, or no /proc: the figure is unknown, not an error
        return None
    return FreeMemory("CPU", vm.available / MB, vm.total / MB)


def free_memory(gpu: bool) -> FreeMemory | None:
    """What the device a model would load on has free: the GPU's (``gpu``) or the host's."""
    return free_gpu() if gpu else free_host()


Verdict = Literal["fits", "tight", "short", "unknown"]


@dataclass(frozen=True)
class MemoryFit:
    """A need beside what is free, and what the caller keeps free beyond it."""

    need_mb: float | None
    """None when the model's size is unknown."""
    free_mb: float | None
    """None when the free memory cannot be read."""
    headroom_mb: float

    @property
    def verdict(self) -> Verdict:
        """``fits`` with the headroom kept, ``tight`` only without it, ``short`` not at all; ``unknown``
        when either figure is."""
        if self.need_mb is None or self.free_mb is None:
            return "unknown"
        if self.need_mb + self.headroom_mb <= self.free_mb:
            return "fits"
        return "tight" if self.need_mb <= self.free_mb else "short"


def memory_fit(need_mb: float | None, free_mb: float | None, headroom_mb: float = 0.0) -> MemoryFit:
    """Whether ``need_mb`` fits in ``free_mb`` keeping ``headroom_mb`` free (see ``MemoryFit.verdict``)."""
    return MemoryFit(need_mb, free_mb, headroom_mb)
