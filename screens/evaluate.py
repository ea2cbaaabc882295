"""The Eval screen: pick targets, tasks and a limit, start a detached evaluation, watch it, read its table.

Opened from Runs (the marked runs), the Monitor (its run) and the recipe list (the recipe's newest run), or on
a past evaluation (Ctrl+L lists them). Starting checks the spec and the tasks and launches the job on a thread
worker; the job is its own process (``studio evals`` sees it too), so leaving the screen leaves it running.
Enter on a results row opens its documents: the prompt, the reference and each target's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label

from lorastudio.screens.navigate import EvalSamples, go
from lorastudio.screens.worker_failures import HandlesWorkerFailures
from lorastudio.train.run.events import ENDED_STATUSES
from lorastudio.widgets.eval_progress import EvalProgress
from lorastudio.widgets.eval_results import EvalResults
from lorastudio.widgets.title_header import TitleHeader

POLL_S = 0.5
SHIPPED_HINT = "studio_general, studio_arithmetic, studio_pirate"


@dataclass
class EvalStarted(Message):
    folder: Path


@dataclass
class EvalSnapshot(Message):
    """What the evaluation's folder says now (read on a worker thread)."""

    folder: Path
    summary: Any
    progress: Any
    table: Any

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EvalSnapshot)


def split_names(text: str) -> tuple[str, ...]:
    """Targets or tasks as typed: separated by commas or spaces."""
    return tuple(part for part in text.replace(",", " ").split() if part)


def launch(targets: str, tasks: str, limit: str) -> Path:
    """Check the form and start the evaluation's process; its folder. A refusal is a StudioError naming the
    field, and leaves no folder behind (the same checks as ``studio eval``)."""
    from lorastudio.errors import StudioError
    from lorastudio.evaluate.job import check_and_start
    from lorastudio.evaluate.spec import make_spec

    if not split_names(targets):
        raise StudioError("targets: name one or more (base, RUN, RUN@best, RUN@latest, an export folder)")
    if not split_names(tasks):
        raise StudioError(f"tasks: name one or more ({SHIPPED_HINT}, a YAML task file, an lm-eval task)")
    try:
        count = int(limit) if limit.strip() else None
    except ValueError:
        raise StudioError(
            f"limit {limit.strip()}: a whole number of documents per task (empty: all)"
        ) from None
    if count is not None and count < 1:
        raise StudioError(f"limit {count}: at least 1 document per task (empty: all)")
    return check_and_start(make_spec(targets=split_names(targets), tasks=split_names(tasks), limit=count))


class EvalScreen(HandlesWorkerFailures, Screen[None]):
    """The form on top, the progress below it, then the results table (rows: task/metric; columns: targets)."""

    # Not priority bindings: through the focused field's queue, Ctrl+S typed right after the limit acts once
    # the limit is in the field (keys none of Input's and DataTable's own).
    BINDINGS = [
        Binding("ctrl+s", "start", "Start", id="eval.start"),
        Binding("ctrl+o", "browse", "Task file", id="eval.browse"),
        Binding("ctrl+l", "history", "Past evals", id="eval.history"),
        Binding("ctrl+t", "stop", "Stop", id="eval.stop"),
        Binding("escape", "back", "Back", id="eval.back"),
    ]

    AUTO_FOCUS = "#eval-targets"

    def __init__(
        self, targets: list[str] | None = None, folder: Path | None = None, recipe: str | None = None
    ) -> None:
        super().__init__()
        self.targets = targets or []
        self.folder = folder
        """The evaluation shown (started here or reopened); None until one is."""
        self.recipe = recipe
        """Opened on a recipe: its newest run (found on a worker) and ``base`` become the targets."""
        self.summary: Any = None
        self.table: Any = None
        self.starting = False
        self.shown_width = 0
        """The width the results table was last laid out for."""

    def compose(self) -> ComposeResult:
        yield TitleHeader()
        yield Label("Eval", id="eval-title", classes="title")
        with Horizontal(classes="eval-field"):
            yield Label("targets", classes="eval-label")
            yield Input(" ".join(self.targets), id="eval-targets", compact=True,
                        placeholder="base RUN RUN@best RUN@latest EXPORT_DIR")  # fmt: skip
        with Horizontal(classes="eval-field"):
            yield Label("tasks", classes="eval-label")
            yield Input("studio_general", id="eval-tasks", compact=True,
                        placeholder=f"{SHIPPED_HINT}, a task file (Ctrl+O), an lm-eval task")  # fmt: skip
        with Horizontal(classes="eval-field"):
            yield Label("limit", classes="eval-label")
            yield Input("", id="eval-limit", compact=True, type="integer",
                        placeholder="documents per task (empty: all)")  # fmt: skip
        yield EvalProgress(id="eval-progress")
        yield EvalResults(id="eval-results", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        progress = self.query_one(EvalProgress)
        progress.show(None, f"Ctrl+S starts · shipped tasks: {SHIPPED_HINT}")
        self.query_one(EvalResults).show(None)
        if self.folder is not None:
            self.query_one(EvalResults).focus()
            self.poll()
        if self.recipe is not None:
            self.find_recipe_run(self.recipe)
        self.set_interval(POLL_S, self.tick)

    @work(thread=True, exclusive=True, group="eval-recipe", exit_on_error=False)
    def find_recipe_run(self, recipe: str) -> None:
        from lorastudio.errors import RunError
        from lorastudio.train.launch.runs import find_run

        try:
            run: Path | None = find_run(recipe)
        except RunError:
            run = None
        self.app.call_from_thread(self._recipe_run, recipe, run)

    def _recipe_run(self, recipe: str, run: Path | None) -> None:
        box = self.query_one("#eval-targets", Input)
        if run is None:
            self.query_one(EvalProgress).show(
                None, f"no run of {recipe} yet: name a run or an export folder as a target"
            )
        elif not box.value:
            box.value = f"base {run.name}"

    # -- starting ---------------------------------------------------------------------------------------
    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        if self.starting:
            return
        if self.summary is not None and self.summary.status not in ENDED_STATUSES:
            self.notify("this evaluation is still running; Ctrl+T stops it", severity="warning")
            return
        self.starting = True
        self._title("starting…")
        self.start(*(self.query_one(f"#eval-{name}", Input).value for name in ("targets", "tasks", "limit")))

    @work(thread=True, exclusive=True, group="eval-start", exit_on_error=False)
    def start(self, targets: str, tasks: str, limit: str) -> None:
        try:
            folder = launch(targets, tasks, limit)
        finally:
            self.starting = False
        self.post_message(EvalStarted(folder))

    def on_eval_started(self, message: EvalStarted) -> None:
        self.folder, self.summary, self.table = message.folder, None, None
        self.query_one(EvalResults).show(None)
        self.query_one(EvalResults).focus()  # Enter now opens a row's documents, not a second evaluation
        self._title(f"started {message.folder.name}")
        self.poll()

    def worker_failed(self, worker: Any, message: str) -> None:
        self.starting = False
        self._title(Text(message, style="bold red"))

    # -- following ---------------------------------------------------------------------------------------
    def tick(self) -> None:
        if self.folder is not None and (self.summary is None or self.summary.status not in ENDED_STATUSES):
            self.poll()

    @work(thread=True, exclusive=True, group="eval-poll", exit_on_error=False)
    def poll(self) -> None:
        from lorastudio.evaluate.job import summarise
        from lorastudio.evaluate.scores import progress, read_table

        folder = self.folder
        if folder is None:
            return
        summary = summarise(folder)
        self.post_message(EvalSnapshot(folder, summary, progress(summary), read_table(folder)))

    def on_eval_snapshot(self, message: EvalSnapshot) -> None:
        if message.folder != self.folder:
            return  # a snapshot of the evaluation shown before
        first = self.summary is None
        self.summary = summary = message.summary
        if first and summary.spec is not None:
            self._fill(summary.spec)
        shown = "running" if message.progress.running else summary.status  # the model loaded, tasks going
        status = shown + (f": {summary.cause}" if summary.cause and summary.status != "done" else "")
        self.query_one(EvalProgress).show(message.progress, status)
        self._title(f"{message.folder.name} · {shown}")
        if message.table != self.table or first:
            self.table = message.table
            self._show_table()

    def on_resize(self) -> None:
        if self.table is not None and self.size.width != self.shown_width:
            self._show_table()  # the names' room changed

    def _show_table(self) -> None:
        self.shown_width = self.size.width
        self.query_one(EvalResults).show(self.table, self.size.width)

    def _fill(self, spec: Any) -> None:
        self.query_one("#eval-targets", Input).value = " ".join(spec.targets)
        self.query_one("#eval-tasks", Input).value = " ".join(spec.tasks)
        self.query_one("#eval-limit", Input).value = "" if spec.limit is None else str(spec.limit)

    def _title(self, what: str | Text) -> None:
        self.query_one("#eval-title", Label).update(Text.assemble("Eval · ", what))

    # -- the rest ------------------------------------------------------------------------------------------
    @on(DataTable.RowSelected, "#eval-results")
    def _row_chosen(self) -> None:
        metric = self.query_one(EvalResults).metric_at_cursor()
        if metric is None or self.folder is None or self.table is None:
            return
        go(self.app, EvalSamples(self.folder, metric, tuple(self.table.targets)))

    def action_browse(self) -> None:
        from lorastudio.screens.file_picker import FilePickerScreen

        def chosen(path: str | None) -> None:
            if path:
                box = self.query_one("#eval-tasks", Input)
                box.value = f"{box.value} {path}".strip()

        self.app.push_screen(FilePickerScreen(Path.cwd(), suffixes=(".yaml", ".yml")), chosen)

    def action_history(self) -> None:
        from lorastudio.screens.eval_list import EvalListScreen

        def chosen(folder: Path | None) -> None:
            if folder is not None:
                self.folder, self.summary, self.table = folder, None, None
                self.query_one(EvalResults).show(None)
                self.query_one(EvalResults).focus()
                self.poll()

        self.app.push_screen(EvalListScreen(), chosen)

    def action_stop(self) -> None:
        from lorastudio.evaluate.job import stop_eval

        if self.folder is None or not stop_eval(self.folder):
            self.notify("no running evaluation here", severity="warning")
        else:
            self.notify("asked the evaluation to stop; the tasks it finished are kept")

    def action_back(self) -> None:
        self.app.pop_screen()
