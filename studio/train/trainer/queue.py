"""One run per device, and fair shares of the CPU.

**GPU queue.** A worker takes an exclusive ``flock`` on ``$XDG_DATA_HOME/studio/locks/gpu-N.lock``
before it loads anything. A second worker on the same GPU finds the lock taken, writes the status
``queued (waiting for GPU N)`` and polls until it is free, so it starts by itself when the first run
ends, whether or not a TUI is open. The lock belongs to the worker process: the kernel drops it when
the process exits or is killed, so a crashed run never blocks the queue. SIGTERM (``studio stop``, or
``s`` in the Monitor) while queued ends the worker with status ``stopped``: it leaves the queue.
On CPU there is no queue unless ``STUDIO_QUEUE_CPU=1`` (then the lock is ``cpu.lock``, status
``queued (waiting for CPU)``).

**CPU share.** Each CPU worker also holds one ``cpu-slot-K.lock``; every few seconds it counts the
slots that are held and sets ``torch.set_num_threads(cores // live_workers)``, so two runs share the
cores instead of both oversubscribing them.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lorastudio.paths import data_dir
from lorastudio.train.run.events import Status, queued_with

POLL_S = 0.5
CPU_SLOTS = 64
SHARE_EVERY_S = 5.0


def locks_dir() -> Path:
    return data_dir() / "locks"


def _lock_fd(path: Path, exclusive: bool = True) -> int | None:
    """An open fd holding a non-blocking flock on ``path``, or None when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


class DeviceLock:
    """The right to train on one device; held until :meth:`release` or the process ends."""

    def __init__(self, device: str, folder: Path | None = None) -> None:
        self.device = device
        self.path = (folder or locks_dir()) / (
            re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-") + ".lock"
        )
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is None:
            self._fd = _lock_fd(self.path)
            if self._fd is not None:
                os.ftruncate(self._fd, 0)
                os.write(
                    self._fd, f"{os.getpid()}\n".encode()
                )  # for people reading the file; the flock decides
        return self._fd is not None

    def wait(self, stop: threading.Event, on_queued: Callable[[], None], poll_s: float = POLL_S) -> bool:
        """Take the lock, waiting as long as it takes; False when ``stop`` was set first."""
        if self.try_acquire():
            return True
        on_queued()
        while not stop.wait(poll_s):
            if self.try_acquire():
                return True
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last fd drops the flock
            self._fd = None


def device_name(cuda: bool, env: Mapping[str, str] | None = None) -> str | None:
    """``GPU N`` (the physical index, through CUDA_VISIBLE_DEVICES) on CUDA; ``CPU`` only if asked."""
    env = os.environ if env is None else env
    if cuda:
        first = env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
        return f"GPU {first if first.isdigit() else 0}"
    from lorastudio.settings import read_settings

    return "CPU" if read_settings(env).queue_cpu else None


def queued_status(device: str) -> Status:
    """``queued`` with what it waits for, as the Runs screen shows it (a reader compares its prefix: see Status)."""
    return queued_with(f"waiting for {device}")


def take_device(
    cuda: bool, stop: threading.Event, write_status: Callable[[Status], Any]
) -> DeviceLock | bool:
    """The worker's turn on its device: the held lock, True when nothing needs locking, False if stopped."""
    device = device_name(cuda)
    if device is None:
        return True
    lock = DeviceLock(device)
    if not lock.wait(stop, lambda: write_status(queued_status(device))):
        return False
    return lock


# -- CPU share ------------------------------------------------------------------------------------
class CpuSlot:
    """One held ``cpu-slot-K.lock`` per CPU worker; :func:`live_cpu_workers` counts the held ones."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or locks_dir()
        self._fd: int | None = None
        for k in range(CPU_SLOTS):
            fd = _lock_fd(self.folder / f"cpu-slot-{k}.lock")
            if fd is not None:
                self._fd = fd
                break

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def live_cpu_workers(folder: Path | None = None) -> int:
    """How many slots some process holds (a slot we can lock ourselves is free)."""
    folder = folder or locks_dir()
    count = 0
    for path in folder.glob("cpu-slot-*.lock"):
        fd = _lock_fd(path, exclusive=False)
        if fd is None:
            count += 1
        else:
            os.close(fd)
    return count


def fair_threads(cores: int, workers: int) -> int:
    return max(1, cores // max(1, workers))


def cpu_share_callback(folder: Path | None = None, cores: int | None = None) -> Any:
    """A TrainerCallback that keeps this worker's torch threads at its share of the cores."""
    import torch
    from transformers import TrainerCallback

    if cores is None:
        from lorastudio.models.threads import usable_cores

        cores = usable_cores()
    total = cores

    class CpuShare(TrainerCallback):
        def __init__(self) -> None:
            self.slot = CpuSlot(folder)
            self.last = 0.0
            self.threads = 0
            self._apply()

        def _apply(self) -> None:
            self.last = time.monotonic()
            threads = fair_threads(total, live_cpu_workers(folder))
            if threads != self.threads:
                torch.set_num_threads(threads)  # from the training thread: OpenMP settings are per thread
                self.threads = threads

        def on_step_begin(self, args, state, control, **kwargs):
            if time.monotonic() - self.last > SHARE_EVERY_S:
                self._apply()

    return CpuShare()
