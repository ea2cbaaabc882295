"""Time from launch to the first painted screen: `studio` beside a bare Textual app, and the tiny build.

The bare app (a header, an option list and a footer) is the floor any Textual program pays; the goal is
studio <= 1.2x it. Each figure is wall time from starting the process until its first screen is painted
headless (the auto-pilot's first pause), runs interleaved bare/studio so a loaded machine slows both alike;
medians are printed. ``--tmux`` adds the real-terminal measurement (picker painted, recipes listed).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time

STUDIO = """
import sys
from lorastudio.app import StudioApp

async def painted(pilot):
    await pilot.pause()
    print(f"painted torch_imported={'torch' in sys.modules} screen={type(pilot.app.screen).__name__}", flush=True)
    pilot.app.exit()

StudioApp().run(headless=True, auto_pilot=painted)
"""

BARE = """
from textual.app import App
from textual.widgets import Footer, Header, OptionList

class Bare(App):
    def compose(self):
        yield Header()
        yield OptionList(*[f"recipe {i}" for i in range(8)])
        yield Footer()

async def painted(pilot):
    await pilot.pause()
    print("painted", flush=True)
    pilot.app.exit()

Bare().run(headless=True, auto_pilot=painted)
"""


def first_paint(code: str) -> tuple[float, str]:
    """Seconds from spawning ``python -c code`` until it prints its ``painted`` line."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    took = time.perf_counter() - start
    _, err = proc.communicate(timeout=60)
    if not line.startswith("painted"):
        raise SystemExit(f"no paint: {err[-800:]}")
    return took, line.strip()


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
        print(f"tmux_first_paint_s={painted or float('nan'):.3f} recipes_listed_s={listed or float('nan'):.3f}")


def main() -> None:
    runs = 7
    bare: list[float] = []
    studio: list[float] = []
    first_paint(BARE)  # warm the file cache for both
    first_paint(STUDIO)
    for _ in range(runs):
        bare.append(first_paint(BARE)[0])
        took, line = first_paint(STUDIO)
        studio.append(took)
    b, s = statistics.median(bare), statistics.median(studio)
    print(f"bare_textual_first_paint_s median={b:.3f} min={min(bare):.3f} max={max(bare):.3f} (n={runs})")
    print(f"studio_first_paint_s       median={s:.3f} min={min(studio):.3f} max={max(studio):.3f} ({line})")
    print(f"studio/bare = {s / b:.2f}x (goal <= 1.2x)")
    if "--tmux" in sys.argv:
        tmux_first_paint()
    if "--tiny" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            code = ("import time; from pathlib import Path; from lorastudio.models.tiny import build; "
                    f"t=time.perf_counter(); build(Path('{tmp}')/'tiny'); "
                    "print(f'tiny_build_s={time.perf_counter()-t:.1f}')")
            print(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
