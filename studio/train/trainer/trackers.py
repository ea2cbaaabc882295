"""Experiment trackers a run reports to beside its own events: TensorBoard, W&B, MLflow and Trackio.

``train.report_to`` names them and the trainer's own integrations (transformers' callbacks) write to them;
studio only decides where, through each tracker's documented environment variables, before training
starts. Each tracker needs its package, an optional extra (``pip install 'lorastudio[wandb]'``); a missing
one is refused before the run directory exists (:func:`check_available`, called by ``create_run``).
Where each tracker writes is recorded in the run's ``run.json`` under ``trackers``.

Defaults, each left alone when the variable is already set: TensorBoard writes ``RUN/tensorboard``; W&B
writes ``RUN/wandb`` in project ``studio``, offline when no API key is configured (``wandb sync`` uploads it
later); MLflow uses a file store in ``RUN/mlruns`` (``MLFLOW_TRACKING_URI`` picks a database or a server) and an
experiment named for the recipe; Trackio keeps its
own local database (``TRACKIO_DIR``) with the recipe as project.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastudio.errors import RecipeError
from lorastudio.recipe import Recipe

MODULES: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard", "tensorboardX"),
    "wandb": ("wandb",),
    "mlflow": ("mlflow",),
    "trackio": ("trackio",),
}
"""Tracker -> the modules any one of which makes it work (as transformers' own availability checks)."""

TRACKERS = tuple(MODULES)


def missing(names: list[str]) -> list[str]:
    """The trackers among ``names`` whose package is not installed."""
    return [name for name in names if not any(importlib.util.find_spec(m) for m in MODULES[name])]


def check_available(recipe: Recipe) -> None:
    """Refuse a recipe whose ``train.report_to`` names a tracker that is not installed, naming its extra."""
    absent = missing(list(recipe.train.report_to))
    if absent:
        extras = " ".join(f"'lorastudio[{name}]'" for name in absent)
        raise RecipeError(
            f"train.report_to: {', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not installed; "
            f"pip install {extras} (or remove {'it' if len(absent) == 1 else 'them'} from train.report_to)"
        )


@dataclass(frozen=True)
class Tracking:
    """What the trainer is told (``report_to`` and a few arguments) and where each tracker writes."""

    report_to: list[str] = field(default_factory=list)
    args: dict[str, Any] = field(default_factory=dict)
    """Extra trainer arguments (``run_name``, and Trackio's ``project``)."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables the trackers read, set in the worker before the trainer is built."""
    where: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Tracker -> where it writes (folder, URI, project, mode), as recorded in ``run.json``."""


def _wandb_has_key(env: Mapping[str, str]) -> bool:
    if env.get("WANDB_API_KEY"):
        return True
    netrc = Path(env.get("NETRC") or Path.home() / ".netrc")
    try:
        return "api.wandb.ai" in netrc.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def plan(recipe: Recipe, run_dir: Path, env: Mapping[str, str] | None = None) -> Tracking:
    """The trackers' settings for one run; ``env`` (default: this process's) wins where it sets a variable."""
    env = os.environ if env is None else env
    names = list(dict.fromkeys(recipe.train.report_to))
    if not names:
        return Tracking()
    settings: dict[str, str] = {}
    where: dict[str, dict[str, Any]] = {}

    def default(key: str, value: str) -> str:
        if key not in env:
            settings[key] = value
        return env.get(key, value)

    if "tensorboard" in names:
        where["tensorboard"] = {"dir": default("TENSORBOARD_LOGGING_DIR", str(run_dir / "tensorboard"))}
    if "wandb" in names:
        folder = default("WANDB_DIR", str(run_dir))
        mode = env.get("WANDB_MODE") or (
            "online" if _wandb_has_key(env) else default("WANDB_MODE", "offline")
        )
        where["wandb"] = {
            "dir": str(Path(folder) / "wandb"),
            "project": default("WANDB_PROJECT", "studio"),
            "mode": mode,
        }
    if "mlflow" in names:
        if "MLFLOW_TRACKING_URI" not in env:
            # A file store needs no database packages (mlflow-skinny has none); MLflow 3 asks to opt in to it.
            default("MLFLOW_ALLOW_FILE_STORE", "true")
        where["mlflow"] = {
            "tracking_uri": default("MLFLOW_TRACKING_URI", (run_dir / "mlruns").as_uri()),
            "experiment": default("MLFLOW_EXPERIMENT_NAME", recipe.name),
        }
    args: dict[str, Any] = {"run_name": run_dir.name}
    if "trackio" in names:
        args["project"] = recipe.name
        where["trackio"] = {
            "project": recipe.name,
            "dir": env.get("TRACKIO_DIR", str(Path.home() / ".cache" / "huggingface" / "trackio")),
        }
    return Tracking(list(names), args, settings, where)


def apply(tracking: Tracking, environ: MutableMapping[str, str] | None = None) -> None:
    """Set the trackers' environment in this process (the worker), where their callbacks read it."""
    (os.environ if environ is None else environ).update(tracking.env)
