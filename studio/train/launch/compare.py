"""Comparing runs: per-run results folded from events (``runs.RunSummary``), and the recipe fields that
differ (dotted names).

Used by the Compare screen and ``studio runs compare RUN RUN... [--json]``. It only reads run
directories, so comparing live runs is safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.train.launch.manage import intact_state
from lorastudio.train.launch.runs import RECIPE_FILE, RunSummary, effective_status, read_meta, summary_of


def run_result(path: Path) -> RunSummary:
    """The run's figures for Compare and sweeps; a damaged run is refused, naming the file (``damage.py``)."""
    meta = read_meta(path)
    state = intact_state(path)
    return summary_of(path, meta, state, effective_status(state, meta, path))


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
    runs: list[RunSummary]
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
            "runs": [r.results_json() for r in self.runs],
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
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
