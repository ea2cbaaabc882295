"""Comparing runs: per-run results folded from events, and the recipe fields that differ (dotted names).

Used by the Compare screen and ``studio runs compare RUN RUN... [--json]``. It only reads run
directories, so comparing live runs is safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastudio.train.launch.manage import intact_state
from lorastudio.train.launch.runs import RECIPE_FILE, effective_status, read_meta
from lorastudio.train.run.events import Status

Curve = list[tuple[int, float]]


@dataclass
class RunResult:
    """What one run achieved, for the comparison table and the JSON summary."""

    name: str
    path: Path
    recipe: str
    status: Status
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
    """Mean of the throughput the worker reported per logging interval (``RunState.mean_tokens_per_s``)."""
    tokens_seen: int = 0
    duration_s: float | None = None
    """Time spent in the worker, summed over resumes (``RunState.duration_s``)."""
    peak_vram_mb: float | None = None
    peak_rss_mb: float | None = None
    loss: Curve = field(default_factory=list)
    eval: Curve = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def r(value: float | None, digits: int = 4) -> float | None:
            return round(value, digits) if value is not None else None

        return {
            "name": self.name,
            "path": str(self.path),
            "recipe": self.recipe,
            "status": self.status,
            "step": self.step,
            "max_steps": self.max_steps,
            "final_loss": r(self.final_loss),
            "best_loss": r(self.best_loss),
            "best_loss_step": self.best_loss_step,
            "eval_loss": r(self.eval_loss),
            "best_eval_loss": r(self.best_eval_loss),
            "best_eval_step": self.best_eval_step,
            "best_checkpoint": self.best_checkpoint,
            "tokens_per_s": r(self.tokens_per_s, 1),
            "tokens_seen": self.tokens_seen,
            "duration_s": r(self.duration_s, 1),
            "peak_vram_mb": r(self.peak_vram_mb, 1),
            "peak_rss_mb": r(self.peak_rss_mb, 1),
        }


def _by_step(points: Curve) -> Curve:
    """One value per step, the latest written winning (a resumed run logs the steps after its checkpoint again)."""
    latest: dict[int, float] = {}
    for step, value in points:
        latest[step] = value
    return sorted(latest.items())


def run_result(path: Path) -> RunResult:
    """The run's figures, all from one fold of its events (:class:`RunState` owns how each is derived)."""
    meta = read_meta(path)
    state = intact_state(path)
    status = effective_status(state, meta, path)
    lowest_eval = state.lowest_eval_loss if state.lowest_eval_loss is not None else state.best_eval_loss
    return RunResult(
        name=path.name,
        path=path,
        recipe=str(meta.get("recipe", "?")),
        status=status,
        step=state.step,
        max_steps=state.max_steps,
        final_loss=state.last_loss,
        best_loss=state.best_loss,
        best_loss_step=state.best_loss_step,
        eval_loss=state.last_eval_loss,
        best_eval_loss=lowest_eval,
        best_eval_step=state.lowest_eval_step,
        best_checkpoint=state.best_checkpoint,
        tokens_per_s=state.mean_tokens_per_s,
        tokens_seen=state.tokens_seen,
        duration_s=state.duration_s,
        peak_vram_mb=state.peak_vram_mb,
        peak_rss_mb=state.peak_rss_mb,
        loss=_by_step(state.loss),
        eval=_by_step(state.eval_loss),
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
    from lorastudio.train.launch.runs import load_run_recipe

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


LOSS_FIELDS = ("train.method", "dpo.loss_type", "dpo.rpo_alpha", "kto.loss_type", "grpo.loss_type")
"""Recipe fields that change what the logged loss is (not only how training goes): runs that differ in one
have losses that do not compare (``dpo.rpo_alpha`` adds a supervised term to DPO's)."""


@dataclass
class Comparison:
    runs: list[RunResult]
    differing: dict[str, list[Any]]

    @property
    def loss_caveat(self) -> str | None:
        """Why these runs' losses do not compare, when a field in :data:`LOSS_FIELDS` differs; else None."""
        fields = [name for name in LOSS_FIELDS if name in self.differing]
        if not fields:
            return None
        if "train.method" in fields:  # each method's own sections differ with it: naming them adds nothing
            fields = ["train.method"]
        return f"losses are not the same measure ({', '.join(fields)} differ): compare shapes, not values"

    def to_json(self) -> dict[str, Any]:
        return {
            "loss_caveat": self.loss_caveat,
            "runs": [r.to_json() for r in self.runs],
            "differing": {
                name: {run.name: value for run, value in zip(self.runs, values, strict=True)}
                for name, values in self.differing.items()
            },
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
