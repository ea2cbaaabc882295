"""unsloth vs transformers+peft on one GPU: the real worker, same recipe, data and steps, each backend in its own
process. A randomly initialised model with Llama-3.2-1B's configuration, 4-bit. Prints tokens/s and peak VRAM.

Goal: unsloth >= 1.8x the tokens/s and <= 0.6x the peak VRAM of the transformers+peft backend.
Run on a CUDA machine with the `gpu` extra installed: python benchmarks/gpu_backends.py [--steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LLAMA_32_1B = {
    "vocab_size": 128256,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
}


def make_model(folder: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lorastudio.models.tiny import build_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **LLAMA_32_1B,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def make_data(path: Path, rows: int, words: int) -> None:
    from lorastudio.demo.tinydata import OBJECTS

    rng = random.Random(0)
    vocab = list(OBJECTS) + list(OBJECTS.values())
    with path.open("w") as handle:
        for _ in range(rows):
            question = " ".join(rng.choice(vocab) for _ in range(words // 4))
            answer = " ".join(rng.choice(vocab) for _ in range(words))
            handle.write(json.dumps({"prompt": question, "completion": answer}) + "\n")


def run_backend(backend: str, model_dir: Path, data: Path, steps: int, root: Path, max_length: int) -> dict:
    from lorastudio import registry
    from lorastudio.train.launch import runs
    from lorastudio.train.run.eventlog import read_all

    recipe = registry.load(
        "tiny-pirate",
        [
            f"model.name={model_dir}",
            "model.load_in_4bit=true",
            f"model.max_seq_length={max_length}",
            f"data.source={data}",
            "data.format=prompt_completion",
            f"train.max_steps={steps}",
            "train.batch_size=8",
            "train.gradient_accumulation=1",
            "train.learning_rate=0.0002",
            "train.save_steps=100000",
            "train.precision=auto",
            "train.optimizer=adamw_8bit",
            "lora.r=16",
            "lora.alpha=16",
        ],
    )
    run_dir = runs.create_run(recipe, root=root)
    env = {**os.environ, "STUDIO_BACKEND": backend}
    result = subprocess.run(
        [sys.executable, "-m", "lorastudio.worker", str(run_dir)], env=env, capture_output=True, text=True
    )
    events = read_all(run_dir / "events.jsonl")
    final = [e for e in events if e["kind"] == "status"][-1]
    metrics = [e for e in events if e["kind"] == "metrics" and e.get("tokens_per_s")]
    warm = metrics[len(metrics) // 3 :] or metrics
    peaks = [
        e["torch_peak_reserved_mb"]
        for e in events
        if e["kind"] == "telemetry" and e.get("torch_peak_reserved_mb")
    ]
    gpu_used = [g["memory_used_mb"] for e in events if e["kind"] == "telemetry" for g in e.get("gpus", [])]
    return {
        "backend": backend,
        "status": final["status"],
        "cause": final.get("cause"),
        "tokens_per_s": statistics.median(e["tokens_per_s"] for e in warm) if warm else None,
        "peak_reserved_mb": max(peaks) if peaks else None,
        "peak_gpu_used_mb": max(gpu_used) if gpu_used else None,
        "steps": max((e["step"] for e in metrics), default=0),
        "log_tail": result.stdout[-1500:] + result.stderr[-1500:] if final["status"] != "done" else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--backends", default="unsloth,hf")
    parser.add_argument(
        "--words", type=int, default=120, help="completion words per sample (~2.5 tokens each)"
    )
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        make_model(tmp_path / "llama-3.2-1b-random")
        make_data(tmp_path / "data.jsonl", rows=2000, words=args.words)
        results = [
            run_backend(
                b,
                tmp_path / "llama-3.2-1b-random",
                tmp_path / "data.jsonl",
                args.steps,
                tmp_path / "runs",
                args.max_length,
            )
            for b in args.backends.split(",")
        ]
    for r in results:
        print(json.dumps(r))
    by = {r["backend"]: r for r in results}
    if "unsloth" in by and "hf" in by and by["unsloth"]["tokens_per_s"] and by["hf"]["tokens_per_s"]:
        speed = by["unsloth"]["tokens_per_s"] / by["hf"]["tokens_per_s"]
        vram = (by["unsloth"]["peak_reserved_mb"] or 0) / (by["hf"]["peak_reserved_mb"] or 1)
        print(f"unsloth/hf tokens_per_s={speed:.2f}x peak_reserved={vram:.2f}x")


if __name__ == "__main__":
    main()
