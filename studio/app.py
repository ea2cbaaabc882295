"""The Textual application. Screens live in ``lorastudio.screens``, widgets in ``lorastudio.widgets``.

Nothing heavy is imported here: torch and transformers load inside workers, so the
first screen paints in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from textual import events, messages, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from lorastudio.errors import StudioError
from lorastudio.evaluate.intraining import install as install_eval_tasks
from lorastudio.screens import navigate as nav

install_eval_tasks()  # train.eval_tasks checked before a run directory (train cannot import evaluate)

WARM_UP_AFTER_S = 0.3


class StudioApp(App[None]):
    """studio: pick a recipe, preview its tokens, train, watch, chat."""

    TITLE = "studio"
    SUB_TITLE = "LoRA fine-tuning in your terminal"
    CSS_PATH = Path(__file__).with_name("app.tcss")
    BINDINGS = [
        Binding("f1,question_mark", "help", "Help", id="app.help"),
        Binding("ctrl+r", "runs", "Runs", id="app.runs"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True, show=False),
        # Screen's own Tab runs only after the key has been through the focused widget's queue, while the
        # keys typed after it are already routed to that widget and lost (see screens/focus.py); as priority
        # bindings focus moves as the app dequeues the Tab, so `Tab x` typed fast puts x in the next field.
        Binding("tab", "focus_next", "Next field", id="app.focus_next", priority=True, show=False),
        Binding(
            "shift+tab",
            "focus_previous",
            "Previous field",
            id="app.focus_previous",
            priority=True,
            show=False,
        ),
    ]

    def __init__(
        self,
        attach: Path | None = None,
        chat: str | None = None,
        chat_base: bool = False,
        save_to: str | None = None,
        chat_endpoint: tuple[str | None, str | None] = (None, None),
    ) -> None:
        super().__init__()
        self._chat_endpoint = chat_endpoint
        """(model, API key variable) for a chat target that is an endpoint's URL."""
        self._attach_run = attach  # not _attach: Textual's MessagePump has a method of that name
        self._chat = chat
        self._chat_base = chat_base
        self._save_to = save_to
        self._keys = KeyLine(self)

    def on_mount(self) -> None:
        from lorastudio.screens.recipes import RecipesScreen

        self.push_screen(RecipesScreen())
        self.call_after_refresh(self._keys.open)
        # Load the tokenizer code the Preview needs (a second or two of imports, holding the GIL for long
        # stretches) so its first sample shows at once; only once the first screen is painted, and a moment
        # later, so the recipe list is read first.
        self.call_after_refresh(self.set_timer, WARM_UP_AFTER_S, self.warm_up)
        if self._attach_run is not None:
            from lorastudio.screens.monitor import MonitorScreen

            self.push_screen(MonitorScreen(self._attach_run))
        elif self._chat is not None:
            from lorastudio.screens.chat import ChatScreen

            model, key_env = self._chat_endpoint
            self.push_screen(
                ChatScreen(
                    self._chat, base_only=self._chat_base, save_to=self._save_to, model=model, key_env=key_env
                )
            )

    @property
    def keys_waiting(self) -> bool:
        """Keys typed ahead are still on their way (held, or one routed and settling)."""
        return bool(self._keys.held) or self._keys.busy

    async def on_event(self, event: events.Event) -> None:
        if not isinstance(event, events.Key) or event.is_forwarded:
            await super().on_event(event)
            return
        if self._keys.hold(event):
            return  # routed once the keys before it have done all they do (KeyLine)
        # a character typed into a text box only edits it: the keys behind it need not wait (a paste stays fast)
        text = event.is_printable and self._typing_in_a_box()
        await super().on_event(event)
        self._keys.routed(settle=not text)

    def _typing_in_a_box(self) -> bool:
        from lorastudio.screens.focus import typing_in

        try:
            return typing_in(self.screen)
        except Exception:  # noqa: BLE001 - no screen yet (or any more): nothing types
            return False

    @work(thread=True, exclusive=True, group="warm-up", exit_on_error=False, name="warm-up")
    def warm_up(self) -> None:
        from lorastudio.models.resolve import warm_up_imports

        warm_up_imports()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette (Ctrl+P): Textual's commands, then the screen's actions and navigation by name."""
        from lorastudio.screens.palette import studio_commands

        yield from super().get_system_commands(screen)
        yield from studio_commands(self, screen)

    def action_help(self) -> None:
        from lorastudio.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_runs(self) -> None:
        from lorastudio.screens.runs import RunsScreen

        if not isinstance(self.screen, RunsScreen):
            self.push_screen(RunsScreen())

    def open_serve(self, target: str | None = None) -> None:
        """The Serve panel, to start ``target`` (a run's path, an export folder) or to watch the servers."""
        self.open_screen(nav.Serve(target))

    def open_chat(
        self,
        target: str,
        model: str | None = None,
        versus: tuple[str, str | None, str | None] | None = None,
    ) -> None:
        """The Chat screen on ``target`` (an endpoint's URL with ``model``), beside a served one (``versus``)."""
        self.open_screen(nav.Chat(target, model=model, versus=versus))

    def open_screen(self, to: nav.Destination) -> None:
        """Open the screen a screen asked for (``screens/navigate.py``): only the app imports screens to push
        them, so the screens import none of one another and the import graph has no cycle through them."""
        arrived = self._arrive(to)
        if arrived is not None:
            self.push_screen(self._screen_for(arrived))

    def _arrive(self, to: nav.Destination) -> nav.Destination | None:
        """The destinations that push nothing new are done here (None); the rest come back to be built."""
        if isinstance(to, nav.Recipes):
            from lorastudio.screens.palette import back_to_recipes

            back_to_recipes(self)
            return None
        if isinstance(to, nav.Runs):
            self.action_runs()
            return None
        if isinstance(to, nav.Train):
            from lorastudio.screens import monitor

            monitor.start_training(self, to.recipe)  # looked up at call time: tests stand in for it
            return None
        return to

    def _screen_for(self, to: nav.Destination) -> Screen[Any]:
        if isinstance(to, nav.Preview):
            from lorastudio.screens.preview import PreviewScreen

            return PreviewScreen(to.recipe)
        if isinstance(to, nav.MethodPreview):
            from lorastudio.screens.method_preview import MethodPreviewScreen

            return MethodPreviewScreen(to.recipe)
        if isinstance(to, nav.Launch):
            from lorastudio.screens.launch import LaunchScreen

            return LaunchScreen(to.recipe, base=to.base)
        if isinstance(to, nav.Monitor):
            from lorastudio.screens.monitor import MonitorScreen

            return MonitorScreen(to.run_dir)
        if isinstance(to, nav.Chat):
            from lorastudio.screens.chat import ChatScreen

            return ChatScreen(to.target, model=to.model, versus=to.versus)
        if isinstance(to, nav.Eval):
            from lorastudio.screens.evaluate import EvalScreen

            return EvalScreen(list(to.targets) if to.targets is not None else None, recipe=to.recipe)
        if isinstance(to, nav.EvalSamples):
            from lorastudio.screens.eval_samples import EvalSamplesScreen

            return EvalSamplesScreen(to.folder, to.metric, list(to.targets))
        if isinstance(to, nav.Compare):
            from lorastudio.screens.compare import CompareScreen

            return CompareScreen(list(to.paths), sweep=to.sweep)
        if isinstance(to, nav.CompareSamples):
            from lorastudio.screens.compare_samples import CompareSamplesScreen

            return CompareSamplesScreen(list(to.paths))
        if isinstance(to, nav.Export):
            from lorastudio.screens.export import ExportScreen

            return ExportScreen(to.run_dir)
        if isinstance(to, nav.Serve):
            from lorastudio.screens.serve import ServeScreen

            return ServeScreen(to.target)
        raise AssertionError(f"no screen for {to!r}")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The app's own workers (screens hear theirs: see ``screens/worker_failures.py``)."""
        if event.state != WorkerState.ERROR or event.worker.name == "warm-up":
            return  # a failed warm-up costs nothing: the Preview imports (and reports) for itself
        error = event.worker.error
        message = str(error) if isinstance(error, StudioError) else f"{type(error).__name__}: {error}"
        self.notify(message, title="error", severity="error", timeout=12)


class KeyLine:
    """Keys routed one at a time, each once everything the one before it set off is done.

    Textual routes a key to the widget focused *when the app dequeues it*, but the key's binding runs only
    once the key has been through that widget's queue and bubbled back up, and what the action posts
    (Input.Submitted, a pushed screen's mount, a deferred focus) comes later still. Typed in a burst (a
    paste, a slow SSH link, a busy machine) the keys behind a key are routed before it acts: `/tiny-var3`
    Enter Enter opened two Previews (the second Enter went to the recipe list, not the Preview the first
    one opened), and Escape `/` typed fast had the Escape act after the filter opened. So after routing a
    key the app holds the keys behind it until the app and every widget of the current screen have
    handled all they had queued (in rounds: a handler's message is queued behind the round that ran it);
    then it routes the next, to whatever screen and widget are current, exactly as if typed slowly.
    A screen that never goes quiet (a busy worker streaming its output) holds a key at most ``SETTLE_S``; a
    timer's tick is not an effect of a key and does not count. A screen that is not ready for keys yet (its
    ``awaiting_keys`` is true: the Runs list before its first listing) holds them until it is, at most
    ``AWAIT_S``, so the keys behind a deferred one cannot act before it.
    """

    SETTLE_S = 2.0
    """Long enough for a screen pushed by the key to import, compose and mount on a loaded two-core machine (a
    fixed half second let the key behind Ctrl+R reach the recipe list)."""
    AWAIT_S = 10.0
    """The longest a screen's ``awaiting_keys`` holds a key: a listing that never ends must not swallow Escape."""

    def __init__(self, app: App[Any]) -> None:
        self.app = app
        self.held: deque[events.Key] = deque()
        self.busy = False  # a key was routed and is settling, or a held key is on its way back to the app
        self.releasing: events.Key | None = None
        self.task: asyncio.Task[None] | None = None  # kept: the loop holds only a weak reference
        self.ready = False
        """The first screen is up: until then every key waits (typed while studio starts, it would reach no
        screen, or one not yet mounted, and be lost or typed into the wrong widget)."""

    def open(self) -> None:
        """The first screen is mounted and painted: route the keys typed while studio started, in order."""
        self.ready = True
        if not self.busy:
            self.busy = True  # a key typed meanwhile waits behind the held ones
            self._release()

    def hold(self, key: events.Key) -> bool:
        """True when ``key`` must wait (it is queued); False when the app routes it now."""
        if key is self.releasing:
            self.releasing = None
            return False
        if not self.ready and key.key == "ctrl+j":
            # typed before the terminal was put in raw mode, Enter went through the tty's own line editing,
            # which turns its carriage return into a line feed (ICRNL): that reads as Ctrl+J
            key = events.Key("enter", "\r")
        if self.busy or not self.ready:
            self.held.append(key)
            return True
        return False

    def routed(self, settle: bool = True) -> None:
        """A key was routed: settle (unless it only typed into a text box), then release the next held key."""
        self.busy = True
        if settle:
            self.task = asyncio.create_task(self._settle_then_release())
        else:
            self._release()

    async def _settle_then_release(self) -> None:
        try:
            await self._settle()
        finally:
            self._release()

    def _release(self) -> None:
        if self.held and not self.app._closing:
            self.releasing = self.held.popleft()
            self.app.post_message(self.releasing)
        else:
            self.busy = False

    def _pumps(self) -> list[Any]:
        try:
            return [self.app, *self.app.screen.walk_children(with_self=True)]
        except Exception:  # noqa: BLE001 - no screen (the app is closing): nothing to wait for
            return []

    async def _settle(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.SETTLE_S
        while (left := deadline - loop.time()) > 0:
            pumps = self._pumps()
            if not await _round(pumps, left) or not any(map(_acting, self._pumps())):
                break
        deadline = loop.time() + self.AWAIT_S
        while _awaiting_keys(self.app) and loop.time() < deadline:
            await asyncio.sleep(0.02)


def _awaiting_keys(app: App[Any]) -> bool:
    try:
        return bool(getattr(app.screen, "awaiting_keys", False))
    except Exception:  # noqa: BLE001 - no screen (the app is closing): nothing waits
        return False


_PAINTING = (
    messages.Prompt,
    messages.Update,
    messages.Layout,
    messages.UpdateScroll,
    events.Idle,
    events.Timer,
)
"""Textual's repaint messages (every round posts more of them) and a timer's ticks (a Monitor's polling
never stops): they are not what a key set off, so they do not keep the key behind it waiting."""


def _acting(pump: Any) -> bool:
    """The pump has a message queued that may act (anything but a repaint)."""
    queued = getattr(pump._message_queue, "values", None)  # Textual's own Queue: a deque
    if queued is None:  # another Textual: count every message
        return bool(pump.message_queue_size) or pump._pending_message is not None
    pending = [*queued, *([pump._pending_message] if pump._pending_message is not None else [])]
    return not all(isinstance(message, _PAINTING) for message in pending)


async def _round(pumps: list[Any], timeout: float) -> bool:
    """Let every pump finish what it is doing and what it has queued (False: timed out, or none took it)."""
    count = 0
    done = asyncio.Event()

    def one() -> None:
        nonlocal count
        count -= 1
        if count == 0:
            done.set()

    for pump in pumps:
        if pump.call_later(one):
            count += 1
    if not count:
        return False
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except TimeoutError:
        return False
    return True


class AbandonableExecutor(ThreadPoolExecutor):
    """The app's thread workers, each on its own daemon thread, so quitting never waits for one.

    A thread cannot be killed, and asyncio's default pool is joined at exit: quitting while the first tiny
    model builds (minutes) or a model loads would wait for it. Abandoning the thread is safe because every
    cache those threads fill is written to a temporary name and renamed into place only when complete.
    """

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.busy = 0
        self._count = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            with self._count:
                self.busy += 1
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting worker, as the pool does
                future.set_exception(exc)
            finally:
                with self._count:
                    self.busy -= 1

        threading.Thread(target=run, name="studio-worker", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to join: the threads are daemons and may be abandoned."""


def run_abandoning(app: App[Any], **run_options: Any) -> bool:
    """Run ``app``; True when it quit with thread workers still busy (the caller then exits at once)."""
    loop = asyncio.new_event_loop()
    executor = AbandonableExecutor()
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    try:
        app.run(loop=loop, **run_options)
    finally:
        asyncio.set_event_loop(None)
    if executor.busy:
        return True
    loop.close()
    return False


def run_app(
    attach: Path | None = None,
    chat: str | None = None,
    chat_base: bool = False,
    save_to: str | None = None,
    chat_endpoint: tuple[str | None, str | None] = (None, None),
) -> None:
    app = StudioApp(
        attach=attach, chat=chat, chat_base=chat_base, save_to=save_to, chat_endpoint=chat_endpoint
    )
    abandoned = run_abandoning(app)
    from lorastudio.train.launch.live import live_runs, reattach_message

    message = reattach_message(live_runs())  # after the TUI is gone, so it stays on the terminal
    if message:
        print(message)
    if abandoned:  # a build or load still runs in a thread: leave without waiting for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
