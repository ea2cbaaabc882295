"""The Monitor's redraw cost on a long run: a 100k-line events file, then one refresh that brings one more step.

Prints the one-off cost of the first read (fold + feed every chart), and per refresh: reading and folding
the new lines, extending the charts, and drawing them (one chart at 120x40 where the Monitor shows one, all
five at 200x50). Run: ``python benchmarks/monitor_charts.py``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

LINES = 100_000


def write_events(path: Path, steps: int) -> int:
    """Metrics every step, telemetry every other step, eval every 500 steps: about ``LINES`` lines."""
    lines = 0
    with path.open("w") as handle:
        for step in range(1, steps + 1):
            t = 1_790_000_000 + step * 0.2
            handle.write(
                json.dumps(
                    {
                        "v": 1,
                        "t": t,
                        "kind": "metrics",
                        "step": step,
                        "max_steps": steps * 2,
                        "loss": 2.0 / step**0.3 + 0.05 * (step % 7),
                        "learning_rate": 2e-4,
                        "grad_norm": 1.0 / step**0.2,
                        "tokens_per_s": 8000.0 + step % 50,
                        "tokens_seen": step * 280,
                    }
                )
                + "\n"
            )
            lines += 1
            if step % 2 == 0:
                handle.write(
                    json.dumps(
                        {
                            "v": 1,
                            "t": t,
                            "kind": "telemetry",
                            "gpus": [],
                            "rss_mb": 600.0 + step % 9,
                            "cpu_pct": 100.0,
                        }
                    )
                    + "\n"
                )
                lines += 1
            if step % 500 == 0:
                handle.write(
                    json.dumps({"v": 1, "t": t, "kind": "eval", "step": step, "eval_loss": 2.1 / step**0.3})
                    + "\n"
                )
                lines += 1
    return lines


def feed(events, state, charts, sent: dict[str, int]) -> None:
    """What the Monitor does with new events: fold them, and extend each chart once with its new points."""
    from lorastudio.screens.monitor import chart_points

    grouped: dict[tuple[str, str], list] = {}
    for event in events:
        state.apply(event)
    for chart, series, point in chart_points(state, sent):
        grouped.setdefault((chart, series), []).append(point)
    for (chart, series), points in grouped.items():
        charts[chart].extend(series, points)


async def measure() -> None:
    from textual.app import App

    from lorastudio.screens.monitor import CHARTS, add_chart_series
    from lorastudio.train.run.eventlog import EventTail
    from lorastudio.train.run.runstate import RunState
    from lorastudio.widgets.chart import LineChart

    class Charts(App[None]):
        def compose(self):
            for key, title, x_label in CHARTS:
                yield LineChart(title, x_label=x_label, id=f"chart-{key}")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        steps = int(LINES / 1.502)
        lines = write_events(path, steps)
        for size, shown in (((120, 40), 1), ((200, 50), 5)):
            app = Charts()
            async with app.run_test(size=size) as pilot:
                charts = {key: app.query_one(f"#chart-{key}", LineChart) for key, _, _ in CHARTS}
                add_chart_series(charts)
                # The Monitor's size: one chart fills the left column at 120x40; five share a grid at 200x50.
                for chart in charts.values():
                    chart.styles.height = 26 if shown == 1 else 20
                    chart.styles.width = 80 if shown == 1 else 50
                await pilot.pause()
                tail, state = EventTail(path), RunState()

                start = time.perf_counter()
                sent: dict[str, int] = {}
                feed(tail.read_events(), state, charts, sent)
                first = time.perf_counter() - start
                read_ms, extend_ms, draw_ms = [], [], []
                step = steps
                for _ in range(50):
                    step += 1
                    with path.open("a") as handle:
                        handle.write(
                            json.dumps(
                                {
                                    "v": 1,
                                    "t": 1_790_000_000 + step * 0.2,
                                    "kind": "metrics",
                                    "step": step,
                                    "loss": 0.5,
                                    "learning_rate": 2e-4,
                                    "grad_norm": 0.3,
                                    "tokens_per_s": 8000.0,
                                }
                            )
                            + "\n"
                        )
                        handle.write(
                            json.dumps(
                                {
                                    "v": 1,
                                    "t": 1_790_000_000 + step * 0.2,
                                    "kind": "telemetry",
                                    "gpus": [],
                                    "rss_mb": 610.0,
                                }
                            )
                            + "\n"
                        )
                    t0 = time.perf_counter()
                    events = tail.read_events()
                    t1 = time.perf_counter()
                    feed(events, state, charts, sent)
                    t2 = time.perf_counter()
                    for chart in list(charts.values())[:shown]:
                        chart.render()
                    t3 = time.perf_counter()
                    read_ms.append((t1 - t0) * 1000)
                    extend_ms.append((t2 - t1) * 1000)
                    draw_ms.append((t3 - t2) * 1000)
                label = f"{size[0]}x{size[1]}"
                print(f"[{label}] events_lines={lines} first_read_and_feed_s={first:.2f}")
                print(
                    f"[{label}] per_refresh_ms: read={statistics.median(read_ms):.3f} "
                    f"fold_and_extend={statistics.median(extend_ms):.3f} "
                    f"draw_{shown}_chart{'s' if shown > 1 else ''}={statistics.median(draw_ms):.2f} "
                    f"total={statistics.median(a + b + c for a, b, c in zip(read_ms, extend_ms, draw_ms, strict=True)):.2f}"
                )


if __name__ == "__main__":
    asyncio.run(measure())
