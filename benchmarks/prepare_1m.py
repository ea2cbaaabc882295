"""Data at scale (issue 14): `studio prepare` on a generated 1M-row Dolly-shaped JSONL.

Prints: prepare cold (target <= 30 s), prepare cached (<= 3 s), peak RSS of each (<= 1.5 GB),
the fast encoder's rate on short chat samples (>= 50k samples/s, next to the prefix-rendering
path's), and the time to the Preview's first sample of the big file (< 1 s).

    python benchmarks/prepare_1m.py [--rows 1000000] [--keep]

It works in a temporary XDG cache with the tiny model's tokenizer (the weights are not needed to
encode) and removes it at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ["the", "ship", "sails", "at", "dawn", "and", "every", "pirate", "knows", "the", "sea", "is", "wide", "but", "gold", "is", "near", "so", "hoist", "the", "sails", "matey", "while", "the", "captain", "reads", "old", "maps", "of", "islands", "rivers", "and", "storms"]


def make_dolly(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))

    with path.open("w") as handle:
        for i in range(rows):
            row = {"instruction": words(5, 14).capitalize() + "?",
                   "context": words(10, 30) if i % 4 == 0 else "",
                   "response": "Arr, " + words(6, 22) + ".",
                   "category": rng.choice(("open_qa", "closed_qa", "brainstorming", "summarization"))}
            handle.write(json.dumps(row) + "\n")


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (GB) of one child process, and its stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {out[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024 / 1024, out


def encode_rate(samples: int, model: str) -> tuple[float, float]:
    """Fast encoder and prefix-rendering rates (samples/s) on tiny-pirate's short chat samples."""
    from lorastudio import registry
    from lorastudio.data.fastencode import FastEncoder
    from lorastudio.data.prepare import prepare

    prepared = prepare(registry.load("tiny-pirate", [model]))
    base = list(prepared.rows.rows)
    rows = (base * (samples // len(base) + 1))[:samples]
    fast = FastEncoder(prepared.encoder)
    fast.encode_rows(rows[:100])  # analyse the shapes first, as a long run amortises it
    start = time.perf_counter()
    for i in range(0, len(rows), 2000):
        fast.encode_rows(rows[i:i + 2000])
    fast_rate = len(rows) / (time.perf_counter() - start)
    slow_rows = rows[:5000]
    start = time.perf_counter()
    for row in slow_rows:
        prepared.encoder.encode_row(row)
    return fast_rate, len(slow_rows) / (time.perf_counter() - start)


FIRST_SAMPLE = """
import sys, time
start = time.perf_counter()
from lorastudio import registry
from lorastudio.data.prepare import prepare
recipe = registry.load("tiny-pirate", [f"data.source={sys.argv[1]}", sys.argv[2]])
prepared = prepare(recipe)
prepared.encoder.encode_row(prepared.rows.rows[0])
print(f"{time.perf_counter() - start:.3f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated file and cache entries")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    studio = str(Path(sys.executable).parent / "studio")
    workdir = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    os.environ["XDG_CACHE_HOME"] = str(workdir / "cache")
    # Encoding needs only the tiny model's tokenizer (built in a second, deterministic), not its weights.
    from lorastudio.models.tiny import build_tokenizer

    tokenizer_dir = workdir / "tiny-tokenizer"
    build_tokenizer().save_pretrained(tokenizer_dir)
    model = f"model.name={tokenizer_dir}"
    data = workdir / "dolly-1m.jsonl"
    start = time.perf_counter()
    make_dolly(data, args.rows)
    print(f"generated {args.rows:,} rows, {data.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - start:.1f} s")
    cmd = [studio, "prepare", "tiny-pirate", f"data.source={data}", model, "--json"]
    cold, cold_rss, out = timed(cmd)
    summary = json.loads(out)
    cache_entry = Path(summary["cache"])
    print(f"prepare_cold_s={cold:.1f} (target <= 30)  peak_rss_gb={cold_rss:.2f} (target <= 1.5)  "
          f"train_rows={summary['train_rows']:,} tokens={summary['stats']['tokens']:,}")
    warm, warm_rss, out = timed(cmd)
    assert json.loads(out)["from_cache"], "the second prepare did not read the cache"
    print(f"prepare_cached_s={warm:.2f} (target <= 3)  peak_rss_gb={warm_rss:.2f}")
    first = subprocess.run([sys.executable, "-c", FIRST_SAMPLE, str(data), model], capture_output=True, text=True,
                           check=True).stdout.strip()
    print(f"preview_first_sample_s={first} (target < 1; includes imports, data set's Arrow cache warm)")
    fast_rate, slow_rate = encode_rate(min(200_000, args.rows), model)
    print(f"encode_samples_per_s={fast_rate:,.0f} (target >= 50,000; prefix rendering: {slow_rate:,.0f})")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"kept: {data} and {cache_entry}")
    print("(measured on a shared machine: other processes were running, figures are upper bounds)")


if __name__ == "__main__":
    main()
