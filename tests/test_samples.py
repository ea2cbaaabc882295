"""Sample replies while a run trains (issue 24): the recipe field, the worker's rounds, the fold, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_worker, state_of
from pydantic import ValidationError

from lorastudio import registry
from lorastudio.recipe import SamplesSection
from lorastudio.train.launch import runs
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all
from lorastudio.train.run.events import SampleEvent
from lorastudio.train.run.runstate import RunState

PROMPTS = ["Where is the treasure?", "What is the weather like?"]


def test_samples_field_forms() -> None:
    assert SamplesSection().held_out == 3 and SamplesSection().enabled  # on by default
    listed = SamplesSection.model_validate(PROMPTS)
    assert listed.prompts == PROMPTS and listed.held_out == 0 and listed.max_new_tokens == 64
    assert not SamplesSection.model_validate([]).enabled
    assert SamplesSection.model_validate({"held_out": 2}).held_out == 2
    with pytest.raises(ValidationError):
        SamplesSection.model_validate({"held_out": 2, "typo": 1})
    recipe = registry.load("tiny-pirate", ["train.samples=[]"])
    assert not recipe.train.samples.enabled
    # the run directory's recipe.yaml round-trips it
    again = type(recipe).model_validate(recipe.model_dump(mode="json"))
    assert again.train.samples == recipe.train.samples


def test_held_out_prompts_are_eval_rows_and_deterministic(tiny_tokenizer) -> None:
    from lorastudio.data.datasource import load_rows, train_eval_split
    from lorastudio.train.trainer.samples import held_out_prompts

    recipe = registry.load("tiny-pirate")
    first = [p.text for p in held_out_prompts(recipe, 3)]
    assert first == [p.text for p in held_out_prompts(recipe, 3)] and len(first) == 3
    rows = load_rows(recipe.data).rows
    _, held = train_eval_split(list(range(len(rows))), recipe.data.eval_fraction, recipe.train.seed)
    assert first == [rows[i]["instruction"] for i in held[:3]]
    # each with the row's own reply, which the Samples pane shows under the model's
    assert [p.reference for p in held_out_prompts(recipe, 3)] == [rows[i]["response"] for i in held[:3]]


def test_fold_keeps_rounds_and_time() -> None:
    state = RunState()
    event = SampleEvent(step=4, at="eval", prompts=("a",), replies=("b",), finish=("stop",), seconds=1.5)
    state.apply({"v": 1, "t": 1.0, "kind": "sample", **event.to_json()})
    state.apply({"v": 1, "t": 2.0, "kind": "sample", "step": "x", "prompts": []})  # malformed: skipped
    assert [s.step for s in state.samples] == [4] and state.sampling_s == 1.5
    assert state.samples[0].reply_to("a") == "b" and state.samples[0].t == 1.0


@pytest.mark.slow
def test_run_samples_at_start_each_eval_and_end(tiny_model: Path) -> None:
    recipe = registry.load(
        "tiny-pirate",
        [
            "train.max_steps=6",
            "train.save_steps=3",
            "train.eval_steps=2",
            f"train.samples={json.dumps({'prompts': PROMPTS, 'held_out': 1})}",
            "train.samples.max_new_tokens=8",
        ],
    )
    run_dir = runs.create_run(recipe)
    result = run_worker(run_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    events = read_all(run_dir / EVENTS_FILE)
    samples = [e for e in events if e["kind"] == "sample"]
    evals = [e["step"] for e in events if e["kind"] == "eval"]
    assert evals == [2, 4, 6]
    assert [(s["step"], s["at"]) for s in samples] == [(0, "start"), (2, "eval"), (4, "eval"), (6, "eval")]
    for s in samples:
        assert s["prompts"][:2] == PROMPTS and len(s["prompts"]) == 3 and len(s["replies"]) == 3
        assert all(isinstance(r, str) for r in s["replies"]) and s["seconds"] > 0 and s["max_new_tokens"] == 8
    state = state_of(run_dir)
    assert state.status == "done" and len(state.samples) == 4
    assert state.sampling_s == pytest.approx(sum(s["seconds"] for s in samples), abs=0.01)


@pytest.mark.slow
def test_end_round_without_eval_and_off_writes_none(tiny_model: Path) -> None:
    on = runs.create_run(
        registry.load(
            "tiny-pirate", ["train.max_steps=3", "data.eval_fraction=0", "train.samples.max_new_tokens=4"]
        )
    )
    assert run_worker(on).returncode == 0
    rounds = [(e["step"], e["at"]) for e in read_all(on / EVENTS_FILE) if e["kind"] == "sample"]
    assert rounds == [(0, "start"), (3, "end")]
    off = runs.create_run(registry.load("tiny-pirate", ["train.max_steps=3", "train.samples=[]"]))
    result = run_worker(off)
    assert result.returncode == 0, result.stderr
    assert not [e for e in read_all(off / EVENTS_FILE) if e["kind"] == "sample"]
