"""The numbers of a run: loss, eval loss and task scores, learning rate, grad norm, tokens/s, tokens seen,
elapsed, ETA."""

from __future__ import annotations

from rich.table import Table
from textual.widgets import Static

from lorastudio.train.run.runstate import RunState


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class MetricsPanel(Static):
    """A two-column table of the latest metrics."""

    def show(self, state: RunState, elapsed: float | None) -> None:
        table = Table.grid(padding=(0, 1))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        lr = state.last_learning_rate
        eval_loss = state.last_eval_loss
        eta = duration(state.eta_s) if not state.finished else "-"
        rows = [
            ("loss", f"{state.last_loss:.4f}" if state.last_loss is not None else "-"),
            ("eval loss", f"{eval_loss:.4f}" if eval_loss is not None else "-"),
            ("lr", f"{lr:.2e}" if lr is not None else "-"),
            ("grad norm", f"{state.grad_norm:.3f}" if isinstance(state.grad_norm, (int, float)) else "-"),
            ("tokens/s", f"{state.tokens_per_s:,.0f}" if state.tokens_per_s else "-"),
            ("tokens", f"{state.tokens_seen:,}"),
            ("elapsed", f"{duration(elapsed)} · ETA {eta}"),
            ("backend", f"{state.backend or '-'} on {state.device or '-'}"),
        ]
        # train.eval_tasks' latest scores, a line per task/metric under the eval loss
        rows[2:2] = [(name, f"{value:.3f}") for name, value in sorted(state.task_scores.items())]
        for key, value in rows:
            table.add_row(key, value)
        self.update(table)
