"""The ``studio`` argument parser (every command and its flags) and :func:`main`, which runs the one asked for.

Each command's ``func`` is a ``cmd_*`` function of its family's module; ``main`` turns a :class:`StudioError`
into ``studio: MESSAGE`` on stderr and exit status 2, with no traceback.
"""

from __future__ import annotations

import argparse
import sys

from lorastudio import __version__
from lorastudio.cli.args import parse, require_terminal, takes_overrides
from lorastudio.cli.chat_cmds import cmd_chat
from lorastudio.cli.export_cmds import cmd_export
from lorastudio.cli.preview_cmds import cmd_prepare, cmd_preview
from lorastudio.cli.recipe_cmds import cmd_recipe_show, cmd_recipes, cmd_validate
from lorastudio.cli.runs_cmds import (
    cmd_runs,
    cmd_runs_compare,
    cmd_runs_delete,
    cmd_runs_note,
    cmd_runs_samples,
)
from lorastudio.cli.sweep_cmds import cmd_sweep
from lorastudio.cli.train_cmds import (
    _devices_arg,
    cmd_attach,
    cmd_build_tiny,
    cmd_resume,
    cmd_stop,
    cmd_train,
)
from lorastudio.errors import StudioError
from lorastudio.evaluate.intraining import install as install_eval_tasks

install_eval_tasks()  # train.eval_tasks checked before a run directory (train cannot import evaluate)


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
    g = p.add_argument_group("several machines / Slurm (see docs/multinode.md)")
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

    from lorastudio.cli.eval_cmds import add_commands

    add_commands(sub)  # eval, evals (eval_cmds.py)
    p = sub.add_parser("serve", help="serve a model on an OpenAI-compatible endpoint (detached); list; stop")
    from lorastudio.cli import serve_cmds

    serve_cmds.add_arguments(p)
    p.set_defaults(func=serve_cmds.run)

    p = sub.add_parser("build-tiny", help="build the offline tiny base model now")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_build_tiny)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)  # overrides anywhere on the line (args.py)
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
