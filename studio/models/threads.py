"""How many CPU threads torch may use in the TUI's own threads (model builds, loads, chat, export).

The TUI works beside training workers, which size their torch threads to the cores they hold
(``train/trainer/queue.py``). Uncapped, the TUI's first tiny build beside a worker on two cores made both about ten
times slower (OpenMP threads spinning against each other). OpenMP's thread count is a per-thread setting,
so each worker thread that runs torch calls :func:`share_cores` first.

:func:`usable_cores` is the one count of the cores this process may run on, used by every share: the TUI's
here, a CPU chat's (``chat/admission.py``), the training workers' (``train/trainer/queue.py``) and the encoding
shards' (``data/prepared/shards.py``).
"""

from __future__ import annotations

import os

TUI_SHARE = 2
"""The TUI takes 1/TUI_SHARE of the cores (at least one), leaving the rest to training."""


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's cpuset, ``taskset``, Slurm's
    binding), not the machine's count, which oversubscribes a limited process; at least one."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1  # macOS and Windows: no affinity call


def tui_threads(cores: int | None = None) -> int:
    """Threads for torch work started from the TUI: half the usable cores, at least one."""
    return max(1, (cores if cores is not None else usable_cores()) // TUI_SHARE)


def share_cores(cores: int | None = None) -> int:
    """Cap torch's intra-op threads in the calling thread (imports torch); returns the number set."""
    import torch

    threads = tui_threads(cores)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
