"""Run an evaluation: each task on each target through lm-eval's ``simple_evaluate`` and its ``HFLM``.

The model is the one the chat engine loads (base, base + adapter, an export), so quantisation and the
adapter are exactly the chat's; the tokenizer carries the recipe's chat template, so ``apply_chat_template``
renders prompts as the recipe's chat does. Each (target, task) pair is one ``simple_evaluate`` call: its
results are written as soon as it ends, so a stopped evaluation keeps what it finished.
"""

from __future__ import annotations

import json
import math
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
    engine: ChatEngine


def resolve_targets(spec: EvalSpec) -> list[Target]:
    """An engine per target, nothing loaded yet: a run with no adapter, an unknown run or a ``base`` with
    nothing to take its model from is refused here, before any process starts."""
    models = [t for t in spec.targets if t != BASE]
    if not models:
        raise StudioError("eval target base: name a run or an export too, whose base model it is")
    out = []
    for label in spec.targets:
        engine = engine_for(models[0], base_only=True) if label == BASE else engine_for(label)
        out.append(Target(label, engine))
    return out


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
    lm: Any, engine: ChatEngine, task: str | dict[str, Any], spec: EvalSpec, task_manager: Any = None
) -> dict[str, Any]:
    """lm-eval's own results of one task on one loaded model (samples included)."""
    return task_results(
        lm,
        task,
        limit=spec.limit,
        num_fewshot=spec.num_fewshot,
        apply_chat_template=spec.apply_chat_template,
        system=system_instruction(engine),
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
        target.engine.load()
        lm = hflm(target.engine, spec.batch_size)
        for task in tasks:
            name = task_name(task)
            if on_task is not None:
                on_task(target.label, name, done, total)
            outcome = run_task(lm, target.engine, task, spec, manager)
            results.add(target.label, name, outcome)
            done += 1
            if on_result is not None:
                figures = {k: v["value"] for k, v in metric_rows(outcome).items() if v["value"] is not None}
                on_result(target.label, name, figures)
        target.engine.model = None  # free it before the next target loads
    return results
