"""What sample replies (``train.samples``, issue 24) cost the smollm2-pirate demo.

    python benchmarks/samples_cost.py            # the demo as shipped (samples on), then with samples off
    python benchmarks/samples_cost.py --on-only  # only the shipped demo
    python benchmarks/samples_cost.py key=value… # recipe overrides for both runs

Prints, per run, the whole-run time (goal <= 180 s on 2 idle CPU cores, as benchmarks/pirate_heldout.py),
the rounds written, the seconds spent sampling and their share of the run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pirate_heldout import train  # noqa: E402

from lorastudio.train.run.runstate import load_samples


def report(label: str, overrides: list[str]) -> None:
    run_dir = train(overrides)
    rounds = load_samples(run_dir)
    spent = sum(r.seconds or 0.0 for r in rounds)  # a round without its time counts none, as RunState does
    per_round = ", ".join(f"step {r.step} ({r.at}) {r.seconds:.1f} s" for r in rounds) or "none"
    print(
        f"{label}: rounds={len(rounds)} prompts={len(rounds[0].prompts) if rounds else 0} "
        f"sampling_s={spent:.1f} [{per_round}]",
        flush=True,
    )
    for r in rounds[-1:]:
        for prompt, reply in zip(r.prompts, r.replies, strict=False):
            print(f"  step {r.step} > {prompt}\n    {reply}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--on-only", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    report("samples on (shipped)", args.overrides)
    if not args.on_only:
        report("samples off", [*args.overrides, "train.samples=[]"])


if __name__ == "__main__":
    main()
