"""How much a chat streaming beside a live CPU run slows the run (issue 24).

    python benchmarks/live_chat_slowdown.py [--recipe tiny-pirate] [--window 20] [key=value…]

Starts a long run of the recipe, waits for its first checkpoint, measures its tokens/s over ``--window``
seconds with no chat, then over the same window while a chat on ``RUN@latest`` streams replies back to back
(the chat takes its share of the cores, chat/admission.py), and prints both figures and the slowdown. The
run is stopped at the end.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from lorastudio import registry
from lorastudio.chat.engine import Sampling, engine_for
from lorastudio.train.launch.runs import create_run, start_worker, stop_run
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all
from lorastudio.train.run.runstate import fold
from lorastudio.train.trainer.adapters import latest_complete_checkpoint


def tokens_per_s(run_dir: Path, since: float, until: float) -> float | None:
    events = [
        e for e in read_all(run_dir / EVENTS_FILE) if e["kind"] == "metrics" and since <= e["t"] <= until
    ]
    values = [e["tokens_per_s"] for e in events if e.get("tokens_per_s")]
    return sum(values) / len(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="tiny-pirate")
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    recipe = registry.load(
        args.recipe,
        [
            "train.max_steps=100000",
            "train.save_steps=10",
            "train.samples=[]",
            "data.eval_fraction=0",
            *args.overrides,
        ],
    )
    run_dir = create_run(recipe)
    start_worker(run_dir)
    try:
        while latest_complete_checkpoint(run_dir) is None:
            time.sleep(0.5)
        engine = engine_for(f"{run_dir.name}@latest")
        engine.load()
        print(f"chat threads beside the run: {engine.threads or 'torch default'}", flush=True)
        quiet_from = time.time()
        time.sleep(args.window)
        quiet = tokens_per_s(run_dir, quiet_from, time.time())
        done = threading.Event()
        replies = 0

        def chat() -> None:
            nonlocal replies
            while not done.is_set():
                engine.generate(
                    [{"role": "user", "content": "Tell me about the sea."}],
                    Sampling(greedy=True, max_new_tokens=48),
                    on_text=lambda t: None,
                )
                replies += 1

        busy_from = time.time()
        thread = threading.Thread(target=chat)
        thread.start()
        time.sleep(args.window)
        done.set()
        thread.join()
        busy = tokens_per_s(run_dir, busy_from, time.time())
        slowdown = (1 - busy / quiet) if quiet and busy else None
        print(
            f"run={run_dir.name} tokens_per_s_alone={quiet or 0:.0f} tokens_per_s_with_chat={busy or 0:.0f} "
            f"slowdown={slowdown:.0%} replies_streamed={replies} window_s={args.window:.0f}"
            if slowdown is not None
            else "not enough metrics in a window; raise --window",
            flush=True,
        )
    finally:
        stop_run(run_dir)
        while not fold(read_all(run_dir / EVENTS_FILE)).finished:
            time.sleep(0.5)


if __name__ == "__main__":
    main()
