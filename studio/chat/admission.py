"""Admission before a chat model loads: will it fit beside what is already running (a live training run)?

The chat model's memory (its weights at the dtype it loads in, the adapter and a working margin, from
``models/estimate.py``) is compared with the free memory of the device it would load on, by the fit rule the
Launch sheet uses too (``train/launch/memoryfit.py``): NVML's free VRAM of the GPU (less a headroom, since a
training run's memory still grows between steps), or the host's available RAM on CPU. When it does not fit the load is refused with both figures and what to change.

On CPU the chat also takes only its share of the usable cores (``models/threads.py``) while training workers
run (the workers' own share rule, ``train/trainer/queue.py``), so a chat streaming beside a run slows it rather than starving it. While it
generates it holds a CPU slot like a worker's, so the workers count it too and give up their share in turn:
without that, the chat's thread and the worker's full set of threads oversubscribed the cores and training
ran at a sixth of its speed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lorastudio.errors import StudioError
from lorastudio.recipe import Recipe

MB = 2**20
GPU_HEADROOM_MB = 1024.0
GPU_HEADROOM_FRACTION = 0.10
"""Kept free on the GPU beyond the chat's estimate: at least this many MiB, or this fraction of the device."""
CPU_HEADROOM_MB = 1024.0
WORKING_MB = 256.0
"""The chat's working memory beyond weights and adapter: the KV cache of one reply, logits, the allocator."""


@dataclass(frozen=True)
class Admission:
    """The figures of one admission check; ``ok`` is False when the chat would not fit."""

    device: str
    """``GPU 0`` or ``CPU``."""
    need_mb: float | None
    """The chat model's estimate; None when the model's size is unknown (then it is admitted)."""
    free_mb: float | None
    """Free VRAM (GPU) or available RAM (CPU) now; None when it cannot be read (then it is admitted)."""
    headroom_mb: float

    @property
    def ok(self) -> bool:
        """Fits with the headroom kept free; admitted too when either figure is unknown."""
        from lorastudio.train.launch.memoryfit import memory_fit

        return memory_fit(self.need_mb, self.free_mb, self.headroom_mb).verdict in ("fits", "unknown")

    def message(self, name: str) -> str:
        assert self.need_mb is not None and self.free_mb is not None
        what = "free VRAM" if self.device.startswith("GPU") else "available RAM"
        fixes = (
            ["wait for the run to finish", "chat on CPU (CUDA_VISIBLE_DEVICES=)"]
            if self.device.startswith("GPU")
            else ["wait for the run to finish", "stop another process"]
        )
        return (
            f"not enough memory to chat with {name} now: it needs about {self.need_mb:,.0f} MiB "
            f"(+{self.headroom_mb:,.0f} MiB headroom) and {self.device} has {self.free_mb:,.0f} MiB {what}; "
            f"load it in 4 bits (model.load_in_4bit: true), {', or '.join(fixes)}"
        )


def chat_need_mb(recipe: Recipe, gpu: bool) -> float | None:
    """The chat model's MiB: weights and adapter from the training estimate, plus a working margin."""
    from lorastudio.models.estimate import estimate_memory

    estimate = estimate_memory(recipe, gpu=gpu)
    if estimate is None:
        return None
    if estimate.source != "config.json":  # only a rough training figure: count the weights part of it
        return estimate.total / MB / 2 + WORKING_MB
    return (estimate.weights + estimate.lora) / MB + WORKING_MB


def admit(recipe: Recipe, gpu: bool) -> Admission:
    from lorastudio.train.launch import memoryfit

    found = memoryfit.free_memory(gpu)
    if not gpu:
        device, headroom = "CPU", CPU_HEADROOM_MB
    elif found is None:
        device, headroom = "GPU 0", CPU_HEADROOM_MB  # unknown free VRAM: admitted, the headroom unused
    else:  # ``GPU 0``: the message names the index, not the model
        device = " ".join(found.device.split()[:2])
        headroom = max(GPU_HEADROOM_MB, GPU_HEADROOM_FRACTION * found.total_mb)
    return Admission(device, chat_need_mb(recipe, gpu), found.free_mb if found else None, headroom)


def check_admission(recipe: Recipe, gpu: bool) -> Admission:
    """The admission, or StudioError naming both figures and what to change when the chat would not fit."""
    admission = admit(recipe, gpu)
    if not admission.ok:
        raise StudioError(admission.message(recipe.model.name))
    return admission


def chat_threads(cores: int | None = None) -> int | None:
    """Torch threads for a CPU chat: its share of the cores beside the live CPU training workers, or None
    (leave torch's default) when no worker runs."""
    from lorastudio.train.trainer.queue import fair_threads, live_cpu_workers

    workers = live_cpu_workers()
    if not workers:
        return None
    if cores is None:
        from lorastudio.models.threads import usable_cores

        cores = usable_cores()
    return fair_threads(cores, workers + 1)


def cap_threads(threads: int | None) -> Any:
    """Set torch's threads here (OpenMP settings are per thread: call it in the thread that generates)."""
    if threads is None:
        return None
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


@contextmanager
def cpu_share(cores: int | None = None) -> Iterator[int | None]:
    """Around one CPU generation beside live training workers: hold a CPU slot (each worker re-counts the
    slots every few seconds and shrinks to its share) and cap this thread to the chat's share. Alone, it
    holds nothing and leaves torch's threads as they are. Yields the threads set (None when alone)."""
    from lorastudio.train.trainer.queue import CpuSlot

    threads = chat_threads(cores)
    if threads is None:
        yield None
        return
    slot = CpuSlot()
    try:
        yield cap_threads(threads)
    finally:
        slot.release()
