"""What evaluations say, read back: the table, the deltas that stand out, the samples side by side, progress.

Every face reads an evaluation's folder through here: the Eval screen (its progress grid with an ETA, its
results table, a row's documents with each target's answer), Compare and ``studio runs compare`` (each run's
latest scores), a sweep ranked by an evaluation's metric, and the MCP tools. ``results.json`` and
``samples.jsonl`` are read defensively: a row or a sample of another shape (judged generations add some) is
shown with what it has, or skipped, never a traceback.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorastudio.errors import StudioError
from lorastudio.evaluate.job import EvalSummary, list_evals, summarise
from lorastudio.evaluate.runner import RESULTS_FILE, SAMPLES_FILE
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all
from lorastudio.train.run.events import ENDED_STATUSES

if TYPE_CHECKING:
    from lorastudio.train.launch.sweep import SweepComparison, SweepEntry


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


@dataclass(frozen=True)
class Cell:
    """One target's figure on one task/metric."""

    value: float | None
    stderr: float | None = None
    delta: float | None = None
    """Against the first target's figure (None in the first column, or when either is missing)."""


@dataclass(frozen=True)
class Row:
    """A task/metric and each target's cell (None: that target has no figure for it yet)."""

    metric: str
    cells: dict[str, Cell | None]
    extra: dict[str, Any] = field(default_factory=dict)
    """The row's other fields as results.json has them (another writer's rows may carry more)."""

    @property
    def task(self) -> str:
        return self.metric.split("/", 1)[0]

    def stands_out(self, label: str, first: str) -> bool:
        """The delta is larger than the two figures' combined standard error (both stderrs known)."""
        cell, base = self.cells.get(label), self.cells.get(first)
        if cell is None or base is None or cell.delta is None or cell.stderr is None or base.stderr is None:
            return False
        return abs(cell.delta) > math.hypot(cell.stderr, base.stderr)


@dataclass(frozen=True)
class EvalTable:
    """An evaluation's results: its targets (columns, the first is the reference) and rows."""

    folder: Path
    targets: tuple[str, ...]
    rows: list[Row]


def _cell(raw: Any) -> Cell | None:
    if not isinstance(raw, dict):
        return None
    return Cell(_number(raw.get("value")), _number(raw.get("stderr")), _number(raw.get("delta")))


def read_table(folder: Path) -> EvalTable | None:
    """The table in ``folder/results.json``; None when there is none yet (or it is not an evaluation's)."""
    try:
        data = json.loads((folder / RESULTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    spec: dict[str, Any] = data["spec"] if isinstance(data.get("spec"), dict) else {}
    targets = tuple(str(t) for t in (spec.get("targets") or ()) if isinstance(t, str))
    rows = []
    for raw in data.get("table") or []:
        if not isinstance(raw, dict) or not isinstance(raw.get("metric"), str):
            continue
        cells: dict[str, Any] = raw["targets"] if isinstance(raw.get("targets"), dict) else {}
        for label in cells:
            if label not in targets:
                targets += (str(label),)
        extra = {k: v for k, v in raw.items() if k not in ("metric", "targets")}
        rows.append(Row(raw["metric"], {str(k): _cell(v) for k, v in cells.items()}, extra))
    return EvalTable(folder, targets, rows)


# -- progress ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where a live (or ended) evaluation is: each (target, task) pair's state, and the time left."""

    pairs: dict[tuple[str, str], str]
    """(target, task) -> ``waiting``, ``running`` or ``done`` (targets and tasks in their order)."""
    done: int
    total: int
    eta_s: float | None
    """Seconds left, from the finished pairs' mean duration (None before one has finished)."""
    running: bool = False
    """A task started after the last status (the job writes ``loading model``, then runs the tasks)."""

    @property
    def targets(self) -> list[str]:
        return list(dict.fromkeys(t for t, _ in self.pairs))

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(k for _, k in self.pairs))


def progress(summary: EvalSummary, now: float | None = None) -> Progress:
    """The pairs' states from the evaluation's events (``eval_task`` starts one, ``eval_result`` ends it)."""
    now = time.time() if now is None else now
    events = read_all(summary.path / EVENTS_FILE)
    targets = list(summary.spec.targets) if summary.spec else []
    seen: list[str] = []
    pairs: dict[tuple[str, str], str] = {}
    started: dict[tuple[str, str], float] = {}
    durations: list[float] = []
    total = 0
    running = False
    for event in events:
        kind = event.get("kind")
        if kind == "status":
            running = False
        elif kind == "eval_task":
            running = True
        key = (str(event.get("target")), str(event.get("task")))
        if kind == "eval_progress" and isinstance(event.get("total"), int):
            total = max(total, int(event["total"]))
        elif kind == "eval_task":
            seen += [key[1]] if key[1] not in seen else []
            pairs[key] = "running"
            started[key] = float(event.get("t") or now)
        elif kind == "eval_result":
            seen += [key[1]] if key[1] not in seen else []
            pairs[key] = "done"
            if key in started:
                durations.append(max(0.0, float(event.get("t") or now) - started[key]))
    spec_tasks = list(summary.spec.tasks) if summary.spec else []
    # a task file names its task inside: the spec's names stand in until the events name them
    tasks = seen + spec_tasks[len(seen) :] if len(seen) < len(spec_tasks) else seen
    grid = {(t, k): pairs.get((t, k), "waiting") for t in targets for k in tasks}
    ended = summary.state.finished or summary.status in ENDED_STATUSES
    if ended:
        grid = {key: ("done" if state == "done" else "waiting") for key, state in grid.items()}
    done = sum(state == "done" for state in grid.values())
    total = max(total, len(grid))
    eta: float | None = None
    if durations and not ended:
        mean = sum(durations) / len(durations)
        elapsed = [now - started[key] for key, state in grid.items() if state == "running" and key in started]
        eta = max(0.0, mean * (total - done) - sum(min(e, mean) for e in elapsed))
    return Progress(grid, done, total, eta, running and not ended)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA after the first task"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}h{minutes:02d}m" if hours else f"ETA {minutes}m{secs:02d}s"


# -- samples -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleRow:
    """One document of a task: its prompt, the reference answer and each target's answer (and score)."""

    doc_id: Any
    prompt: str
    reference: str
    answers: dict[str, str]
    scores: dict[str, float | None]


def _prompt(sample: dict[str, Any]) -> str:
    args = sample.get("arguments")
    if isinstance(args, dict):  # another lm-eval: {"gen_args_0": {"arg_0": prompt, ...}}
        first = next(iter(args.values()), None)
        return str(first.get("arg_0", "")) if isinstance(first, dict) else str(first or "")
    if isinstance(args, list) and args:
        first = args[0]
        return str(first[0]) if isinstance(first, list) and first else str(first)
    for key in ("prompt", "input"):
        if isinstance(sample.get(key), str):
            return str(sample[key])
    return ""


def _choices(sample: dict[str, Any]) -> list[str]:
    """A multiple-choice document's continuations (each request's second argument)."""
    args = sample.get("arguments")
    if isinstance(args, list) and all(isinstance(a, list) and len(a) >= 2 for a in args):
        return [str(a[1]).strip() for a in args if isinstance(a[1], str)]
    return []


def _answer(sample: dict[str, Any]) -> str:
    if isinstance(sample.get("answer"), str):  # a judged generation's own row
        return str(sample["answer"])
    responses = sample.get("filtered_resps")
    if not isinstance(responses, list) or not responses:
        return ""
    if all(isinstance(r, list) and r and isinstance(r[0], (int, float, str)) for r in responses) and (
        len(responses) > 1 or _choices(sample)
    ):
        try:  # log-likelihoods, one per choice: the answer is the most likely choice
            scores = [float(r[0]) for r in responses]
        except (TypeError, ValueError):
            return str(responses[0])
        best = max(range(len(scores)), key=scores.__getitem__)
        choices = _choices(sample)
        return choices[best] if best < len(choices) else f"choice {best}"
    first = responses[0]
    scored = str(first[0] if isinstance(first, list) and first else first)
    raw = sample.get("resps")  # the generated text, before the task's filter took what it scores
    said = raw[0][0] if isinstance(raw, list) and raw and isinstance(raw[0], list) and raw[0] else None
    if isinstance(said, str) and said.strip() != scored.strip():
        return f"{said.strip()}  → {scored}"
    return scored


def _reference(sample: dict[str, Any]) -> str:
    target = sample.get("target")
    choices = _choices(sample)
    if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(choices):
        return choices[target]
    if isinstance(target, str) and target.isdigit() and int(target) < len(choices):
        return choices[int(target)]
    return "" if target is None else str(target)


def _score(sample: dict[str, Any], metric: str) -> float | None:
    name = metric.split("/", 1)[-1].split(" (", 1)[0]
    return _number(sample.get(name))


def read_samples(folder: Path, metric: str) -> list[SampleRow]:
    """The documents of the row's task, each target's answer beside the others (document order)."""
    task = metric.split("/", 1)[0]
    flt = metric.split(" (", 1)[1].rstrip(")") if " (" in metric else None
    docs: dict[str, dict[str, Any]] = {}
    try:
        lines = (folder / SAMPLES_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            sample = json.loads(line)
        except ValueError:
            continue  # a line cut by a stop is skipped, not the file
        if not isinstance(sample, dict) or sample.get("task") != task:
            continue
        if flt is not None and sample.get("filter") not in (None, flt):
            continue
        key = json.dumps(sample.get("doc_id"), default=str)
        doc = docs.setdefault(key, {"sample": sample, "answers": {}, "scores": {}})
        label = str(sample.get("eval_target", "?"))
        doc["answers"][label] = _answer(sample)
        doc["scores"][label] = _score(sample, metric)
    return [
        SampleRow(
            d["sample"].get("doc_id"),
            _prompt(d["sample"]),
            _reference(d["sample"]),
            d["answers"],
            d["scores"],
        )
        for d in docs.values()
    ]


# -- a run's latest scores -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunScores:
    """A run's figures in the newest evaluation that scored it (as the target that named it)."""

    eval_id: str
    target: str
    values: dict[str, float]
    """task/metric -> value."""

    def to_json(self) -> dict[str, Any]:
        return {"eval": self.eval_id, "target": self.target, "scores": self.values}


def _run_of(label: str, resolved: dict[str, Path | None]) -> Path | None:
    """The run a target label names (None for ``base``, an export, a run gone since), looked up once."""
    from lorastudio.chat.targets import run_of_target

    if label not in resolved:
        try:
            found = run_of_target(label) if label != "base" else None
        except StudioError:
            found = None
        resolved[label] = found.resolve() if found is not None else None
    return resolved[label]


def latest_scores(
    run: Path, evals: list[EvalSummary] | None = None, resolved: dict[str, Path | None] | None = None
) -> RunScores | None:
    """The newest finished evaluation (done, or stopped with some results) that has figures for ``run``."""
    resolved = {} if resolved is None else resolved
    run = run.resolve()
    for summary in list_evals() if evals is None else evals:
        if summary.spec is None or summary.status not in ("done", "stopped"):
            continue
        for label in summary.spec.targets:
            if _run_of(label, resolved) != run:
                continue
            found = read_table(summary.path)
            values = {
                row.metric: cell.value
                for row in (found.rows if found else [])
                if (cell := row.cells.get(label)) is not None and cell.value is not None
            }
            if values:
                return RunScores(summary.id, label, values)
    return None


def scores_of(runs: list[Path]) -> list[RunScores | None]:
    """Each run's latest scores (the evaluations listed, and their targets resolved, once for all)."""
    evals = list_evals()
    resolved: dict[str, Path | None] = {}
    return [latest_scores(run, evals, resolved) for run in runs]


def parse_rank_by(text: str) -> str:
    """``eval:TASK/METRIC`` -> ``TASK/METRIC``; anything else is refused naming the flag."""
    metric = text.removeprefix("eval:")
    if not text.startswith("eval:") or "/" not in metric or not all(metric.split("/", 1)):
        raise StudioError(f"--rank-by {text}: give eval:TASK/METRIC, e.g. eval:studio_general/acc")
    return metric


def rank_by_eval(
    comparison: SweepComparison, metric: str, higher_is_better: bool = True
) -> tuple[SweepComparison, dict[str, float | None]]:
    """The sweep's members ordered by ``metric`` in each one's latest evaluation (best first), and each
    member's figure by run name; members with no such figure come after, unranked. ``ranked_by`` becomes
    ``eval:METRIC``."""
    from dataclasses import replace

    scores = scores_of([e.result.path for e in comparison.entries])
    values: dict[str, float | None] = {}
    scored: list[tuple[float, SweepEntry]] = []
    unscored: list[SweepEntry] = []
    for entry, score in zip(comparison.entries, scores, strict=True):
        value = score.values.get(metric) if score is not None else None
        values[entry.result.name] = value
        fresh = replace(entry, rank=None, best=False)
        if value is None:
            unscored.append(fresh)
        else:
            scored.append((value, fresh))
    scored.sort(key=lambda pair: -pair[0] if higher_is_better else pair[0])
    entries = [replace(entry, rank=place, best=place == 1) for place, (_, entry) in enumerate(scored, 1)]
    return replace(comparison, ranked_by=f"eval:{metric}", entries=entries + unscored), values


def eval_summary(folder: Path) -> dict[str, Any]:
    """An evaluation as JSON: status, progress, and its table (what ``eval_results`` answers)."""
    summary = summarise(folder)
    found = read_table(folder) or EvalTable(folder, (), [])
    state = progress(summary)
    return {
        "id": summary.id,
        "path": str(folder),
        "status": summary.status,
        "cause": summary.cause,
        "targets": list(summary.spec.targets) if summary.spec else None,
        "tasks": list(summary.spec.tasks) if summary.spec else None,
        "done": state.done,
        "total": state.total,
        "table": [
            {
                "metric": row.metric,
                "targets": {
                    label: None
                    if cell is None
                    else {"value": cell.value, "stderr": cell.stderr, "delta": cell.delta}
                    for label, cell in row.cells.items()
                },
                "stands_out": [
                    label for label in found.targets[1:] if row.stands_out(label, found.targets[0])
                ],
            }
            for row in found.rows
        ],
    }


def find_eval(name: str) -> Path:
    """An evaluation by its id (``studio evals`` lists them) or its folder's path."""
    path = Path(name).expanduser()
    if path.is_dir() and (path / EVENTS_FILE).exists():
        return path.resolve()
    for summary in list_evals():
        if summary.id == name:
            return summary.path
    raise StudioError(f"no evaluation {name!r} (studio evals lists them)")
