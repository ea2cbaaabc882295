"""Run an evaluation: each task on each target through lm-eval's ``simple_evaluate`` and its ``HFLM``.

The model is the one the chat engine loads (base, base + adapter, an export, a GGUF file dequantized as chat
loads it), so quantisation and the adapter are exactly the chat's; the tokenizer carries the recipe's chat
template, so ``apply_chat_template`` renders prompts as the recipe's chat does. Two other lm-eval models:
an OpenAI-compatible endpoint URL is asked through ``local-chat-completions`` (the server applies its own
chat template; generation tasks only), and ``backend: vllm`` loads a run's base in vLLM with its adapter as
a LoRA request (CUDA and vLLM needed). Each (target, task) pair is one ``simple_evaluate`` call: its
results are written as soon as it ends, so a stopped evaluation keeps what it finished.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.chat.engine import ChatEngine, engine_for
from lorastudio.errors import StudioError
from lorastudio.evaluate.spec import EvalSpec

RESULTS_FILE = "results.json"
SAMPLES_FILE = "samples.jsonl"
BASE = "base"


@dataclass(frozen=True)
class Target:
    """One column of the table: its label (as the user named it) and the engine that loads it."""

    label: str
    engine: ChatEngine | None
    """None for an endpoint URL (the label), which lm-eval asks over HTTP."""


ENDPOINT_MODULES = ("aiohttp", "tenacity", "requests")
"""What lm-eval's API models import (its ``api`` extra)."""


def is_endpoint(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def resolve_targets(spec: EvalSpec) -> list[Target]:
    """An engine per target, nothing loaded yet: a run with no adapter, an unknown run or a ``base`` with
    nothing to take its model from is refused here, before any process starts; so is an endpoint when
    lm-eval's API models cannot import, and ``backend: vllm`` without vLLM or CUDA."""
    models = [t for t in spec.targets if t != BASE and not is_endpoint(t)]
    if BASE in spec.targets and not models:
        raise StudioError("eval target base: name a run or an export too, whose base model it is")
    if spec.backend == "vllm":
        require_vllm()
    out = []
    for label in spec.targets:
        if is_endpoint(label):
            require_endpoint_modules(label)
            out.append(Target(label, None))
            continue
        engine = engine_for(models[0], base_only=True) if label == BASE else engine_for(label)
        out.append(Target(label, engine))
    return out


def require_endpoint_modules(url: str) -> None:
    missing = [name for name in ENDPOINT_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise StudioError(
            f"eval target {url}: lm-eval's endpoint models need {', '.join(missing)}: "
            "pip install 'lm-eval[api]' (or 'lorastudio[eval]')"
        )


def require_vllm() -> None:
    """``backend: vllm`` needs vLLM importable and a CUDA GPU; the message names what is missing."""
    if importlib.util.find_spec("vllm") is None:
        raise StudioError("eval backend vllm: vLLM is not installed: pip install vllm (it needs a CUDA GPU)")
    import torch

    if not torch.cuda.is_available():
        raise StudioError("eval backend vllm: no CUDA GPU here (vLLM runs on CUDA); leave --backend out")


def endpoint_lm(url: str) -> Any:
    """lm-eval's ``local-chat-completions`` model asking ``url`` (an OpenAI-compatible ``.../v1``) for the first
    model it lists, greedy; the key, where the server wants one, is ``OPENAI_API_KEY`` as lm-eval reads it."""
    import openai

    from lorastudio.evaluate.judge import _api_error

    require_endpoint_modules(url)
    client = openai.OpenAI(
        base_url=url, api_key=os.environ.get("OPENAI_API_KEY") or "none", max_retries=0, timeout=60.0
    )
    try:
        models = [m.id for m in client.models.list()]
    except Exception as exc:
        raise StudioError(f"eval target {url}: {_api_error(exc)}") from None
    if not models:
        raise StudioError(f"eval target {url}: the endpoint lists no model")
    from lm_eval.models.openai_completions import LocalChatCompletion

    class StopCutChatCompletion(LocalChatCompletion):
        """Each reply cut at its task's first stop string, as HFLM cuts the local model's: a server that returns
        the stop sequence with the text (transformers serve does) would otherwise differ by it."""

        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
            replies = super().generate_until(requests, disable_tqdm=disable_tqdm)
            return [
                cut_at_stop(text, req.args[1].get("until"))
                for text, req in zip(replies, requests, strict=True)
            ]

    return StopCutChatCompletion(
        base_url=url.rstrip("/") + "/chat/completions",
        model=str(models[0]),
        tokenized_requests=False,  # text in, text out: the server tokenizes with its own template
        max_retries=1,
        num_concurrent=1,
    )


def cut_at_stop(text: str, until: str | list[str] | None) -> str:
    """``text`` up to the first of the stop strings (all of it when none occurs)."""
    stops = [until] if isinstance(until, str) else list(until or [])
    ends = [i for i in (text.find(stop) for stop in stops if stop) if i >= 0]
    return text[: min(ends)] if ends else text


def vllm_lm(engine: ChatEngine, batch_size: int | str | None) -> Any:
    """lm-eval's ``vllm`` model on the engine's base model, its adapter (if any) as a LoRA request."""
    from lm_eval.models.vllm_causallms import VLLM

    from lorastudio.models.resolve import resolve_model_path

    recipe = engine.recipe
    kwargs: dict[str, Any] = {}
    if engine.adapter_dir is not None:
        kwargs = {"lora_local_path": str(engine.adapter_dir), "max_lora_rank": max(16, recipe.lora.r)}
    return VLLM(
        pretrained=resolve_model_path(recipe.model),
        batch_size=batch_size if batch_size is not None else "auto",
        max_length=recipe.model.max_seq_length,
        **kwargs,
    )


def hflm(engine: ChatEngine, batch_size: int | str | None) -> Any:
    """lm-eval's HF model around the engine's loaded model, its tokenizer carrying the recipe's template."""
    tokenizer = engine.tokenizer
    source = engine.encoder.template_source if engine.encoder is not None else ""
    if source and getattr(tokenizer, "chat_template", None) != source:
        tokenizer.chat_template = source  # a named template (model.chat_template) replaces the tokenizer's
    size = batch_size if batch_size is not None else ("auto" if engine.on_gpu else 1)
    return lm_of(engine.model, tokenizer, size)


def lm_of(model: Any, tokenizer: Any, batch_size: int | str) -> Any:
    """lm-eval's HF model around a model already loaded (the chat engine's, or the one a run is training)."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def system_instruction(engine: ChatEngine) -> str | None:
    """The system prompt the recipe's chat sends (None when it sends none)."""
    recipe = engine.recipe
    return recipe.chat.system_prompt or recipe.data.system_prompt or None


def task_name(task: str | dict[str, Any]) -> str:
    return task if isinstance(task, str) else str(task["task"])


def run_task(
    lm: Any, engine: ChatEngine | None, task: str | dict[str, Any], spec: EvalSpec, task_manager: Any = None
) -> dict[str, Any]:
    """lm-eval's own results of one task on one loaded model (samples included); an endpoint (no engine)
    gets its prompts as chat messages with no system prompt of studio's."""
    return task_results(
        lm,
        task,
        limit=spec.limit,
        num_fewshot=spec.num_fewshot,
        apply_chat_template=spec.apply_chat_template or engine is None,  # chat completions take messages
        system=system_instruction(engine) if engine is not None else None,
        log_samples=True,
        task_manager=task_manager,
    )


def task_results(
    lm: Any,
    task: str | dict[str, Any],
    *,
    limit: int | None,
    num_fewshot: int | None,
    apply_chat_template: bool,
    system: str | None,
    log_samples: bool,
    task_manager: Any = None,
) -> dict[str, Any]:
    """One ``simple_evaluate`` call: what ``studio eval`` and a run's ``train.eval_tasks`` both go through.
    ``task_manager`` (:func:`task_manager_for`) is reused across calls: lm-eval builds one per call otherwise."""
    from lm_eval import simple_evaluate

    results = simple_evaluate(
        model=lm,
        tasks=[task],
        task_manager=task_manager,
        limit=limit,
        num_fewshot=num_fewshot,
        apply_chat_template=apply_chat_template,
        system_instruction=system,
        log_samples=log_samples,
        verbosity="ERROR",
    )
    if results is None:
        raise StudioError(f"task {task_name(task)}: lm-eval returned no results")
    return dict(results)


def task_manager_for(tasks: list[str | dict[str, Any]]) -> Any:
    """lm-eval's TaskManager for these tasks: indexing lm-eval's own task files takes seconds (13 s on a busy
    2-core machine), so it is built once per evaluation, and without that index when every task is a local
    file's config (which it does not need)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=any(isinstance(t, str) for t in tasks))


def to_json(value: Any) -> Any:
    """What ``json.dumps`` cannot take, as lm-eval's own CLI writes it."""
    from lm_eval.utils import handle_non_serializable

    return handle_non_serializable(value)


def metric_rows(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """``task/metric[,filter]`` -> {value, stderr} from lm-eval's ``results`` section."""
    rows: dict[str, dict[str, float | None]] = {}
    for task, figures in results.get("results", {}).items():
        for key, value in figures.items():
            if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, _, flt = key.partition(",")
            stderr = figures.get(f"{metric}_stderr,{flt}")
            name = f"{task}/{metric}" + (f" ({flt})" if flt and flt != "none" else "")
            rows[name] = {
                "value": float(value),
                "stderr": float(stderr)
                if isinstance(stderr, (int, float)) and math.isfinite(stderr)
                else None,
            }
    return rows


def table(per_target: dict[str, dict[str, Any]], targets: tuple[str, ...]) -> list[dict[str, Any]]:
    """studio's table: a row per task/metric, a cell per target (value, stderr, delta against the first)."""
    cells = {label: metric_rows(per_target.get(label, {})) for label in targets}
    names = sorted({name for rows in cells.values() for name in rows})
    out = []
    for name in names:
        first = cells[targets[0]].get(name)
        row: dict[str, Any] = {"metric": name, "targets": {}}
        for label in targets:
            cell = cells[label].get(name)
            if cell is None:
                row["targets"][label] = None
                continue
            base_value = first["value"] if first is not None and label != targets[0] else None
            delta = (
                cell["value"] - base_value if cell["value"] is not None and base_value is not None else None
            )
            row["targets"][label] = {**cell, "delta": delta}
        out.append(row)
    return out


class Results:
    """``results.json`` (lm-eval's results per target and task, untouched, plus studio's table) and
    ``samples.jsonl`` (every document's prompt, reply and scores, one line each), written as tasks end."""

    def __init__(self, folder: Path, spec: EvalSpec) -> None:
        self.folder, self.spec = folder, spec
        self.lm_eval: dict[str, dict[str, Any]] = {}
        """target -> task -> lm-eval's results of that call (its ``samples`` moved to samples.jsonl)."""
        self.judged_rows: list[dict[str, Any]] = []
        """The judged generations' table rows (``judged.py``), after lm-eval's."""
        self.judged: dict[str, Any] | None = None
        """The judged generations' summary (files, judge, unreadable replies, scorer failures)."""

    def add(self, target: str, task: str, results: dict[str, Any]) -> None:
        samples = results.pop("samples", {}) or {}
        # lm-eval's own ``target`` is the document's reference answer: the column is ``eval_target``
        lines = "".join(
            json.dumps({"eval_target": target, "task": name, **doc}, default=to_json) + "\n"
            for name, docs in samples.items()
            for doc in docs
        )
        with (self.folder / SAMPLES_FILE).open("a", encoding="utf-8") as handle:
            handle.write(lines)  # one call: a stop (SIGTERM) lands before or after it, never inside a line
        self.lm_eval.setdefault(target, {})[task] = results
        self.write()

    def merged(self) -> dict[str, dict[str, Any]]:
        """Per target, the ``results`` sections of its task calls merged (what the table reads)."""
        out: dict[str, dict[str, Any]] = {}
        for target, calls in self.lm_eval.items():
            merged: dict[str, Any] = {}
            for results in calls.values():
                merged.update(results.get("results", {}))
            out[target] = {"results": merged}
        return out

    def write(self) -> None:
        data = {
            "spec": self.spec.model_dump(mode="json"),
            "table": table(self.merged(), self.spec.targets) + self.judged_rows,
            "lm_eval": self.lm_eval,
        }
        if self.judged is not None:
            data["judged"] = self.judged
        tmp = self.folder / f".{RESULTS_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2, default=to_json), encoding="utf-8")
        tmp.replace(self.folder / RESULTS_FILE)  # never a partial results.json


def evaluate(
    spec: EvalSpec,
    folder: Path,
    on_task: Callable[[str, str, int, int], None] | None = None,
    on_result: Callable[[str, str, dict[str, float]], None] | None = None,
    on_loading: Callable[[str], None] | None = None,
) -> Results:
    """Every task on every target, in order; ``on_task(target, task, index, total)`` before each pair and
    ``on_result(target, task, figures)`` after it."""
    from lorastudio.evaluate.tasks import resolve_tasks

    results = Results(folder, spec)
    if not spec.tasks:
        return results  # judged generations only
    tasks = resolve_tasks(spec.tasks)
    targets = resolve_targets(spec)
    total, done = len(tasks) * len(targets), 0
    manager = task_manager_for(tasks)
    for target in targets:
        if on_loading is not None:
            on_loading(target.label)
        lm = target_lm(target, spec)
        for task in tasks:
            name = task_name(task)
            if on_task is not None:
                on_task(target.label, name, done, total)
            try:
                outcome = run_task(lm, target.engine, task, spec, manager)
            except NotImplementedError:
                if target.engine is not None:
                    raise
                raise StudioError(
                    f"eval target {target.label}: task {name} scores log-likelihoods, which a chat endpoint "
                    "does not give; evaluate an endpoint on generation tasks (studio_arithmetic, studio_pirate)"
                ) from None
            results.add(target.label, name, outcome)
            done += 1
            if on_result is not None:
                figures = {k: v["value"] for k, v in metric_rows(outcome).items() if v["value"] is not None}
                on_result(target.label, name, figures)
        if target.engine is not None:
            target.engine.model = None  # free it before the next target loads
    return results


def target_lm(target: Target, spec: EvalSpec) -> Any:
    """The lm-eval model that scores ``target``: the endpoint's, vLLM's, or HFLM around the loaded model."""
    if target.engine is None:
        return endpoint_lm(target.label)
    if spec.backend == "vllm":
        return vllm_lm(target.engine, spec.batch_size)
    target.engine.load()
    return hflm(target.engine, spec.batch_size)
