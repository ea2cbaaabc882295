"""An evaluation's results table: tasks and metrics as rows, targets as columns, deltas against the first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widgets import DataTable

from lorastudio.widgets.eval_progress import cut_middle

if TYPE_CHECKING:
    from lorastudio.evaluate.scores import EvalTable, Row

STANDS_OUT = "◆"
"""Beside a delta larger than the two figures' combined standard error."""


def cell_text(row: Row, label: str, first: str) -> Text:
    """``value ±stderr`` and, past the first column, ``+delta`` (green up, red down; ◆ when it stands out)."""
    cell = row.cells.get(label)
    if cell is None or cell.value is None:
        return Text("-", style="dim")
    text = Text(f"{cell.value:.3f}")
    if cell.stderr is not None:
        text.append(f" ±{cell.stderr:.3f}", style="dim")
    if label != first and cell.delta is not None:
        style = "green" if cell.delta > 0 else "red" if cell.delta < 0 else "dim"
        text.append(f" {cell.delta:+.3f}", style=style)
        if row.stands_out(label, first):
            text.append(f" {STANDS_OUT}", style=f"bold {style}")
    return text


class EvalResults(DataTable[Any]):
    """The table of :class:`~lorastudio.evaluate.scores.EvalTable`; a row's key is its task/metric."""

    def show(self, table: EvalTable | None, width: int = 0) -> None:
        """Redraw (keeping the cursor's row) from ``table``; an empty table says none has finished yet.

        Within ``width`` cells (the table's own when 0) the figures stay whole: the metric names and the
        targets' headers are cut in the middle (their ends, a filter or a run's timestamp, kept)."""
        row = self.cursor_row
        self.clear(columns=True)
        if table is None or not table.rows:
            self.add_column("results")
            self.add_row(Text("no task has finished yet", style="dim"))
            return
        first = table.targets[0]
        cells = [[cell_text(item, label, first) for label in table.targets] for item in table.rows]
        figures = [max(len(line[i].plain) for line in cells) for i in range(len(table.targets))]
        heads = [max(f, min(len(label), 12)) for f, label in zip(figures, table.targets, strict=True)]
        room = (width or self.size.width or 80) - sum(heads) - 2 * (len(heads) + 1) - 2  # padding, scrollbar
        names = max(len(item.metric) for item in table.rows)
        metric_room = max(16, min(names, room))
        self.add_column("task/metric", key="metric")
        spare = max(0, room - metric_room) // len(heads)  # what the names leave, shared by the headers
        for label, head in zip(table.targets, heads, strict=True):
            self.add_column(cut_middle(label, head + spare), key=label)
        for item, line in zip(table.rows, cells, strict=True):
            self.add_row(Text(cut_middle(item.metric, metric_room)), *line, key=item.metric)
        self.move_cursor(row=min(row, len(table.rows) - 1))

    def metric_at_cursor(self) -> str | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return key if isinstance(key, str) else None
