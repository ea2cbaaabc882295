"""Time from `studio` start to the first painted screen (goal < 0.5 s, torch not imported), and tiny build time."""

from __future__ import annotations

import subprocess
import sys
import tempfile

CODE = """
import time, sys
t0 = time.perf_counter()
from lorastudio.app import StudioApp
class Probe(StudioApp):
    def on_mount(self):
        super().on_mount()
        self.call_after_refresh(self._painted)
    def _painted(self):
        print(f"first_paint_s={time.perf_counter() - t0:.3f} torch_imported={'torch' in sys.modules}")
        self.exit()
Probe().run(headless=True)
"""


def main() -> None:
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr[-500:])
    with tempfile.TemporaryDirectory() as tmp:
        code = ("import time; from pathlib import Path; from lorastudio.tinymodel import build; "
                f"t=time.perf_counter(); build(Path('{tmp}')/'tiny'); print(f'tiny_build_s={{time.perf_counter()-t:.1f}}')")
        print(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
