"""Run listing speed: 200 run directories of 20k events each (``--runs``, ``--events`` to change).

Prints wall and CPU seconds beside the goals (on a loaded machine the wall figure is mostly waiting for a core):
- ``studio runs --json`` (a fresh process each time): first (no summary cache yet: each run's own
  ``summary.json``, as its writer leaves it, and only the events after it) and warm (the cache in
  $XDG_CACHE_HOME/studio/run-summaries.json); ``--legacy`` adds runs written before ``summary.json``
  existed, where the first listing folds every event once (minutes for 4M events);
- the Runs screen painted (headless, nothing cached yet): from push to a filled table;
- a live run's new event shown by the Runs screen: from the append to the row showing the new step.

    python benchmarks/runs_listing.py [--runs 200] [--events 20000] [--keep DIR] [--legacy]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"runs --json": 1.0, "Runs screen painted": 1.0, "live event shown": 1.0}


def run_events(n: int, t0: float, final: bool = True) -> bytes:
    """One run's events.jsonl as the worker writes it: metrics every step, telemetry every other step."""
    lines = [
        {"v": 1, "t": t0, "kind": "status", "status": "queued"},
        {"v": 1, "t": t0 + 1, "kind": "status", "status": "starting", "pid": 1, "world_size": 1},
        {"v": 1, "t": t0 + 2, "kind": "status", "status": "training", "max_steps": n},
    ]
    step, t = 0, t0 + 3
    while len(lines) < n - 1:
        step += 1
        t += 0.2
        lines.append(
            {
                "v": 1,
                "t": round(t, 3),
                "kind": "metrics",
                "step": step,
                "max_steps": n,
                "epoch": step / n,
                "loss": 2.0 / (1 + step / 500),
                "learning_rate": 2e-4,
                "grad_norm": 0.5,
                "tokens_per_s": 4100.0,
                "tokens_seen": 512 * step,
                "eta_s": (n - step) * 0.2,
                "elapsed_s": step * 0.2,
            }
        )
        if step % 2 == 0:
            lines.append(
                {
                    "v": 1,
                    "t": round(t + 0.1, 3),
                    "kind": "telemetry",
                    "gpus": [
                        {
                            "index": 0,
                            "name": "NVIDIA H100",
                            "memory_used_mb": 30000.0 + step % 7,
                            "memory_total_mb": 81559.0,
                            "process_memory_mb": 29000.0,
                            "utilization_pct": 97.0,
                            "temperature_c": 61.0,
                            "power_w": 410.0,
                        }
                    ],
                    "gpu_note": None,
                    "torch_peak_reserved_mb": 28500.0,
                    "rss_mb": 3100.0,
                    "cpu_pct": 101.0,
                    "host_cpu_pct": 12.0,
                    "host_ram_used_mb": 40000.0,
                    "host_ram_total_mb": 512000.0,
                }
            )
    if final:
        lines.append({"v": 1, "t": round(t + 1, 3), "kind": "status", "status": "done", "adapter": "adapter"})
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def build(root: Path, runs: int, events: int) -> Path:
    """``runs`` finished run directories, plus the newest one live (its worker: this process), each with the
    ``summary.json`` its writer leaves (the finished runs' files are identical, so one is folded and its
    summary copied)."""
    import psutil

    from lorastudio.train.run.summaries import RUN_SUMMARY_FILE, SummarizingWriter

    t0 = 1_790_000_000.0
    done = run_events(events, t0)
    live = run_events(events, t0, final=False)
    for i in range(runs):
        run = root / f"bench-{i:03d}"
        run.mkdir(parents=True)
        meta = {"format": 1, "name": run.name, "recipe": "bench", "created": t0 + i * 60}
        if i == runs - 1:
            meta.update(pid=os.getpid(), pid_started=psutil.Process().create_time())
        (run / "run.json").write_text(json.dumps(meta))
        (run / "recipe.yaml").write_text("name: bench\n")
        (run / "events.jsonl").write_bytes(live if i == runs - 1 else done)
        if i in (0, runs - 1):
            SummarizingWriter(run / "events.jsonl").close()  # what the worker's writer leaves on closing
        else:
            shutil.copyfile(root / "bench-000" / RUN_SUMMARY_FILE, run / RUN_SUMMARY_FILE)
    return root / f"bench-{runs - 1:03d}"


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli_listing(env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "lorastudio.cli", "runs", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, len(json.loads(out.stdout))


def timed_listing(env: dict[str, str]) -> tuple[float, float, int]:
    """(wall, CPU seconds of the child, runs listed)."""
    cpu = cpu_of_children()
    wall, count = cli_listing(env)
    return wall, cpu_of_children() - cpu, count


async def screen_figures(live: Path) -> tuple[float, float, float]:
    from lorastudio.app import StudioApp
    from lorastudio.screens.runs import RunsScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        start, cpu = time.perf_counter(), time.process_time()
        await app.push_screen(RunsScreen())
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        while not screen.loaded:
            await asyncio.sleep(0.005)
        painted, painted_cpu = time.perf_counter() - start, time.process_time() - cpu
        await pilot.pause(0.2)
        step = next(r.step for r in screen.runs if r.path == live)
        with (live / "events.jsonl").open("a") as handle:
            handle.write(
                json.dumps({"v": 1, "t": time.time(), "kind": "metrics", "step": step + 1, "loss": 0.1})
                + "\n"
            )
        start = time.perf_counter()
        while not any(r.path == live and r.step == step + 1 for r in screen.runs):
            await asyncio.sleep(0.005)
        shown = time.perf_counter() - start
    return painted, painted_cpu, shown


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, help="build the run directories here (and leave them)")
    parser.add_argument(
        "--legacy",
        action="store_true",
        help="also list runs written without summary.json (the first listing folds every event: minutes)",
    )
    args = parser.parse_args()
    home = args.keep or Path(tempfile.mkdtemp(prefix="studio-runs-bench-"))
    root = home / "data" / "studio" / "runs"
    for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache"), ("XDG_CONFIG_HOME", "config")):
        os.environ[var] = str(home / sub)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        start = time.perf_counter()
        if root.exists():
            shutil.rmtree(root)
        live = build(root, args.runs, args.events)
        size = sum(p.stat().st_size for p in root.glob("*/events.jsonl"))
        print(
            f"{args.runs} runs x {args.events:,} events ({size / 2**20:,.0f} MiB) built in "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
        cache_file = home / "cache" / "studio" / "run-summaries.json"
        cache_file.unlink(missing_ok=True)
        first, first_cpu, count = timed_listing(env)
        assert count == args.runs
        warm, warm_cpu, count = timed_listing(env)
        again, again_cpu, _ = timed_listing(env)
        assert count == args.runs
        cache_file.unlink(missing_ok=True)
        painted, painted_cpu, shown = asyncio.run(screen_figures(live))
        rows = [
            (
                "runs --json",
                f"first {first:.2f} s wall, {first_cpu:.2f} s CPU (runs' summary.json, no cache)",
                first,
            ),
            (
                "runs --json",
                f"warm {warm:.2f} s / {again:.2f} s wall, {warm_cpu:.2f} s / {again_cpu:.2f} s CPU",
                warm,
            ),
            (
                "Runs screen painted",
                f"{painted:.2f} s wall, {painted_cpu:.2f} s CPU (no cache: runs' summary.json)",
                painted,
            ),
            ("live event shown", f"{shown:.2f} s after the append", shown),
        ]
        for name, text, value in rows:
            goal = GOALS[name]
            print(f"{name:<22} {text:<62} goal <= {goal:.1f} s  {'ok' if value <= goal else 'MISSED'} (wall)")
        if args.legacy:
            for summary in root.glob("*/summary.json"):
                summary.unlink()
            cache_file.unlink(missing_ok=True)
            cold, cold_cpu, _ = timed_listing(env)
            print(
                f"{'runs --json':<22} legacy runs (no summary.json): first {cold:.2f} s wall, {cold_cpu:.2f} s CPU "
                "(every event folded once; cached after)"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
