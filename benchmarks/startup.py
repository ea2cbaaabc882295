"""Time from launch to the first painted screen: `studio` beside a bare Textual app, and the tiny build.

The bare app (a header, an option list and a footer) is the floor any Textual program pays; the goal is
studio <= 1.2x it. Two figures per app, wall time from spawning the process, headless: the first paint (the
first time a whole screen, footer included, is composited) and ready (the auto-pilot's first pause returns:
the process is idle, no thread using the CPU; for studio the recipe list and its details are on screen, from
the cached cards). Studio's third figure is when its recipes are validated (Enter and t act at once; before,
they start the validation and act when it is done): deferred a moment past ready (screens/recipes.py,
VALIDATE_AFTER_S). Runs alternate bare/studio so a loaded machine slows both alike; medians are printed.
``--tmux`` adds the real-terminal measurement (picker painted, recipes listed).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time

HOOK = """
import sys, time
T0 = time.perf_counter()
from textual.screen import Screen
from textual.widgets import Footer

_refresh = Screen._compositor_refresh
_first: list[float] = []

def _timed_refresh(self):
    # the first time a whole screen (one with its footer) is composited: the first paint
    if not _first and self.query(Footer):
        _first.append(time.perf_counter() - T0)
    return _refresh(self)

Screen._compositor_refresh = _timed_refresh
"""

STUDIO = (
    HOOK
    + """
from lorastudio.app import StudioApp
from lorastudio.screens.recipes import RecipesScreen

_listed: list[float] = []
_validated: list[float] = []

def _timed(name, validates):
    real = getattr(RecipesScreen, name)

    def timed(self, *args, **kwargs):
        # listed: the recipe list and its details on screen (from the cached cards, or validated)
        done = real(self, *args, **kwargs)
        if not _listed and self.shown:
            _listed.append(time.perf_counter() - T0)
        if validates and not _validated:
            _validated.append(time.perf_counter() - T0)
        return done

    setattr(RecipesScreen, name, timed)

_timed("_listed", False)
_timed("_loaded", True)

async def painted(pilot):
    await pilot.pause()
    idle = time.perf_counter() - T0
    torch = 'torch' in sys.modules
    while not _validated and time.perf_counter() - T0 < 30:
        await pilot.pause(0.01)
    print(f"painted first={_first[0]:.3f} idle={idle:.3f} listed={(_listed or [idle])[0]:.3f} "
          f"validated={_validated[0]:.3f} torch_at_idle={torch} screen={type(pilot.app.screen).__name__} "
          f"now={time.perf_counter() - T0:.3f}", flush=True)
    pilot.app.exit()

StudioApp().run(headless=True, auto_pilot=painted)
"""
)

BARE = (
    HOOK
    + """
from textual.app import App
from textual.widgets import Footer, Header, OptionList

class Bare(App):
    def compose(self):
        yield Header()
        yield OptionList(*[f"recipe {i}" for i in range(8)])
        yield Footer()

async def painted(pilot):
    await pilot.pause()
    idle = time.perf_counter() - T0
    print(f"painted first={_first[0]:.3f} idle={idle:.3f} now={idle:.3f}", flush=True)
    pilot.app.exit()

Bare().run(headless=True, auto_pilot=painted)
"""
)


def first_paint(code: str) -> tuple[dict[str, float], str]:
    """Figures in seconds from spawning ``python -c code``: ``first`` (its first whole screen composited),
    ``idle`` (the auto-pilot's first pause returns: no thread busy), ``listed`` (studio's recipe list and its
    details on screen; the bare app's list is on its first frame: its idle) and ``validated`` (studio's
    recipes validated; the bare app has nothing to validate: its idle); and the line the app printed."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    printed = time.perf_counter() - start
    _, err = proc.communicate(timeout=120)
    if not line.startswith("painted"):
        raise SystemExit(f"no paint: {err[-800:]}")
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    startup = printed - float(fields["now"])  # the interpreter's own start, before T0
    figures = {key: startup + float(fields.get(key, fields["idle"])) for key in FIGURES}
    return figures, line.strip()


FIGURES = ("first", "idle", "listed", "validated")


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
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", studio], check=True
        )
        painted = listed = None
        while time.perf_counter() - start < 10 and listed is None:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout
            if painted is None and "Filter" in screen:
                painted = time.perf_counter() - start
            if "tiny-pirate" in screen:
                listed = time.perf_counter() - start
            time.sleep(0.005)
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        print(
            f"tmux_first_paint_s={painted or float('nan'):.3f} recipes_listed_s={listed or float('nan'):.3f}"
        )


def main() -> None:
    runs = 7
    figures: dict[str, list[dict[str, float]]] = {"bare": [], "studio": []}
    first_paint(BARE)  # warm the file cache for both (and write studio's cached recipe list)
    first_paint(STUDIO)
    line = ""
    for _ in range(runs):  # interleaved: a loaded machine slows both alike
        figures["bare"].append(first_paint(BARE)[0])
        studio, line = first_paint(STUDIO)
        figures["studio"].append(studio)
    medians: dict[str, dict[str, float]] = {}
    for name, values in figures.items():
        medians[name] = {key: statistics.median(v[key] for v in values) for key in FIGURES}
        firsts = [v["first"] for v in values]
        print(
            f"{name:>6}: first paint median {medians[name]['first']:.3f} s (min {min(firsts):.3f}, "
            f"max {max(firsts):.3f}), list ready median {medians[name]['listed']:.3f} s, idle median "
            f"{medians[name]['idle']:.3f} s, recipes validated median {medians[name]['validated']:.3f} s (n={runs})"
        )
    bare, studio = medians["bare"], medians["studio"]
    bare_ready = bare["idle"]  # the bare app's list is on its first frame: it is ready when idle
    print(
        f"studio/bare first paint = {studio['first'] / bare['first']:.2f}x (goal <= 1.2x), "
        f"list ready = {studio['listed'] / bare_ready:.2f}x, idle = {studio['idle'] / bare_ready:.2f}x "
        f"(goal <= 1.2x), recipes validated = {studio['validated'] / bare_ready:.2f}x  [{line}]"
    )
    if "--tmux" in sys.argv:
        tmux_first_paint()
    if "--tiny" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            code = (
                "import time; from pathlib import Path; from lorastudio.models.tiny import build; "
                f"t=time.perf_counter(); build(Path('{tmp}')/'tiny'); "
                "print(f'tiny_build_s={time.perf_counter()-t:.1f}')"
            )
            print(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
