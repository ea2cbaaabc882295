"""Evaluation by default: the hold-out rule, eval-loss events, the best checkpoint and chatting with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lorastudio import registry
from lorastudio.data.datasource import describe_eval_split, eval_holdout_size, train_eval_split
from lorastudio.errors import RunError
from lorastudio.recipe import DataSection, Recipe
from lorastudio.train.launch.runs import summarise
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all
from lorastudio.train.run.runstate import fold
from lorastudio.train.trainer.adapters import resolve_adapter, split_target


def rows(n: int) -> list[dict[str, int]]:
    return [{"i": i} for i in range(n)]


@pytest.mark.parametrize(
    ("n", "held"),
    [(0, 0), (1, 0), (31, 0), (32, 16), (100, 16), (320, 16), (1000, 50), (5120, 256), (10000, 256)],
)
def test_default_hold_out_rule(n: int, held: int) -> None:
    train, evals = train_eval_split(rows(n), None, seed=3407)
    assert len(evals) == held == eval_holdout_size(n, None)
    assert len(train) + len(evals) == n
    assert {r["i"] for r in train}.isdisjoint(r["i"] for r in evals)


def test_hold_out_is_deterministic_and_keeps_training_order() -> None:
    first = train_eval_split(rows(1000), None, seed=1)
    assert first == train_eval_split(rows(1000), None, seed=1)
    assert first[1] != train_eval_split(rows(1000), None, seed=2)[1]
    assert [r["i"] for r in first[0]] == sorted(r["i"] for r in first[0])


@pytest.mark.parametrize("n", [31, 32, 1000, 10000])
def test_eval_fraction_zero_turns_it_off(n: int) -> None:
    assert train_eval_split(rows(n), 0.0, seed=3407) == (rows(n), [])


def test_explicit_fraction_is_used_as_given() -> None:
    assert len(train_eval_split(rows(1000), 0.02, seed=0)[1]) == 20
    assert len(train_eval_split(rows(10), 0.01, seed=0)[1]) == 1  # at least one row
    assert len(train_eval_split(rows(10000), 0.5, seed=0)[1]) == 5000  # no 256 cap when asked


def test_recipe_distinguishes_unset_from_zero() -> None:
    assert DataSection(source="x.jsonl").eval_fraction is None
    assert DataSection(source="x.jsonl", eval_fraction=0).eval_fraction == 0
    recipe = registry.load("tiny-pirate")
    assert Recipe.model_validate(yaml.safe_load(registry.dump(recipe))).data.eval_fraction is None
    assert registry.load("tiny-pirate", ["data.eval_fraction=0"]).data.eval_fraction == 0


def test_split_described_for_preview() -> None:
    assert describe_eval_split(DataSection(source="x.jsonl"), 225) == "16 rows held out (5%)"
    assert describe_eval_split(DataSection(source="x.jsonl"), 10000) == "256 rows held out (5%)"
    assert (
        describe_eval_split(DataSection(source="x.jsonl", eval_fraction=0.02), 1000)
        == "20 rows held out (0.02)"
    )
    assert describe_eval_split(DataSection(source="x.jsonl"), 20) == "none (< 32 rows)"
    assert describe_eval_split(DataSection(source="x.jsonl", eval_fraction=0), 225) == "off (eval_fraction 0)"
    assert describe_eval_split(DataSection(source="x", eval_split="test"), 225) == "split 'test'"


# -- the worker, on the shipped tiny-pirate recipe (225 rows: 16 held out, evaluated at each save) -------------
def test_eval_loss_events_and_best_checkpoint(trained_run: Path) -> None:
    events = read_all(trained_run / EVENTS_FILE)
    logs = [e["message"] for e in events if e["kind"] == "log"]
    assert any("209 training samples" in m and "16 eval samples" in m for m in logs), logs
    evals = [e for e in events if e["kind"] == "eval"]
    assert [e["step"] for e in evals] == [20, 40, 60, 80]
    assert all(isinstance(e["eval_loss"], float) and e["eval_loss"] > 0 for e in evals)
    assert not any("eval_loss" in e for e in events if e["kind"] == "metrics")
    best = min(evals, key=lambda e: e["eval_loss"])
    state = fold(events)
    assert state.eval_loss == [(e["step"], e["eval_loss"]) for e in evals]
    assert state.best_checkpoint == f"checkpoints/checkpoint-{best['step']}"
    assert state.best_eval_loss == pytest.approx(best["eval_loss"])
    summary = summarise(trained_run)
    assert summary.best_checkpoint == state.best_checkpoint
    assert json.loads(json.dumps(summary.to_json()))["best_eval_loss"] == pytest.approx(best["eval_loss"])


def test_best_checkpoint_is_a_chat_target(trained_run: Path) -> None:
    best = summarise(trained_run).best_checkpoint
    assert best is not None
    assert resolve_adapter(trained_run, "best") == trained_run / best
    assert resolve_adapter(trained_run, None) == trained_run / "adapter"
    assert resolve_adapter(trained_run, "40") == trained_run / "checkpoints" / "checkpoint-40"
    with pytest.raises(RunError, match=r"checkpoint-7 \(kept: checkpoint-\d+"):
        resolve_adapter(trained_run, "checkpoint-7")
    assert split_target(f"{trained_run.name}@best") == (trained_run.name, "best")
    assert split_target(str(trained_run)) == (str(trained_run), None)

    from lorastudio.chat.engine import engine_for

    assert engine_for(f"{trained_run.name}@best").adapter_dir == trained_run / best
    assert engine_for(str(trained_run / best)).adapter_dir == trained_run / best
