"""Time from `studio` start to the first painted screen (goal < 0.5 s, torch not imported), and tiny build time."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

CODE = """
import time, sys
t0 = time.perf_counter()
from lorastudio.app import StudioApp

async def painted(pilot):
    await pilot.pause()
    print(f"first_paint_s={time.perf_counter() - t0:.3f} torch_imported={'torch' in sys.modules} "
          f"screen={type(pilot.app.screen).__name__}")
    pilot.app.exit()

StudioApp().run(headless=True, auto_pilot=painted)
"""


def tmux_first_paint(runs: int = 5) -> None:
    """Wall time from launching `studio` in a real (tmux) terminal until the picker's footer is on screen."""
    import shutil
    import uuid
    from pathlib import Path

    if shutil.which("tmux") is None:
        print("tmux not installed: skipping the real-terminal measurement")
        return
    studio = str(Path(sys.executable).parent / "studio")
    for _ in range(runs):
        session = f"bench-{uuid.uuid4().hex[:6]}"
        start = time.perf_counter()
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", studio], check=True)
        painted = listed = None
        while time.perf_counter() - start < 10 and listed is None:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                    text=True).stdout
            if painted is None and "Filter" in screen:
                painted = time.perf_counter() - start
            if "tiny-pirate" in screen:
                listed = time.perf_counter() - start
            time.sleep(0.005)
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        print(f"tmux_first_paint_s={painted:.3f} recipes_listed_s={listed:.3f}")


def main() -> None:
    tmux_first_paint()
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr[-500:])
    with tempfile.TemporaryDirectory() as tmp:
        code = ("import time; from pathlib import Path; from lorastudio.models.tiny import build; "
                f"t=time.perf_counter(); build(Path('{tmp}')/'tiny'); print(f'tiny_build_s={{time.perf_counter()-t:.1f}}')")
        print(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
