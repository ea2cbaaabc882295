"""What one training process needs to know when it is one of several (started by ``accelerate launch``).

torchrun (under ``accelerate launch``) tells each process its place through ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``. Rank 0 alone writes the run directory; the others train silently. Decisions that every
process must take at the same step (stop now?) go through one all-reduce, so no rank is left waiting in a
collective its peers have already left.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from lorastudio.train.run.eventlog import EventWriter, checked_event
from lorastudio.train.run.events import E

DEFAULT_TIMEOUT_S = 1800
"""How long a collective may wait for a silent peer before the process group gives up
(``STUDIO_DIST_TIMEOUT_S``, transformers' own default). A peer that *died* is noticed at once (its sockets
close) or by the launcher within ~30 s; this bound is only for a peer that hangs while alive."""


@dataclass(frozen=True)
class Placement:
    """This process's place among the training processes."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Writes events, checkpoints and the adapter."""
        return self.rank == 0


def placement(env: Mapping[str, str] | None = None) -> Placement:
    env = os.environ if env is None else env
    try:
        return Placement(
            int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))
        )
    except ValueError:
        return Placement()


def timeout_s(env: Mapping[str, str] | None = None) -> int:
    from lorastudio.settings import read_settings

    return read_settings(env).dist_timeout_s


def init_process_group(where: Placement) -> None:
    """Join the process group ourselves (before the trainer does) so that it has our timeout.

    On CUDA each process takes the GPU numbered by its local rank; CPU tensors go over gloo in both cases,
    so the stop vote works on any device.
    """
    import torch
    import torch.distributed as dist

    if not where.distributed or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(where.local_rank)
        backend = "cuda:nccl,cpu:gloo"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s()))


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any rank (one all-reduce); the flag itself when alone."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return flag
    vote = torch.tensor([1 if flag else 0], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        vote = vote.cuda()
    dist.all_reduce(vote, op=dist.ReduceOp.MAX)
    return bool(vote.item())


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


@contextmanager
def main_first(where: Placement) -> Iterator[None]:
    """Rank 0 runs the block first (downloads, builds, fills caches); the others then find its results."""
    if where.distributed and not where.is_main:
        barrier()
    yield
    if where.distributed and where.is_main:
        barrier()


def save_sharded_adapter(
    trainer: Any,
    tokenizer: Any,
    run_dir: Path,
    where: Placement,
    save_adapter: Callable[[Any, Any, Path], Path],
) -> Path:
    """FSDP: gathering the full adapter is collective (every rank takes part); rank 0 writes it."""
    target = run_dir / "adapter"
    trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(target))
    if where.is_main:
        tokenizer.save_pretrained(target)
        from lorastudio.train.run.rundir import RECIPE_FILE

        (target / "recipe.yaml").write_text((run_dir / RECIPE_FILE).read_text())
    return target


def leave_process_group() -> None:
    try:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # leaving is best effort: the process ends anyway
        pass


def is_comm_error(exc: BaseException) -> bool:
    """A failure of the process group (a peer died or went silent) rather than of this process's own work."""
    try:
        import torch.distributed as dist

        if isinstance(exc, dist.DistError):
            return True
    except Exception:
        pass
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(mark in text for mark in ("gloo", "nccl", "connection closed by peer", "connection reset"))


class NullWriter(EventWriter):
    """Stands in for the event writer on ranks other than 0: it opens no file and writes nothing."""

    def __init__(self) -> None:
        pass

    def emit(self, event: E) -> E:
        return checked_event(event)  # checked as on rank 0, but never written

    def close(self) -> None:
        pass


def run_pids() -> list[int]:
    """This process and its sibling training processes (the launcher's other children), for per-GPU memory."""
    pids = [os.getpid()]
    try:
        import psutil

        for child in psutil.Process(os.getppid()).children():
            if child.pid != pids[0] and "lorastudio.worker" in " ".join(child.cmdline()):
                pids.append(child.pid)
    except Exception:
        pass
    return pids
