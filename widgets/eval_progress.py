"""An evaluation's progress: a line per target, a mark per task (done, running, waiting), and the ETA."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from lorastudio.train.run.events import ENDED_STATUSES

if TYPE_CHECKING:
    from lorastudio.evaluate.scores import Progress

MARKS = {"done": ("✓", "green"), "running": ("▶", "bold yellow"), "waiting": ("·", "dim")}


def cut_middle(name: str, room: int) -> str:
    """``name`` in ``room`` cells, cut in the middle so its end (a run's timestamp, @best) stays."""
    if len(name) <= room:
        return name
    tail = min(15, room // 2)
    return name[: room - tail - 1] + "…" + name[len(name) - tail :]


def render_progress(progress: Progress, status: str, width: int = 80) -> Text:
    """``status · done/total · ETA``, then each target with its tasks' marks (names cut to the width)."""
    text = Text()
    text.append(status, style="bold green" if status == "done" else "bold")
    text.append(f" · {progress.done}/{progress.total} task runs")
    if status not in ENDED_STATUSES:
        from lorastudio.evaluate.scores import format_eta

        text.append(f" · {format_eta(progress.eta_s)}", style="cyan")
    tasks = progress.tasks
    name_room = max([len(t) for t in progress.targets] + [6])
    name_room = min(name_room, max(10, width // 2))
    for target in progress.targets:
        text.append("\n")
        text.append(cut_middle(target, name_room).ljust(name_room), style="bold")
        for task in tasks:
            mark, style = MARKS.get(progress.pairs.get((target, task), "waiting"), MARKS["waiting"])
            text.append(f"  {mark} ", style=style)
            room = max(6, (width - name_room) // max(1, len(tasks)) - 4)
            text.append(task if len(task) <= room else task[: room - 1] + "…")
    return text


class EvalProgress(Static):
    """Shows :func:`render_progress`; empty until an evaluation is started or opened."""

    def show(self, progress: Progress | None, status: str) -> None:
        if progress is None:
            self.update(Text(status, style="dim"))
            return
        self.update(render_progress(progress, status, self.size.width or 80))
