"""Data at scale (issue 14): `studio prepare` on a generated 1M-row Dolly-shaped JSONL.

Prints: prepare cold (target <= 30 s), prepare cached (<= 3 s), peak RSS of each (<= 1.5 GB),
the time to the Preview's first sample of the big file (< 1 s), and the encode rate on short chat
samples (>= 50k samples/s) through ``prepare_data`` on every core, next to one process's fast
encoder and the prefix-rendering path; and, since the generated rows repeat a few dozen words (the
word cache's best case), one process's rate on rows from a 200k-word vocabulary, with and without
the word cache.

    python benchmarks/prepare_1m.py [--rows 1000000] [--tokenizer smollm2|tiny] [--keep]

It works in a temporary XDG cache with only a tokenizer (the weights are not needed to encode):
SmolLM2-135M-Instruct's by default (fetched once into the machine's cache, as ``./start`` does)
and removes it at the end unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

WORDS = [
    "the",
    "ship",
    "sails",
    "at",
    "dawn",
    "and",
    "every",
    "pirate",
    "knows",
    "the",
    "sea",
    "is",
    "wide",
    "but",
    "gold",
    "is",
    "near",
    "so",
    "hoist",
    "the",
    "sails",
    "matey",
    "while",
    "the",
    "captain",
    "reads",
    "old",
    "maps",
    "of",
    "islands",
    "rivers",
    "and",
    "storms",
]


def make_dolly(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))

    with path.open("w") as handle:
        for i in range(rows):
            row = {
                "instruction": words(5, 14).capitalize() + "?",
                "context": words(10, 30) if i % 4 == 0 else "",
                "response": "Arr, " + words(6, 22) + ".",
                "category": rng.choice(("open_qa", "closed_qa", "brainstorming", "summarization")),
            }
            handle.write(json.dumps(row) + "\n")


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (GB) of one child process and its encoding helpers together, and its stdout.

    The RSS of the whole process tree is sampled every 0.1 s (``ru_maxrss`` would count the first
    process alone, not the helpers it starts).
    """
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        try:
            root = psutil.Process(proc.pid)
            while not done.wait(0.1):
                total = 0
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
                peak[0] = max(peak[0], total)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {out[-2000:]}")
    return elapsed, max(peak[0], usage.ru_maxrss * 1024) / 2**30, out


def large_vocabulary(model: str, workdir: Path, rows: int = 20_000) -> tuple[float, float]:
    """Samples/s of one process's fast encoder on Dolly rows drawn from a 200k-word Zipf vocabulary (most
    words new to the word cache), with the word cache and with the Rust tokenizer alone."""
    import string

    from lorastudio import registry
    from lorastudio.data.prepare import prepare
    from lorastudio.data.prepared.fastencode import FastEncoder

    rng = random.Random(1)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10))) for _ in range(200_000)]
    cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(vocabulary))))
    path = workdir / "large-vocabulary.jsonl"
    with path.open("w") as handle:
        for _ in range(rows):
            handle.write(
                json.dumps(
                    {
                        "instruction": " ".join(rng.choices(vocabulary, cum_weights=cumulative, k=12)) + "?",
                        "context": "",
                        "response": " ".join(rng.choices(vocabulary, cum_weights=cumulative, k=30)) + ".",
                    }
                )
                + "\n"
            )
    prepared = prepare(registry.load("tiny-pirate", [model, f"data.source={path}"]))
    sample = list(prepared.rows.rows)
    return (
        one_process_rate(FastEncoder(prepared.encoder), sample),
        one_process_rate(FastEncoder(prepared.encoder, word_cache=False), sample),
    )


def one_process_rate(fast: Any, sample: list[dict[str, Any]]) -> float:
    """Samples/s of this fast encoder over ``sample``, in batches as prepare_data sends them."""
    start = time.perf_counter()
    for i in range(0, len(sample), 2000):
        fast.encode_columns(sample[i : i + 2000])
    return len(sample) / (time.perf_counter() - start)


def encode_rate(rows: int, model: str, workdir: Path) -> tuple[float, float, float]:
    """Samples/s on tiny-pirate's short chat rows (repeated to ``rows``): ``prepare_data`` end to end
    (every core, rows already loaded), the fast encoder in this one process, and prefix rendering."""
    from lorastudio import registry
    from lorastudio.data.prepare import prepare
    from lorastudio.data.prepared.cache import prepare_data
    from lorastudio.data.prepared.fastencode import FastEncoder
    from lorastudio.paths import package_recipes_dir

    base = [
        json.loads(line)
        for line in (package_recipes_dir() / "data/tiny_pirate.jsonl").read_text().splitlines()
    ]
    short = workdir / "short.jsonl"
    short.write_text("".join(json.dumps(base[i % len(base)]) + "\n" for i in range(rows)))
    recipe = registry.load("tiny-pirate", [model, f"data.source={short}"])
    prepared = prepare(recipe)
    start = time.perf_counter()
    prepare_data(recipe, prepared=prepared, use_cache=False)
    whole = rows / (time.perf_counter() - start)
    sample = list(prepared.rows.rows[:20_000])
    fast = FastEncoder(prepared.encoder)
    fast.encode_columns(sample[:100])  # analyse the shapes first, as a long run amortises it
    one = one_process_rate(fast, sample)
    start = time.perf_counter()
    for row in sample[:3000]:
        prepared.encoder.encode_row(row)
    return whole, one, 3000 / (time.perf_counter() - start)


async def _first_sample_in_app(recipe_args: list[str]) -> float:
    """Seconds from opening the Preview to its first sample on screen, in a running app (its start-up
    imports done while the recipe list shows, as when a person reads it for a moment)."""
    from lorastudio import registry
    from lorastudio.app import StudioApp
    from lorastudio.screens.preview import PreviewScreen
    from lorastudio.widgets.token_view import TokenView

    recipe = registry.load("tiny-pirate", recipe_args)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(3.0)
        start = time.perf_counter()
        screen = PreviewScreen(recipe)
        await app.push_screen(screen)
        while screen.prepared is None or not screen.query_one(TokenView).items:
            await pilot.pause(0.01)
        shown = time.perf_counter() - start
        while screen.partial:
            await pilot.pause(0.05)
        print(f"  (the whole file was loaded {time.perf_counter() - start:.1f} s after opening)")
    return shown


def tokenizer_folder(kind: str, workdir: Path) -> Path:
    """A folder with only the tokenizer files of SmolLM2-135M-Instruct (the default recipe's model) or tiny."""
    folder = workdir / f"{kind}-tokenizer"
    if kind == "tiny":
        from lorastudio.models.tiny import build_tokenizer

        build_tokenizer().save_pretrained(folder)
        return folder
    from lorastudio.models.resolve import resolve_model_path
    from lorastudio.recipe import ModelSection

    source = Path(resolve_model_path(ModelSection(name="smollm2-135m-instruct")))  # the machine's cache
    folder.mkdir()
    for f in source.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy(f, folder / f.name)
    return folder


FIRST_SAMPLE = """
import sys, time
start = time.perf_counter()
from lorastudio import registry
from lorastudio.data.prepare import prepare_head
recipe = registry.load("tiny-pirate", [f"data.source={sys.argv[1]}", sys.argv[2]])
prepared = prepare_head(recipe)
prepared.encoder.encode_row(prepared.rows.rows[0])
print(f"{time.perf_counter() - start:.2f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--tokenizer",
        choices=("smollm2", "tiny"),
        default="smollm2",
        help="smollm2: the default recipe's real 49k-token vocabulary; tiny: the 624-token toy",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated file and cache entries")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    studio = str(Path(sys.executable).parent / "studio")
    workdir = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    model = f"model.name={tokenizer_folder(args.tokenizer, workdir)}"  # before the cache moves to workdir
    os.environ["XDG_CACHE_HOME"] = str(workdir / "cache")
    data = workdir / "dolly-1m.jsonl"
    start = time.perf_counter()
    make_dolly(data, args.rows)
    print(
        f"generated {args.rows:,} rows, {data.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - start:.1f} s; "
        f"{os.cpu_count()} cores; tokenizer {args.tokenizer}"
    )
    cmd = [studio, "prepare", "tiny-pirate", f"data.source={data}", model, "--json"]
    cold, cold_rss, out = timed(cmd)
    summary = json.loads(out)
    cache_entry = Path(summary["cache"])
    print(
        f"prepare_cold_s={cold:.1f} (target <= 30)  peak_rss_gb={cold_rss:.2f} (target <= 1.5; with its helpers)  "
        f"train_rows={summary['train_rows']:,} tokens={summary['stats']['tokens']:,}"
    )
    warm, warm_rss, out = timed(cmd)
    assert json.loads(out)["from_cache"], "the second prepare did not read the cache"
    print(f"prepare_cached_s={warm:.2f} (target <= 3)  peak_rss_gb={warm_rss:.2f}")
    first = subprocess.run(
        [sys.executable, "-c", FIRST_SAMPLE, str(data), model], capture_output=True, text=True, check=True
    ).stdout.strip()
    import asyncio

    in_app = asyncio.run(_first_sample_in_app([f"data.source={data}", model]))
    print(
        f"preview_first_sample_s={in_app:.2f} in the app (target < 1); {first} s in a fresh process "
        f"(imports included)"
    )
    whole, one, slow = encode_rate(min(200_000, args.rows), model, workdir)
    print(
        f"encode_samples_per_s={whole:,.0f} (target >= 50,000; prepare_data end to end, short chat rows)  "
        f"one process: {one:,.0f}  prefix rendering: {slow:,.0f}"
    )
    cached, rust = large_vocabulary(model, workdir)
    print(
        f"large vocabulary (200k-word Zipf, one process): {cached:,.0f} samples/s with the word cache, "
        f"{rust:,.0f} with the Rust tokenizer alone"
    )
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"kept: {data} and {cache_entry}")


if __name__ == "__main__":
    main()
