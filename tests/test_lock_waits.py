"""A wait on another process's build lock says what it waits for and since when (issue 38 #9): a Preview
showed "loading tokenizer and data…" for seven minutes while another process built the tiny model."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import STUDIO_BIN, screen_of, wait_until

HOLDER = """
import sys, time
from pathlib import Path
from lorastudio.models.cachelock import folder_lock

target, release = Path(sys.argv[1]), Path(sys.argv[2])
with folder_lock(target):
    print("held", flush=True)
    while not release.exists():
        time.sleep(0.02)
    if len(sys.argv) > 3:  # what the build leaves: here the session's tiny model, linked
        target.symlink_to(sys.argv[3], target_is_directory=True)
"""


class Holder:
    """Another process holding the build lock of ``target`` until :meth:`release`."""

    def __init__(self, target: Path, tmp: Path, built: Path | None = None) -> None:
        self.release_file = tmp / f"release-{target.name}"
        extra = [str(built)] if built is not None else []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(target), str(self.release_file), *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "held"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        self.release_file.touch()
        assert self.proc.wait(60) == 0


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[list[Holder]]:
    made: list[Holder] = []
    yield made
    for holder in made:
        holder.release_file.touch()
        holder.proc.kill()


def test_waiting_for_the_tiny_model_build_says_who_and_since_when(
    tmp_path: Path, tiny_model: Path, holders: list[Holder]
) -> None:
    from lorastudio.models.tiny import ensure_tiny_model

    target = tmp_path / "models" / "tiny-base"
    target.parent.mkdir()
    holder = Holder(target, tmp_path, built=tiny_model)
    holders.append(holder)
    heard: list[tuple[float, str]] = []
    got: list[Path] = []
    waiter = threading.Thread(
        target=lambda: got.append(ensure_tiny_model(lambda f, m: heard.append((f, m)), target))
    )
    waiter.start()
    deadline = time.monotonic() + 60
    while not any(m.endswith("0:01") for _, m in heard) and time.monotonic() < deadline:
        time.sleep(0.05)
    holder.release()
    waiter.join(60)
    assert got == [target]  # found built by the other process once it let go
    assert heard[0] == (
        0.0,
        f"waiting for another studio process (pid {holder.pid}) building the tiny model, 0:00",
    )
    assert any(m.endswith(", 0:01") for _, m in heard)


def test_studio_prepare_says_on_stderr_what_it_waits_for(
    tmp_path: Path, tiny_model: Path, holders: list[Holder]
) -> None:
    """A second `studio prepare` of one entry waits for the first (then reads its entry), and says so."""
    from lorastudio import registry
    from lorastudio.data.prepared.cachekey import cache_key, prepared_root
    from lorastudio.models.resolve import load_tokenizer

    recipe = registry.load("tiny-pirate", ["data.eval_fraction=0.3"])
    holder = Holder(prepared_root() / cache_key(recipe, load_tokenizer(recipe.model)), tmp_path)
    holders.append(holder)
    cli = subprocess.Popen(
        [STUDIO_BIN, "prepare", "tiny-pirate", "data.eval_fraction=0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert cli.stderr is not None
    want = f"waiting for another studio process (pid {holder.pid}) preparing the data of tiny-pirate, 0:0"
    seen = []
    for line in cli.stderr:
        seen.append(line)
        if want in line:
            break
    holder.release()
    out, err = cli.communicate(timeout=240)
    assert any(want in line for line in seen), "".join(seen) + err
    assert cli.returncode == 0, err
    assert "used" in out or "rows" in out


async def test_preview_shows_the_wait_for_the_tiny_model(
    tmp_path: Path, tiny_model: Path, holders: list[Holder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Preview's line under the title says whom it waits for, then loads once the build is there."""
    from test_tui import text_of

    from lorastudio import registry
    from lorastudio.app import StudioApp
    from lorastudio.screens.preview import PreviewScreen

    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    holder = Holder(cache / "studio" / "tiny-base", tmp_path, built=tiny_model)
    holders.append(holder)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(PreviewScreen(registry.load("tiny-pirate")))
        screen = screen_of(app, PreviewScreen)
        legend = screen.query_one("#legend")
        pattern = rf"waiting for another studio process \(pid {holder.pid}\) building the tiny model, 0:0\d"
        await wait_until(pilot, lambda: re.search(pattern, text_of(legend)))
        holder.release()
        await wait_until(pilot, lambda: screen.loaded)
        assert "waiting" not in text_of(legend)


async def test_monitor_status_line_shows_the_workers_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker logs its wait ("model: waiting for …", throttled); the status line carries the latest one
    until a later log line says the worker moved on."""
    from test_tui import text_of, write_recorded_run

    from lorastudio.app import StudioApp
    from lorastudio.screens.monitor import MonitorScreen, Snapshot

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    run = write_recorded_run(tmp_path / "data" / "studio" / "runs")
    wait = "waiting for another studio process (pid 812) building the tiny model, 0:42"
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(MonitorScreen(run))
        screen = screen_of(app, MonitorScreen)
        await wait_until(pilot, lambda: screen.snapshot is not None)
        status = screen.query_one("#status-line")
        assert screen.snapshot is not None
        state = screen.snapshot.state
        screen.on_snapshot(Snapshot(state, "loading model", [f"12:00:00 model: {wait}"], []))
        assert text_of(status).strip() == f"status: loading model — {wait}"
        screen.on_snapshot(Snapshot(state, "loading model", ["12:00:05 model: loading weights"], []))
        assert text_of(status).strip() == "status: loading model"
