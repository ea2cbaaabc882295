"""``studio sweep``: start a grid of runs, stop it (``sweep stop``), rank its runs (``sweep rank``, and
``runs compare --sweep``)."""

from __future__ import annotations

import argparse
import sys

from lorastudio.cli.console import _console
from lorastudio.errors import StudioError
from lorastudio.jsonout import dumps


def cmd_sweep(args: argparse.Namespace) -> int:
    """``studio sweep RECIPE key=a,b ...`` starts a grid; ``studio sweep stop NAME`` stops one."""
    if args.recipe == "stop":
        return _sweep_stop(args.grid)
    if args.recipe == "rank":  # `studio sweep rank NAME [--rank-by eval:TASK/METRIC]`
        if len(args.grid) != 1:
            raise StudioError("usage: studio sweep rank NAME [--rank-by eval:TASK/METRIC] [--json]")
        args.sweep = args.grid[0]
        return cmd_runs_compare_sweep(args)
    from lorastudio.train.launch.compare import format_value
    from lorastudio.train.launch.sweep import plan_sweep, start_sweep

    plan = plan_sweep(args.recipe, args.grid, name=args.name, max_points=args.max)
    cut = (
        f" (the first {len(plan.points)} of {plan.grid_size}, --max)"
        if len(plan.points) < plan.grid_size
        else ""
    )
    print(
        f"sweep {plan.name}: {len(plan.points)} runs of {plan.recipe}{cut}, "
        f"{' x '.join(f'{a.key} ({len(a.values)})' for a in plan.axes)}",
        file=sys.stderr,
    )
    for point in plan.points:
        print("  " + "  ".join(f"{k}={format_value(v)}" for k, v in point.fields.items()), file=sys.stderr)
    if not args.yes:
        if not sys.stdin.isatty():
            print("studio: starting a sweep needs --yes when not asked at a terminal", file=sys.stderr)
            return 2
        if input(f"start {len(plan.points)} runs? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing started", file=sys.stderr)
            return 1
    started = start_sweep(plan)
    for run_dir in started:
        print(run_dir.name)
    print(
        f"queued {len(started)} runs, one training at a time per device; `studio runs compare --sweep "
        f"{plan.name}` ranks them, `studio sweep stop {plan.name}` stops them",
        file=sys.stderr,
    )
    return 0


def _sweep_stop(names: list[str]) -> int:
    from lorastudio.train.launch.sweep import stop_sweep

    if len(names) != 1:
        raise StudioError("usage: studio sweep stop NAME")
    stopped, ended = stop_sweep(names[0])
    for path in stopped:
        print(f"asked {path.name} to stop")
    print(f"sweep {names[0]}: {len(stopped)} asked to stop, {len(ended)} already ended", file=sys.stderr)
    return 0


def cmd_runs_compare_sweep(args: argparse.Namespace) -> int:
    from lorastudio.evaluate.scores import parse_rank_by, rank_by_eval
    from lorastudio.train.launch.compare import format_duration, format_value
    from lorastudio.train.launch.sweep import compare_sweep

    metric = parse_rank_by(args.rank_by) if getattr(args, "rank_by", None) else None
    ranking = compare_sweep(args.sweep)
    scores: dict[str, float | None] = {}
    if metric is not None:
        ranking, scores = rank_by_eval(ranking, metric)
    if args.json:
        data = ranking.to_json()
        if metric is not None:
            data["runs"] = [{**r, "eval_score": scores.get(r["name"])} for r in data["runs"]]
        print(dumps(data, indent=2))
        return 0
    from rich.table import Table

    def num(value: float | None) -> str:
        return f"{value:.4f}" if value is not None else "-"

    console = _console()
    if not sys.stdout.isatty():
        console.width = max(console.width, 160)
    by = {"best_eval_loss": "best eval loss", "final_loss": "final train loss (no eval loss logged)"}.get(
        ranking.ranked_by, f"{ranking.ranked_by} (latest evaluation, higher first)"
    )
    table = Table(
        box=None, pad_edge=False, title=f"sweep {ranking.name}, ranked by {by}", title_justify="left"
    )
    extra = [metric] if metric is not None else []
    for column in (
        "#",
        "run",
        *ranking.keys,
        *extra,
        "status",
        "step",
        "best eval",
        "final loss",
        "duration",
    ):
        table.add_column(column, no_wrap=column == "run")
    for entry in ranking.entries:
        r = entry.result
        table.add_row(
            "★" if entry.best else str(entry.rank or "-"),
            r.name,
            *(format_value(entry.fields.get(k)) for k in ranking.keys),
            *([num(scores.get(r.name))] if metric is not None else []),
            r.status,
            f"{r.step}/{r.max_steps or '?'}",
            num(r.best_eval_loss),
            num(r.final_loss),
            format_duration(r.duration_s),
        )
    console.print(table)
    return 0
