"""Data-set statistics for the Preview screen, filled in as the stats worker progresses."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from lorastudio.data.encode import DatasetStats


class StatsPanel(Static):
    """Row counts, skip reasons, length percentiles, a histogram and the trained-token ratio."""

    def show(self, stats: DatasetStats, detected: str, template: str, eval_split: str | None = None) -> None:
        done = stats.used + sum(stats.skipped.values())
        table = Table.grid(padding=(0, 1))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        table.add_row("format", Text(detected))
        table.add_row("template", Text(template))  # a template file's path, shown as it is
        table.add_row("rows", f"{stats.rows}" + ("" if stats.done else f"  (scanned {done})"))
        table.add_row("used", str(stats.used))
        table.add_row("skipped", str(sum(stats.skipped.values())))
        if eval_split:
            table.add_row("eval", Text(eval_split))
        for reason, count in stats.skipped.most_common(5):
            first = stats.skipped_rows.get(reason, [])[:3]
            table.add_row("", Text(f"{count} × {reason} (rows {', '.join(map(str, first))})", style="yellow"))
        table.add_row("truncated", str(stats.truncated))
        table.add_row("trained", f"{stats.trained_ratio:.1%} of tokens")
        table.add_row(
            "length",
            f"p50 {stats.percentile(50)}  p90 {stats.percentile(90)}  "
            f"p99 {stats.percentile(99)}  max {stats.max_length}",
        )
        hist = stats.histogram(8)
        peak = max((c for _, _, c in hist), default=0)
        for low, high, count in hist:
            bar = "█" * (round(count / peak * 14) if peak else 0)
            table.add_row(f"{low}-{high}", f"{bar} {count}")
        if not stats.done:
            table.add_row("", Text("computing…", style="dim"))
        self.update(table)
