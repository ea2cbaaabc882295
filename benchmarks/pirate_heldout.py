"""The smollm2-pirate demo, proved on questions it never saw (issue 10).

    python benchmarks/pirate_heldout.py              # train smollm2-pirate (timed), then evaluate
    python benchmarks/pirate_heldout.py --run NAME   # evaluate an existing run
    python benchmarks/pirate_heldout.py key=value…   # recipe overrides for the training run

Prints the whole-run time (load + train + save, goal <= 180 s on 2 CPU cores) and three rates
over 25 held-out questions with greedy decoding: tuned replies in pirate style (goal >= 80%),
base replies in pirate style (goal <= 10%), tuned replies ended by end-of-turn (goal >= 90%).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from lorastudio.chat.engine import engine_for
from lorastudio.chat.heldout import evaluate


def train(overrides: list[str]) -> Path:
    from lorastudio import registry
    from lorastudio.models.resolve import resolve_model_path
    from lorastudio.train.launch.runs import create_run

    recipe = registry.load("smollm2-pirate", overrides)
    resolve_model_path(recipe.model)  # the one-time fetch and dequantization are not part of a run
    run_dir = create_run(recipe)
    started = time.monotonic()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [sys.executable, "-m", "lorastudio.worker", str(run_dir)], capture_output=True, text=True
    )
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    if result.returncode != 0:
        sys.exit(f"training failed:\n{result.stdout}{result.stderr}")
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    at = {e["status"]: e["t"] for e in events if e["kind"] == "status"}
    steps = [e for e in events if e["kind"] == "metrics" and e.get("loss") is not None]
    print(
        f"run={run_dir.name} whole_run_s={wall:.1f} (goal <= 180) load_s={at['training'] - at['starting']:.1f} "
        f"train_s={at['saving'] - at['training']:.1f} save_s={at['done'] - at['saving']:.1f} "
        f"steps={len(steps)} first_loss={steps[0]['loss']:.3f} last_loss={steps[-1]['loss']:.3f} "
        f"cpu_s={cpu:.1f} (cpu_s/2 = the wall time two idle cores would need)",
        flush=True,
    )
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", help="evaluate this run instead of training a new one")
    parser.add_argument("--verbose", action="store_true", help="print every reply")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    run = args.run or str(train(args.overrides))
    engine = engine_for(run)
    started = time.monotonic()
    engine.load()

    def show(question: str, tuned, base) -> None:
        if args.verbose:
            print(
                f"Q: {question}\n  tuned [{tuned.finish_reason}]: {tuned.text}\n  base: {base.text}",
                flush=True,
            )

    result = evaluate(engine, on_reply=show)
    print(
        f"held_out={len(result.questions)} tuned_pirate_rate={result.tuned_style_rate:.0%} (goal >= 80%) "
        f"base_pirate_rate={result.base_style_rate:.0%} (goal <= 10%) "
        f"tuned_ends_by_itself_rate={result.tuned_stop_rate:.0%} (goal >= 90%) "
        f"eval_s={time.monotonic() - started:.1f}"
    )


if __name__ == "__main__":
    main()
