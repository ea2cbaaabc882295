"""``studio train`` (one machine, several, or a Slurm job), ``resume``, ``attach``, ``stop``, ``build-tiny``, and
:func:`follow`, the progress lines of a run followed without a terminal."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lorastudio.cli.args import require_terminal
from lorastudio.cli.console import _progress_printer
from lorastudio.errors import StudioError


def _devices_arg(text: str) -> int | str:
    if text == "all" or (text.isdigit() and int(text) >= 1):
        return "all" if text == "all" else int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: give a number of devices (1, 2, ...) or 'all'")


def cmd_train(args: argparse.Namespace) -> int:
    from lorastudio.registry import load
    from lorastudio.train.launch.runs import find_run, start_run

    _check_slurm_flags(args)
    if args.resume is None and (
        args.slurm or args.nodes is not None or args.node_rank is not None or args.main_address
    ):
        return _train_on_nodes(
            args
        )  # several machines, or a Slurm job (train/launch/nodes.py, train/launch/slurm.py)
    if args.resume is not None:  # "" is refused by the resolver, not read as no --resume
        from lorastudio.train.launch.manage import resume_run

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
    return _watch(run_dir)


def _watch(run_dir: Path) -> int:
    """The run's Monitor on a terminal; else its progress lines until it ends (scripts, CI logs)."""
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
    from lorastudio.train.launch.nodes import node_log, node_spec
    from lorastudio.train.launch.runs import create_run, start_node

    overrides = [
        *args.overrides,
        *([f"train.devices={args.devices}"] if args.devices is not None else []),
        *([f"train.nodes={args.nodes}"] if args.nodes is not None else []),  # --nodes 0 refused as the field
        *([f"train.devices={args.gpus_per_node}"] if args.gpus_per_node is not None else []),
    ]
    if args.slurm:
        from dataclasses import replace

        from lorastudio.train.launch.slurm import SlurmOptions, submit

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
    elif (
        args.node_rank
    ):  # a peer: node 0, started before or after it, names its run (train/launch/rendezvous.py)
        from lorastudio.train.launch.rendezvous import peer_run

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
            from lorastudio.train.launch.rendezvous import hosting_line

            _say(hosting_line(spec))
    if args.detach or args.slurm and not (sys.stdout.isatty() and sys.stdin.isatty()):
        print(run_dir.name)
        return 0
    return _watch(run_dir)


def _from_adapter(target: str) -> list[str]:
    """``--from RUN[@best|@checkpoint-N]``: the override starting the new run from that run's adapter (which run
    and adapter that is goes to stderr: a recipe's name or ``latest`` takes its newest run's final adapter)."""
    from lorastudio.train.trainer.methods import start_adapter

    folder, said = start_adapter(target)
    print(f"--from {target}: {said}", file=sys.stderr)
    return [f"model.adapter={folder}"]


def follow(run_dir: Path, poll_s: float = 0.5) -> int:
    """Print progress lines until the run ends (for scripts and CI logs)."""
    from lorastudio.train.launch.runs import DIED_CAUSE, effective_status, latest_checkpoint, read_meta
    from lorastudio.train.run.events import TERMINAL_STATUSES, EvalEvent, LogEvent, MetricsEvent, StatusEvent
    from lorastudio.train.run.runstate import RunReader

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


def cmd_resume(args: argparse.Namespace) -> int:
    from lorastudio.train.launch.manage import resume_run
    from lorastudio.train.launch.runs import find_run

    run_dir = find_run(args.run)
    pid, checkpoint = resume_run(run_dir, overrides=args.overrides)
    where = f"from {checkpoint.name}" if checkpoint else "from step 0 (no checkpoint was saved)"
    if args.overrides:
        where += f" with {' '.join(args.overrides)}"
    from lorastudio.train.launch.runs import read_meta

    who = (
        f"Slurm job {pid}" if read_meta(run_dir).get("slurm") else f"worker pid {pid}"
    )  # train/launch/slurm.py
    print(f"resuming {run_dir.name} {where} ({who}); `studio attach {run_dir.name}` to watch")
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    from lorastudio.app import run_app
    from lorastudio.train.launch.runs import find_run

    run_dir = find_run(args.run)  # a bad reference is named first, terminal or not
    require_terminal(
        "attach",
        "the Monitor",
        "without one `studio runs --json` gives each run's status, step and loss",
    )
    run_app(attach=run_dir)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from lorastudio.train.launch.runs import stop_run
    from lorastudio.train.run.runref import resolve_run

    run_dir = resolve_run(args.run, exact="stop").path
    if stop_run(run_dir):
        print(f"asked {run_dir.name} to save and stop")
        return 0
    print(f"{run_dir.name}: no live worker", file=sys.stderr)
    return 1


def cmd_build_tiny(args: argparse.Namespace) -> int:
    from lorastudio.models.tiny import build, ensure_tiny_model
    from lorastudio.paths import tiny_model_dir

    progress = _progress_printer("building tiny model")
    print(build(tiny_model_dir(), progress) if args.force else ensure_tiny_model(progress))
    return 0
