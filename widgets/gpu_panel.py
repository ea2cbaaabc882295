"""VRAM gauge and history, utilisation, temperature, power; host RAM and CPU. "No GPU" is calm."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from lorastudio.train.run.events import TelemetryEvent


def _fmt(value: Any, unit: str = "", digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def gauge(used: float | None, total: float | None, width: int = 20) -> str:
    if not used or not total:
        return "n/a"
    filled = round(width * min(used / total, 1.0))
    return "█" * filled + "░" * (width - filled) + f" {used / 1024:.1f}/{total / 1024:.1f} GiB"


class GpuPanel(Static):
    """Renders the latest telemetry event."""

    def show(self, telemetry: TelemetryEvent | None) -> None:
        table = Table.grid(padding=(0, 1))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        if telemetry is None:
            self.update(Text("waiting for telemetry…", style="dim"))
            return
        gpus = telemetry.gpus
        if not gpus:
            table.add_row("GPU", Text(telemetry.gpu_note or "no NVIDIA GPU found", style="dim"))
        # The gauges shrink with the panel so nothing is cut at 80 columns.
        bar = max(4, min(20, (self.size.width or 40) - 26))
        for gpu in gpus:
            if len(gpus) > 1:  # one line per device, so eight GPUs still fit the panel
                table.add_row(
                    f"GPU {gpu.index}",
                    f"{gauge(gpu.memory_used_mb, gpu.memory_total_mb, 6)} {_fmt(gpu.utilization_pct, ' %')}",
                )
                continue
            table.add_row(f"GPU {gpu.index}", gpu.name or "n/a")
            table.add_row("VRAM", gauge(gpu.memory_used_mb, gpu.memory_total_mb, bar))
            peak = telemetry.torch_peak_reserved_mb
            table.add_row(
                "this run",
                _fmt(gpu.process_memory_mb, " MiB")
                + (f" · peak {_fmt(peak, ' MiB')}" if peak is not None and gpu.index == 0 else ""),
            )
            table.add_row(
                "util",
                f"{_fmt(gpu.utilization_pct, ' %')} · {_fmt(gpu.temperature_c, ' °C')}"
                f" · {_fmt(gpu.power_w, ' W')}",
            )
        table.add_row("host RAM", gauge(telemetry.host_ram_used_mb, telemetry.host_ram_total_mb, bar))
        table.add_row("worker RSS", _fmt(telemetry.rss_mb, " MiB"))
        table.add_row("worker CPU", _fmt(telemetry.cpu_pct, " %"))
        self.update(table)
