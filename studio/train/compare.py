"""Comparing runs: per-run results folded from events, and the recipe fields that differ (dotted names).

Used by the Compare screen and ``studio runs compare RUN RUN... [--json]``. It only reads run
directories, so comparing live runs is safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastudio.train.events import EVENTS_FILE, TERMINAL_STATUSES, read_all
from lorastudio.train.runs import RECIPE_FILE, read_meta, summarise

Curve = list[tuple[int, float]]


@dataclass
class RunResult:
    """What one run achieved, for the comparison table and the JSON summary."""

    name: str
    path: Path
    recipe: str
    status: str
    step: int
    max_steps: int
    final_loss: float | None = None
    best_loss: float | None = None
    best_loss_step: int | None = None
    eval_loss: float | None = None
    """The last eval loss logged (None when the run never evaluated)."""
    best_eval_loss: float | None = None
    best_eval_step: int | None = None
    best_checkpoint: str | None = None
    tokens_per_s: float | None = None
    """Mean of the throughput the worker reported per logging interval."""
    tokens_seen: int = 0
    duration_s: float | None = None
    """Time spent in the worker (summed over resumes), from ``starting`` to the final status."""
    peak_vram_mb: float | None = None
    peak_rss_mb: float | None = None
    loss: Curve = field(default_factory=list)
    eval: Curve = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def r(value: float | None, digits: int = 4) -> float | None:
            return round(value, digits) if value is not None else None

        return {
            "name": self.name, "path": str(self.path), "recipe": self.recipe, "status": self.status,
            "step": self.step, "max_steps": self.max_steps,
            "final_loss": r(self.final_loss), "best_loss": r(self.best_loss), "best_loss_step": self.best_loss_step,
            "eval_loss": r(self.eval_loss), "best_eval_loss": r(self.best_eval_loss),
            "best_eval_step": self.best_eval_step, "best_checkpoint": self.best_checkpoint,
            "tokens_per_s": r(self.tokens_per_s, 1), "tokens_seen": self.tokens_seen,
            "duration_s": r(self.duration_s, 1), "peak_vram_mb": r(self.peak_vram_mb, 1),
            "peak_rss_mb": r(self.peak_rss_mb, 1),
        }


def _by_step(points: Curve) -> Curve:
    """One value per step, the latest written winning (a resumed run logs the steps after its checkpoint again)."""
    latest: dict[int, float] = {}
    for step, value in points:
        latest[step] = value
    return sorted(latest.items())


def _best(points: Curve) -> tuple[float | None, int | None]:
    if not points:
        return None, None
    step, value = min(points, key=lambda p: (p[1], p[0]))
    return value, step


def run_result(path: Path) -> RunResult:
    summary = summarise(path)
    loss: Curve = []
    evals: Curve = []
    throughput: list[float] = []
    tokens = 0
    vram: list[float] = []
    rss: list[float] = []
    duration, session_start, last_t = 0.0, None, None
    for event in read_all(path / EVENTS_FILE):
        kind, t = event.get("kind"), event.get("t")
        if isinstance(t, (int, float)):
            last_t = float(t)
        if kind == "status":
            status = str(event.get("status", ""))
            if status == "starting" and last_t is not None:
                if session_start is not None:  # the previous session ended without a final status
                    duration += last_t - session_start
                session_start = last_t
            elif status in TERMINAL_STATUSES and session_start is not None and last_t is not None:
                duration += last_t - session_start
                session_start = None
        step = event.get("step")
        if event.get("eval_loss") is not None and step is not None:  # on metrics or eval events alike
            evals.append((int(step), float(event["eval_loss"])))
        if kind == "metrics":
            if event.get("loss") is not None and step is not None:
                loss.append((int(step), float(event["loss"])))
            if event.get("tokens_per_s"):
                throughput.append(float(event["tokens_per_s"]))
            tokens = max(tokens, int(event.get("tokens_seen") or 0))
        elif kind == "telemetry":
            peak = event.get("torch_peak_reserved_mb")
            if peak is None:
                gpus = event.get("gpus") or []
                mine = [g.get("process_memory_mb") for g in gpus if g.get("process_memory_mb")]
                peak = sum(mine) if mine else (gpus[0].get("memory_used_mb") if gpus else None)
            if peak:
                vram.append(float(peak))
            if event.get("rss_mb"):
                rss.append(float(event["rss_mb"]))
    if session_start is not None and last_t is not None:  # still running (or died): count up to the last event
        duration += last_t - session_start
    loss, evals = _by_step(loss), _by_step(evals)
    best_loss, best_loss_step = _best(loss)
    best_eval, best_eval_step = _best(evals)
    best_checkpoint = getattr(summary, "best_checkpoint", None)  # written by the eval-aware worker when present
    summary_best_eval = getattr(summary, "best_eval_loss", None)
    if summary_best_eval is not None and best_eval is None:
        best_eval = float(summary_best_eval)
    meta = read_meta(path)
    return RunResult(
        name=summary.name, path=path, recipe=str(meta.get("recipe", summary.recipe)), status=summary.status,
        step=summary.step, max_steps=summary.max_steps,
        final_loss=loss[-1][1] if loss else None, best_loss=best_loss, best_loss_step=best_loss_step,
        eval_loss=evals[-1][1] if evals else None, best_eval_loss=best_eval, best_eval_step=best_eval_step,
        best_checkpoint=best_checkpoint,
        tokens_per_s=sum(throughput) / len(throughput) if throughput else None, tokens_seen=tokens,
        duration_s=duration if duration > 0 else None, peak_vram_mb=max(vram) if vram else None,
        peak_rss_mb=max(rss) if rss else None, loss=loss, eval=evals,
    )


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"learning_rate": 3e-3}}`` -> ``{"train.learning_rate": 3e-3}``; lists stay whole values."""
    if not isinstance(data, dict):
        return {prefix: data} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def recipe_fields(path: Path) -> dict[str, Any]:
    """The run's resolved recipe as dotted fields, defaults filled in (so an older recipe.yaml compares fairly)."""
    from lorastudio.train.runs import load_run_recipe

    try:
        return flatten(load_run_recipe(path).model_dump(mode="json"))
    except Exception:  # a recipe this version no longer validates: compare what the file says
        import yaml

        try:
            return flatten(yaml.safe_load((path / RECIPE_FILE).read_text(encoding="utf-8")) or {})
        except (OSError, yaml.YAMLError):
            return {}


# Fields that always differ or say nothing about the training itself.
IGNORED_FIELDS = frozenset({"description", "tags"})


def differing_fields(fields: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Dotted name -> one value per run, only for the names whose values are not all equal (missing = None)."""
    names: list[str] = []
    for item in fields:
        names += [n for n in item if n not in names]
    out: dict[str, list[Any]] = {}
    for name in names:
        if name in IGNORED_FIELDS:
            continue
        values = [item.get(name) for item in fields]
        if any(v != values[0] for v in values[1:]):
            out[name] = values
    return out


@dataclass
class Comparison:
    runs: list[RunResult]
    differing: dict[str, list[Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": [r.to_json() for r in self.runs],
            "differing": {name: {run.name: value for run, value in zip(self.runs, values, strict=True)}
                          for name, values in self.differing.items()},
        }


def compare_runs(paths: list[Path]) -> Comparison:
    from lorastudio.errors import RunError

    unique = list(dict.fromkeys(p.resolve() for p in paths))
    if len(unique) < 2:
        raise RunError("compare needs two or more different runs")
    return Comparison([run_result(p) for p in unique], differing_fields([recipe_fields(p) for p in unique]))


def format_value(value: Any) -> str:
    """A recipe value for a table cell: short floats, lists joined, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value) or "[]"
    return str(value)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
