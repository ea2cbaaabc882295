"""How many CPU threads torch may use in the TUI's own threads (model builds, loads, chat, export).

The TUI works beside training workers, which size their torch threads to the cores they hold
(``train/queue.py``). Uncapped, the TUI's first tiny build beside a worker on two cores made both about ten
times slower (OpenMP threads spinning against each other). OpenMP's thread count is a per-thread setting,
so each worker thread that runs torch calls :func:`share_cores` first.
"""

from __future__ import annotations

import os

TUI_SHARE = 2
"""The TUI takes 1/TUI_SHARE of the cores (at least one), leaving the rest to training."""


def tui_threads(cores: int | None = None) -> int:
    """Threads for torch work started from the TUI: half the cores, at least one."""
    return max(1, (cores if cores is not None else os.cpu_count() or 1) // TUI_SHARE)


def share_cores(cores: int | None = None) -> int:
    """Cap torch's intra-op threads in the calling thread (imports torch); returns the number set."""
    import torch

    threads = tui_threads(cores)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
