"""The Runs screen: every run directory, its status (died included), and keys to manage, chat and compare."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static

from lorastudio.screens import navigate as nav
from lorastudio.screens.navigate import go
from lorastudio.train.launch.runs import RunSummary
from lorastudio.widgets.title_header import TitleHeader

REFRESH_S = 0.5
"""How often the list is read again; with the summary cache a tick costs a stat per unchanged run."""


@dataclass(frozen=True)
class RunRow:
    """A run as the table shows it: its summary and its note."""

    summary: RunSummary
    note: str


RunWork = Literal["delete", "resume", "stop"]
WORKING = {"delete": "deleting…", "resume": "resuming…", "stop": "stopping…"}
"""A run's status cell while a worker acts on it."""


@dataclass
class RunWorkDone(Message):
    """A delete, resume or stop of one run has finished on its worker thread."""

    run: RunSummary
    work: RunWork
    said: str
    """The notification on success (``deleted NAME``, ``resuming NAME from checkpoint-40`` …)."""
    error: str | None = None
    """The failure in the engine's words; None when it worked."""


def load_rows() -> list[RunRow]:
    from lorastudio.train.launch.manage import read_note
    from lorastudio.train.launch.runs import list_runs

    return [RunRow(r, read_note(r.path)) for r in list_runs()]


def sweep_entries(rows: list[RunRow]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Run name -> (its sweep's name, the values the sweep gave it) for the runs a sweep started."""
    from lorastudio.train.launch.sweep import sweep_of

    found = {}
    for row in rows:
        entry = sweep_of(row.summary.path)
        if entry is not None:
            fields = entry.get("fields")
            found[row.summary.name] = (str(entry["name"]), dict(fields) if isinstance(fields, dict) else {})
    return found


SHORT_KEYS = {"learning_rate": "lr"}
"""A swept field's name in the Runs table: its last part, some shortened further."""


def swept_values(fields: dict[str, Any]) -> str:
    """``train.learning_rate=0.001, lora.r=8`` as ``lr=0.001 r=8``: what tells a sweep's runs apart."""
    parts = []
    for key, value in fields.items():
        last = key.rsplit(".", 1)[-1]
        parts.append(
            f"{SHORT_KEYS.get(last, last)}={value:g}" if isinstance(value, float) else f"{last}={value}"
        )
    return " ".join(parts)


def fit(text: str, width: int, keep_end: int = 15) -> str:
    """``text`` in ``width`` cells: cut in the middle, keeping its last ``keep_end`` (a run's timestamp)."""
    if len(text) <= width:
        return text
    tail = min(keep_end, max(0, width - 2))
    return text[: width - tail - 1] + "…" + text[len(text) - tail :] if tail else text[: width - 1] + "…"


def short_status(status: str) -> str:
    """The table's status: ``queued (waiting for CPU)`` as ``queued`` (the details pane says why)."""
    return status.split(" (", 1)[0]


def group_display(rows: list[RunRow], sweeps: dict[str, str], collapsed: set[str]) -> list[RunRow | str]:
    """The table's rows: each sweep's group row where its first run would be, then (unless collapsed) its
    runs in the same order; runs of no sweep as they come."""
    out: list[RunRow | str] = []
    placed: set[str] = set()
    for row in rows:
        group = sweeps.get(row.summary.name)
        if group is None:
            out.append(row)
        elif group not in placed:
            placed.add(group)
            out.append(group)
            if group not in collapsed:
                out += [r for r in rows if sweeps.get(r.summary.name) == group]
    return out


class RunsTable(DataTable[Any]):
    """The runs' table: Home and End go to the first and the last run (DataTable's own scroll sideways, which
    this table never needs), through the screen, so keys typed before the list arrives wait like the rest."""

    BINDINGS = [
        Binding("home", "screen.move_to(0)", "First run", show=False),
        Binding("end", "screen.move_to(-1)", "Last run", show=False),
    ]


class RunsScreen(Screen[None]):
    """A table of runs, refreshed every few seconds. Enter acts on the highlighted row, in key order."""

    # The footer's order: what a user looks for first, one short word each, so 80 columns show them all.
    BINDINGS = [
        Binding("enter", "attach", "Attach", id="runs.attach"),
        Binding("space", "mark", "Mark", id="runs.mark"),
        Binding("v", "compare", "Compare", id="runs.compare"),
        Binding("e", "eval", "Eval", id="runs.eval"),
        Binding("c", "chat", "Chat", id="runs.chat"),
        Binding("s", "stop", "Stop", id="runs.stop"),
        Binding("r", "resume", "Resume", id="runs.resume"),
        Binding("x", "export", "Export", id="runs.export"),
        Binding("D,delete", "delete", "Delete", id="runs.delete"),
        # after Delete: at 80 columns the main keys stay whole
        Binding("p", "serve", "Serve", id="runs.serve"),
        Binding("n", "note", "Note", id="runs.note"),
        Binding("o", "sort", "Sort", id="runs.sort"),
        Binding("g", "toggle_group", "Sweep group", show=False, id="runs.group"),  # shown in the detail pane
        Binding("escape", "back", "Back", id="runs.back"),
        # Only reached while the table lacks focus (just pushed): moves still land on the table, in order.
        Binding("down", "move(1)", "Move down", show=False, id="runs.down"),
        Binding("up", "move(-1)", "Move up", show=False, id="runs.up"),
        Binding("home", "move_to(0)", "First run", show=False, id="runs.first"),
        Binding("end", "move_to(-1)", "Last run", show=False, id="runs.last"),
    ]

    AUTO_FOCUS = ""  # the table takes focus once it has rows; keys before that wait in `pending`

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[RunRow] = []
        self.loaded = False
        self.pending: list[tuple[str, tuple[int, ...]]] = []
        """Keys that reached the table before its first listing (the app holds keys while ``awaiting_keys``, but
        at most a few seconds: a listing of thousands of runs takes longer)."""
        self.marked: list[str] = []  # run names, in marking order (Compare letters them A, B, …)
        self.sort_key = "time"
        self._listing = threading.Event()
        """Set while a listing runs, so ticks do not start a second one beside it."""
        self.sweeps: dict[str, str] = {}  # run name -> its sweep's name (run.json), for the group rows
        self.swept: dict[str, dict[str, Any]] = {}  # run name -> the values its sweep gave it
        self.collapsed: set[str] = set()  # sweeps shown as one row (g toggles)
        self.table_rows: list[RunRow | str] = []  # in table order: a run, or a sweep (its group row)
        self.working: dict[str, RunWork] = {}
        """Runs a worker thread is deleting, resuming or stopping: their status cell says so until it is done."""

    @property
    def runs(self) -> list[RunSummary]:
        return [row.summary for row in self.rows]

    def compose(self) -> ComposeResult:
        yield TitleHeader()
        yield Label("Runs", id="runs-title", classes="title")
        yield RunsTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="run-detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column(" ", key="mark", width=1)
        table.add_column("name", key="name")
        for column in ("status", "step", "loss", "started", "note"):
            table.add_column(column, key=column)
        self.query_one("#runs-title", Label).update("Runs · loading…")
        self.refresh_runs()
        self.set_interval(REFRESH_S, self.tick)

    def tick(self) -> None:
        """List the runs again unless the last listing is still running."""
        if not self._listing.is_set():
            self._listing.set()
            self.refresh_runs()

    @work(thread=True, group="runs-list", exit_on_error=False)
    def refresh_runs(self) -> None:
        """List the runs (through the summary cache: an unchanged run's events are not read again)."""
        self._listing.set()
        try:
            rows = load_rows()
            entries = sweep_entries(rows)
        finally:
            self._listing.clear()
        sweeps = {name: group for name, (group, _) in entries.items()}
        if (
            not self.loaded or set(rows) != set(self.rows) or sweeps != self.sweeps
        ):  # unchanged: not drawn again
            swept = {name: fields for name, (_, fields) in entries.items()}
            self.app.call_from_thread(self._show_with_sweeps, rows, sweeps, swept)

    def _show_with_sweeps(
        self, rows: list[RunRow], sweeps: dict[str, str], swept: dict[str, dict[str, Any]] | None = None
    ) -> None:
        self.sweeps = sweeps
        self.swept = swept or {}
        self._show(rows)

    def on_resize(self, event: events.Resize) -> None:
        if self.loaded:
            self._show(self.rows)  # the name column's room changed

    def _rooms(self, entries: list[RunRow | str]) -> tuple[int, int]:
        """Cells for the name and the note columns: what the screen leaves once status, step, progress and
        start time are in, so those stay on screen at 80 columns (the details pane shows both whole)."""
        runs = [e.summary for e in entries if not isinstance(e, str)]
        status = max([len(self._status_word(r)) for r in runs] + [len("status")])
        step = max([len(f"{r.step}/{r.max_steps or '?'}") for r in runs] + [len("step")])
        loss = max([len(r.progress) for r in runs] + [len("loss")])
        # 7 columns of 1 cell padding a side, the mark, "MM-DD HH:MM", the scrollbar
        left = self.size.width - 14 - 1 - status - step - loss - 11 - 2
        names = max(
            [len(self._name_cell(r.name, 1000)) for r in runs]
            + [len(self._group_cell(g)) for g in entries if isinstance(g, str)]
            + [len("name")]
        )
        notes = max([len(e.note) for e in entries if not isinstance(e, str)] + [6])
        # the name gets the room the notes leave, and at least 30 cells: the note gives way first (the
        # details pane shows both whole)
        name = max(16, min(names, max(left - notes, min(left - 6, 30))))
        return name, max(6, left - name)

    def _show(self, rows: list[RunRow]) -> None:
        from lorastudio.train.launch.manage import sort_runs

        table = self.query_one(DataTable)
        current = self._current()
        order = {r.name: i for i, r in enumerate(sort_runs([row.summary for row in rows], self.sort_key))}
        self.rows = sorted(rows, key=lambda row: order[row.summary.name])
        names = {row.summary.name for row in self.rows}
        self.marked = [name for name in self.marked if name in names]
        current_group = self._current_group()
        table.clear()
        self.table_rows = group_display(self.rows, self.sweeps, self.collapsed)
        room, note_room = self._rooms(self.table_rows)
        for entry in self.table_rows:
            if isinstance(entry, str):
                table.add_row(
                    Text(" "), self._group_cell(entry, room), *self._group_cells(entry), key=f"sweep:{entry}"
                )
                continue
            r = entry.summary
            started = time.strftime("%m-%d %H:%M", time.localtime(r.started)) if r.started else "?"
            status = Text(
                self._status_word(r),
                style="bold yellow"
                if r.name in self.working
                else {
                    "failed": "red",
                    "died": "red",
                    "damaged": "bold red",
                    "done": "green",
                    "stopped": "yellow",
                }.get(r.status, "bold"),
            )
            table.add_row(
                self._mark_cell(r.name),
                self._name_cell(r.name, room),
                status,
                f"{r.step}/{r.max_steps or '?'}",
                r.progress,
                started,
                Text(fit(entry.note, note_room, 0)),  # the user's words: a str cell would read as markup
                key=r.name,
            )
        if self.table_rows:
            keep = next(
                (
                    i
                    for i, entry in enumerate(self.table_rows)
                    if (isinstance(entry, str) and entry == current_group and current is None)
                    or (not isinstance(entry, str) and current and entry.summary.name == current.name)
                ),
                0,
            )
            table.move_cursor(row=keep)
        self._update_title()
        self._update_detail()
        if not self.loaded:
            self.loaded = True
            table.focus()
            pending, self.pending = self.pending, []
            for action, args in pending:  # keys typed while the list loaded, in the order they came
                getattr(self, f"action_{action}")(*args)

    def _status_word(self, run: RunSummary) -> str:
        work = self.working.get(run.name)
        return WORKING[work] if work is not None else short_status(run.status)

    @property
    def awaiting_keys(self) -> bool:
        """True until the first listing, and while a resume is starting (it opens the Monitor): the app holds
        the keys typed meanwhile (see ``app.KeyLine``), so they reach the screen they were typed for."""
        return not self.loaded or "resume" in self.working.values()

    def _deferred(self, action: str, *args: int) -> bool:
        """Before the first listing, remember the key's action (True) instead of acting on an empty table."""
        if self.loaded:
            return False
        self.pending.append((action, args))
        return True

    def _name_cell(self, name: str, room: int) -> Text:
        """A run's name, fitted to ``room``; a sweep's member sits under its group row and leads with the
        values the sweep gave it (its name is the recipe's and a time, alike for all of them)."""
        if name not in self.sweeps:
            return Text(fit(name, room))
        values = swept_values(self.swept.get(name, {}))
        if not values:
            return Text(fit(f"  {name}", room))
        cell = Text(fit(f"  {values}", room), style="bold")
        if room - len(cell) >= 19:  # else the name's timestamp would not fit: the details pane has it
            cell.append("  " + fit(name, room - len(cell) - 2), style="dim")
        return cell

    def _mark_cell(self, name: str) -> Text:
        return Text("●", style="bold cyan") if name in self.marked else Text(" ")

    def _update_title(self) -> None:
        marked = f" · {len(self.marked)} marked (v compare)" if self.marked else ""
        self.query_one("#runs-title", Label).update(
            f"Runs · {len(self.rows)} · sorted by {self.sort_key} (o){marked}"
        )

    def _update_detail(self) -> None:
        row = self._current_row()
        detail = self.query_one("#run-detail", Static)
        group = self._current_group()
        if row is None and group is not None:
            detail.update(self._group_detail(group))
            return
        if row is None:
            detail.update("no runs yet: pick a recipe and press t" if not self.rows else "")
            return
        r = row.summary
        text = Text(no_wrap=False)
        text.append(r.name, style="bold")
        text.append(f"  {r.recipe} · {r.status}", style="dim")
        best, best_loss = getattr(r, "best_checkpoint", None), getattr(r, "best_eval_loss", None)
        if best:  # summaries carry these once the worker evaluates (eval-aware runs)
            text.append(
                f"  ★ best eval {best_loss:.4f} at {Path(best).name}"
                if best_loss is not None
                else f"  ★ best {Path(best).name}",
                style="green",
            )
        if r.last_reward is not None:  # GRPO: its loss is not a progress figure, its reward is
            text.append(f"\nmean reward {r.last_reward:.3f} at step {r.step}")
        if row.note:
            text.append(f"\nnote: {row.note}")
        if r.cause and r.status in ("failed", "died", "stopped", "damaged"):  # damaged: which file, and how
            text.append(f"\n{r.cause}", style="red" if r.status != "stopped" else "yellow")
        from lorastudio.train.launch.manage import checkpoints

        saved = [c.label for c in checkpoints(r.path)]
        text.append(
            "\nchat with (c): " + ", ".join(saved[:4]) + (" …" if len(saved) > 4 else "")
            if saved
            else "\nno adapter or checkpoint saved yet",
            style="dim",
        )
        detail.update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._update_detail()

    def _current_row(self) -> RunRow | None:
        row = self.query_one(DataTable).cursor_row
        entry = self.table_rows[row] if 0 <= row < len(self.table_rows) else None
        return entry if isinstance(entry, RunRow) else None

    # -- sweeps: a group row above each sweep's runs ---------------------------------------------
    def _current_group(self) -> str | None:
        """The sweep of the highlighted row: its group row, or one of its runs."""
        row = self.query_one(DataTable).cursor_row
        entry = self.table_rows[row] if 0 <= row < len(self.table_rows) else None
        if isinstance(entry, str):
            return entry
        return self.sweeps.get(entry.summary.name) if entry is not None else None

    def _group_members(self, name: str) -> list[RunRow]:
        return [row for row in self.rows if self.sweeps.get(row.summary.name) == name]

    def _group_cell(self, name: str, room: int = 1000) -> Text:
        arrow = "▸" if name in self.collapsed else "▾"
        return Text(fit(f"{arrow} sweep {name}", room), style="bold cyan")

    def _group_cells(self, name: str) -> list[Text | str]:
        members = [row.summary for row in self._group_members(name)]
        counts: dict[str, int] = {}
        for r in members:
            counts[r.status.split(" (")[0]] = counts.get(r.status.split(" (")[0], 0) + 1
        status = ", ".join(f"{n} {s}" for s, n in counts.items())
        losses = [loss for r in members if (loss := getattr(r, "best_eval_loss", None)) is not None]
        best = f"best eval {min(losses):.4f}" if losses else "-"
        return [Text(status, style="dim"), f"{len(members)} runs", best, "", ""]

    def _group_detail(self, name: str) -> Text:
        members = [row.summary for row in self._group_members(name)]
        text = Text(no_wrap=False)
        text.append(f"sweep {name}", style="bold")
        text.append(
            f"  {len(members)} runs · g {'expand' if name in self.collapsed else 'collapse'} · "
            "v compare the sweep · s stop it",
            style="dim",
        )
        scored = [r for r in members if getattr(r, "best_eval_loss", None) is not None]
        if scored:
            best = min(scored, key=lambda r: r.best_eval_loss or 0.0)
            text.append(f"\n★ best eval {best.best_eval_loss:.4f}: {best.name}", style="green")
        return text

    def action_toggle_group(self) -> None:
        if self._deferred("toggle_group"):
            return
        group = self._current_group()
        if group is None:
            self.notify("not a sweep's run: g collapses and expands a sweep's group", severity="warning")
            return
        self.collapsed ^= {group}
        self._show(self.rows)
        table = self.query_one(DataTable)
        table.move_cursor(row=self.table_rows.index(group))  # stay on the group's row
        self._update_detail()

    def _current(self) -> RunSummary | None:
        row = self._current_row()
        return row.summary if row else None

    # -- keys -------------------------------------------------------------------------------------
    @on(DataTable.RowSelected, "#runs-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_attach()  # the table's own Enter: handled after any Down typed before it

    def action_move(self, delta: int) -> None:
        if self._deferred("move", delta):
            return
        table = self.query_one(DataTable)
        if self.table_rows:  # runs and sweep group rows alike
            table.move_cursor(row=max(0, min(len(self.table_rows) - 1, table.cursor_row + delta)))

    def action_move_to(self, row: int) -> None:
        """Home and End: the first or the last row (``-1``)."""
        if self._deferred("move_to", row):
            return
        if self.table_rows:
            self.query_one(DataTable).move_cursor(row=row % len(self.table_rows))

    def action_attach(self) -> None:
        if self._deferred("attach"):
            return
        run = self._current()
        if run is None and self._current_group() is not None:  # Enter on a sweep's row opens or folds it
            self.action_toggle_group()
            return
        if run is not None:
            go(self.app, nav.Monitor(run.path))

    def action_chat(self) -> None:
        if self._deferred("chat"):
            return
        run = self._current()
        if run is None:
            return
        from lorastudio.train.launch.manage import checkpoints

        choices = checkpoints(run.path)
        if len(choices) <= 1:  # nothing to choose between: the adapter, or the base with a clear message
            go(self.app, nav.Chat(str(choices[0].path if choices else run.path)))
            return
        from lorastudio.screens.checkpoint_picker import CheckpointPicker

        def chosen(path: Path | None) -> None:
            if path is not None:
                go(self.app, nav.Chat(str(path)))

        self.app.push_screen(
            CheckpointPicker(run.name, choices, getattr(run, "best_checkpoint", None)), chosen
        )

    def action_mark(self) -> None:
        if self._deferred("mark"):
            return
        run = self._current()
        if run is None:
            return
        if run.name in self.marked:
            self.marked.remove(run.name)
        else:
            self.marked.append(run.name)
        table = self.query_one(DataTable)
        table.update_cell(run.name, "mark", self._mark_cell(run.name))
        self._update_title()
        self.action_move(1)  # like a file manager: mark and go on to the next

    def action_compare(self) -> None:
        if self._deferred("compare"):
            return
        group = self._current_group() if self._current_row() is None else None
        if group is not None:  # on a sweep's row: compare the sweep
            go(
                self.app,
                nav.Compare(tuple(row.summary.path for row in self._group_members(group)), sweep=group),
            )
            return
        paths = [row.summary.path for name in self.marked for row in self.rows if row.summary.name == name]
        if len(paths) < 2:
            self.notify("mark two or more runs with space, then press v", severity="warning")
            return
        go(self.app, nav.Compare(tuple(paths)))

    def action_eval(self) -> None:
        """The Eval screen on the marked runs (the highlighted one when none is marked), after ``base``."""
        if self._deferred("eval"):
            return
        names = [name for name in self.marked if any(row.summary.name == name for row in self.rows)]
        if not names:
            run = self._current()
            if run is None:
                return
            names = [run.name]
        go(self.app, nav.Eval(("base", *names)))

    def action_resume(self) -> None:
        if self._deferred("resume"):
            return
        run = self._current()
        if run is None or self._busy(run):
            return
        self._start_work(run, "resume")

    def action_stop(self) -> None:
        if self._deferred("stop"):
            return
        run = self._current()
        group = self._current_group() if run is None else None
        if group is not None:
            self._stop_sweep(group)
            return
        if run is None:
            return
        if self._busy(run):
            return
        from lorastudio.train.launch.manage import is_live

        if not is_live(run.path):  # run.json and the process table: read at once, so the key answers at once
            self.notify(f"{run.name} has no live worker ({run.status})", severity="warning")
            return
        from lorastudio.screens.confirm import ConfirmScreen

        def answer(yes: bool | None) -> None:
            if yes:
                self._start_work(run, "stop")  # a Slurm job's is a scancel: off the event loop

        self.app.push_screen(
            ConfirmScreen(f"Stop {run.name}?\nIt saves a checkpoint and the adapter; r resumes it later."),
            answer,
        )

    def action_delete(self) -> None:
        if self._deferred("delete"):
            return
        run = self._current()
        if run is None or self._busy(run):
            return
        from lorastudio.train.launch.manage import is_live

        if is_live(run.path):
            self.notify(
                f"{run.name} is still running; stop it first (s)", title="cannot delete", severity="error"
            )
            return
        from lorastudio.screens.confirm import ConfirmScreen

        def answer(yes: bool | None) -> None:
            if yes:
                self._start_work(run, "delete")  # a big run's checkpoints take a while to remove

        self.app.push_screen(
            ConfirmScreen(f"Delete {run.name}?\nThis removes {run.path} (checkpoints, adapter, logs)."),
            answer,
        )

    # -- delete, resume, stop: on worker threads, the row saying so meanwhile ----------------------
    def _busy(self, run: RunSummary) -> bool:
        """The run is being deleted, resumed or stopped already: say so (True) instead of acting again."""
        work = self.working.get(run.name)
        if work is not None:
            self.notify(f"{run.name}: {WORKING[work]} (wait for it to finish)", severity="warning")
        return work is not None

    def _start_work(self, run: RunSummary, work: RunWork) -> None:
        self.working[run.name] = work
        if run.name in self._shown_names():
            self.query_one(DataTable).update_cell(
                run.name, "status", Text(WORKING[work], style="bold yellow")
            )
        self.run_work(run, work)

    def _shown_names(self) -> set[str]:
        return {entry.summary.name for entry in self.table_rows if not isinstance(entry, str)}

    @work(thread=True, group="run-work", exit_on_error=False)
    def run_work(self, run: RunSummary, work: RunWork) -> None:
        """Delete (``shutil.rmtree``), resume (which may ``sbatch``) or stop (which may ``scancel``) one run,
        then post the outcome; every failure is reported as one, naming the run."""
        from lorastudio.screens.worker_failures import failure_message

        try:
            said = _do_work(run, work)
        except Exception as exc:  # noqa: BLE001 - reported on the screen, naming the run
            self.post_message(RunWorkDone(run, work, "", failure_message(exc)))
            return
        self.post_message(RunWorkDone(run, work, said))

    def on_run_work_done(self, message: RunWorkDone) -> None:
        run = message.run
        self.working.pop(run.name, None)
        if message.error is not None:
            self.notify(
                message.error, title=f"cannot {message.work} {run.name}", severity="error", timeout=10
            )
            self._show(self.rows)  # the row's own status again
            return
        self.notify(message.said)
        if message.work == "delete":
            self._show([row for row in self.rows if row.summary.name != run.name])
            return
        self._show(self.rows)
        self.refresh_runs()
        if message.work == "resume":
            go(self.app, nav.Monitor(run.path))

    def action_note(self) -> None:
        if self._deferred("note"):
            return
        row = self._current_row()
        if row is None:
            return
        from lorastudio.screens.note import NoteScreen

        def saved(text: str | None) -> None:
            if text is None:
                return
            from lorastudio.errors import StudioError
            from lorastudio.train.launch.manage import write_note

            try:
                note = write_note(row.summary.path, text)
            except StudioError as exc:
                self.notify(str(exc), title="cannot save the note", severity="error")
                return
            self._show(
                [RunRow(r.summary, note) if r.summary.name == row.summary.name else r for r in self.rows]
            )

        self.app.push_screen(NoteScreen(row.summary.name, row.note), saved)

    def action_sort(self) -> None:
        if self._deferred("sort"):
            return
        from lorastudio.train.launch.manage import next_sort

        self.sort_key = next_sort(self.sort_key)
        self._show(self.rows)

    def _stop_sweep(self, name: str) -> None:
        from lorastudio.screens.confirm import ConfirmScreen

        def answer(yes: bool | None) -> None:
            if yes:
                self.stop_sweep_work(name)

        self.app.push_screen(
            ConfirmScreen(
                f"Stop sweep {name}?\nIts queued runs leave the queue; the training "
                "one saves a checkpoint and its adapter."
            ),
            answer,
        )

    @work(thread=True, group="run-work", exit_on_error=False)
    def stop_sweep_work(self, name: str) -> None:
        """Signal a sweep's live runs (a Slurm member's is a scancel) off the event loop."""
        from lorastudio.screens.worker_failures import failure_message
        from lorastudio.train.launch.sweep import stop_sweep

        try:
            stopped, _ = stop_sweep(name)
        except Exception as exc:  # noqa: BLE001 - reported on the screen, naming the sweep
            self.app.call_from_thread(
                self.notify, failure_message(exc), title=f"cannot stop sweep {name}", severity="error"
            )
            return
        said = (
            f"asked {len(stopped)} runs of sweep {name} to stop"
            if stopped
            else f"sweep {name} has no live runs"
        )
        self.app.call_from_thread(self.notify, said)
        self.app.call_from_thread(self.refresh_runs)

    def action_export(self) -> None:
        run = self._current()
        if run is not None:
            go(self.app, nav.Export(run.path))

    def action_serve(self) -> None:
        run = self._current()
        if run is not None:
            go(self.app, nav.Serve(str(run.path)))

    def action_back(self) -> None:
        self.app.pop_screen()


def _do_work(run: RunSummary, work: RunWork) -> str:
    """The engine's part of a delete, resume or stop (on a worker thread); what to tell the user after it."""
    if work == "delete":
        from lorastudio.train.launch.manage import delete_run

        return delete_run(run.path)  # what it removed: a linked run loses only its link
    if work == "resume":
        from lorastudio.train.launch.manage import resume_run

        _, checkpoint = resume_run(run.path)
        return f"resuming {run.name} from {checkpoint.name if checkpoint else 'step 0 (no checkpoint saved)'}"
    from lorastudio.train.launch.runs import stop_run

    stopped = stop_run(run.path)
    return f"asked {run.name} to save a checkpoint and stop" if stopped else f"{run.name} had already ended"
