"""`studio sweep`: a grid of overrides becomes one run per point, queued one at a time on the device, grouped by
the sweep's name, ranked by `studio runs compare --sweep`, stopped by `studio sweep stop`; a bad value in the
grid starts nothing and names its key and value."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import STUDIO_BIN, state_of, wait_for

from lorastudio.errors import RecipeError
from lorastudio.paths import runs_dir
from lorastudio.train.launch import sweep
from lorastudio.train.launch.runs import read_meta, summarise
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all
from lorastudio.train.run.events import TERMINAL_STATUSES


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STUDIO_BIN, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )


def run_dirs() -> set[Path]:
    return set(runs_dir().glob("*")) if runs_dir().is_dir() else set()


def test_values_split_on_top_level_commas_only() -> None:
    assert sweep.split_values("1e-4,3e-4, 1e-3") == ["1e-4", "3e-4", "1e-3"]
    assert sweep.split_values("[q_proj,v_proj],all-linear") == ["[q_proj,v_proj]", "all-linear"]
    assert sweep.split_values("'a,b',c") == ["'a,b'", "c"]
    axes, fixed = sweep.parse_grid(["train.learning_rate=1e-4,3e-4", "train.max_steps=5", "lora.r=8,16"])
    assert axes == [sweep.Axis("train.learning_rate", ["1e-4", "3e-4"]), sweep.Axis("lora.r", ["8", "16"])]
    assert fixed == ["train.max_steps=5"]


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("lora.target_modules=[q_proj,v_proj", "an unclosed '['"),
        ("lora.target_modules=[q_proj,v_proj],[o_proj", "an unclosed '['"),
        ("data.columns={prompt: q,all-linear", "an unclosed '{'"),
        ("data.system_prompt='Arr, matey,Ahoy", 'an unclosed "\'"'),
        ("lora.target_modules=q_proj],v_proj", "a ']' that closes nothing"),
        ("lora.target_modules=[q_proj},v_proj", "a '}' that closes nothing"),
    ],
)
def test_an_unbalanced_value_is_named_not_read_as_one_string(arg: str, message: str) -> None:
    """An unclosed bracket used to make one string of the rest, refused for a reason that had nothing to do with it."""
    with pytest.raises(RecipeError) as err:
        sweep.parse_grid(["lora.r=8,16", arg])
    assert str(err.value) == f"sweep {arg!r}: {message}"


def test_an_unknown_key_in_the_grid_names_the_override_and_the_whole_key(studio_home: Path) -> None:
    with pytest.raises(RecipeError) as err:
        sweep.plan_sweep("tiny-pirate", ["no.such.key=1,2"])
    assert str(err.value) == (
        "sweep: override 'no.such.key=1': unknown key no.such.key ('no' is not a recipe field) (nothing was started)"
    )


def test_a_grid_over_the_cap_needs_a_number_of_runs(studio_home: Path) -> None:
    """A 10,000-point grid is refused unless told how many to start (--max N, MCP's max_runs); it is never
    expanded whole."""
    big = ["train.seed=" + ",".join(map(str, range(100))), "lora.r=" + ",".join(map(str, range(1, 101)))]
    before = run_dirs()
    with pytest.raises(RecipeError) as err:
        sweep.plan_sweep("tiny-pirate", big)
    assert str(err.value) == (
        f"sweep: the grid has 10000 points (train.seed (100) x lora.r (100)), more than {sweep.MAX_POINTS} runs; "
        "give fewer values, or --max N to start the first N (nothing was started)"
    )
    from lorastudio import mcpserver

    with pytest.raises(
        RecipeError, match=r"more than 64 runs; give fewer values, or max_runs to start the first N"
    ):
        mcpserver.start_sweep("tiny-pirate", big)
    assert run_dirs() == before
    plan = sweep.plan_sweep("tiny-pirate", big, max_points=3)
    assert plan.grid_size == 10000 and [p.fields for p in plan.points] == [
        {"train.seed": 0, "lora.r": r} for r in (1, 2, 3)
    ]
    assert len(sweep.plan_sweep("tiny-pirate", ["lora.r=" + ",".join(map(str, range(1, 65)))]).points) == 64
    result = cli("sweep", "tiny-pirate", *big, "--yes")
    assert result.returncode == 2 and "more than 64 runs; give fewer values, or --max N" in result.stderr
    from lorastudio import registry
    from lorastudio.paths import package_recipes_dir

    data = registry.parse_text((package_recipes_dir() / "tiny-pirate.yaml").read_text(), "tiny-pirate")
    with pytest.raises(RecipeError) as err:  # the Launch sheet's sweep: no N to give there
        sweep.plan_from_data(data, [sweep.Axis("lora.r", [str(r) for r in range(1, 66)])])
    assert str(err.value) == (
        "sweep: the grid has 65 points (lora.r (65)), more than 64 runs; give fewer values (nothing was started)"
    )


def test_the_grid_is_expanded_and_validated(studio_home: Path) -> None:
    plan = sweep.plan_sweep(
        "tiny-pirate", ["train.learning_rate=1e-4,3e-4,1e-3", "lora.r=8,16", "train.max_steps=5"], name="grid"
    )
    assert plan.grid_size == 6 and len(plan.points) == 6 and plan.keys == ["train.learning_rate", "lora.r"]
    assert [p.fields for p in plan.points[:3]] == [
        {"train.learning_rate": 1e-4, "lora.r": 8},
        {"train.learning_rate": 1e-4, "lora.r": 16},
        {"train.learning_rate": 3e-4, "lora.r": 8},
    ]
    assert all(p.recipe.train.max_steps == 5 for p in plan.points)
    assert plan.points[5].recipe.lora.r == 16 and plan.points[5].recipe.train.learning_rate == 1e-3
    assert len(sweep.plan_sweep("tiny-pirate", ["lora.r=4,8,16"], max_points=2).points) == 2
    with pytest.raises(RecipeError, match="at least one field with several comma-separated values"):
        sweep.plan_sweep("tiny-pirate", ["lora.r=8"])
    with pytest.raises(RecipeError, match="lora.r is given twice"):
        sweep.plan_sweep("tiny-pirate", ["lora.r=8,16", "lora.r=4,2"])


def test_a_bad_value_in_the_grid_starts_nothing_and_names_it(studio_home: Path) -> None:
    before = run_dirs()
    result = cli("sweep", "tiny-pirate", "train.learning_rate=1e-4,fast", "lora.r=8,16", "--yes")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "studio: sweep: override 'train.learning_rate=fast': Input should be a valid "
        "number, unable to parse string as a number (nothing was started)"
    )
    result = cli("sweep", "tiny-pirate", "train.learning_rate=1e-4,3e-4", "lora.r=8,0", "--yes")
    assert (
        result.returncode == 2
        and "override 'lora.r=0': Input should be greater than or equal to 1" in result.stderr
    )
    result = cli("sweep", "tiny-pirate", "train.learning_rate=1e-4,3e-4")  # no terminal to confirm at
    assert result.returncode == 2 and "needs --yes" in result.stderr
    assert "sweep tiny-pirate-sweep-" in result.stderr and "2 runs of tiny-pirate" in result.stderr
    assert run_dirs() == before


def _span(run_dir: Path) -> tuple[float, float]:
    """From loading the model (the device is held from just before) to the final status."""
    events = [e for e in read_all(run_dir / EVENTS_FILE) if e["kind"] == "status"]
    start = next(e["t"] for e in events if e["status"] == "loading model")
    end = next(e["t"] for e in events if e["status"] in TERMINAL_STATUSES)
    return start, end


@pytest.mark.slow
def test_a_2x2_sweep_queues_groups_and_ranks_its_runs(tiny_model: Path) -> None:
    result = cli(
        "sweep",
        "tiny-pirate",
        "train.learning_rate=1e-3,3e-3",
        "lora.r=4,8",
        "train.max_steps=3",
        "train.save_steps=3",
        "data.eval_fraction=0.1",
        "--name",
        "lr-rank",
        "--yes",
    )
    assert result.returncode == 0, result.stderr
    names = result.stdout.split()
    assert len(names) == 4 and "4 runs of tiny-pirate" in result.stderr
    members = sweep.members("lr-rank")
    assert [p.name for p in members] == names
    entries = [read_meta(p)["sweep"] for p in members]
    assert [e["index"] for e in entries] == [0, 1, 2, 3] and {e["of"] for e in entries} == {4}
    assert [e["fields"] for e in entries] == [
        {"train.learning_rate": 1e-3, "lora.r": 4},
        {"train.learning_rate": 1e-3, "lora.r": 8},
        {"train.learning_rate": 3e-3, "lora.r": 4},
        {"train.learning_rate": 3e-3, "lora.r": 8},
    ]

    wait_for(lambda: all(summarise(p).status in TERMINAL_STATUSES for p in members), timeout=900, every=1.0)
    assert [summarise(p).status for p in members] == ["done"] * 4
    # one at a time on the device: the spans holding it never overlap, and the others waited in the queue
    spans = sorted(_span(p) for p in members)
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:], strict=False)), spans
    waited = [
        p
        for p in members
        if any(
            str(e.get("status", "")).startswith("queued (waiting for CPU)") for e in read_all(p / EVENTS_FILE)
        )
    ]
    assert len(waited) >= 1
    assert [state_of(p).max_steps for p in members] == [3] * 4

    ranking = json.loads(cli("runs", "compare", "--sweep", "lr-rank", "--json").stdout)
    assert ranking["sweep"] == "lr-rank" and ranking["fields"] == ["train.learning_rate", "lora.r"]
    assert ranking["ranked_by"] == "best_eval_loss"
    losses = [r["best_eval_loss"] for r in ranking["runs"]]
    assert losses == sorted(losses) and None not in losses
    assert [r["rank"] for r in ranking["runs"]] == [1, 2, 3, 4]
    assert [r["best"] for r in ranking["runs"]] == [True, False, False, False]
    assert ranking["best"] == ranking["runs"][0]["name"] and {r["name"] for r in ranking["runs"]} == set(
        names
    )
    table = cli("runs", "compare", "--sweep", "lr-rank").stdout
    assert "ranked by best eval loss" in table and "★" in table and "train.learning_rate" in table
    best_line = next(line for line in table.splitlines() if "★" in line)
    assert ranking["best"] in best_line


@pytest.mark.slow
def test_stopping_a_sweep_stops_its_running_and_queued_runs(tiny_model: Path) -> None:
    result = cli(
        "sweep",
        "tiny-pirate",
        "lora.r=4,8,16",
        "train.max_steps=100000",
        "train.save_steps=100000",
        "--name",
        "to-stop",
        "--yes",
    )
    assert result.returncode == 0, result.stderr
    members = sweep.members("to-stop")
    assert len(members) == 3
    # the stop handler is in place once a worker says `starting`; then one trains and two wait in the queue
    wait_for(
        lambda: all(any(e.get("status") == "starting" for e in read_all(p / EVENTS_FILE)) for p in members),
        timeout=300,
    )
    stopped = cli("sweep", "stop", "to-stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "3 asked to stop, 0 already ended" in stopped.stderr
    wait_for(lambda: all(summarise(p).status in TERMINAL_STATUSES for p in members), timeout=300)
    assert [summarise(p).status for p in members] == ["stopped"] * 3
    causes = [summarise(p).cause or "" for p in members]
    assert sum("stopped while queued" in c for c in causes) >= 1
    assert "no sweep named 'nothing-here'" in cli("sweep", "stop", "nothing-here").stderr


def test_a_sweep_and_its_runs_share_one_timestamp(studio_home: Path) -> None:
    """Validating and creating the runs takes time: the runs carry the time the sweep was named with."""
    import time

    plan = sweep.plan_sweep("tiny-pirate", ["lora.r=4,8", "train.max_steps=2"])
    stamp = plan.name.removeprefix("tiny-pirate-sweep-")
    assert plan.stamp == stamp and len(stamp) == len("20260922-101148")
    time.sleep(1.1)  # the clock moves on between planning and creating (it was 3 s in the tour)
    created = sweep.start_sweep(plan, start=False)
    assert [p.name for p in created] == [f"tiny-pirate-{stamp}", f"tiny-pirate-{stamp}-2"]
    assert [(sweep.sweep_of(p) or {}).get("name") for p in created] == [plan.name, plan.name]
