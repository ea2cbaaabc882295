"""studio's evaluation against the bare ``lm_eval`` CLI on the same model, adapter, tasks and limit (issue 40).

    python benchmarks/eval_vs_lmeval.py                 # tiny-pirate: its newest finished run, else one trained now
    python benchmarks/eval_vs_lmeval.py --smollm2       # the same on smollm2-pirate
    python benchmarks/eval_vs_lmeval.py --run NAME --limit 20 --repeat 2

Each side is one process timed from its start to its exit, one after the other (alternating when repeated,
the best of each kept): studio's evaluation job (``python -m lorastudio.evaluate.job DIR``, what ``studio
eval`` starts: the run's model and adapter loaded by the chat engine, each task through ``simple_evaluate``)
and ``python -m lm_eval --model hf --model_args pretrained=BASE,peft=ADAPTER --tasks ... --include_path
SHIPPED --apply_chat_template --limit N --batch_size 1 --device cpu``. Prints each side's figures (they must
be equal to the printed precision: the script exits 1 when one differs) and the throughput ratio in documents
per second (goal >= 0.95). The evaluation folders are temporary; the run is only read.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lorastudio.evaluate.job import create_eval, summarise
from lorastudio.evaluate.runner import RESULTS_FILE, metric_rows
from lorastudio.evaluate.spec import make_spec
from lorastudio.evaluate.tasks import SHIPPED_DIR

TASKS = ("studio_general", "studio_arithmetic")
"""A log-likelihood task and a generation task, both shipped (their rows are the project's own)."""


def newest_run(recipe: str) -> Path | None:
    """The newest finished run of ``recipe`` that has an adapter."""
    from lorastudio.paths import runs_dir
    from lorastudio.train.run.runstate import load_state

    found = []
    for run in runs_dir().glob(f"{recipe}-*"):
        if (run / "adapter").is_dir() and load_state(run).status == "done":
            found.append(run)
    return max(found, key=lambda p: p.name) if found else None


def train(recipe_name: str) -> Path:
    from lorastudio import registry
    from lorastudio.train.launch.runs import create_run

    run_dir = create_run(registry.load(recipe_name))
    print(f"training {run_dir.name} (no run of {recipe_name} yet)…", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "lorastudio.worker", str(run_dir)], capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"training failed:\n{result.stdout}{result.stderr}")
    return run_dir


def studio_side(run: Path, limit: int, home: Path) -> tuple[float, dict[str, float]]:
    """studio's evaluation job on the run: (wall seconds, task/metric -> value)."""
    folder = create_eval(make_spec(targets=(run.name,), tasks=TASKS, limit=limit), home=home)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "lorastudio.evaluate.job", str(folder)], capture_output=True, text=True
    )
    wall = time.monotonic() - started
    summary = summarise(folder)
    if result.returncode != 0 or summary.status != "done":
        sys.exit(f"studio's evaluation ended {summary.status}: {summary.cause}\n{result.stderr[-2000:]}")
    saved = json.loads((folder / RESULTS_FILE).read_text())["lm_eval"][run.name]
    values: dict[str, float] = {}
    for results in saved.values():
        values.update({k: v["value"] for k, v in metric_rows(results).items() if v["value"] is not None})
    return wall, values


def bare_side(
    base: str, adapter: Path, system: str | None, limit: int, out: Path
) -> tuple[float, dict[str, float]]:
    """The bare lm_eval CLI, run from the shipped tasks' folder (their data_files are relative)."""
    command = [
        sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={base},peft={adapter}",
        "--tasks", ",".join(TASKS), "--include_path", str(SHIPPED_DIR), "--apply_chat_template",
        "--limit", str(limit), "--batch_size", "1", "--device", "cpu", "--output_path", str(out),
    ]  # fmt: skip
    if system:
        command += ["--system_instruction", system]  # what studio sends: the recipe chat's system prompt
    started = time.monotonic()
    result = subprocess.run(command, cwd=SHIPPED_DIR, capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"lm_eval failed:\n{result.stderr[-3000:]}")
    [found] = out.rglob("results_*.json")
    return wall, {
        k: v["value"] for k, v in metric_rows(json.loads(found.read_text())).items() if v["value"] is not None
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smollm2", action="store_true", help="smollm2-pirate instead of tiny-pirate")
    parser.add_argument("--run", help="this run (its base model and adapter) instead of the newest")
    parser.add_argument(
        "--limit", type=int, default=20, help="documents per task (the shipped tasks hold 20)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side, alternating; the best kept")
    args = parser.parse_args()

    from lorastudio.chat.engine import engine_for
    from lorastudio.evaluate.runner import system_instruction
    from lorastudio.models.resolve import resolve_model_path
    from lorastudio.train.trainer.adapters import resolve_adapter

    recipe_name = "smollm2-pirate" if args.smollm2 else "tiny-pirate"
    if args.run:
        from lorastudio.train.run.runref import resolve_run

        run = resolve_run(args.run).path
    else:
        run = newest_run(recipe_name) or train(recipe_name)
    engine = engine_for(run.name)
    base = resolve_model_path(engine.recipe.model)
    adapter = resolve_adapter(run, None)
    assert adapter is not None, f"{run.name} has no adapter"
    system = system_instruction(engine)
    docs = args.limit * len(TASKS)
    print(
        f"run={run.name} base={base} tasks={','.join(TASKS)} limit={args.limit} documents={docs}", flush=True
    )

    studio_walls, bare_walls = [], []
    studio_values: dict[str, float] = {}
    bare_values: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="eval-vs-lmeval-") as tmp:
        for i in range(args.repeat):
            sides = ("studio", "bare") if i % 2 == 0 else ("bare", "studio")
            for side in sides:
                if side == "studio":
                    wall, studio_values = studio_side(run, args.limit, Path(tmp) / "studio")
                    studio_walls.append(wall)
                else:
                    wall, bare_values = bare_side(base, adapter, system, args.limit, Path(tmp) / f"bare-{i}")
                    bare_walls.append(wall)
                print(f"  {side}: {wall:.1f} s", flush=True)

    same = True
    print(f"{'metric':<48} {'studio':>8} {'lm_eval':>8}")
    for name in sorted(set(studio_values) | set(bare_values)):
        mine, theirs = studio_values.get(name), bare_values.get(name)
        shown = [f"{v:.4f}" if v is not None else "-" for v in (mine, theirs)]
        same &= shown[0] == shown[1]
        print(f"{name:<48} {shown[0]:>8} {shown[1]:>8}{'' if shown[0] == shown[1] else '  DIFFERENT'}")
    studio_rate, bare_rate = docs / min(studio_walls), docs / min(bare_walls)
    print(
        f"studio {min(studio_walls):.1f} s = {studio_rate:.2f} docs/s · lm_eval {min(bare_walls):.1f} s = "
        f"{bare_rate:.2f} docs/s · ratio {studio_rate / bare_rate:.2f} (goal >= 0.95) · "
        f"scores {'equal' if same else 'DIFFERENT'}"
    )
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
