"""``studio runs`` and its subcommands: list, delete, note, compare and a run's sample replies."""

from __future__ import annotations

import argparse
import sys
import time

from lorastudio.cli.console import _console
from lorastudio.cli.sweep_cmds import cmd_runs_compare_sweep
from lorastudio.errors import StudioError
from lorastudio.jsonout import dumps


def cmd_runs(args: argparse.Namespace) -> int:
    from rich.text import Text

    from lorastudio.paths import runs_dir
    from lorastudio.train.launch.manage import read_note, sort_runs
    from lorastudio.train.launch.runs import list_runs

    runs = sort_runs(list_runs(), args.sort)
    if args.json:
        print(dumps([{**r.to_json(), "note": read_note(r.path) or None} for r in runs], indent=2))
        return 0
    from rich.table import Table

    # Names are never cut: scripts and people copy them into `studio attach/chat/resume NAME`.
    width = max([len(r.name) for r in runs] + [4])
    table = Table(box=None, pad_edge=False)
    table.add_column("name", no_wrap=True, min_width=width)
    for column in ("recipe", "status", "step", "loss", "started", "note"):
        table.add_column(column, overflow="fold")
    for r in runs:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "?"
        table.add_row(
            r.name,
            Text(r.recipe),
            r.status,
            f"{r.step}/{r.max_steps or '?'}",
            r.progress,
            started,
            Text(read_note(r.path)),  # the user's words, never read as markup
        )
    console = _console()
    if not sys.stdout.isatty():
        console.width = 1000  # a pipe has no width to fit: one line per run, for grep and cut
    if not runs:
        print(f"no runs yet in {runs_dir()}", file=sys.stderr)
        return 0
    console.print(table)
    for r in runs:  # which file, and how to mend it (damage.py)
        if r.status == "damaged":
            print(f"{r.name}: {r.cause}", file=sys.stderr)
    print(f"in {runs_dir()}  (`latest` names the newest run)", file=sys.stderr)
    return 0


def cmd_runs_delete(args: argparse.Namespace) -> int:
    from lorastudio.train.launch.manage import delete_run
    from lorastudio.train.run.runref import resolve_run

    run_dir = resolve_run(args.run, exact="delete").path  # never `latest`, a recipe's name or a prefix
    if not args.yes:
        if not sys.stdin.isatty():
            print(
                f"studio: deleting {run_dir.name} needs --yes when not asked at a terminal", file=sys.stderr
            )
            return 2
        answer = input(f"delete {run_dir.name} and everything in {run_dir}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return 1
    print(delete_run(run_dir))
    return 0


def cmd_runs_note(args: argparse.Namespace) -> int:
    from lorastudio.train.launch.manage import read_note, write_note
    from lorastudio.train.launch.runs import find_run

    run_dir = find_run(args.run)
    if args.clear or args.text:
        write_note(run_dir, "" if args.clear else " ".join(args.text))
    note = read_note(run_dir)
    print(f"{run_dir.name}: {note}" if note else f"{run_dir.name}: (no note)")
    return 0


def cmd_runs_compare(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.text import Text

    from lorastudio.train.launch.compare import compare_runs, format_duration, format_value
    from lorastudio.train.launch.runs import find_run

    if getattr(args, "sweep", None):
        if args.runs:
            raise StudioError("runs compare: give RUN names or --sweep NAME, not both")
        return cmd_runs_compare_sweep(args)

    if getattr(args, "rank_by", None):
        raise StudioError("runs compare: --rank-by ranks a sweep's runs; give --sweep NAME")
    from lorastudio.cli.eval_cmds import print_run_scores, runs_compare_json

    comparison = compare_runs([find_run(name) for name in args.runs])
    paths = [r.path for r in comparison.runs]
    if args.json:
        print(dumps(runs_compare_json(comparison.to_json(), paths), indent=2))
        return 0
    from rich.table import Table

    def num(value: float | None, spec: str = ".4f") -> str:
        return format(value, spec) if value is not None else "-"

    console = _console()
    if not sys.stdout.isatty():
        console.width = max(console.width, 160)
    results = Table(box=None, pad_edge=False, title="results", title_justify="left")
    for column in (
        "run",
        "status",
        "step",
        "final loss",
        "best loss",
        "eval loss",
        "best eval",
        "tok/s",
        "duration",
        "peak VRAM",
    ):
        results.add_column(column, no_wrap=column == "run")
    for r in comparison.runs:
        vram = (
            f"{r.peak_vram_mb:.0f} MB"
            if r.peak_vram_mb
            else (f"- (RSS {r.peak_rss_mb:.0f} MB)" if r.peak_rss_mb else "-")
        )
        results.add_row(
            r.name,
            r.status,
            f"{r.step}/{r.max_steps or '?'}",
            num(r.final_loss),
            num(r.best_loss),
            num(r.eval_loss),
            num(r.best_eval_loss),
            num(r.tokens_per_s, ".0f"),
            format_duration(r.duration_s),
            vram,
        )
    console.print(results)
    if comparison.loss_caveat:
        console.print(f"[yellow]note: {escape(comparison.loss_caveat)}[/]", highlight=False)
    diff = Table(box=None, pad_edge=False, title="recipe fields that differ", title_justify="left")
    diff.add_column("field", no_wrap=True)
    for r in comparison.runs:
        diff.add_column(r.name, overflow="fold")
    for name, values in comparison.differing.items():
        diff.add_row(name, *(Text(format_value(v)) for v in values))  # a template may hold "[/INST]"
    if comparison.differing:
        console.print(diff)
    else:
        console.print("the runs' recipes are identical")
    print_run_scores(console, [r.name for r in comparison.runs], paths)
    return 0


def cmd_runs_samples(args: argparse.Namespace) -> int:
    """The run's sample replies, round by round (words changed since the round before marked)."""
    from lorastudio.train.launch.manage import intact_state
    from lorastudio.train.launch.runs import find_run
    from lorastudio.train.run.samplelog import SampleHistory, round_label, word_diff

    run_dir = find_run(args.run)
    history = SampleHistory.of(intact_state(run_dir).samples)
    if args.json:
        print(dumps({"run": run_dir.name, **history.to_json()}, indent=2))
        return 0
    if not len(history):
        print(
            f"{run_dir.name}: no sample replies (train.samples off, or the run has not reached its first step)",
            file=sys.stderr,
        )
        return 0
    from rich.text import Text

    console = _console()
    rounds = history.rounds[-1:] if args.latest else history.rounds
    for event in rounds:
        at = history.rounds.index(event)
        console.print(Text(f"{round_label(event)} · {event.seconds or 0.0:.1f} s", style="bold reverse"))
        for prompt, reply in zip(event.prompts, event.replies, strict=False):
            console.print(Text(f"> {prompt}", style="bold"))
            before = history.previous(at, prompt)
            text, removed = Text(), []
            for op, piece in word_diff(before, reply) if before is not None else [("same", reply)]:
                if op == "added":  # piped output marks the changes as text
                    text.append(
                        piece if console.is_terminal else f"{{+{piece.strip()}+}} ", style="bold green"
                    )
                elif op == "removed":
                    removed.append(piece if console.is_terminal else f"[-{piece}-]")
                else:
                    text.append(piece)
            console.print(text)
            if removed:
                console.print(Text("  − " + " · ".join(removed), style="red strike"))
        console.print()
    total = sum(e.seconds or 0.0 for e in history.rounds)
    print(f"{len(history)} rounds, {total:.1f} s spent sampling", file=sys.stderr)
    return 0
