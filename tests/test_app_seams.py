"""Seams between the app and its screens: a worker's failure goes to the screen that ran it (once), and the
chat's sampling panel is judged by the recipe's own ``chat`` model."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from test_tui import text_of, write_recorded_run
from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Label, Static

from lorastudio.app import StudioApp
from lorastudio.errors import StudioError
from lorastudio.screens.worker_failures import HandlesWorkerFailures


class Recording(HandlesWorkerFailures, Screen[None]):
    """A screen that records the worker failures it is told about, as studio's screens do."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[str] = []

    def compose(self) -> ComposeResult:
        yield Label(type(self).__name__)

    def worker_failed(self, worker: Any, message: str) -> None:
        self.failures.append(message)


class Slow(Recording):
    """Starts a worker that fails once released, by which time another screen is on top."""

    release = threading.Event()

    def on_mount(self) -> None:
        self.slow_load()

    @work(thread=True, exit_on_error=False, group="slow")
    def slow_load(self) -> None:
        self.release.wait(30)
        raise StudioError("the slow load failed")


async def test_a_worker_failure_goes_to_the_screen_that_ran_it() -> None:
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        slow, top = Slow(), Recording()
        await app.push_screen(slow)
        await app.push_screen(top)
        Slow.release.set()
        await wait_until(pilot, lambda: slow.failures)
        await pilot.pause(0.2)
        assert slow.failures == ["the slow load failed"] and top.failures == []


async def test_the_export_screen_handles_its_failure_once(
    recorded_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lorastudio.screens.export import ExportScreen

    calls: list[str] = []
    original = ExportScreen.worker_failed

    def counting(self: ExportScreen, worker: Any, message: str) -> None:
        calls.append(message)
        original(self, worker, message)

    monkeypatch.setattr(ExportScreen, "worker_failed", counting)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = ExportScreen(recorded_run)  # a finished run with no adapter: the export itself fails
        await app.push_screen(screen)
        await pilot.press("ctrl+e")
        await wait_until(pilot, lambda: not screen.exporting and calls, timeout=60)
        await pilot.pause(0.3)
        assert len([c for c in calls if "no adapter" in c]) == 1, calls
        assert "no adapter yet" in text_of(screen.query_one("#export-result"))


async def test_the_sampling_panel_refuses_a_bad_value_naming_the_field(tiny_model: Path) -> None:
    from textual.widgets import Input

    from lorastudio.screens.chat import ChatScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = ChatScreen(str(tiny_model))
        await app.push_screen(screen)
        await wait_until(pilot, lambda: screen.engine is not None, timeout=180)
        await pilot.press("f2")
        box = screen.query_one("#set-top_p", Input)
        box.value = "5"
        await pilot.pause(0.1)
        shown = text_of(screen.query_one("#set-error"))
        assert "chat.top_p" in shown and "less than or equal to 1" in shown
        assert screen.sampling.top_p == 0.9  # the last good value stays
        box.value = "0.5"
        await pilot.pause(0.1)
        assert screen.sampling.top_p == 0.5 and text_of(screen.query_one("#set-error")).strip() == ""
        screen.query_one("#set-max_new_tokens", Input).value = "lots"
        await pilot.pause(0.1)
        assert "chat.max_new_tokens" in text_of(screen.query_one("#set-error"))
        assert screen.sampling.max_new_tokens == 256


@pytest.fixture
def recorded_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("TZ", "UTC")
    return write_recorded_run(tmp_path / "data" / "studio" / "runs")


QUIT_WHILE_BUSY = """
import sys, threading, time
import lorastudio.app as studio_app

started = threading.Event()

class BusyApp(studio_app.StudioApp):
    def run(self, **options):
        return super().run(headless=True, **options)

    def on_mount(self):
        super().on_mount()
        self.run_worker(self.build, thread=True, exit_on_error=False)  # stands in for the first tiny build
        self.set_timer(1.0, self.exit)

    def build(self):
        started.set()
        time.sleep(300)

studio_app.StudioApp = BusyApp
begun = time.monotonic()
studio_app.run_app()
print("never reached: os._exit leaves first", flush=True)
"""


def test_quitting_while_a_thread_builds_is_prompt(tmp_path: Path) -> None:
    """A thread worker cannot be killed; quitting must not wait for it (asyncio's pool would join it)."""
    import subprocess
    import sys
    import time

    script = tmp_path / "busy.py"
    script.write_text(QUIT_WHILE_BUSY, encoding="utf-8")
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=200,
        env={**__import__("os").environ, "XDG_DATA_HOME": str(tmp_path / "data")},
    )
    took = time.monotonic() - began
    assert out.returncode == 0, out.stderr[-2000:]
    assert took < 120, f"quitting waited {took:.0f} s for the busy thread"  # the thread sleeps 300 s
    assert "never reached" not in out.stdout


async def test_a_preview_opened_during_the_warm_up_says_it_waits(tiny_model: Path) -> None:
    """The warm-up imports hold a lock the Preview's load waits on; meanwhile the screen says why it is empty."""
    from lorastudio import registry
    from lorastudio.models import resolve as sources
    from lorastudio.models.threads import tui_threads
    from lorastudio.screens.messages import WARMING_UP
    from lorastudio.screens.preview import PreviewScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()  # the app's own warm-up has run
        with sources._IMPORTING:  # as if it were still importing
            screen = PreviewScreen(registry.load("tiny-pirate"))
            await app.push_screen(screen)
            await wait_until(pilot, lambda: WARMING_UP in text_of(screen.query_one("#legend")), timeout=30)
            assert screen.prepared is None
        await wait_until(pilot, lambda: screen.prepared is not None, timeout=180)
        assert WARMING_UP not in text_of(screen.query_one("#legend"))
        assert screen.torch_threads == tui_threads()


def test_tui_threads_leave_cores_to_training() -> None:
    import threading

    import torch

    from lorastudio.models.threads import share_cores, tui_threads

    assert tui_threads(2) == 1 and tui_threads(1) == 1 and tui_threads(16) == 8
    seen: list[int] = []

    def work() -> None:
        share_cores(2)
        seen.append(torch.get_num_threads())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [1]


async def test_the_header_title_follows_the_app_and_survives_losing_its_children() -> None:
    """A title change queued as a screen closes (keys typed fast) used to end the app with ``NoMatches``."""
    from textual.app import App

    from lorastudio.widgets.title_header import TitleHeader

    class Titled(Screen[None]):
        def compose(self) -> ComposeResult:
            yield TitleHeader()

    app: App[None] = App()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.push_screen(Titled())
        header = app.screen.query_one(TitleHeader)
        app.title = "first title"
        await pilot.pause()
        assert "first title" in str(header.query_one("HeaderTitle", Static).render())
        await header.query_one("HeaderTitle").remove()
        app.title = "second title"  # its watcher now finds no HeaderTitle
        await pilot.pause()
        assert app.screen is header.screen and app.return_code is None
