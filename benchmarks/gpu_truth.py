"""The GPU kit: every check of issue 44 in one run, one line of figures per step, all figures as JSON.

On a CUDA machine with the bundle installed (``scripts/gpu-bundle`` here, then on the device
``python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site
.whl/*.whl && export PYTHONPATH=/tmp/site``):

    python3 benchmarks/gpu_truth.py               # writes $OUT/gpu_truth.json (or --out DIR)
    python3 benchmarks/gpu_truth.py --dry-run     # here: every step's CPU part on the tiny model

Steps, in order; a failed step is recorded with why and the next one runs:

1. ``real_model``: ``studio train smollm2-pirate`` through the real worker with unsloth, then transformers +
   peft (``STUDIO_BACKEND``): status, loss first/last, tokens/s, peak VRAM, one telemetry event (NVML VRAM,
   utilisation, temperature, power); ``studio chat RUN --json``: time to first token, tokens/s.
2. ``shape_8b``: Llama-3.1-8B's configuration (written here from its public architecture numbers) with random
   weights built on the device, 4-bit nf4, batch 2, gradient accumulation 4, r=32 on all linear layers,
   sequence length 2,048, 20 steps, each backend; the unsloth/hf ratios (goal >= 2.0x tokens/s, <= 0.4x VRAM).
3. ``preference``: DPO (``smollm2-pirate-dpo``) and GRPO (``tiny-pirate-grpo`` on SmolLM2) with unsloth:
   status and the margin or reward, first against last.
4. ``estimate``: ``studio/models/estimate.py`` against every peak measured above (goal: within +-15%).
5. ``oom``: a configuration that cannot fit ends ``failed`` with the CUDA out-of-memory cause, the numbers and
   the fields to lower, and the memory is released; a run resumes from its checkpoint.
6. ``chat_beside``: a chat started beside a training run is admitted or refused by its memory check, and the
   run still ends ``done``.

``--dry-run`` runs the same commands on the tiny model with tiny sizes and no CUDA (what needs CUDA is recorded
with the reason), so a typo costs no device time; CI runs it (tests/test_gpu_truth.py). The model, data and
runs live in a temporary folder; ``XDG_CACHE_HOME`` is kept (the tiny model and SmolLM2 are found there).
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
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

LLAMA_31_8B: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
"""Meta-Llama-3.1-8B's config.json architecture numbers (public), without its token ids: the tokenizer is
studio's tiny one, so the shape (and so the cost) is the 8B's while nothing comes from the hub."""

DRY_SHAPE = {"hidden_size": 64, "intermediate_size": 224, "num_hidden_layers": 2, "num_attention_heads": 4}
DRY_SHAPE |= {"num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024}
PROMPT = "What is the best way to learn to sail?"


class Kit:
    """What every step shares: the mode, where things go, the figures so far."""

    def __init__(self, dry: bool, out: Path, work: Path, budget_s: float) -> None:
        self.dry = dry
        self.out = out
        self.work = work
        self.deadline = time.monotonic() + budget_s
        self.cuda = False if dry else _cuda()
        self.report: dict[str, Any] = {"dry_run": dry, "cuda": self.cuda, "steps": {}}
        self.env = {**os.environ, "XDG_DATA_HOME": str(work / "data"), "PYTHONUNBUFFERED": "1"}
        # the device has no network: nothing may wait on the hub, nor on unsloth's usage statistics
        offline = (
            "HF_HUB_OFFLINE",
            "HF_DATASETS_OFFLINE",
            "TRANSFORMERS_OFFLINE",
            "UNSLOTH_DISABLE_STATISTICS",
        )
        self.env.update({name: "1" for name in offline})
        if dry:
            self.env["CUDA_VISIBLE_DEVICES"] = ""  # the same commands, on CPU

    @property
    def backends(self) -> list[str]:
        return ["unsloth", "hf"] if self.cuda else ["hf"]

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "gpu_truth.json"
        path.with_suffix(".tmp").write_text(json.dumps(self.report, indent=1, default=str) + "\n")
        path.with_suffix(".tmp").replace(path)  # complete or absent, also when the device call times out


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def studio(kit: Kit, *args: str, env: dict[str, str] | None = None, timeout: float | None = None):
    """``studio ARGS`` as a user types it (the console script of this interpreter, else ``-m lorastudio.cli``)."""
    limit = max(30.0, min(timeout or 1e9, kit.left_s()))
    return subprocess.run(
        [sys.executable, "-m", "lorastudio.cli", *args],
        env=env or kit.env,
        capture_output=True,
        text=True,
        timeout=limit,
    )


def train(kit: Kit, recipe: str, overrides: list[str], backend: str | None = None, detach: bool = False):
    """(run dir, the finished process) of ``studio train RECIPE OVERRIDES``; ``backend`` sets STUDIO_BACKEND."""
    env = {**kit.env, **({"STUDIO_BACKEND": backend} if backend else {})}
    done = studio(kit, "train", recipe, *overrides, *(["--detach"] if detach else []), env=env)
    lines = [line for line in done.stderr.splitlines() if line.startswith("run: ")]
    if not lines:
        raise RuntimeError(f"studio train {recipe}: no run started: {done.stderr.strip()[-800:]}")
    return Path(lines[-1][5:].strip()), done


def figures(run_dir: Path) -> dict[str, Any]:
    """A run's figures from its events: status, cause, loss, tokens/s, peaks, one telemetry event."""
    from lorastudio.train.run.eventlog import read_all

    events = read_all(run_dir / "events.jsonl")
    statuses = [e for e in events if e["kind"] == "status"]
    metrics = [e for e in events if e["kind"] == "metrics" and e.get("loss") is not None]
    speeds = [e["tokens_per_s"] for e in metrics if e.get("tokens_per_s")]
    warm = speeds[len(speeds) // 3 :] or speeds  # the first steps compile kernels and warm the allocator
    telemetry = [e for e in events if e["kind"] == "telemetry"]
    method = [e for e in events if e["kind"] == "method_metrics"]
    peaks = [e["torch_peak_reserved_mb"] for e in telemetry if e.get("torch_peak_reserved_mb")]
    rss = [e["rss_mb"] for e in telemetry if e.get("rss_mb")]
    gpu_used = [g["memory_used_mb"] for e in telemetry for g in e.get("gpus", []) if g.get("memory_used_mb")]
    last = statuses[-1] if statuses else {}
    return {
        "run": run_dir.name,
        "status": last.get("status"),
        "cause": last.get("cause"),
        "hints": last.get("hints"),
        "steps": max((e.get("step") or 0 for e in metrics), default=0),
        "loss_first": metrics[0]["loss"] if metrics else None,
        "loss_last": metrics[-1]["loss"] if metrics else None,
        "tokens_per_s": round(statistics.median(warm), 1) if warm else None,
        "peak_reserved_mb": max(peaks) if peaks else None,
        "peak_gpu_used_mb": max(gpu_used) if gpu_used else None,
        "peak_rss_mb": round(max(rss), 1) if rss else None,
        "telemetry": telemetry[len(telemetry) // 2] if telemetry else None,
        "method_first": method[0].get("values") if method else None,
        "method_last": method[-1].get("values") if method else None,
    }


def chat(kit: Kit, target: str, base: bool = False) -> dict[str, Any]:
    flags = [
        "--prompt",
        PROMPT,
        "--json",
        "--greedy",
        "--max-new-tokens",
        "48",
        *(["--base"] if base else []),
    ]
    done = studio(kit, "chat", target, *flags)
    if done.returncode != 0:
        return {"ok": False, "message": (done.stderr.strip() or done.stdout.strip())[-600:]}
    reply = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "ok": True,
        "first_token_s": reply.get("first_token_s"),
        "tokens_per_s": reply.get("tokens_per_s"),
        "tokens": reply.get("tokens"),
        "text": str(reply.get("text"))[:120],
    }


def need_cuda(kit: Kit, what: str) -> str | None:
    return None if kit.cuda else f"{what} needs CUDA: not run (dry run or no GPU)"


# -- the steps ---------------------------------------------------------------------------------------------
def step_real_model(kit: Kit) -> dict[str, Any]:
    recipe, steps = ("tiny-pirate", 4) if kit.dry else ("smollm2-pirate", 60)
    base = [f"train.max_steps={steps}", "train.samples=[]", "train.save_steps=1000", "data.eval_fraction=0"]
    if kit.cuda:
        base.append("model.load_in_4bit=true")
    record: dict[str, Any] = {"recipe": recipe, "runs": {}, "skipped": []}
    if not kit.cuda:
        record["skipped"].append(need_cuda(kit, "the unsloth backend"))
    for backend in kit.backends:
        run_dir, _ = train(kit, recipe, base, backend)
        run = figures(run_dir)
        run["chat"] = chat(kit, run_dir.name)
        record["runs"][backend] = run
        kit.report.setdefault("measured", []).append(
            {"step": "real_model", "backend": backend, "run_dir": str(run_dir)}
        )
    record["ok"] = all(
        r["status"] == "done" and r["loss_last"] < r["loss_first"] and r["chat"]["ok"]
        for r in record["runs"].values()
    )
    return record


def make_shape_model(kit: Kit, folder: Path) -> None:
    """A Llama with the 8B's shape (tiny on a dry run) and random weights, saved as a transformers folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lorastudio.models.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    numbers = {**LLAMA_31_8B, **(DRY_SHAPE if kit.dry else {})}
    numbers["vocab_size"] = max(numbers["vocab_size"], len(tokenizer))
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = LlamaConfig(
        **{k: v for k, v in numbers.items() if k not in ("architectures", "model_type")}, **ids
    )
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({**numbers, **ids}, indent=1)
    )  # what the model is built from
    torch.manual_seed(0)
    device = "cuda" if kit.cuda else "cpu"
    dtype, default = (torch.bfloat16 if kit.cuda else torch.float32), torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in bf16 at once: 16 GB, not 32 GB of fp32 first
    try:
        with torch.device(device):  # built on the GPU: seconds, where 8B parameters on the CPU take minutes
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    if kit.cuda:
        torch.cuda.empty_cache()


def make_long_data(path: Path, rows: int, words: int) -> None:
    from lorastudio.demo.tinydata import OBJECTS

    rng = random.Random(0)
    vocab = list(OBJECTS) + list(OBJECTS.values())
    with path.open("w") as handle:
        for _ in range(rows):
            question = " ".join(rng.choice(vocab) for _ in range(max(4, words // 8)))
            answer = " ".join(rng.choice(vocab) for _ in range(words))
            handle.write(json.dumps({"prompt": question, "completion": answer}) + "\n")


def shape_overrides(kit: Kit, model: Path, data: Path) -> list[str]:
    seq, steps = (128, 3) if kit.dry else (2048, 20)
    return [
        f"model.name={model}",
        f"model.load_in_4bit={'true' if kit.cuda else 'false'}",
        "model.quant_type=nf4",
        f"model.max_seq_length={seq}",
        f"data.source={data}",
        "data.format=prompt_completion",
        "data.eval_fraction=0",
        f"train.max_steps={steps}",
        "train.batch_size=2",
        "train.gradient_accumulation=4",
        "train.learning_rate=0.0002",
        "train.save_steps=100000",
        "train.samples=[]",
        f"train.precision={'auto' if kit.cuda else 'fp32'}",
        f"train.optimizer={'adamw_8bit' if kit.cuda else 'adamw_torch'}",
        "lora.r=32",
        "lora.alpha=32",
        "lora.target_modules=all-linear",
    ]


def step_shape_8b(kit: Kit) -> dict[str, Any]:
    model, data = kit.work / "llama-3.1-8b-shape", kit.work / "long.jsonl"
    make_shape_model(kit, model)
    make_long_data(data, rows=400, words=60 if kit.dry else 900)
    record: dict[str, Any] = {"shape": "dry (tiny)" if kit.dry else "Llama-3.1-8B", "runs": {}, "skipped": []}
    if not kit.cuda:
        record["skipped"] += [need_cuda(kit, "4-bit nf4 and the unsloth backend")]
    for backend in kit.backends:
        run_dir, _ = train(kit, "tiny-pirate", shape_overrides(kit, model, data), backend)
        record["runs"][backend] = figures(run_dir)
        kit.report.setdefault("measured", []).append(
            {"step": "shape_8b", "backend": backend, "run_dir": str(run_dir)}
        )
    runs = record["runs"]
    if "unsloth" in runs and runs["unsloth"]["tokens_per_s"] and runs["hf"]["tokens_per_s"]:
        record["speed_ratio"] = round(runs["unsloth"]["tokens_per_s"] / runs["hf"]["tokens_per_s"], 2)
        if runs["unsloth"]["peak_reserved_mb"] and runs["hf"]["peak_reserved_mb"]:
            record["vram_ratio"] = round(
                runs["unsloth"]["peak_reserved_mb"] / runs["hf"]["peak_reserved_mb"], 2
            )
    record["ok"] = all(r["status"] == "done" for r in runs.values())
    return record


def step_preference(kit: Kit) -> dict[str, Any]:
    backend = "unsloth" if kit.cuda else "hf"
    model = "tiny" if kit.dry else "smollm2-135m-instruct"
    common = ["train.samples=[]", "data.eval_fraction=0", f"model.name={model}"]
    record: dict[str, Any] = {"backend": backend, "runs": {}, "skipped": []}
    if not kit.cuda:
        record["skipped"].append(need_cuda(kit, "unsloth's patched trainers"))
    plans = {
        "dpo": (
            "smollm2-pirate-dpo",
            ["train.max_steps=2" if kit.dry else "train.max_steps=15", "train.batch_size=4"],
        ),
        "grpo": (
            "tiny-pirate-grpo",
            [
                "train.max_steps=2",
                "train.batch_size=4",
                "grpo.num_generations=4",
                "grpo.max_completion_length=12",
            ]
            if kit.dry
            else ["train.max_steps=10", "grpo.max_completion_length=32"],
        ),
    }
    for method, (recipe, overrides) in plans.items():
        run_dir, _ = train(kit, recipe, [*common, *overrides], backend)
        record["runs"][method] = figures(run_dir)
        kit.report.setdefault("measured", []).append(
            {"step": "preference", "backend": backend, "run_dir": str(run_dir)}
        )
    moving = {"dpo": "rewards/margins", "grpo": "reward"}
    for method, run in record["runs"].items():
        key = moving[method]
        first, last = (run["method_first"] or {}).get(key), (run["method_last"] or {}).get(key)
        record[f"{method}_{key}"] = [first, last]
    record["ok"] = all(r["status"] == "done" and r["method_last"] for r in record["runs"].values())
    return record


def step_estimate(kit: Kit) -> dict[str, Any]:
    """Each measured run's estimate (from its own recipe snapshot) against its peak: VRAM on a GPU, RSS on CPU."""
    from lorastudio.models.estimate import estimate_memory
    from lorastudio.registry import load_snapshot

    rows = []
    for entry in kit.report.get("measured", []):
        run_dir = Path(entry["run_dir"])
        recipe = load_snapshot(run_dir / "recipe.yaml")
        estimate = estimate_memory(recipe, gpu=kit.cuda)
        run = figures(run_dir)
        measured = run["peak_reserved_mb"] if kit.cuda else run["peak_rss_mb"]
        est_mb = round(estimate.total / 2**20, 1) if estimate else None
        ratio = round(est_mb / measured, 3) if est_mb and measured else None
        rows.append(
            {
                "run": run_dir.name,
                "step": entry["step"],
                "backend": entry["backend"],
                "estimate_mb": est_mb,
                "measured_mb": measured,
                "measured_as": "torch peak reserved" if kit.cuda else "worker peak RSS",
                "ratio": ratio,
                "within_15pct": ratio is not None and abs(ratio - 1) <= 0.15,
            }
        )
    return {
        "rows": rows,
        "ok": bool(rows) and all(r["within_15pct"] for r in rows) if kit.cuda else bool(rows),
    }


def _oom_numbers(text: str) -> dict[str, str] | None:
    """torch's message: 'Tried to allocate X GiB. GPU 0 has a total capacity of Y GiB of which Z GiB is free.'"""
    import re

    asked = re.search(r"Tried to allocate ([\d.]+ [KMG]iB)", text)
    total = re.search(r"total capacity of ([\d.]+ [KMG]iB)", text)
    free = re.search(r"of which ([\d.]+ [KMG]iB) is free", text)
    if not (asked and total and free):
        return None
    return {"asked": asked.group(1), "total": total.group(1), "free": free.group(1)}


def step_oom(kit: Kit) -> dict[str, Any]:
    record: dict[str, Any] = {"skipped": []}
    if kit.cuda:  # the 8B shape unquantized with a batch that cannot fit beside its weights
        model, data = kit.work / "llama-3.1-8b-shape", kit.work / "long.jsonl"
        over = [*shape_overrides(kit, model, data), "model.load_in_4bit=false", "train.batch_size=64"]
        over += ["train.gradient_checkpointing=off", "train.max_steps=2"]
        run_dir, done = train(kit, "tiny-pirate", over, "hf")
        oom = figures(run_dir)
        from lorastudio.train.run.eventlog import read_all

        status = [e for e in read_all(run_dir / "events.jsonl") if e["kind"] == "status"][-1]
        oom["numbers"] = _oom_numbers(str(status.get("cause")) + str(status.get("traceback")))
        oom["numbers_in_cause"] = " free of " in str(oom["cause"])  # the worker's cause carries them
        oom["stderr_hints"] = [
            line for line in done.stderr.splitlines() if line.startswith("to lower memory")
        ]
        import torch

        free, total = torch.cuda.mem_get_info()
        oom["free_after_mb"], oom["total_mb"] = free / 2**20, total / 2**20
        record["oom"] = oom
    else:
        record["skipped"].append(need_cuda(kit, "a CUDA out-of-memory"))
    # a run stopped after its first checkpoint, resumed from it (on both: the checkpoint path is not CUDA's)
    # long enough that the stop lands mid-run; the stop is asked in this process (``studio stop`` is the same
    # call behind an interpreter start of seconds, in which a tiny run can finish: the CLI has its own tests).
    # Dry, the stop lands at step 3 or 4 (asked as checkpoint-2 appears): 20 steps leave it mid-run; 120
    # (a checkpoint every 2) made the resumed half most of the dry run's minutes on a shared CPU (issue 39)
    steps = 20 if kit.dry else 200
    recipe = "tiny-pirate" if kit.dry else "smollm2-pirate"
    over = [f"train.max_steps={steps}", "train.save_steps=2", "train.samples=[]", "data.eval_fraction=0"]
    run_dir, _ = train(kit, recipe, [*over, "train.batch_size=4"], "hf", detach=True)
    checkpoint = run_dir / "checkpoints" / "checkpoint-2"
    waited = time.monotonic()
    while not (checkpoint / "adapter_config.json").exists() and time.monotonic() - waited < min(
        240, kit.left_s()
    ):
        time.sleep(0.05)
    from lorastudio.train.launch.runs import stop_run

    stop_asked = stop_run(run_dir)
    while time.monotonic() - waited < min(300, kit.left_s()):
        if figures(run_dir)["status"] in ("stopped", "done", "failed"):
            break
        time.sleep(0.5)
    stopped = figures(run_dir)
    smaller = ["train.batch_size=2", "train.gradient_accumulation=2"]  # as after an OOM: half, accumulated
    resumed = studio(kit, "resume", run_dir.name, *smaller)
    while time.monotonic() - waited < min(600, kit.left_s()):
        if figures(run_dir)["status"] in ("done", "failed"):
            break
        time.sleep(0.5)
    final = figures(run_dir)
    record["resume"] = {
        "stopped_status": stopped["status"],
        "stopped_at_step": stopped["steps"],
        "stop_asked": stop_asked,
        "resume_rc": resumed.returncode,
        "resume_message": (resumed.stdout + resumed.stderr).strip()[-300:],
        "final_status": final["status"],
        "final_step": final["steps"],
        "smaller_batch": smaller,
        "resumed_batch": _resumed_batch(run_dir),
    }
    ok_resume = final["status"] == "done" and final["steps"] >= steps and _resumed_batch(run_dir) == [2, 2]
    ok_oom = not kit.cuda or (
        record["oom"]["status"] == "failed"
        and "out of memory" in str(record["oom"]["cause"])
        and record["oom"]["hints"]
    )
    record["ok"] = bool(ok_resume and ok_oom)
    return record


def _resumed_batch(run_dir: Path) -> list[int] | None:
    """(batch size, accumulation) the resumed run's recipe holds."""
    from lorastudio.train.launch.runs import load_run_recipe

    try:
        train = load_run_recipe(run_dir).train
    except Exception:  # the record says so instead of the step failing
        return None
    return [train.batch_size, train.gradient_accumulation]


def step_chat_beside(kit: Kit) -> dict[str, Any]:
    from lorastudio import registry
    from lorastudio.chat.admission import admit

    recipe = "tiny-pirate" if kit.dry else "smollm2-pirate"
    steps = 12 if kit.dry else 60
    over = [f"train.max_steps={steps}", "train.samples=[]", "data.eval_fraction=0", "train.save_steps=1000"]
    run_dir, _ = train(kit, recipe, over, "unsloth" if kit.cuda else "hf", detach=True)
    waited = time.monotonic()
    while figures(run_dir)["steps"] < 1 and time.monotonic() - waited < min(300, kit.left_s()):
        if figures(run_dir)["status"] in ("failed", "done"):
            break
        time.sleep(0.5)
    running = figures(run_dir)["status"] not in ("done", "failed", "stopped")
    admission = admit(registry.load(recipe), gpu=kit.cuda)
    reply = chat(kit, run_dir.name, base=True)  # the run's model beside the live run: admitted or refused
    while time.monotonic() - waited < min(600, kit.left_s()):
        if figures(run_dir)["status"] in ("done", "failed", "stopped"):
            break
        time.sleep(0.5)
    run = figures(run_dir)
    refused = not reply["ok"] and "not enough memory" in reply.get("message", "")
    return {
        "admission": {
            "device": admission.device,
            "need_mb": admission.need_mb,
            "free_mb": admission.free_mb,
            "headroom_mb": admission.headroom_mb,
            "ok": admission.ok,
        },
        "training_running_at_chat": running,
        "chat": reply,
        "chat_outcome": "admitted" if reply["ok"] else ("refused" if refused else "failed"),
        "training_status": run["status"],
        "training_cause": run["cause"],
        "ok": run["status"] == "done" and (reply["ok"] or refused),
    }


STEPS: list[tuple[str, Callable[[Kit], dict[str, Any]]]] = [
    ("real_model", step_real_model),
    ("shape_8b", step_shape_8b),
    ("preference", step_preference),
    ("estimate", step_estimate),
    ("oom", step_oom),
    ("chat_beside", step_chat_beside),
]


def summary_line(name: str, record: dict[str, Any]) -> str:
    """One line of figures for a step."""
    if "error" in record:
        return f"{name}: ERROR {record['error']}"
    parts = [f"{name}: {'ok' if record.get('ok') else 'NOT OK'}"]
    for label, run in (record.get("runs") or {}).items():
        chat_part = ""
        if run.get("chat", {}).get("ok"):
            chat_part = (
                f" chat ttft={run['chat']['first_token_s']:.2f}s {run['chat']['tokens_per_s']:.1f} tok/s"
            )
        peak = run.get("peak_reserved_mb") or run.get("peak_rss_mb")
        parts.append(
            f"[{label} {run['status']} loss {run['loss_first']}->{run['loss_last']} "
            f"tok/s={run['tokens_per_s']} peak={peak}MB{chat_part}]"
        )
    moving = [k for k in record if k.startswith(("dpo_", "grpo_"))]
    for key in ("speed_ratio", "vram_ratio", "chat_outcome", "training_status", *moving):
        if key in record:
            parts.append(f"{key}={record[key]}")
    if "rows" in record:
        parts += [
            f"[{r['step']}/{r['backend']} est {r['estimate_mb']} vs {r['measured_mb']} MB x{r['ratio']}]"
            for r in record["rows"]
        ]
    if "resume" in record:
        r = record["resume"]
        parts.append(
            f"resume {r['stopped_status']}@{r['stopped_at_step']} -> {r['final_status']}@{r['final_step']}"
        )
    if "oom" in record:
        o = record["oom"]
        parts.append(f"oom {o['status']} ({o['cause']}) numbers={o['numbers']}")
    parts += [f"({s})" for s in record.get("skipped") or []]
    return " ".join(parts)


def place_smollm2(parts: Path) -> str:
    """Join SmolLM2's GGUF parts where studio looks for it; studio checks its size and sha256 on first use."""
    from lorastudio.models.offline import SMOLLM2, ensure_offline_model, offline_model_path

    target = offline_model_path(SMOLLM2.name)
    found = sorted(parts.glob(f"{SMOLLM2.name}.gguf.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    if not found:
        return f"no {SMOLLM2.name}.gguf.part* in {parts}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.with_suffix(".tmp").open("wb") as out:
        for part in found:
            out.write(part.read_bytes())
    target.with_suffix(".tmp").replace(target)
    return f"{ensure_offline_model(SMOLLM2.name)} from {len(found)} parts, verified"


def versions() -> dict[str, str | None]:
    """The versions this machine really has (the device's, when run there)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "unsloth"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="the CPU part of every step, on the tiny model"
    )
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-truth-out"))
    parser.add_argument("--only", help="comma-separated step names (default: all)")
    parser.add_argument(
        "--model-parts", type=Path, help="a folder with SmolLM2's GGUF in parts (scripts/gpu-bundle --model)"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        help="steps not started by then are skipped, waits are cut (default 470 s: 8 minutes on the device "
        "less start-up; 1500 s for a dry run, whose CPU may be shared)",
    )
    args = parser.parse_args(argv)
    wanted = set(args.only.split(",")) if args.only else {name for name, _ in STEPS}
    with tempfile.TemporaryDirectory(prefix="gpu-truth-") as tmp:
        budget = args.budget_s if args.budget_s is not None else (1500.0 if args.dry_run else 470.0)
        kit = Kit(args.dry_run, args.out, Path(tmp), budget)
        kit.report["versions"] = versions()
        print("versions: " + " ".join(f"{k}={v}" for k, v in kit.report["versions"].items()), flush=True)
        if kit.cuda:
            import torch

            kit.report["device"] = torch.cuda.get_device_name(0)
            print(f"device: {kit.report['device']}", flush=True)
        if args.model_parts:
            kit.report["smollm2"] = place_smollm2(args.model_parts)
            print(f"smollm2: {kit.report['smollm2']}", flush=True)
        for name, step in STEPS:
            if name not in wanted:
                continue
            started = time.monotonic()
            if kit.left_s() <= 0:
                record: dict[str, Any] = {"error": "not started: the time budget was spent", "ok": False}
            else:
                try:
                    record = step(kit)
                except Exception as exc:  # the next step still runs; this one says why it failed
                    record = {
                        "error": f"{type(exc).__name__}: {exc}"[:1500],
                        "traceback": traceback.format_exc()[-3000:],
                    }
                    record["ok"] = False
            record["seconds"] = round(time.monotonic() - started, 1)
            kit.report["steps"][name] = record
            kit.save()
            print(summary_line(name, record) + f" ({record['seconds']} s)", flush=True)
    print(f"figures: {args.out / 'gpu_truth.json'}")
    return 0 if all(r.get("ok") for r in kit.report["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
