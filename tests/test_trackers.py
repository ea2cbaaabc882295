"""train.report_to: a tiny run's losses reach TensorBoard (read back with TensorBoard's own reader), W&B offline
and an MLflow file store where those packages are installed; a missing tracker is refused before any run
directory exists, naming its extra; run.json records where each tracker wrote."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import STUDIO_BIN

from lorastudio import registry
from lorastudio.errors import RecipeError
from lorastudio.paths import runs_dir
from lorastudio.train.launch import runs
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all
from lorastudio.train.trainer import trackers

INSTALLED = [name for name in ("tensorboard", "wandb", "mlflow") if not trackers.missing([name])]
ABSENT = trackers.missing(list(trackers.TRACKERS))


@pytest.fixture(scope="module")
def tracked_run(tiny_model: Path) -> Path:
    """tiny-pirate, 4 steps, logging to every tracker installed here (W&B offline)."""
    if "tensorboard" not in INSTALLED:
        pytest.skip("tensorboard is not installed (it is in the dev extra: pip install -e '.[dev]')")
    recipe = registry.load("tiny-pirate", ["train.max_steps=4", f"train.report_to=[{','.join(INSTALLED)}]"])
    run_dir = runs.create_run(recipe)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "lorastudio.worker", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


def logged_losses(run_dir: Path) -> list[tuple[int, float]]:
    return [
        (e["step"], e["loss"])
        for e in read_all(run_dir / EVENTS_FILE)
        if e["kind"] == "metrics" and e.get("loss") is not None
    ]


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_loss_of_every_step(tracked_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    where = runs.read_meta(tracked_run)["trackers"]["tensorboard"]
    assert where == {"dir": str(tracked_run / "tensorboard")}
    reader = EventAccumulator(where["dir"])
    reader.Reload()
    board = [(e.step, e.value) for e in reader.Scalars("train/loss")]
    ours = logged_losses(tracked_run)
    assert [step for step, _ in ours] == [1, 2, 3, 4]
    assert [step for step, _ in board] == [1, 2, 3, 4]
    assert [v for _, v in board] == pytest.approx(
        [v for _, v in ours], rel=1e-6
    )  # float32 on TensorBoard's side
    assert "eval/loss" in reader.Tags()["scalars"]


@pytest.mark.slow
def test_wandb_offline_run_holds_the_losses(tracked_run: Path) -> None:
    if "wandb" not in INSTALLED:
        pytest.skip("wandb is not installed (pip install 'lorastudio[wandb]')")
    where = runs.read_meta(tracked_run)["trackers"]["wandb"]
    assert where == {"dir": str(tracked_run / "wandb"), "project": "studio", "mode": "offline"}
    logs = glob.glob(f"{where['dir']}/offline-run-*/run-*.wandb")
    assert len(logs) == 1
    # wandb 0.31 ships no Python reader for its transaction log; its history records carry each value as JSON
    raw = Path(logs[0]).read_bytes()
    assert b"train/loss" in raw
    for _, loss in logged_losses(tracked_run):
        assert json.dumps(loss).encode() in raw


@pytest.mark.slow
def test_mlflow_file_store_holds_the_loss_history(tracked_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if "mlflow" not in INSTALLED:
        pytest.skip("mlflow is not installed (pip install 'lorastudio[mlflow]')")
    import mlflow

    where = runs.read_meta(tracked_run)["trackers"]["mlflow"]
    assert where == {"tracking_uri": (tracked_run / "mlruns").as_uri(), "experiment": "tiny-pirate"}
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.MlflowClient(tracking_uri=where["tracking_uri"])
    experiment = client.get_experiment_by_name(where["experiment"])
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == tracked_run.name
    history = [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, "loss")]
    assert history == pytest.approx(logged_losses(tracked_run))


def test_a_missing_tracker_is_refused_before_a_run_directory_exists(studio_home: Path) -> None:
    if not ABSENT:
        pytest.skip("every tracker is installed here; nothing is missing")
    name = ABSENT[0]
    before = set(runs_dir().glob("*")) if runs_dir().is_dir() else set()
    with pytest.raises(RecipeError) as caught:
        runs.create_run(registry.load("tiny-pirate", [f"train.report_to={name}"]))
    assert str(caught.value) == (
        f"train.report_to: {name} is not installed; pip install 'lorastudio[{name}]' "
        "(or remove it from train.report_to)"
    )
    result = subprocess.run(
        [STUDIO_BIN, "train", "tiny-pirate", f"train.report_to={name}", "--detach"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"studio: {caught.value}"
    assert (set(runs_dir().glob("*")) if runs_dir().is_dir() else set()) == before


def test_report_to_is_validated_and_defaults_to_nothing() -> None:
    assert registry.load("tiny-pirate").train.report_to == []
    assert registry.load("tiny-pirate", ["train.report_to=tensorboard"]).train.report_to == ["tensorboard"]
    with pytest.raises(
        RecipeError,
        match=r"override 'train.report_to=\[comet\]': Input should be 'tensorboard', "
        r"'wandb', 'mlflow' or 'trackio'",
    ):
        registry.load("tiny-pirate", ["train.report_to=[comet]"])


def test_plan_puts_trackers_in_the_run_and_leaves_the_users_settings_alone(tmp_path: Path) -> None:
    recipe = registry.load("tiny-pirate", ["train.report_to=[tensorboard,wandb,mlflow,trackio]"])
    plan = trackers.plan(recipe, tmp_path / "run", env={"HOME": str(tmp_path)})
    assert plan.report_to == ["tensorboard", "wandb", "mlflow", "trackio"]
    assert plan.args == {"run_name": "run", "project": "tiny-pirate"}
    assert plan.env == {
        "TENSORBOARD_LOGGING_DIR": str(tmp_path / "run" / "tensorboard"),
        "WANDB_DIR": str(tmp_path / "run"),
        "WANDB_MODE": "offline",
        "WANDB_PROJECT": "studio",
        "MLFLOW_ALLOW_FILE_STORE": "true",
        "MLFLOW_TRACKING_URI": (tmp_path / "run" / "mlruns").as_uri(),
        "MLFLOW_EXPERIMENT_NAME": "tiny-pirate",
    }
    mine = {
        "HOME": str(tmp_path),
        "TENSORBOARD_LOGGING_DIR": "/tb",
        "WANDB_API_KEY": "k",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "TRACKIO_DIR": "/tr",
    }
    plan = trackers.plan(recipe, tmp_path / "run", env=mine)
    assert plan.where["tensorboard"] == {"dir": "/tb"}
    assert plan.where["wandb"]["mode"] == "online"
    assert plan.where["mlflow"] == {"tracking_uri": "http://mlflow:5000", "experiment": "tiny-pirate"}
    assert plan.where["trackio"] == {"project": "tiny-pirate", "dir": "/tr"}
    assert not {
        "TENSORBOARD_LOGGING_DIR",
        "WANDB_MODE",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_ALLOW_FILE_STORE",
    } & set(plan.env)
    assert trackers.plan(registry.load("tiny-pirate"), tmp_path) == trackers.Tracking()
