"""GPU (NVML), process and host telemetry, where "no GPU" is a normal value.

Every NVML call is wrapped: a missing library, a missing driver or a failing query
gives ``None`` ("n/a"), never an exception.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lorastudio.train.run.events import TelemetryEvent


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one moment; any field NVML could not read is None."""

    index: int
    name: str | None
    memory_used_mb: float | None
    memory_total_mb: float | None
    process_memory_mb: float | None
    utilization_pct: float | None
    temperature_c: float | None
    power_w: float | None


def _safe(fn, *args, default=None):
    try:
        return fn(*args)
    except Exception:  # NVML raises NVMLError subclasses, or AttributeError on old bindings
        return default


@functools.cache
def has_gpu() -> bool:
    """Whether NVML sees a GPU, i.e. whether training runs on one here (asked once: GPUs do not come and go)."""
    return Nvml().available


class Nvml:
    """A lazily initialised NVML handle; ``available`` is False with a ``reason`` when there is no GPU."""

    def __init__(self) -> None:
        self.available = False
        self.reason = "not initialised"
        self._nvml: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
        except ImportError:
            self.reason = "nvidia-ml-py is not installed"
            return
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self.reason = (
                "no NVIDIA GPU found"
                if "NotFound" in type(exc).__name__ or "Driver" in type(exc).__name__
                else f"no NVIDIA GPU found ({exc})"
            )
            return
        self._nvml = pynvml
        count = _safe(pynvml.nvmlDeviceGetCount, default=0)
        self.available = bool(count)
        self.reason = "" if count else "no NVIDIA GPU found"

    def sample(self, pid: int | list[int] | None = None) -> list[GpuSample]:
        """Every GPU NVML sees; ``process_memory_mb`` sums the given process(es) (all ranks of a run)."""
        if not self.available:
            return []
        nv = self._nvml
        pids = set(pid) if isinstance(pid, list) else {pid or os.getpid()}
        out = []
        for index in range(_safe(nv.nvmlDeviceGetCount, default=0)):
            handle = _safe(nv.nvmlDeviceGetHandleByIndex, index)
            if handle is None:
                continue
            mem = _safe(nv.nvmlDeviceGetMemoryInfo, handle)
            util = _safe(nv.nvmlDeviceGetUtilizationRates, handle)
            power = _safe(nv.nvmlDeviceGetPowerUsage, handle)
            temp = _safe(nv.nvmlDeviceGetTemperature, handle, 0)
            procs = _safe(nv.nvmlDeviceGetComputeRunningProcesses, handle, default=[]) or []
            mine = [p.usedGpuMemory for p in procs if getattr(p, "pid", None) in pids and p.usedGpuMemory]
            name = _safe(nv.nvmlDeviceGetName, handle)
            out.append(
                GpuSample(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else name,
                    memory_used_mb=mem.used / 2**20 if mem else None,
                    memory_total_mb=mem.total / 2**20 if mem else None,
                    process_memory_mb=sum(mine) / 2**20 if mine else None,
                    utilization_pct=float(util.gpu) if util else None,
                    temperature_c=float(temp) if temp is not None else None,
                    power_w=power / 1000 if power is not None else None,
                )
            )
        return out


_PROCESSES: dict[int, Any] = {}


def _process(pid: int) -> Any:
    """One ``psutil.Process`` per pid for the life of the sampler: ``cpu_percent`` measures the time since
    the previous call on the *same* object, so a fresh object every reading always says 0 %."""
    import psutil

    proc = _PROCESSES.get(pid)
    if proc is None or not proc.is_running():
        proc = _PROCESSES[pid] = psutil.Process(pid)
        proc.cpu_percent(interval=None)  # the first reading is always 0.0; start the clock here
    return proc


def host_sample(pid: int | None = None) -> dict[str, float | None]:
    try:
        import psutil

        proc = _process(pid or os.getpid())
        vm = psutil.virtual_memory()
        return {
            "rss_mb": proc.memory_info().rss / 2**20,
            "cpu_pct": proc.cpu_percent(interval=None),
            "host_cpu_pct": psutil.cpu_percent(interval=None),
            "host_ram_used_mb": (vm.total - vm.available) / 2**20,
            "host_ram_total_mb": vm.total / 2**20,
        }
    except Exception:
        return {
            "rss_mb": None,
            "cpu_pct": None,
            "host_cpu_pct": None,
            "host_ram_used_mb": None,
            "host_ram_total_mb": None,
        }


def torch_peak_reserved_mb() -> float | None:
    import sys

    torch = sys.modules.get("torch")  # never import torch just to ask
    if torch is None:
        return None
    try:
        if torch.cuda.is_available():
            return torch.cuda.max_memory_reserved() / 2**20
    except Exception:
        return None
    return None


def telemetry_event(nvml: Nvml, pid: int | list[int] | None = None) -> TelemetryEvent:
    """GPU and host figures; with a list of pids (a run's processes) the host figures are the first one's."""
    from lorastudio.train.run.events import GpuReading, TelemetryEvent

    host = host_sample(pid[0] if isinstance(pid, list) else pid)
    return TelemetryEvent(
        gpus=tuple(GpuReading(**asdict(g)) for g in nvml.sample(pid)),
        gpu_note=None if nvml.available else nvml.reason,
        torch_peak_reserved_mb=torch_peak_reserved_mb(),
        rss_mb=host["rss_mb"],
        cpu_pct=host["cpu_pct"],
        host_cpu_pct=host["host_cpu_pct"],
        host_ram_used_mb=host["host_ram_used_mb"],
        host_ram_total_mb=host["host_ram_total_mb"],
    )
