"""The ``studio eval`` and ``studio evals`` commands (the CLI face of the ``evaluate`` stage)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from lorastudio.errors import StudioError
from lorastudio.jsonout import dumps


def add_commands(sub: Any) -> None:
    """``eval`` and ``evals`` on the CLI's subcommand parser."""
    p = sub.add_parser("eval", help="score targets (base, RUN, RUN@best, an export) on lm-eval tasks")
    p.add_argument(
        "targets", nargs="+", metavar="TARGET", help="base, RUN, RUN@best, RUN@checkpoint-N, EXPORT_DIR"
    )
    p.add_argument(
        "--tasks",
        default="",
        help="comma-separated: studio_general, studio_arithmetic, studio_pirate, "
        "a YAML task file or folder, or an lm-eval task name",
    )
    p.add_argument(
        "--prompts",
        help="judged generations: a JSONL file (prompt, reference), held-out (the run's eval rows) or samples",
    )
    p.add_argument(
        "--score",
        action="append",
        default=[],
        help="exact, contains, regex:PAT, rouge, reward:NAME or FILE.py:fn (a GRPO reward); repeatable",
    )
    p.add_argument("--judge", help="LLM judge: a run, export or model folder, or an OpenAI-compatible URL")
    p.add_argument("--judge-model", help="the endpoint's model name (default: the first it lists)")
    p.add_argument("--judge-key-env", metavar="VAR", help="environment variable holding the endpoint's key")
    p.add_argument("--rubric", help="grade each answer 1-10 by this rubric instead of pairwise")
    p.add_argument("--max-new-tokens", type=int, help="judged answers' length limit (default: the recipe's)")
    p.add_argument(
        "--sample", action="store_true", help="judged answers sampled (the recipe's chat settings)"
    )
    p.add_argument("--limit", type=int, default=None, help="at most N documents per task")
    p.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples per prompt")
    p.add_argument("--batch-size", default=None, help="lm-eval's batch size: N or auto (default 1 on CPU)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--detach", action="store_true", help="start it and return; `studio evals` follows it")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("evals", help="list evaluations (studio eval), newest first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evals)


def _batch(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise StudioError(f"--batch-size {value}: a whole number or auto") from None


def cmd_eval(args: argparse.Namespace) -> int:
    from lorastudio.evaluate.job import check_and_start
    from lorastudio.evaluate.spec import make_spec

    tasks = tuple(t for t in args.tasks.split(",") if t.strip())
    if args.limit is not None and args.limit < 1:
        raise StudioError(f"--limit {args.limit}: at least 1 document per task (leave it out for all)")
    judged = None
    if args.prompts is None and (args.score or args.judge or args.rubric):
        raise StudioError("--score, --judge and --rubric judge generations: give --prompts too")
    if args.prompts is None and not tasks:
        raise StudioError("name --tasks, or --prompts to judge generations")
    if args.prompts is not None:
        judged = {
            "prompts": args.prompts,
            "scores": tuple(args.score),
            "judge": args.judge,
            "judge_model": args.judge_model,
            "judge_key_env": args.judge_key_env,
            "rubric": args.rubric,
            "max_new_tokens": args.max_new_tokens,
            "greedy": not args.sample,
        }
    spec = make_spec(
        targets=tuple(args.targets),
        tasks=tasks,
        limit=args.limit,
        num_fewshot=args.num_fewshot,
        batch_size=_batch(args.batch_size),
        judged=judged,
    )
    folder = check_and_start(spec)  # an unknown task or a run with no adapter is said before a process starts
    if args.detach:
        print(dumps({"path": str(folder), "status": "started"}) if args.json else f"started {folder}")
        return 0
    return follow(folder, args.json)


def follow(folder: Path, as_json: bool) -> int:
    """Print progress lines (stderr) until the evaluation ends, then its table; 0 when it is done."""
    from lorastudio.evaluate.job import summarise
    from lorastudio.train.run.events import TERMINAL_STATUSES
    from lorastudio.train.run.runstate import RunReader

    reader = RunReader(folder)
    try:
        while True:
            for event in reader.update():
                if event.kind == "eval_task":
                    data = event.to_json()
                    state = reader.state
                    print(
                        f"[{state.eval_done + 1}/{state.eval_total}] {data['task']} on {data['target']}",
                        file=sys.stderr,
                    )
            summary = summarise(folder)
            if summary.status in TERMINAL_STATUSES:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        print(f"\nstill running in {folder} (studio evals)", file=sys.stderr)
        return 130
    if summary.status != "done":
        raise StudioError(f"evaluation {summary.status}: {summary.cause or 'no cause recorded'} ({folder})")
    print_results(folder, as_json)
    return 0


def print_results(folder: Path, as_json: bool) -> None:
    import json

    from lorastudio.evaluate.runner import RESULTS_FILE

    data = json.loads((folder / RESULTS_FILE).read_text())
    if as_json:
        print(dumps({"path": str(folder), "table": data["table"], "judged": data.get("judged")}, indent=2))
        return
    print(render_table(data["table"], tuple(data["spec"]["targets"])))
    if data.get("judged"):
        from lorastudio.evaluate.judged import render_notes

        for line in render_notes(data["judged"]):
            print(line)
    print(f"in {folder}", file=sys.stderr)


def _cell(cell: dict[str, Any] | None, first: bool) -> str:
    if cell is None or cell["value"] is None:
        return "-"
    text = f"{cell['value']:.4f}"
    if cell.get("stderr") is not None:
        text += f" ±{cell['stderr']:.4f}"
    if cell.get("ci"):  # a judge's rate: its 95 % Wilson interval and counts
        text += f" [{cell['ci'][0]:.2f}, {cell['ci'][1]:.2f}] {cell['count']}/{cell['n']}"
    if not first and cell.get("delta") is not None:
        text += f" ({cell['delta']:+.4f})"
    return text


def render_table(rows: list[dict[str, Any]], targets: tuple[str, ...]) -> str:
    """Tasks/metrics as rows, targets as columns: value ±stderr (delta against the first target)."""
    header = ["task/metric", *targets]
    body = [
        [row["metric"], *(_cell(row["targets"].get(t), i == 0) for i, t in enumerate(targets))]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in [header, *body]
    )


def cmd_evals(args: argparse.Namespace) -> int:
    from lorastudio.evaluate.job import list_evals

    evals = list_evals()
    if args.json:
        print(
            dumps(
                [
                    {
                        "id": e.id,
                        "path": str(e.path),
                        "status": e.status,
                        "cause": e.cause,
                        "targets": list(e.spec.targets) if e.spec else None,
                        "tasks": list(e.spec.tasks) if e.spec else None,
                        "done": e.state.eval_done,
                        "total": e.state.eval_total,
                        "results": e.state.eval_results,
                        "judged": e.state.eval_judged,
                    }
                    for e in evals
                ],
                indent=2,
            )
        )
        return 0
    if not evals:
        print("no evaluations yet (studio eval TARGET... --tasks ...)", file=sys.stderr)
        return 0
    for e in evals:
        on = (
            ",".join(e.spec.tasks)
            if e.spec and e.spec.tasks
            else e.spec.judged.prompts
            if e.spec and e.spec.judged
            else ""
        )
        what = f"{','.join(e.spec.targets)} on {on}" if e.spec else "?"
        line = f"{e.id}  {e.status:<8} {e.state.eval_done}/{e.state.eval_total or '?'}  {what}"
        print(line + (f"  ({e.cause})" if e.cause and e.status != "done" else ""))
    return 0


# -- each run's latest scores, for `studio runs compare` (runs_cmds.py) ------------------------------------


def runs_compare_json(data: dict[str, Any], paths: list[Path]) -> dict[str, Any]:
    """``runs compare --json`` with each run's latest evaluation (``eval``: its id, target and scores)."""
    from lorastudio.evaluate.scores import scores_of

    scores = scores_of(paths)
    runs = [{**run, "eval": s.to_json() if s else None} for run, s in zip(data["runs"], scores, strict=True)]
    return {**data, "runs": runs}


def print_run_scores(console: Any, names: list[str], paths: list[Path]) -> None:
    """A table of each run's latest evaluation scores (a row per task/metric), or a line saying none."""
    from rich.table import Table

    from lorastudio.evaluate.scores import scores_of

    scores = scores_of(paths)
    metrics = sorted({m for s in scores if s is not None for m in s.values})
    if not metrics:
        console.print("no evaluation of these runs yet (studio eval RUN... --tasks ...)")
        return
    table = Table(box=None, pad_edge=False, title="latest evaluation", title_justify="left")
    table.add_column("task/metric", no_wrap=True)
    for name in names:
        table.add_column(name, overflow="fold")
    for metric in metrics:
        table.add_row(
            metric,
            *(f"{s.values[metric]:.4f}" if s is not None and metric in s.values else "-" for s in scores),
        )
    table.add_row("evaluation", *(s.eval_id if s is not None else "-" for s in scores))
    console.print(table)
