"""What every command prints with: the progress bar on stderr and the rich console (``NO_COLOR`` honoured)."""

from __future__ import annotations

import os
import sys
import time


def _progress_printer(label: str):
    last = {"t": 0.0}

    def report(fraction: float, message: str) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - last["t"] < 0.2:
            return
        last["t"] = now
        bar = "#" * int(fraction * 30)
        end = "\n" if fraction >= 1.0 or not sys.stderr.isatty() else ""
        sys.stderr.write(f"\r{label} [{bar:<30}] {fraction * 100:3.0f}% {message[:90]:<60}{end}")
        sys.stderr.flush()

    return report


def _console():
    from rich.console import Console

    return Console(no_color="NO_COLOR" in os.environ, highlight=False)
