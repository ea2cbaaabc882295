"""An evaluation's results table: tasks and metrics as rows, targets as columns, deltas against the first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widgets import DataTable

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

    def show(self, table: EvalTable | None) -> None:
        """Redraw (keeping the cursor's row) from ``table``; an empty table says none has finished yet."""
        row = self.cursor_row
        self.clear(columns=True)
        if table is None or not table.rows:
            self.add_column("results")
            self.add_row(Text("no task has finished yet", style="dim"))
            return
        first = table.targets[0]
        self.add_column("task/metric", key="metric")
        for label in table.targets:
            self.add_column(label, key=label)
        for item in table.rows:
            self.add_row(
                Text(item.metric),
                *(cell_text(item, label, first) for label in table.targets),
                key=item.metric,
            )
        self.move_cursor(row=min(row, len(table.rows) - 1))

    def metric_at_cursor(self) -> str | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return key if isinstance(key, str) else None
