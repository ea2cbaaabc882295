"""A finished evaluation's folder written from events, results.json and samples.jsonl (no model run), so the
Eval screen, Compare, a sweep's ranking and the MCP tools read a deterministic one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lorastudio.evaluate.runner import RESULTS_FILE, SAMPLES_FILE, table
from lorastudio.evaluate.spec import SPEC_FILE, EvalSpec


def lm(task_figures: dict[str, dict[str, float]]) -> dict[str, Any]:
    """lm-eval's ``results`` section: task -> {metric,filter: value}."""
    return {"results": {task: {"alias": task, **figures} for task, figures in task_figures.items()}}


GENERAL_BASE = {"acc,none": 0.25, "acc_stderr,none": 0.1}
ARITH_BASE = {"exact_match,first_number": 0.5, "exact_match_stderr,first_number": 0.25}


def figures_for(acc: float, exact: float) -> dict[str, Any]:
    return lm(
        {
            "studio_general": {"acc,none": acc, "acc_stderr,none": 0.1},
            "studio_arithmetic": {"exact_match,first_number": exact, "exact_match_stderr,first_number": 0.25},
        }
    )


def mc_sample(target: str, doc_id: int, question: str, choices: list[str], answer: int, pick: int) -> dict:
    return {
        "eval_target": target,
        "task": "studio_general",
        "doc_id": doc_id,
        "doc": {"question": question, "choices": choices, "answer": answer},
        "target": answer,
        "arguments": [[f"Question: {question}\nAnswer:", f" {c}"] for c in choices],
        "resps": [],
        "filtered_resps": [[-1.0 if i == pick else -5.0, i == pick] for i in range(len(choices))],
        "filter": "none",
        "metrics": ["acc"],
        "acc": float(pick == answer),
    }


def gen_sample(target: str, doc_id: int, question: str, answer: str, reply: str) -> dict:
    return {
        "eval_target": target,
        "task": "studio_arithmetic",
        "doc_id": doc_id,
        "doc": {"question": question, "answer": answer},
        "target": answer,
        "arguments": [[f"{question} Answer with the number only.", {"until": ["\n\n"]}]],
        "resps": [[reply]],
        "filtered_resps": [reply.split()[0] if reply.split() else ""],
        "filter": "first_number",
        "metrics": ["exact_match"],
        "exact_match": float(reply.startswith(answer)),
    }


def write_eval(
    home: Path,
    name: str,
    targets: tuple[str, ...],
    per_target: dict[str, dict[str, Any]],
    *,
    t0: float = 1_790_010_000.0,
    status: str = "done",
    samples: list[dict] | None = None,
    limit: int | None = 2,
) -> Path:
    """An evaluation folder as the job leaves it: spec.json, events.jsonl, results.json, samples.jsonl.

    ``per_target`` holds each target's lm-eval results; a target missing from it has not run yet (with
    ``status`` not ended, the first missing pair is the running one)."""
    folder = home / name
    folder.mkdir(parents=True)
    tasks = ("studio_general", "studio_arithmetic")
    spec = EvalSpec(targets=targets, tasks=tasks, limit=limit)
    (folder / SPEC_FILE).write_text(spec.model_dump_json(indent=2))
    events: list[dict[str, Any]] = [
        {"kind": "status", "status": "queued"},
        {"kind": "status", "status": "starting"},
    ]
    total, done, t = len(targets) * len(tasks), 0, t0
    for target in targets:
        if target not in per_target:
            if status not in ("done", "stopped", "failed"):
                events.append({"kind": "status", "status": "loading model", "model": target})
                events.append({"kind": "eval_task", "target": target, "task": tasks[0], "t": t})
            break
        events.append({"kind": "status", "status": "loading model", "model": target})
        for task in tasks:
            events.append({"kind": "eval_progress", "done": done, "total": total, "t": t})
            events.append({"kind": "eval_task", "target": target, "task": task, "t": t})
            t += 30.0
            values = {
                f"{task}/{k.split(',')[0]}": v
                for k, v in per_target[target]["results"][task].items()
                if "," in k and "_stderr" not in k
            }
            events.append({"kind": "eval_result", "target": target, "task": task, "values": values, "t": t})
            done += 1
    if status in ("done", "stopped", "failed"):
        events.append({"kind": "eval_progress", "done": done, "total": total, "t": t})
        events.append({"kind": "status", "status": status, "t": t})
    with (folder / "events.jsonl").open("w") as handle:
        for event in events:
            handle.write(json.dumps({"v": 1, "t": t0, **event}) + "\n")
    data = {
        "spec": spec.model_dump(mode="json"),
        "table": table(per_target, targets),
        "lm_eval": {
            label: {task: {"results": {task: r["results"][task]}} for task in tasks}
            for label, r in per_target.items()
        },
    }
    (folder / RESULTS_FILE).write_text(json.dumps(data, indent=2))
    if samples:
        (folder / SAMPLES_FILE).write_text("".join(json.dumps(s) + "\n" for s in samples))
    return folder


def base_and_run_samples(run: str) -> list[dict]:
    out = []
    for target, picks, replies in (("base", (1, 0), ("7", "12 apples")), (run, (0, 0), ("4", "12"))):
        out.append(
            mc_sample(target, 0, "What colour is the sky on a clear day?", ["blue", "green"], 0, picks[0])
        )
        out.append(mc_sample(target, 1, "How many legs has a spider?", ["eight", "six"], 0, picks[1]))
        out.append(gen_sample(target, 0, "What is 2 + 2?", "4", replies[0]))
        out.append(gen_sample(target, 1, "What is 7 + 5?", "12", replies[1]))
    return out


def stand_in_job(folder: Path) -> Any:
    """A sleeping process recorded in ``folder/job.json`` with an evaluation job's command line, so the
    evaluation counts as live (not died); the caller kills it."""
    import subprocess
    import sys
    import time

    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", "-m", "lorastudio.evaluate.job", str(folder)],
        stdin=subprocess.DEVNULL,
    )
    process = psutil.Process(proc.pid)
    deadline = time.monotonic() + 30
    while "lorastudio.evaluate.job" not in process.cmdline() and time.monotonic() < deadline:
        time.sleep(0.01)
    (folder / "job.json").write_text(json.dumps({"pid": proc.pid, "pid_started": process.create_time()}))
    return proc
