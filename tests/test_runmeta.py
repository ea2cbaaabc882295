"""run.json as a typed RunMeta (rundir.py), and the one meaning of best_eval_loss (runs.RunSummary)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from runs_fixtures import write_run

from lorastudio import mcpserver
from lorastudio.cli import main
from lorastudio.errors import RunError
from lorastudio.train.launch import compare, runs, sweep
from lorastudio.train.run import rundir
from lorastudio.train.run.rundir import MetaUpdate, RunMeta, SlurmMeta, SweepMeta

T0 = 1_790_000_000.0


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    return tmp_path / "data" / "studio" / "runs"


def _file(run: Path) -> dict[str, Any]:
    data = json.loads((run / "run.json").read_text())
    assert isinstance(data, dict)
    return data


def test_run_meta_round_trips_with_its_schema_version(tmp_path: Path) -> None:
    rundir.write_meta(tmp_path, RunMeta(format=1, name="r", recipe="tiny", extends=None, created=T0))
    rundir.update_meta(tmp_path, pid=41, pid_started=T0 + 1.5, nodes=2)
    rundir.update_meta(tmp_path, slurm=SlurmMeta(job_id="7", jobs=["7"], options={"nodes": 2}, submitted=T0))
    rundir.update_meta(
        tmp_path, sweep=SweepMeta(name="lr", index=1, of=2, fields={"train.learning_rate": 1e-3})
    )
    rundir.update_meta(tmp_path, trackers={"tensorboard": {"dir": "/x"}}, resumed_with=["train.max_steps=9"])
    # the same keys as before, plus the version; nested parts hold only what their writer set
    assert _file(tmp_path) == {
        "schema_version": rundir.META_VERSION,
        "format": 1,
        "name": "r",
        "recipe": "tiny",
        "extends": None,
        "created": T0,
        "pid": 41,
        "pid_started": T0 + 1.5,
        "nodes": 2,
        "slurm": {"job_id": "7", "jobs": ["7"], "options": {"nodes": 2}, "submitted": T0},
        "sweep": {"name": "lr", "index": 1, "of": 2, "fields": {"train.learning_rate": 1e-3}},
        "trackers": {"tensorboard": {"dir": "/x"}},
        "resumed_with": ["train.max_steps=9"],
    }
    meta, problem = rundir.inspect_meta(tmp_path)
    assert problem is None
    assert meta == RunMeta.model_validate(_file(tmp_path))
    assert (meta.pid, meta.slurm and meta.slurm.job_id, meta.sweep and meta.sweep.index) == (41, "7", 1)


def test_an_older_run_json_without_a_schema_version_loads_as_version_1(root: Path) -> None:
    """A run written before RunMeta: no schema_version, only the first writer's keys; it lists and updates."""
    run = write_run(root, "old-run", created=T0, eval_every=4)
    assert "schema_version" not in _file(run)
    meta, problem = rundir.inspect_meta(run)
    assert problem is None
    assert (meta.schema_version, meta.recipe, meta.created, meta.pid, meta.slurm) == (
        1,
        "tiny-pirate",
        T0,
        None,
        None,
    )
    summary = runs.summarise(run)
    assert (summary.status, summary.recipe, summary.started) == ("done", "tiny-pirate", T0)
    rundir.update_meta(run, resumed_with=["train.max_steps=20"])
    assert _file(run) == {
        "schema_version": 1,
        "format": 1,
        "name": "old-run",
        "recipe": "tiny-pirate",
        "created": T0,
        "resumed_with": ["train.max_steps=20"],
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pdi": 4}, "run: run.json has no field 'pdi'"),
        ({"sweeps": {"name": "lr"}}, "run: run.json has no field 'sweeps'"),
        ({"pid": "4"}, 'run: run.json field pid cannot be "4": not a process id'),
        ({"created": float("nan")}, "run: run.json field created cannot be NaN: not a time in seconds"),
        ({"nodes": True}, "run: run.json field nodes cannot be true: not a whole number"),
    ],
)
def test_a_misspelt_or_mistyped_field_is_refused_at_the_write(
    tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    rundir.write_meta(run, RunMeta(name="run", created=T0))
    before = (run / "run.json").read_bytes()
    with pytest.raises(RunError) as caught:
        rundir.update_meta(run, **fields)
    assert str(caught.value).startswith(message), caught.value
    assert (run / "run.json").read_bytes() == before  # nothing written


@pytest.mark.parametrize(
    ("data", "problem", "kept"),
    [
        ({"name": "x", "recipe": "r", "pdi": 4}, "run.json: pdi is not one of its fields", {"recipe": "r"}),
        (
            {"recipe": "r", "slurm": {"job_id": 7}},
            'run.json: slurm is {"job_id": 7}, not a Slurm job object',
            {"recipe": "r", "slurm": None},
        ),
        (
            {"recipe": "r", "sweep": {"index": 0}},
            'run.json: sweep is {"index": 0}, not a sweep object',
            {"recipe": "r", "sweep": None},
        ),
        (
            {"recipe": "r", "schema_version": 9},
            "run.json: schema_version 9 is newer than this studio reads (1)",
            {"recipe": "r"},
        ),
    ],
)
def test_a_run_json_field_readers_cannot_use_is_named_and_left_out(
    tmp_path: Path, data: dict[str, Any], problem: str, kept: dict[str, Any]
) -> None:
    (tmp_path / "run.json").write_text(json.dumps(data))
    meta, found = rundir.inspect_meta(tmp_path)
    assert found is not None, found
    assert found.startswith(problem), found
    assert {key: getattr(meta, key) for key in kept} == kept


def test_a_run_json_of_a_newer_schema_is_not_rewritten(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": 2, "recipe": "r"}))
    with pytest.raises(RunError, match=r"run.json has schema_version 2, newer than this studio writes"):
        rundir.update_meta(tmp_path, pid=4)
    assert _file(tmp_path) == {"schema_version": 2, "recipe": "r"}


def test_update_meta_keywords_are_run_meta_fields() -> None:
    """The TypedDict mypy checks update_meta's calls with names RunMeta's fields, with the same types."""
    assert get_type_hints(MetaUpdate) == {name: f.annotation for name, f in RunMeta.model_fields.items()}
    assert set(rundir.META_FIELDS) == set(RunMeta.model_fields)


def _checkpointed_run(root: Path, name: str, created: float, lr: float, checkpoint_loss: float) -> Path:
    """A run that evaluated every 4 steps, whose trainer recorded ``checkpoint_loss`` for its best checkpoint:
    not its lowest logged eval loss (the checkpoint was saved at another step than the lowest eval)."""
    run = write_run(root, name, created=created, lr=lr, loss_scale=12.0 * lr / 0.003, eval_every=4)
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    checkpoint = {
        "v": 1,
        "t": created + 100,
        "kind": "checkpoint",
        "step": 12,
        "best_checkpoint": "checkpoints/checkpoint-12",
        "best_eval_loss": checkpoint_loss,
    }
    lines.insert(len(lines) - 1, json.dumps(checkpoint) + "\n")
    (run / "events.jsonl").write_text("".join(lines))
    return run


def test_best_eval_loss_is_the_lowest_logged_in_the_listing_compare_and_the_sweep_ranking(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _checkpointed_run(root, "lr-a", T0, 0.003, checkpoint_loss=2.2)
    b = _checkpointed_run(root, "lr-b", T0 + 60, 0.001, checkpoint_loss=2.5)
    for index, run in enumerate((a, b)):
        rundir.update_meta(run, sweep=SweepMeta(name="lr", index=index, of=2, fields={"i": index}))
    # eval every 4 steps over 12, scale/2/sqrt(step), the last one 0.5 worse: step 8 is the lowest
    lowest = {a.name: round(6.0 / 8**0.5, 4), b.name: round(2.0 / 8**0.5, 4)}
    # neither is its best checkpoint's figure, and by those figures a would rank first
    assert lowest[a.name] < 2.2
    assert lowest[b.name] < 2.5
    assert lowest[b.name] < lowest[a.name]

    assert main(["runs", "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {n: round(listed[n]["best_eval_loss"], 4) for n in lowest} == lowest
    assert {n: listed[n]["best_checkpoint_eval_loss"] for n in lowest} == {a.name: 2.2, b.name: 2.5}

    status = mcpserver.run_status(a.name)  # the MCP server's functions, called as its tools are
    assert (round(status["best_eval_loss"], 4), status["best_checkpoint_eval_loss"]) == (lowest[a.name], 2.2)
    assert {r["name"]: round(r["best_eval_loss"], 4) for r in mcpserver.list_runs()} == lowest

    compared = compare.compare_runs([a, b])
    assert {r["name"]: r["best_eval_loss"] for r in compared.to_json()["runs"]} == lowest
    assert {r.name: r.best_eval_step for r in compared.runs} == {a.name: 8, b.name: 8}

    assert main(["runs", "compare", "--sweep", "lr", "--json"]) == 0
    ranking = json.loads(capsys.readouterr().out)
    assert ranking["ranked_by"] == "best_eval_loss"
    assert [(r["name"], r["rank"], r["best_eval_loss"]) for r in ranking["runs"]] == [
        (b.name, 1, lowest[b.name]),  # ranked by the lowest logged loss, not by the checkpoints' figures
        (a.name, 2, lowest[a.name]),
    ]
    best = sweep.compare_sweep("lr").best
    assert best is not None
    assert best.result.name == b.name
