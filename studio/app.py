"""The Textual application. Screens live in ``lorastudio.screens``, widgets in ``lorastudio.widgets``.

Nothing heavy is imported here: torch and transformers load inside workers, so the
first screen paints in a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from lorastudio.errors import StudioError

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
    ]

    def __init__(self, attach: Path | None = None, chat: str | None = None, chat_base: bool = False,
                 save_to: str | None = None) -> None:
        super().__init__()
        self._attach = attach
        self._chat = chat
        self._chat_base = chat_base
        self._save_to = save_to

    def on_mount(self) -> None:
        from lorastudio.screens.recipes import RecipesScreen

        self.push_screen(RecipesScreen())
        # While the recipe list is read, load the tokenizer code the Preview needs (a second or two of
        # imports), so its first sample shows at once. After the first paint, off the UI thread.
        self.set_timer(WARM_UP_AFTER_S, self.warm_up)
        if self._attach is not None:
            from lorastudio.screens.monitor import MonitorScreen

            self.push_screen(MonitorScreen(self._attach))
        elif self._chat is not None:
            from lorastudio.screens.chat import ChatScreen

            self.push_screen(ChatScreen(self._chat, base_only=self._chat_base, save_to=self._save_to))

    @work(thread=True, exclusive=True, group="warm-up", exit_on_error=False, name="warm-up")
    def warm_up(self) -> None:
        from lorastudio.models.sources import warm_up_imports

        warm_up_imports()

    def action_help(self) -> None:
        from lorastudio.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_runs(self) -> None:
        from lorastudio.screens.runs import RunsScreen

        if not isinstance(self.screen, RunsScreen):
            self.push_screen(RunsScreen())

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker failures surface: a notification, never a crash."""
        if event.state != WorkerState.ERROR or event.worker.name == "warm-up":
            return  # a failed warm-up costs nothing: the Preview imports (and reports) for itself
        error = event.worker.error
        message = str(error) if isinstance(error, StudioError) else f"{type(error).__name__}: {error}"
        self.notify(message, title="error", severity="error", timeout=12)
        handler = getattr(self.screen, "worker_failed", None)
        if callable(handler):
            handler(event.worker, message)


def run_app(attach: Path | None = None, chat: str | None = None, chat_base: bool = False,
            save_to: str | None = None) -> None:
    StudioApp(attach=attach, chat=chat, chat_base=chat_base, save_to=save_to).run()
    from lorastudio.train.live import live_runs, reattach_message

    message = reattach_message(live_runs())  # after the TUI is gone, so it stays on the terminal
    if message:
        print(message)
