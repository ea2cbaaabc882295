"""The ``studio`` command: the TUI with no arguments, and a scriptable twin for every screen."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from lorastudio import __version__
from lorastudio.cliargs import parse, require_terminal, takes_overrides
from lorastudio.errors import StudioError
from lorastudio.evaluate.intraining import install as install_eval_tasks
from lorastudio.jsonout import dumps

install_eval_tasks()  # train.eval_tasks checked before a run directory (train cannot import evaluate)


def _progress_printer(label: str):
    last = {"t": 0.0}

    def report(fraction: float, message: str) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - last["t"] < 0.2:
            return
        last["t"] = now
        bar = "#" * int(fraction * 30)
        end = "\n" if fraction >= 1.0 or not sys.stderr.isatty() else ""
        sys.stderr.write(f"\r{label} [{bar:<30}] {fraction * 100:3.0f}% {message[:90]:<60}{end}")
        sys.stderr.flush()

    return report


def _console():
    from rich.console import Console

    return Console(no_color="NO_COLOR" in os.environ, highlight=False)


# -- recipes --------------------------------------------------------------------------------------
def cmd_recipes(args: argparse.Namespace) -> int:
    from lorastudio.registry import load_all

    entries = load_all()
    if args.json:
        out = []
        for e in entries:
            r = e.recipe
            out.append(
                {
                    "name": e.file.name,
                    "path": str(e.file.path),
                    "origin": e.file.origin,
                    "model": r.model.name if r else None,
                    "data": r.data.source if r else None,
                    "method": r.method if r else None,
                    "error": e.error,
                }
            )
        print(dumps(out, indent=2))
        return 0
    from rich.table import Column, Table
    from rich.text import Text

    # Names are what the other commands take: never cut. Where each file is goes to --json; the folder of the
    # user's own recipes closes the list, so a new user learns where to put one.
    width = max((len(e.file.name) for e in entries), default=4)
    table = Table(
        Column("name", no_wrap=True, min_width=width),
        "model",
        "data",
        "method",
        "where",
        box=None,
        pad_edge=False,
    )
    for e in entries:
        r = e.recipe
        where = e.file.origin
        if r is None:
            first = e.error.splitlines()[0] if e.error else ""
            table.add_row(e.file.name, Text("invalid", style="red"), Text(first), "", Text(str(e.file.path)))
        else:
            table.add_row(
                e.file.name,
                Text(r.model.name),
                Text(_short_source(r.data.source, e.file.path.parent)),
                r.method,
                Text(where),
            )
    from lorastudio.paths import user_recipes_dir

    console = _console()
    console.print(table)
    home = str(Path.home())
    folder = str(user_recipes_dir())
    folder = "~" + folder[len(home) :] if folder.startswith(home + os.sep) else folder
    console.print(Text(f"own recipes: {folder}/*.yaml (paths: studio recipes --json)"), soft_wrap=True)
    return 0


def _short_source(source: str, folder: Path) -> str:
    """A data file beside the recipe as its recipe names it (``data/x.jsonl``); other sources kept to 50 chars."""
    try:
        return str(Path(source).relative_to(folder))
    except ValueError:
        return source if len(source) < 50 else "…" + source[-48:]


def cmd_recipe_show(args: argparse.Namespace) -> int:
    from lorastudio.registry import dump, load

    print(dump(load(args.name, args.overrides)), end="")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from lorastudio.registry import discover, load_file

    files = discover([Path(f) for f in args.files])
    bad = 0
    for name in args.files:
        try:
            recipe = load_file(Path(name), args.overrides, files=files)
        except StudioError as exc:
            print(exc, file=sys.stderr)
            bad += 1
            continue
        from lorastudio.data.checks import offline_problems
        from lorastudio.train.trlneeds import trl_problems

        problems = offline_problems(recipe, name) + [f"{name}: {p}" for p in trl_problems(recipe)]
        if recipe.grpo is not None:  # each user reward file imported and its function found, as a run would
            from lorastudio.train.rewards import RewardError, check_rewards

            try:
                check_rewards(recipe.grpo.rewards, recipe.grpo.reward_timeout)
            except RewardError as exc:
                problems.append(f"{name}: {exc}")
        from lorastudio.train.rundir import RECIPE_CHECKS

        for check in RECIPE_CHECKS:  # as create_run makes them: train.eval_tasks' names
            try:
                check(recipe)
            except StudioError as exc:
                problems.append(f"{name}: {exc}")
        for problem in problems:
            print(problem, file=sys.stderr)
        bad += bool(problems)
        if not problems:
            print(f"{name}: ok")
    return 1 if bad else 0


# -- preview --------------------------------------------------------------------------------------
def _preview_method(args: argparse.Namespace, recipe: Any) -> int:
    """``studio preview`` for dpo/kto/orpo/grpo: prompt (masked) and each reply's trained tokens, pair statistics."""
    from rich.markup import escape

    from lorastudio.data.formats import SkipRow
    from lorastudio.data.preference import encode_rows, method_encoder, method_sample_json, sample_parts
    from lorastudio.data.tokenview import legend, render

    encoder, rows = method_encoder(recipe)
    table = rows.rows
    samples: list[Any] = []
    for index in range(args.index, min(len(table), args.index + args.count)):
        try:
            samples.append((index, encoder.encode_row(table[index])))
        except SkipRow as skip:
            samples.append({"index": index, "skipped": str(skip)})
    _, stats = encode_rows(encoder, table)
    rewards = _reward_names(recipe)
    if args.json:
        out = [
            s if isinstance(s, dict) else method_sample_json(encoder.tokenizer, s[1], s[0]) for s in samples
        ]
        print(
            dumps(
                {
                    "recipe": recipe.name,
                    "method": recipe.train.method,
                    "format": encoder.format,
                    "template": encoder.template_name,
                    "samples": out,
                    "stats": stats.to_json(),
                    **({"rewards": rewards} if rewards else {}),
                },
                indent=2,
            )
        )
        return 0
    console = _console()
    no_color = "NO_COLOR" in os.environ
    console.print(
        f"[bold]{escape(recipe.name)}[/]  method: {recipe.train.method}  format: {encoder.format} "
        f"(template {escape(encoder.template_name)})"
    )
    console.print(legend(no_color))
    for item in samples:
        if isinstance(item, dict):
            console.print(f"\n[bold]sample {item['index']}[/]: skipped ({escape(str(item['skipped']))})")
            continue
        index, sample = item
        for part, items in sample_parts(encoder.tokenizer, sample).items():
            console.print(f"\n[bold]sample {index} · {part}[/] ({len(items)} tokens)")
            console.print(render(items, no_color=no_color))
    if rewards:
        console.print(
            "\n[bold]rewards[/]: " + escape(", ".join(f"{r['name']} x{r['weight']:g}" for r in rewards))
        )
    data = stats.to_json()
    console.print(
        f"\nrows {data['rows']}  used {data['used']}  skipped {sum(data['skipped'].values())} "
        f"{data['skipped'] or ''}  prompts truncated {data['prompt_truncated']}  "
        f"replies truncated {data['reply_truncated']}"
    )
    return 0


def _reward_names(recipe: Any) -> list[dict[str, Any]]:
    if recipe.grpo is None:
        return []
    from lorastudio.train.rewards import describe

    return [
        {"name": describe(r), "weight": r.weight, **({"file": r.python} if r.python else {})}
        for r in recipe.grpo.rewards
    ]


def cmd_preview(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from lorastudio.data.encode import Encoded
    from lorastudio.data.fastencode import compute_stats
    from lorastudio.data.formats import SkipRow
    from lorastudio.data.prepare import prepare
    from lorastudio.data.tokenview import legend, pieces, render, sample_json
    from lorastudio.registry import load

    recipe = load(args.recipe, args.overrides)
    if not recipe.train.supervised:
        return _preview_method(args, recipe)
    prepared = prepare(recipe, _progress_printer("preparing model") if not args.json else None)
    rows = prepared.rows.rows
    samples: list[dict[str, object] | tuple[int, Encoded]] = []
    for index in range(args.index, min(len(rows), args.index + args.count)):
        try:
            enc = prepared.encoder.encode_row(rows[index], index)
        except SkipRow as skip:
            samples.append({"index": index, "skipped": str(skip)})
            continue
        samples.append((index, enc))
    stats = compute_stats(prepared.encoder, rows)
    if args.json:
        out = [
            s if isinstance(s, dict) else sample_json(pieces(prepared.tokenizer, s[1]), s[1], s[0])
            for s in samples
        ]
        print(
            dumps(
                {
                    "recipe": recipe.name,
                    "format": prepared.encoder.format,
                    "template": prepared.encoder.template_name,
                    "samples": out,
                    "stats": stats.to_json(),
                },
                indent=2,
            )
        )
        return 0
    console = _console()
    no_color = "NO_COLOR" in os.environ
    console.print(
        f"[bold]{escape(recipe.name)}[/]  format: {prepared.encoder.format} "
        f"(template {escape(prepared.encoder.template_name)})"
    )
    console.print(legend(no_color))
    for item in samples:
        if isinstance(item, dict):
            console.print(f"\n[bold]sample {item['index']}[/]: skipped ({escape(str(item['skipped']))})")
            continue
        index, enc = item
        console.print(
            f"\n[bold]sample {index}[/]: {len(enc.input_ids)} tokens, {enc.trained_count} trained"
            f"{', truncated' if enc.truncated else ''}"
        )
        for note in enc.notes:  # how the template rendered it: think blocks, history it rewrote
            console.print(f"  · {note}", style="dim", markup=False)
        console.print(render(pieces(prepared.tokenizer, enc), no_color=no_color))
    data = stats.to_json()
    console.print(
        f"\nrows {data['rows']}  used {data['used']}  skipped {sum(data['skipped'].values())} "
        f"{data['skipped'] or ''}  truncated {data['truncated']}  trained ratio {data['trained_ratio']:.1%}  "
        f"length p50/p90/p99/max {data['length']['p50']}/{data['length']['p90']}/"
        f"{data['length']['p99']}/{data['length']['max']}"
    )
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Encode the recipe's data into the prepared-data cache (as axolotl's ``preprocess``) and print the stats."""
    from lorastudio.data.cacheindex import lookup
    from lorastudio.registry import load

    recipe = load(args.recipe, args.overrides)
    started = time.monotonic()
    if not recipe.train.supervised:  # encoded by the method's one path (data/preference.py) and cached
        from lorastudio.data.preference import prepare_method_data

        data = prepare_method_data(recipe, use_cache=not args.force)
        summary: dict[str, Any] = {
            "recipe": recipe.name,
            "method": recipe.train.method,
            "format": data.encoder.format,
            "template": data.encoder.template_name,
            "train_rows": len(data.train),
            "eval_rows": len(data.eval),
            "cached": data.cached is not None,
            "stats": data.stats.to_json(),
            "seconds": round(time.monotonic() - started, 2),
        }
        print(
            dumps(summary, indent=2)
            if args.json
            else f"{recipe.name}: {recipe.train.method} {data.encoder.format}, {len(data.train)} train rows, "
            f"{len(data.eval)} eval rows, skipped {dict(data.stats.skipped) or 0}"
            f"{' (from the cache)' if data.cached else ''} ({summary['seconds']} s)"
        )
        return 0
    hit = None if args.force else lookup(recipe)  # a few stat calls: no tokenizer, no transformers
    if hit is not None:
        meta = hit.meta
        summary = _prepare_summary(
            recipe,
            meta["format"],
            meta["template"],
            hit.path,
            True,
            meta["train_rows"],
            meta["eval_rows"],
            hit.stats,
        )
    else:
        summary = _prepare_now(recipe, args)
    summary["seconds"] = round(time.monotonic() - started, 2)
    if args.json:
        print(dumps(summary, indent=2))
        return 0
    stats = summary["stats"]
    print(
        f"{recipe.name}: format {summary['format']} (template {summary['template']}), "
        f"{'read from cache' if summary['from_cache'] else 'encoded'} in {summary['seconds']:.1f} s"
    )
    print(
        f"rows {stats['rows']}  used {stats['used']}  skipped {sum(stats['skipped'].values())} "
        f"{stats['skipped'] or ''}  truncated {stats['truncated']}  tokens {stats['tokens']}  "
        f"trained ratio {stats['trained_ratio']:.1%}  length p50/p90/p99/max {stats['length']['p50']}/"
        f"{stats['length']['p90']}/{stats['length']['p99']}/{stats['length']['max']}"
    )
    print(
        f"train {summary['train_rows']} sequences, eval {summary['eval_rows']}{' (packed)' if recipe.train.packing else ''}"
    )
    print(f"cache: {summary['cache']}")
    return 0


def _prepare_now(recipe: Any, args: argparse.Namespace) -> dict[str, Any]:
    from lorastudio.data.cache import prepare_data
    from lorastudio.data.prepare import prepare

    # This process only encodes and exits (no fork follows), so the tokenizer may use every core.
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    prepared = prepare(recipe, _progress_printer("building tiny model") if not args.json else None)
    total = max(len(prepared.rows.rows), 1)
    bar = None if args.json else _progress_printer("encoding")

    def progress(stats) -> None:
        if bar is not None:
            done = stats.used + sum(stats.skipped.values())
            bar(min(done / total, 1.0) if not stats.done else 1.0, f"{done:,} rows")

    waiting = None if args.json else _progress_printer("waiting")  # another process encodes this key
    data = prepare_data(
        recipe, prepared=prepared, progress=progress, use_cache=not args.force, waiting=waiting
    )
    return _prepare_summary(
        recipe,
        data.format,
        data.template,
        data.path,
        data.from_cache,
        len(data.train),
        len(data.eval) if data.eval is not None else 0,
        data.stats,
    )


def _prepare_summary(
    recipe: Any,
    fmt: str,
    template: str,
    path: Path,
    from_cache: bool,
    train_rows: int,
    eval_rows: int,
    stats: Any,
) -> dict[str, Any]:
    """What ``studio prepare`` prints (``--json``: as is), whether the entry was read or built."""
    return {
        "recipe": recipe.name,
        "format": fmt,
        "template": template,
        "cache": str(path),
        "from_cache": from_cache,
        "train_rows": train_rows,
        "eval_rows": eval_rows,
        "stats": stats.to_json(),
    }


# -- train / runs -----------------------------------------------------------------------------------
def _devices_arg(text: str) -> int | str:
    if text == "all" or (text.isdigit() and int(text) >= 1):
        return "all" if text == "all" else int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: give a number of devices (1, 2, ...) or 'all'")


def cmd_train(args: argparse.Namespace) -> int:
    from lorastudio.registry import load
    from lorastudio.train.runs import find_run, start_run

    _check_slurm_flags(args)
    if args.resume is None and (
        args.slurm or args.nodes is not None or args.node_rank is not None or args.main_address
    ):
        return _train_on_nodes(args)  # several machines, or a Slurm job (train/nodes.py, train/slurm.py)
    if args.resume is not None:  # "" is refused by the resolver, not read as no --resume
        from lorastudio.train.manage import resume_run

        run_dir = find_run(args.resume)
        resume_run(run_dir, devices=args.devices)
    else:
        devices = [f"train.devices={args.devices}"] if args.devices is not None else []
        start = _from_adapter(args.start_from) if args.start_from is not None else []  # "" is refused
        recipe = load(args.recipe, [*args.overrides, *devices, *start])
        run_dir = start_run(recipe, start=not args.no_start)  # refuses what this machine cannot train first
        if args.no_start:
            print(run_dir)
            return 0
    print(f"run: {run_dir}", file=sys.stderr)
    if args.detach:
        print(run_dir.name)
        return 0
    if sys.stdout.isatty() and sys.stdin.isatty():
        from lorastudio.app import run_app

        run_app(attach=run_dir)
        return 0
    return follow(run_dir)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _check_slurm_flags(args: argparse.Namespace) -> None:
    """Slurm's own flags mean nothing without --slurm: refused rather than silently ignored."""
    given = [
        flag
        for flag, value in (
            ("--partition", args.partition),
            ("--time", args.time),
            ("--account", args.account),
            ("--requeue", args.requeue or None),
        )
        if value is not None
    ]
    if given and not args.slurm:
        raise StudioError(f"{', '.join(given)}: Slurm settings, for --slurm runs only")


def _train_on_nodes(args: argparse.Namespace) -> int:
    """``--slurm``: submit a job; ``--nodes N --node-rank R --main-address H:P``: start this node's supervisor."""
    from lorastudio.registry import load
    from lorastudio.train.nodes import node_log, node_spec
    from lorastudio.train.runs import create_run, start_node

    overrides = [
        *args.overrides,
        *([f"train.devices={args.devices}"] if args.devices is not None else []),
        *([f"train.nodes={args.nodes}"] if args.nodes is not None else []),  # --nodes 0 refused as the field
        *([f"train.devices={args.gpus_per_node}"] if args.gpus_per_node is not None else []),
    ]
    if args.slurm:
        from dataclasses import replace

        from lorastudio.train.slurm import SlurmOptions, submit

        options = SlurmOptions(  # checked against Slurm's syntax before any run directory exists
            gpus_per_node=args.gpus_per_node,
            partition=args.partition,
            time=args.time,
            account=args.account,
            requeue=args.requeue,
        )
        recipe = load(args.recipe, overrides)
        run_dir = create_run(recipe)
        job_id = submit(run_dir, replace(options, nodes=recipe.train.nodes))
        print(f"run: {run_dir}\nSlurm job {job_id}: {run_dir / 'slurm.sbatch'}", file=sys.stderr)
    elif args.node_rank:  # a peer: node 0, started before or after it, names its run (train/rendezvous.py)
        from lorastudio.train.rendezvous import peer_run

        run_dir, spec = peer_run(args.recipe, overrides, args.nodes, args.node_rank, args.main_address, _say)
        pid = start_node(run_dir, spec)
        print(
            f"node {spec.node_rank} of {run_dir.name} started (supervisor pid {pid}); its output: "
            f"{node_log(run_dir, spec.node_rank)}"
        )
        return 0
    else:
        recipe = load(args.recipe, overrides)
        spec = node_spec(args.nodes, args.node_rank, args.main_address, recipe.train.nodes)
        run_dir = create_run(recipe)
        start_node(run_dir, spec)
        print(f"run: {run_dir}", file=sys.stderr)
        if spec.multi:
            from lorastudio.train.rendezvous import hosting_line

            _say(hosting_line(spec))
    if args.detach or args.slurm and not (sys.stdout.isatty() and sys.stdin.isatty()):
        print(run_dir.name)
        return 0
    if sys.stdout.isatty() and sys.stdin.isatty():
        from lorastudio.app import run_app

        run_app(attach=run_dir)
        return 0
    return follow(run_dir)


def _from_adapter(target: str) -> list[str]:
    """``--from RUN[@best|@checkpoint-N]``: the override starting the new run from that run's adapter (which run
    and adapter that is goes to stderr: a recipe's name or ``latest`` takes its newest run's final adapter)."""
    from lorastudio.train.methods import start_adapter

    folder, said = start_adapter(target)
    print(f"--from {target}: {said}", file=sys.stderr)
    return [f"model.adapter={folder}"]


def follow(run_dir: Path, poll_s: float = 0.5) -> int:
    """Print progress lines until the run ends (for scripts and CI logs)."""
    from lorastudio.train.events import TERMINAL_STATUSES, EvalEvent, LogEvent, MetricsEvent, StatusEvent
    from lorastudio.train.runs import DIED_CAUSE, effective_status, latest_checkpoint, read_meta
    from lorastudio.train.runstate import RunReader

    reader, last_status = RunReader(run_dir), None
    state = reader.state
    while True:
        for event in reader.update():
            if isinstance(event, StatusEvent) and state.status != last_status:
                last_status = state.status
                print(f"status: {state.status}" + (f" ({state.cause})" if state.cause else ""), flush=True)
            elif isinstance(event, MetricsEvent) and event.loss is not None:
                print(
                    f"step {state.step}/{state.max_steps} loss {event.loss:.4f}"
                    f" lr {event.learning_rate or 0:.2e}"
                    + (f" tok/s {event.tokens_per_s:.0f}" if event.tokens_per_s else ""),
                    flush=True,
                )
            elif isinstance(event, EvalEvent) and event.eval_loss is not None:
                step = event.step if event.step is not None else state.step
                print(f"step {step} eval loss {event.eval_loss:.4f}", flush=True)
            elif isinstance(event, LogEvent) and (event.message or "").startswith("model: "):
                print(event.message, flush=True)  # first-use fetch / dequantization progress
        status = effective_status(state, read_meta(run_dir), run_dir)
        if status in TERMINAL_STATUSES:
            if status == "died":
                print(f"status: died ({DIED_CAUSE})", flush=True)
            if state.hints:
                print("to lower memory: " + "; ".join(state.hints), file=sys.stderr)
                if latest_checkpoint(run_dir) is not None:  # it saved one first: continue from it, smaller
                    print(
                        f"to continue from its checkpoint with a smaller batch: studio resume {run_dir.name} "
                        "train.batch_size=N train.gradient_accumulation=M",
                        file=sys.stderr,
                    )
            return 0 if status == "done" else 1
        time.sleep(poll_s)


def cmd_runs(args: argparse.Namespace) -> int:
    from rich.text import Text

    from lorastudio.paths import runs_dir
    from lorastudio.train.manage import read_note, sort_runs
    from lorastudio.train.runs import list_runs

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
    from lorastudio.train.manage import delete_run
    from lorastudio.train.runref import resolve_run

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
    from lorastudio.train.manage import read_note, write_note
    from lorastudio.train.runs import find_run

    run_dir = find_run(args.run)
    if args.clear or args.text:
        write_note(run_dir, "" if args.clear else " ".join(args.text))
    note = read_note(run_dir)
    print(f"{run_dir.name}: {note}" if note else f"{run_dir.name}: (no note)")
    return 0


def cmd_runs_compare(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.text import Text

    from lorastudio.train.compare import compare_runs, format_duration, format_value
    from lorastudio.train.runs import find_run

    if getattr(args, "sweep", None):
        if args.runs:
            raise StudioError("runs compare: give RUN names or --sweep NAME, not both")
        return cmd_runs_compare_sweep(args)

    if getattr(args, "rank_by", None):
        raise StudioError("runs compare: --rank-by ranks a sweep's runs; give --sweep NAME")
    from lorastudio.evalcli import print_run_scores, runs_compare_json

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
    from lorastudio.train.manage import intact_state
    from lorastudio.train.runs import find_run
    from lorastudio.train.samplelog import SampleHistory, round_label, word_diff

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


def cmd_resume(args: argparse.Namespace) -> int:
    from lorastudio.train.manage import resume_run
    from lorastudio.train.runs import find_run

    run_dir = find_run(args.run)
    pid, checkpoint = resume_run(run_dir, overrides=args.overrides)
    where = f"from {checkpoint.name}" if checkpoint else "from step 0 (no checkpoint was saved)"
    if args.overrides:
        where += f" with {' '.join(args.overrides)}"
    from lorastudio.train.runs import read_meta

    who = f"Slurm job {pid}" if read_meta(run_dir).get("slurm") else f"worker pid {pid}"  # train/slurm.py
    print(f"resuming {run_dir.name} {where} ({who}); `studio attach {run_dir.name}` to watch")
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    from lorastudio.app import run_app
    from lorastudio.train.runs import find_run

    run_dir = find_run(args.run)  # a bad reference is named first, terminal or not
    require_terminal(
        "attach",
        "the Monitor",
        "without one `studio runs --json` gives each run's status, step and loss",
    )
    run_app(attach=run_dir)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from lorastudio.train.runref import resolve_run
    from lorastudio.train.runs import stop_run

    run_dir = resolve_run(args.run, exact="stop").path
    if stop_run(run_dir):
        print(f"asked {run_dir.name} to save and stop")
        return 0
    print(f"{run_dir.name}: no live worker", file=sys.stderr)
    return 1


# -- chat -----------------------------------------------------------------------------------------
def _chat_image(args: argparse.Namespace, with_overrides: Any) -> int:
    from dataclasses import asdict

    from lorastudio.chat.engine import engine_for
    from lorastudio.chat.vision import image_reply
    from lorastudio.data.vision import open_image

    # a missing image is named before the run is looked up
    open_image(Path(args.image).expanduser(), "--image")
    chat = engine_for(args.target, base_only=args.base).recipe.chat
    sampling = with_overrides(
        chat,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        greedy=True if args.greedy else None,
    )
    reply = image_reply(args.target, args.image, args.prompt, sampling, args.base, args.system)
    print(dumps(asdict(reply)) if args.json else reply.text)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from lorastudio.chat.endpoint import is_endpoint, open_engine
    from lorastudio.chat.engine import reply_json, with_overrides

    if args.target and args.target.startswith("serve:"):  # a server studio started: its endpoint
        from lorastudio.serve.server import served_target

        args.target, args.model = served_target(args.target, args.model)
    prompts = _read_prompts(args.prompts) if args.prompts else None
    interactive = args.prompt is None and prompts is None
    if interactive and args.mark:
        raise StudioError(
            f"--mark {args.mark}: needs --prompt or --prompts (in the Chat screen, + and - mark a reply)"
        )
    if args.save_to and not (args.mark or interactive):  # nothing would be saved: not silently dropped
        raise StudioError(
            f"--save-to {args.save_to}: keeps the replies marked with --mark good|bad; add --mark "
            "(or leave out --prompt and --prompts to mark replies in the Chat screen)"
        )
    if args.mark or (interactive and args.save_to):
        _feedback_log(args)  # a destination that cannot be written is refused before any reply is made
    if args.image and args.prompt is None:
        raise StudioError(
            "--image: give the question with --prompt TEXT (the Chat screen takes no images yet)"
        )
    if interactive:
        from lorastudio.app import run_app

        require_terminal(
            "chat without --prompt",
            "the Chat screen",
            "without one use --prompt TEXT or --prompts FILE (--mark good|bad saves the replies as feedback)",
        )
        if args.model or args.api_key_env or is_endpoint(args.target):
            open_engine(args.target, args.base, args.model, args.api_key_env)  # a bad flag: refused here
        run_app(
            chat="latest" if args.target is None else args.target,
            chat_base=args.base,
            save_to=args.save_to,
            chat_endpoint=(args.model, args.api_key_env),
        )
        return 0
    if args.image:  # a vision-language model's run: one prompt about one image (studio/chat/vision.py)
        return _chat_image(args, with_overrides)
    engine = open_engine(args.target, args.base, args.model, args.api_key_env)
    if engine.source:  # which run and checkpoint `latest`, RUN@latest or RUN@best took
        print(f"chat: {engine.source}", file=sys.stderr)
    engine.load(None if args.json else _progress_printer("loading"))
    sampling = with_overrides(
        engine.recipe.chat,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        min_p=args.min_p,
        max_new_tokens=args.max_new_tokens,
        repetition_penalty=args.repetition_penalty,
        greedy=True if args.greedy else None,
        enable_thinking=False if args.no_thinking else None,
    )
    system = args.system or engine.recipe.chat.system_prompt or engine.recipe.data.system_prompt

    def emit(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    for prompt in prompts if prompts is not None else [args.prompt]:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        reply = engine.generate(messages, sampling, on_text=None if args.json else emit)
        if args.json:
            print(
                dumps({**({"prompt": prompt} if prompts is not None else {}), **reply_json(reply)}),
                flush=True,
            )
        else:
            sys.stdout.write("\n")
            sys.stdout.flush()
        if args.mark:
            print(_save_feedback(args, messages, reply.text), file=sys.stderr)
        if not args.json:
            print(
                f"[{reply.tokens} tokens, {reply.tokens_per_s:.1f} tok/s, first token "
                f"{(reply.first_token_s or 0) * 1000:.0f} ms, {_reply_model(engine, reply.adapter)}, "
                f"{reply.finish_reason}]",
                file=sys.stderr,
            )
    return 0


def _reply_model(engine: Any, adapter: bool) -> str:
    """Which model answered, for the stats line: a served one by its name, else tuned or base."""
    name = getattr(engine, "model_name", None)
    return f"served {name}" if name else "tuned" if adapter else "base"


def _feedback_log(args: argparse.Namespace) -> Any:
    """The feedback file of ``--mark``/``--save-to``, refused (naming it) when it could not be written."""
    from lorastudio.chat.feedback import FeedbackLog, default_path, destination_problem

    path = Path(args.save_to).expanduser() if args.save_to else default_path(args.target)
    problem = destination_problem(path)
    if problem is not None:
        given = f"--save-to {args.save_to}" if args.save_to else f"feedback file {path}"
        raise StudioError(f"{given}: {problem}")
    args._feedback = FeedbackLog(path)
    return args._feedback


def _save_feedback(args: argparse.Namespace, messages: list[dict[str, str]], reply: str) -> str:
    """``studio chat … --mark good|bad [--save-to FILE]``: the reply as feedback rows (see chat/feedback.py)."""
    log = getattr(args, "_feedback", None) or _feedback_log(args)
    said = (log.mark_good if args.mark == "good" else log.mark_bad)(messages, reply)
    return f"{said}; {log.summary()}"


def cmd_export(args: argparse.Namespace) -> int:
    from lorastudio.export.exporter import ExportRequest, estimate_bytes, export, is_export_dir
    from lorastudio.export.push import push_export
    from lorastudio.export.staging import human_size

    existing = Path(args.run).expanduser()
    if args.push and is_export_dir(existing):  # push a finished export again, nothing re-exported
        print(push_export(existing.resolve(), args.push, private=args.private))
        return 0
    request = ExportRequest(
        args.run,
        args.format,
        args.checkpoint,
        args.quant,
        Path(args.out) if args.out else None,
        args.force,
        args.dtype,
    )
    if args.estimate:
        size = estimate_bytes(request)
        print(dumps({"estimated_bytes": size}) if args.json else human_size(size))
        return 0
    result = export(request, None if args.json else _progress_printer(f"export {args.format}"))
    if args.json:
        print(dumps(result.to_json()))
    else:
        print(
            f"{args.format}{f' {result.quant}' if result.quant else ''}: estimated "
            f"{human_size(result.estimated_bytes)}, measured {human_size(result.measured_bytes)}, "
            f"{result.seconds:.1f} s",
            file=sys.stderr,
        )
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        print(result.out)
    if args.push:
        print(push_export(result.out, args.push, private=args.private))
    return 0


def _read_prompts(path: str) -> list[str]:
    """One prompt per non-blank line of ``path`` (``-`` reads stdin)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StudioError(f"--prompts {path}: cannot read it ({exc})") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise StudioError(f"--prompts {path}: no prompts in it (one per line)")
    return prompts


def cmd_build_tiny(args: argparse.Namespace) -> int:
    from lorastudio.models.tiny import build, ensure_tiny_model
    from lorastudio.paths import tiny_model_dir

    progress = _progress_printer("building tiny model")
    print(build(tiny_model_dir(), progress) if args.force else ensure_tiny_model(progress))
    return 0


# -- sweeps ---------------------------------------------------------------------------------------
def cmd_sweep(args: argparse.Namespace) -> int:
    """``studio sweep RECIPE key=a,b ...`` starts a grid; ``studio sweep stop NAME`` stops one."""
    if args.recipe == "stop":
        return _sweep_stop(args.grid)
    if args.recipe == "rank":  # `studio sweep rank NAME [--rank-by eval:TASK/METRIC]`
        if len(args.grid) != 1:
            raise StudioError("usage: studio sweep rank NAME [--rank-by eval:TASK/METRIC] [--json]")
        args.sweep = args.grid[0]
        return cmd_runs_compare_sweep(args)
    from lorastudio.train.compare import format_value
    from lorastudio.train.sweep import plan_sweep, start_sweep

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
    from lorastudio.train.sweep import stop_sweep

    if len(names) != 1:
        raise StudioError("usage: studio sweep stop NAME")
    stopped, ended = stop_sweep(names[0])
    for path in stopped:
        print(f"asked {path.name} to stop")
    print(f"sweep {names[0]}: {len(stopped)} asked to stop, {len(ended)} already ended", file=sys.stderr)
    return 0


def cmd_runs_compare_sweep(args: argparse.Namespace) -> int:
    from lorastudio.evaluate.scores import parse_rank_by, rank_by_eval
    from lorastudio.train.compare import format_duration, format_value
    from lorastudio.train.sweep import compare_sweep

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


# -- mcp ------------------------------------------------------------------------------------------
def cmd_mcp(args: argparse.Namespace) -> int:
    from lorastudio.mcpserver import serve

    return serve(read_only=args.read_only)


# -- parser ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="studio",
        description="Fine-tune open LLMs with (Q)LoRA from the terminal. With no command, opens the TUI.",
    )
    parser.add_argument("--version", action="version", version=f"studio (lorastudio) {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("recipes", help="list recipes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("recipe", help="recipe commands (show)")
    rsub = p.add_subparsers(dest="recipe_command", metavar="show", required=True)
    q = rsub.add_parser("show", help="print the resolved recipe")
    q.add_argument("name")
    q.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=50")
    q.set_defaults(func=cmd_recipe_show)
    takes_overrides(q, name="name")

    p = sub.add_parser("validate", help="check recipe files (with dotted overrides applied to each)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_validate, overrides=[])
    takes_overrides(p, name="files")

    p = sub.add_parser("preview", help="show encoded samples with trained tokens marked")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_preview)
    takes_overrides(p)

    p = sub.add_parser("prepare", help="encode a recipe's data into the cache and print its statistics")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--force", action="store_true", help="encode again even when the cache has it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_prepare)
    takes_overrides(p)

    p = sub.add_parser("train", help="start a training run (survives the terminal)")
    p.add_argument("recipe", nargs="?")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--detach", action="store_true", help="start and return at once")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    p.add_argument(
        "--devices",
        metavar="N",
        type=_devices_arg,
        help="train on N devices (or 'all') through accelerate; same as train.devices=N",
    )
    p.add_argument(
        "--no-start",
        action="store_true",
        help="create the run directory, print it, start nothing "
        "(to launch it yourself, e.g. with accelerate on several machines)",
    )
    g = p.add_argument_group("several machines / Slurm (see README: Several machines)")
    g.add_argument(
        "--nodes", metavar="N", type=int, help="train on N machines (train.nodes=N), devices on each"
    )
    g.add_argument(
        "--node-rank",
        metavar="R",
        type=int,
        help="this machine's rank, 0..N-1; give every node the same command line: node 0 creates the run, "
        "the others ask it at --main-address which run to join (STUDIO_NODE_WAIT_S: how long they wait)",
    )
    g.add_argument("--main-address", metavar="HOST:PORT", help="node 0's address, the same on every node")
    g.add_argument(
        "--slurm", action="store_true", help="submit the run as a Slurm job (sbatch script in the run)"
    )
    g.add_argument("--partition", metavar="P", help="Slurm partition")
    g.add_argument("--gpus-per-node", metavar="G", type=int, help="Slurm GPUs per node (train.devices=G)")
    g.add_argument("--time", metavar="T", help="Slurm time limit (e.g. 4:00:00)")
    g.add_argument("--account", metavar="A", help="Slurm account to charge")
    g.add_argument(
        "--requeue",
        action="store_true",
        help="let Slurm requeue the job (preemption); it resumes from its latest checkpoint",
    )
    p.add_argument(
        "--from",
        dest="start_from",
        metavar="RUN[@best]",
        help="start from RUN's adapter (e.g. an SFT run before DPO); same as model.adapter=RUN",
    )
    p.set_defaults(func=cmd_train)
    takes_overrides(p)

    p = sub.add_parser(
        "runs", help="list runs (newest first; `latest` names the newest); delete, note, compare"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--sort", choices=("time", "loss", "status"), default="time")
    p.set_defaults(func=cmd_runs)
    rsub = p.add_subparsers(dest="runs_command", metavar="delete|note|compare|samples")
    q = rsub.add_parser("delete", help="remove a finished run's directory (refuses a live run)")
    q.add_argument("run")
    q.add_argument("--yes", "-y", action="store_true", help="do not ask")
    q.set_defaults(func=cmd_runs_delete)
    q = rsub.add_parser("note", help="show or set a run's one-line note")
    q.add_argument("run")
    q.add_argument("text", nargs="*")
    q.add_argument("--clear", action="store_true")
    q.set_defaults(func=cmd_runs_note)
    q = rsub.add_parser("compare", help="results and differing recipe fields of two or more runs")
    q.add_argument("runs", nargs="*", metavar="RUN")
    q.add_argument(
        "--sweep", metavar="NAME", help="a sweep's runs ranked by eval loss, the swept fields as columns"
    )
    q.add_argument(
        "--rank-by", metavar="eval:TASK/METRIC", help="with --sweep: rank by each run's latest evaluation"
    )
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_runs_compare)
    q = rsub.add_parser(
        "samples", help="a run's sample replies at each evaluation (train.samples), changes marked"
    )
    q.add_argument("run", metavar="RUN")
    q.add_argument("--latest", action="store_true", help="only the latest round")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_runs_samples)

    p = sub.add_parser(
        "resume",
        help="continue a stopped, failed or died run from its latest checkpoint (train.batch_size=N, "
        "train.gradient_accumulation=N, train.gradient_checkpointing=on: a smaller batch after running out "
        "of memory)",
    )
    p.add_argument("run")
    p.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    takes_overrides(p, name="run")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("attach", help="open the Monitor on a run")
    p.add_argument("run")
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("stop", help="ask a run to save its adapter and stop")
    p.add_argument("run")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("chat", help="chat with a run's tuned model (or its base)")
    p.add_argument(
        "target",
        nargs="?",
        help="run name or path (NAME@best, NAME@latest or NAME@checkpoint-N for a checkpoint), a model folder, "
        "an OpenAI-compatible endpoint http://HOST:PORT/v1, or serve:ID for a server studio started "
        "(default: latest run)",
    )
    p.add_argument("--model", help="with an endpoint: the model name to ask for (default: its only one)")
    p.add_argument("--api-key-env", metavar="VAR", help="with an endpoint: the API key is in variable VAR")
    p.add_argument("--base", action="store_true", help="the base model, without the adapter")
    p.add_argument("--prompt", help="send one prompt, print the streamed reply, exit")
    p.add_argument("--image", help="an image the prompt is about (a vision-language model's run)")
    p.add_argument(
        "--prompts",
        metavar="FILE",
        help="answer every line of FILE with one model load (one JSON object per line with --json)",
    )
    p.add_argument("--system", help="system prompt")
    p.add_argument("--json", action="store_true")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--min-p", type=float)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--repetition-penalty", type=float)
    p.add_argument("--greedy", action="store_true")
    p.add_argument(
        "--no-thinking",
        action="store_true",
        help="a model whose template can skip reasoning (Qwen3's enable_thinking) answers directly",
    )
    p.add_argument(
        "--save-to",
        metavar="FILE",
        help="feedback file for replies marked good/bad or edited "
        "(default RUN/feedback.jsonl; preference pairs go to FILE-pairs.jsonl beside it)",
    )
    p.add_argument(
        "--mark", choices=["good", "bad"], help="with --prompt/--prompts: save each reply as feedback"
    )
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser(
        "export", help="export a run as an adapter, a merged model or a GGUF (+ Ollama Modelfile)"
    )
    p.add_argument("run", help="run name or path (or, with --push, a finished export folder)")
    p.add_argument("--format", choices=["adapter", "merged", "gguf"], default="merged")
    p.add_argument(
        "--checkpoint", type=int, metavar="N", help="export checkpoint-N instead of the final adapter"
    )
    p.add_argument("--quant", default="f16", help="gguf type: f16, q8_0, bf16, f32, q5_1, q5_0, q4_1, q4_0")
    p.add_argument(
        "--dtype", default="auto", help="merged: float16, bfloat16, float32 (auto: the base's 16-bit)"
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default RUN/exports/FORMAT)")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--push", metavar="REPO_ID", help="upload the export to the Hugging Face Hub")
    p.add_argument("--private", action="store_true", help="create the hub repository private")
    p.add_argument("--estimate", action="store_true", help="print the estimated size and exit")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "sweep", help="one run per point of a grid (key=a,b,c), queued; `sweep stop NAME` stops it"
    )
    p.add_argument(
        "recipe", help="the recipe to sweep (`stop NAME` stops a sweep, `rank NAME` ranks its runs)"
    )
    p.add_argument(
        "grid",
        nargs="*",
        metavar="KEY=A,B",
        help="swept fields (comma-separated values) and fixed "
        "overrides (one value), e.g. train.learning_rate=1e-4,3e-4 lora.r=8,16 train.max_steps=50",
    )
    p.add_argument(
        "--max",
        type=int,
        metavar="N",
        help="start at most N runs (the first N points of the grid); a grid of more than 64 needs it",
    )
    p.add_argument("--name", help="the sweep's name (default RECIPE-sweep-TIME)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before starting")
    p.add_argument(
        "--rank-by", metavar="eval:TASK/METRIC", help="`sweep rank NAME`: by each run's latest evaluation"
    )
    p.add_argument("--json", action="store_true", help="`sweep rank NAME`: as JSON")
    p.set_defaults(func=cmd_sweep)
    takes_overrides(p, into="grid")

    p = sub.add_parser(
        "mcp", help="serve studio's tools to a coding agent (Model Context Protocol over stdio)"
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        help="only the tools that change nothing (no start, stop, resume or export)",
    )
    p.set_defaults(func=cmd_mcp)

    from lorastudio.evalcli import add_commands

    add_commands(sub)  # eval, evals (evalcli.py)
    p = sub.add_parser("serve", help="serve a model on an OpenAI-compatible endpoint (detached); list; stop")
    from lorastudio import servecli

    servecli.add_arguments(p)
    p.set_defaults(func=servecli.run)

    p = sub.add_parser("build-tiny", help="build the offline tiny base model now")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_build_tiny)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)  # overrides anywhere on the line (cliargs.py)
    from lorastudio.quiet import quiet_libraries

    quiet_libraries()
    if args.command == "train" and not args.recipe and args.resume is None:
        parser.error("train needs a RECIPE (or --resume RUN)")
    if args.command == "train" and args.resume and (args.recipe or args.overrides):
        parser.error(
            f"train --resume {args.resume} continues with the run's own recipe: no RECIPE or overrides"
        )
    try:
        if args.command is None:
            from lorastudio.app import run_app

            require_terminal(
                "with no command, studio", "the TUI", "without one run a command (`studio --help`)"
            )
            run_app()
            return 0
        return int(args.func(args) or 0)
    except StudioError as exc:
        print(f"studio: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
