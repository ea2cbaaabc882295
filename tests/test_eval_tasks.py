"""Task scores while a run trains (issue 40, ``train.eval_tasks``): the recipe checks, the worker's rounds,
the fold and best_by, and the Monitor's lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_worker, screen_of, state_of, wait_until
from pydantic import ValidationError
from runs_fixtures import write_run

from lorastudio import registry
from lorastudio.errors import StudioError
from lorastudio.evaluate.intraining import install, match_metric
from lorastudio.train.launch import runs
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all
from lorastudio.train.run.events import TaskScoresEvent
from lorastudio.train.run.runstate import RunState, fold
from lorastudio.train.trainer.adapters import resolve_adapter

SCORE = "studio_arithmetic/exact_match (first_number)"


@pytest.fixture
def runs_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data" / "studio" / "runs"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.best_by=accuracy"], "train.best_by: 'accuracy'; give eval_loss or TASK/METRIC"),
        (
            ["train.best_by=studio_arithmetic/exact_match"],
            "train.eval_tasks is empty; add studio_arithmetic to train.eval_tasks",
        ),
        (["train.eval_tasks_limit=0"], "eval_tasks_limit"),
        (
            [
                "train.eval_tasks=[studio_arithmetic]",
                "train.best_by=studio_arithmetic/exact_match",
                "train.devices=2",
                "train.distributed=fsdp",
            ],
            "task scores need the whole model on one process",
        ),
    ],
)
def test_recipe_refuses_a_best_by_it_cannot_use(overrides: list[str], message: str) -> None:
    with pytest.raises((ValidationError, StudioError)) as caught:
        registry.load("tiny-pirate", overrides)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.eval_tasks=[no_such_task_xyz]"], "train.eval_tasks: unknown task no_such_task_xyz"),
        (
            ["train.eval_tasks=[studio_general]", "train.best_by=studio_arithmetic/exact_match"],
            "train.best_by: studio_arithmetic/exact_match names task studio_arithmetic, which is not in "
            "train.eval_tasks (studio_general)",
        ),
        (["train.eval_tasks=[/nowhere/task.yaml]"], "task /nowhere/task.yaml: no such task file"),
    ],
)
def test_create_run_refuses_unknown_tasks_before_any_directory(
    runs_home: Path, overrides: list[str], message: str
) -> None:
    install()
    recipe = registry.load("tiny-pirate", overrides)
    runs_home.mkdir(parents=True)
    before = sorted(runs_home.rglob("*"))
    with pytest.raises(StudioError) as caught:
        runs.create_run(recipe)
    assert message in str(caught.value)
    assert sorted(runs_home.rglob("*")) == before  # no run directory


def test_validate_names_an_unknown_task(capsys: pytest.CaptureFixture[str]) -> None:
    from lorastudio.cli import main

    path = str(Path(__file__).resolve().parent.parent / "recipes" / "tiny-pirate.yaml")
    assert main(["validate", path, "train.eval_tasks=[no_such_task_xyz]"]) == 1
    assert f"{path}: train.eval_tasks: unknown task no_such_task_xyz" in capsys.readouterr().err
    assert main(["validate", path, "train.eval_tasks=[studio_arithmetic]"]) == 0


def test_best_by_reads_the_metric_under_its_filter() -> None:
    values = {SCORE: 0.5, "studio_general/acc": 0.25}
    assert match_metric("studio_arithmetic/exact_match", values) == 0.5
    assert match_metric(SCORE, values) == 0.5
    assert match_metric("studio_general/acc", values) == 0.25
    assert match_metric("studio_general/acc_norm", values) is None


def test_fold_keeps_scores_and_the_best_checkpoint_by_score(tmp_path: Path) -> None:
    """A run whose best checkpoint was chosen by a task score: RUN@best is that checkpoint, not the one with
    the lowest eval loss."""
    run = write_run(tmp_path, "scored", created=1.0, steps=6)
    scores = {2: 0.25, 4: 0.75, 6: 0.5}
    with (run / EVENTS_FILE).open("a") as handle:
        for step, score in scores.items():
            lines = [
                {"kind": "eval", "step": step, "eval_loss": 3.0 - step / 10},  # lowest at step 6
                {"kind": "task_scores", "step": step, "at": "eval", "values": {SCORE: score}, "seconds": 1.5},
                {
                    "kind": "checkpoint",
                    "step": step,
                    "best_checkpoint": "checkpoints/checkpoint-4"
                    if step >= 4
                    else "checkpoints/checkpoint-2",
                    "best_by": "studio_arithmetic/exact_match",
                    "best_score": 0.75 if step >= 4 else 0.25,
                },
            ]
            handle.write("".join(json.dumps(line) + "\n" for line in lines))
    for step in scores:
        folder = run / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes(b"x")
        (folder / "adapter_config.json").write_text("{}")
    state = state_of(run)
    assert state.task_curves == {SCORE: [(2, 0.25), (4, 0.75), (6, 0.5)]}
    assert state.task_scores == {SCORE: 0.5} and state.task_scoring_s == pytest.approx(4.5)
    assert (state.best_checkpoint, state.best_by, state.best_score) == (
        "checkpoints/checkpoint-4",
        "studio_arithmetic/exact_match",
        0.75,
    )
    assert state.best_eval_loss is None and state.lowest_eval_step == 6
    assert resolve_adapter(run, "best") == run / "checkpoints" / "checkpoint-4"
    # the listing cache's scalars keep them
    assert RunState.from_scalars(state.scalars_json()).task_scores == {SCORE: 0.5}


def test_task_scores_event_round_trips() -> None:
    event = TaskScoresEvent(step=4, at="eval", values={SCORE: 0.5}, limit=2, seconds=1.25, t=3.0)
    again = fold([event.to_json()])
    assert again.task_scores == {SCORE: 0.5}
    assert TaskScoresEvent.from_json(event.to_json()) == event


async def test_monitor_shows_the_task_scores(runs_home: Path) -> None:
    from lorastudio.app import StudioApp
    from lorastudio.screens.monitor import MonitorScreen
    from lorastudio.widgets.metrics_panel import MetricsPanel

    run = write_run(runs_home, "scored-run", created=1.0, steps=4)
    with (run / EVENTS_FILE).open("a") as handle:
        for step, score in ((2, 0.25), (4, 0.5)):
            values = {SCORE: score, "studio_general/acc": score / 2}
            handle.write(
                json.dumps({"kind": "task_scores", "step": step, "at": "eval", "values": values}) + "\n"
            )
    app = StudioApp(attach=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(
            pilot,
            lambda: (
                isinstance(app.screen, MonitorScreen)
                and app.screen.snapshot is not None
                and app.screen.snapshot.state.finished
            ),
        )
        screen = screen_of(app, MonitorScreen)
        panel = screen.query_one(MetricsPanel)
        await wait_until(pilot, lambda: SCORE in _text(panel))
        text = _text(panel)
        assert f"{SCORE} 0.500" in " ".join(text.split()) and "studio_general/acc 0.250" in " ".join(
            text.split()
        )
        assert text.index("eval loss") < text.index(SCORE) < text.index("lr ")


def _text(widget) -> str:
    import io

    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


@pytest.mark.slow
def test_run_scores_tasks_at_each_eval_and_best_by_picks_by_score(tiny_model: Path) -> None:
    recipe = registry.load(
        "tiny-pirate",
        [
            "train.max_steps=6",
            "train.save_steps=2",
            "train.eval_steps=2",
            "train.samples=[]",
            "train.eval_tasks=[studio_arithmetic]",
            "train.eval_tasks_limit=2",
            "train.best_by=studio_arithmetic/exact_match",
        ],
    )
    install()
    run_dir = runs.create_run(recipe)
    result = run_worker(run_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    events = read_all(run_dir / EVENTS_FILE)
    rounds = [e for e in events if e["kind"] == "task_scores"]
    assert [(r["step"], r["at"]) for r in rounds] == [(2, "eval"), (4, "eval"), (6, "eval")]
    for r in rounds:
        assert set(r["values"]) == {SCORE} and 0.0 <= r["values"][SCORE] <= 1.0
        assert r["limit"] == 2 and r["seconds"] > 0
    state = state_of(run_dir)
    assert state.status == "done" and state.best_by == "studio_arithmetic/exact_match"
    # the highest score, the earliest step on a tie (the trainer takes a new best only when strictly better)
    best = max(r["values"][SCORE] for r in rounds)
    first = next(r["step"] for r in rounds if r["values"][SCORE] == best)
    assert state.best_checkpoint == f"checkpoints/checkpoint-{first}" and state.best_score == best
    assert state.task_scoring_s == pytest.approx(sum(r["seconds"] for r in rounds), abs=0.01)
    print(f"\nduration with eval_tasks: {state.duration_s:.1f}s, scoring {state.task_scoring_s:.1f}s")
