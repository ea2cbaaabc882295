"""The typed event contract: every kind round-trips, unknown kinds and keys survive, bad lines are counted;
RunState's derived figures; an old run directory (written by the code before the typed events) still loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, get_args

import pytest

from lorastudio.train.run import events as ev
from lorastudio.train.run.eventlog import EVENTS_FILE, EventTail, EventWriter, read_all, read_events
from lorastudio.train.run.events import (
    ENDED_STATUSES,
    EVENT_KINDS,
    STATUSES,
    TERMINAL_STATUSES,
    CheckpointEvent,
    EvalEvent,
    GpuReading,
    LogEvent,
    MetricsEvent,
    Status,
    StatusEvent,
    TelemetryEvent,
    UnknownEvent,
    parse_event,
    queued_with,
    status_word,
)
from lorastudio.train.run.runstate import RunReader, RunState, fold, load_state

FIXTURES = Path(__file__).parent / "fixtures"

SAMPLES: list[ev.Event] = [
    StatusEvent(
        t=1.0,
        status="failed",
        cause="CUDA out of memory",
        traceback="Traceback…",
        hints=("lower r",),
        backend="hf",
        device="cpu",
        model="tiny",
        source="x.jsonl",
        adapter="adapter",
        step=3,
        max_steps=10,
        world_size=2,
        pid=42,
        resume=True,
    ),
    MetricsEvent(
        t=2.0,
        step=3,
        max_steps=10,
        epoch=0.3,
        loss=1.5,
        learning_rate=3e-4,
        grad_norm=0.7,
        tokens_per_s=812.5,
        tokens_seen=900,
        eta_s=4.0,
        elapsed_s=1.25,
        eval_loss=1.9,
    ),
    EvalEvent(t=3.0, step=4, epoch=0.4, eval_loss=1.8, eval_runtime_s=0.2),
    TelemetryEvent(
        t=4.0,
        gpus=(
            GpuReading(
                index=0,
                name="H100",
                memory_used_mb=9000.0,
                memory_total_mb=80000.0,
                process_memory_mb=4000.0,
                utilization_pct=97.0,
                temperature_c=60.0,
                power_w=300.0,
            ),
        ),
        gpu_note=None,
        torch_peak_reserved_mb=4500.0,
        rss_mb=700.0,
        cpu_pct=99.0,
        host_cpu_pct=50.0,
        host_ram_used_mb=4000.0,
        host_ram_total_mb=16000.0,
    ),
    CheckpointEvent(t=5.0, step=4, best_checkpoint="checkpoints/checkpoint-4", best_eval_loss=1.8),
    CheckpointEvent(
        t=5.5, step=6, best_checkpoint="checkpoints/checkpoint-6", best_by="t/acc", best_score=0.75
    ),
    LogEvent(t=6.0, message="resuming from checkpoint-4", level="warning", rank_error=True),
    ev.MethodMetricsEvent(t=7.0, step=5, values={"rewards/margins": 0.5, "reward": 0.25}),
    ev.CompletionsEvent(
        t=8.0, step=5, samples=({"prompt": "Hi", "completion": "Arr!", "rewards": {"arr": 1.0}},)
    ),
    ev.SampleEvent(
        t=9.0,
        step=5,
        at="eval",
        prompts=("Hi?",),
        replies=("Arr!",),
        finish=("stop",),
        seconds=0.5,
        max_new_tokens=8,
    ),
    ev.EvalTaskEvent(t=10.0, target="RUN@best", task="studio_pirate"),
    ev.EvalProgressEvent(t=11.0, done=1, total=6),
    ev.EvalResultEvent(
        t=12.0, target="base", task="studio_pirate", values={"studio_pirate/style_rate": 0.04}
    ),
    ev.EvalJudgeEvent(t=13.0, target="base", against="RUN", win=2, tie=1, loss=0, unparsed=3),
    ev.TaskScoresEvent(
        t=14.0, step=4, at="eval", values={"studio_arithmetic/exact_match": 0.5}, limit=2, seconds=1.5
    ),
]


def test_every_kind_has_a_sample() -> None:
    assert {type(e) for e in SAMPLES} == set(EVENT_KINDS.values())
    assert set(EVENT_KINDS) == {
        "status",
        "metrics",
        "eval",
        "telemetry",
        "checkpoint",
        "log",
        "method_metrics",
        "completions",
        "sample",
        "eval_task",
        "eval_progress",
        "eval_result",
        "eval_judge",
        "task_scores",
    }


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.kind)
def test_round_trip(event: ev.Event) -> None:
    data = event.to_json()
    assert data["v"] == ev.EVENTS_VERSION and data["kind"] == event.kind and data["t"] == event.t
    line = json.dumps(data)
    assert parse_event(json.loads(line)) == event
    assert type(event).from_json(json.loads(line)) == event


def test_none_fields_are_not_written_and_read_back_as_none() -> None:
    data = MetricsEvent(t=1.0, step=2, loss=1.0).to_json()
    assert data == {"v": 1, "t": 1.0, "kind": "metrics", "step": 2, "loss": 1.0}
    assert TelemetryEvent(t=1.0).to_json()["gpus"] == []  # "no GPU" is itself a reading


def test_unknown_kind_and_extra_keys_are_kept() -> None:
    future = {"v": 2, "t": 7.0, "kind": "reward", "step": 5, "chosen": 0.25, "nested": {"a": [1, 2]}}
    event = parse_event(future)
    assert isinstance(event, UnknownEvent) and event.kind == "reward" and event.v == 2
    assert event.to_json() == future
    newer = {"v": 1, "t": 8.0, "kind": "metrics", "step": 6, "loss": 0.5, "reward_margin": 0.1, "kl": None}
    metrics = parse_event(newer)
    assert isinstance(metrics, MetricsEvent) and metrics.loss == 0.5
    assert metrics.extra == {"reward_margin": 0.1, "kl": None}
    assert metrics.to_json() == newer
    gpu = parse_event({"kind": "telemetry", "gpus": [{"index": 0, "mig": "1g.10gb"}]})
    assert isinstance(gpu, TelemetryEvent) and gpu.gpus[0].extra == {"mig": "1g.10gb"}
    state = RunState()
    state.apply(event)
    state.apply(metrics)
    assert state.events == 2 and state.last_loss == 0.5 and state.skipped == 0


@pytest.mark.parametrize(
    "line",
    [
        {"kind": "metrics", "step": "three"},
        {"kind": "metrics", "loss": [1.0]},
        {"kind": "metrics", "step": 1.5},
        {"kind": "status", "status": {"nested": 1}},
        {"kind": "status", "hints": "not a list"},
        {"kind": "telemetry", "gpus": [3]},
        {"kind": "log", "rank_error": "yes"},
        {"kind": "eval", "t": "noon", "eval_loss": 1.0},
        {"kind": 3},
        {"no": "kind"},
    ],
)
def test_malformed_values_raise_for_writers_and_are_counted_by_readers(line: dict) -> None:
    with pytest.raises(ev.MalformedEvent):
        parse_event(line)
    state = RunState()
    state.apply(line)
    assert state.skipped == 1 and state.events == 0


def test_writer_writes_through_the_dataclasses(tmp_path: Path) -> None:
    writer = EventWriter(tmp_path / EVENTS_FILE)
    written = writer.emit(MetricsEvent(step=1, loss=2.0, tokens_per_s=None, extra={"future_field": "kept"}))
    writer.emit(StatusEvent(status="training", max_steps=5))
    writer.emit(LogEvent(t=9.0, message="typed"))
    with pytest.raises(ev.MalformedEvent, match="metrics.loss"):
        writer.emit(MetricsEvent(step=2, loss="nan?"))  # type: ignore[arg-type]  # what mypy refuses, refused
    writer.close()
    raw = read_all(tmp_path / EVENTS_FILE)
    assert isinstance(written, MetricsEvent) and written.extra == {"future_field": "kept"}
    assert [r["kind"] for r in raw] == ["metrics", "status", "log"]  # the bad one never reached the file
    assert "tokens_per_s" not in raw[0] and raw[0]["future_field"] == "kept"
    assert read_events(tmp_path / EVENTS_FILE)[0] == written


def test_half_written_last_line_waits_and_bad_lines_are_counted(tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE
    path.write_text(
        '{"v": 1, "t": 1, "kind": "status", "status": "training"}\n'
        "not json at all\n"
        '{"v": 1, "t": 2, "kind": "metrics", "step": "x"}\n'
        '{"v": 1, "t": 3, "kind": "metr'
    )
    reader = RunReader(tmp_path)
    assert [e.kind for e in reader.update()] == ["status"]
    assert reader.state.skipped == 2 and reader.state.status == "training"
    with path.open("a") as handle:
        handle.write('ics", "step": 1, "loss": 2.0}\n')
    fresh = reader.update()
    assert fresh == [MetricsEvent(t=3.0, step=1, loss=2.0)]
    assert reader.state.last_loss == 2.0 and reader.state.skipped == 2
    assert reader.update() == []
    tail = EventTail(path)
    tail.read_events()
    assert tail.skipped == 2


def test_derived_figures_are_folded_once() -> None:
    """Peak VRAM, duration over sessions, mean tokens/s, best loss: one definition each, in RunState."""
    lines = [
        {"t": 0.0, "kind": "status", "status": "queued"},
        {"t": 10.0, "kind": "status", "status": "starting"},
        {"t": 12.0, "kind": "metrics", "step": 1, "loss": 3.0, "tokens_per_s": 100.0, "tokens_seen": 50},
        {
            "t": 13.0,
            "kind": "telemetry",
            "gpus": [
                {"index": 0, "memory_used_mb": 9000.0, "process_memory_mb": 3000.0},
                {"index": 1, "memory_used_mb": 5000.0, "process_memory_mb": 2500.0},
            ],
        },
        {"t": 14.0, "kind": "metrics", "step": 2, "loss": 1.0, "tokens_per_s": 300.0, "tokens_seen": 100},
        {"t": 20.0, "kind": "log", "message": "the worker's last event"},
        {"t": 30.0, "kind": "status", "status": "starting"},
        {"t": 31.0, "kind": "telemetry", "gpus": [], "torch_peak_reserved_mb": 6000.0, "rss_mb": 900.0},
        {"t": 32.0, "kind": "metrics", "step": 2, "loss": 1.0, "tokens_per_s": 0.0, "tokens_seen": 100},
        {"t": 33.0, "kind": "eval", "step": 2, "eval_loss": 2.0},
        {"t": 34.0, "kind": "metrics", "step": 3, "loss": 1.5, "eval_loss": 1.75},
        {"t": 40.0, "kind": "status", "status": "done"},
    ]
    state = fold(lines)
    assert state.status == "done" and state.finished and state.step == 3
    assert state.peak_vram_mb == 6000.0  # torch's peak beats the summed 5500 of the earlier reading
    assert state.vram == [(13.0, 5500.0)]  # this run's memory: both GPUs' process memory
    assert state.peak_rss_mb == 900.0
    # the first session ended without a final status (its last event at 20): the gap to 30 is not counted
    assert state.duration_s == pytest.approx((20.0 - 10.0) + (40.0 - 30.0))
    assert state.mean_tokens_per_s == pytest.approx(200.0)  # the zero interval is not a reading
    assert (state.best_loss, state.best_loss_step, state.last_loss) == (1.0, 2, 1.5)
    assert (state.lowest_eval_loss, state.lowest_eval_step, state.last_eval_loss) == (1.75, 3, 1.75)
    assert state.elapsed_s() == 40.0
    light = fold(lines, RunState(curves=False))
    assert light.loss == [] and light.vram == [] and light.log == []
    assert light.scalars_json() == state.scalars_json()
    assert (
        RunState.from_scalars(json.loads(json.dumps(state.scalars_json()))).scalars_json()
        == state.scalars_json()
    )


def test_from_scalars_refuses_what_is_not_a_state() -> None:
    good = RunState(curves=False).scalars_json()
    for bad in ({}, {**good, "step": "3"}, {**good, "surprise": 1}, {**good, "telemetry": {"kind": "log"}}):
        with pytest.raises(ValueError):
            RunState.from_scalars(bad)


# -- a run directory written before the typed events -------------------------------------------------
def test_old_run_directory_still_loads(tmp_path: Path) -> None:
    """``tests/fixtures/run-v1-tiny`` is a tiny-pirate run trained by the worker as it was before the events
    were typed (12 steps, a checkpoint and an eval every 4; checkpoints' weights removed)."""
    run = shutil.copytree(FIXTURES / "run-v1-tiny", tmp_path / "run-v1-tiny")
    raw = read_all(run / EVENTS_FILE)
    state = load_state(run)
    assert state.skipped == 0 and state.events == len(raw)
    assert state.status == "done" and state.step == 12 and state.max_steps == 12
    losses = [(e["step"], e["loss"]) for e in raw if e["kind"] == "metrics" and e.get("loss") is not None]
    assert state.loss == losses and len(losses) == 12
    assert state.last_loss == losses[-1][1] and state.best_loss == min(v for _, v in losses)
    evals = [(e["step"], e["eval_loss"]) for e in raw if e["kind"] == "eval"]
    assert state.eval_loss == evals and [s for s, _ in evals] == [4, 8, 12]
    assert state.last_eval_loss == evals[-1][1] and state.lowest_eval_loss == min(v for _, v in evals)
    assert state.checkpoints == [4, 8, 12]
    best_step = min(evals, key=lambda p: p[1])[0]
    assert state.best_checkpoint == f"checkpoints/checkpoint-{best_step}"
    assert state.best_eval_loss == pytest.approx(min(v for _, v in evals))
    rss = [e["rss_mb"] for e in raw if e["kind"] == "telemetry" and e.get("rss_mb")]
    assert rss and state.peak_rss_mb == max(rss)
    vram = [
        e["torch_peak_reserved_mb"] or (e["gpus"][0]["memory_used_mb"] if e["gpus"] else None)
        for e in raw
        if e["kind"] == "telemetry"
    ]
    assert state.peak_vram_mb == (max((v for v in vram if v), default=None))
    assert state.backend == "hf" and state.adapter and state.tokens_seen > 0
    assert state.duration_s and state.duration_s > 0 and state.mean_tokens_per_s

    from lorastudio.train.launch import compare, runs

    summary = runs.summarise(run)
    assert (summary.status, summary.step, summary.last_loss) == ("done", 12, state.last_loss)
    assert summary.best_checkpoint == state.best_checkpoint
    result = compare.run_result(run)
    assert result.final_loss == state.last_loss and result.eval_loss == evals[-1][1]
    assert result.best_checkpoint == state.best_checkpoint and result.peak_rss_mb == max(rss)
    assert result.loss == losses and result.eval == evals


def test_trainer_scalars_are_written_as_plain_numbers(tmp_path: Path) -> None:
    """A trainer's logs may hold numpy scalars or one-element tensors; they are written as the numbers they are."""
    import numpy as np
    import torch

    writer = EventWriter(tmp_path / EVENTS_FILE)
    logs: dict[str, Any] = {"step": np.int64(3), "loss": np.float32(0.5), "grad_norm": torch.tensor(0.25)}
    writer.emit(
        MetricsEvent(step=logs["step"], loss=logs["loss"], grad_norm=logs["grad_norm"], tokens_seen=7)
    )
    writer.close()
    assert read_all(tmp_path / EVENTS_FILE)[0] == {
        "v": 1,
        "t": pytest.approx(read_all(tmp_path / EVENTS_FILE)[0]["t"]),
        "kind": "metrics",
        "step": 3,
        "loss": 0.5,
        "grad_norm": 0.25,
        "tokens_seen": 7,
    }


def test_a_misspelt_field_is_refused_where_the_event_is_built(tmp_path: Path) -> None:
    """The keyword form kept an unknown key in ``extra`` and wrote it; the typed kinds refuse it (as mypy does)."""
    writer = EventWriter(tmp_path / EVENTS_FILE)
    with pytest.raises(TypeError, match="lss"):
        writer.emit(MetricsEvent(step=1, lss=2.0))  # type: ignore[call-arg]
    written = writer.emit(MetricsEvent(step=1, extra={"future_field": "kept"}))  # a newer key: said so
    writer.close()
    assert read_all(tmp_path / EVENTS_FILE) == [written.to_json()]
    assert written.t is not None and "lss" not in written.to_json()


@pytest.mark.parametrize(
    ("written", "word"),
    [
        ("training", "training"),
        ("queued", "queued"),
        (queued_with("waiting for GPU 0"), "queued"),
        (queued_with("Slurm job 7 pending: Priority"), "queued"),
        ("a newer writer's status", "a newer writer's status"),
    ],
)
def test_a_written_status_reads_as_its_word(written: str, word: str) -> None:
    assert status_word(written) == word


def test_the_statuses_are_defined_once() -> None:
    words = set(get_args(Status))
    assert TERMINAL_STATUSES == {"done", "failed", "stopped", "died"} <= words
    assert TERMINAL_STATUSES | {"damaged"} == ENDED_STATUSES and set(STATUSES) <= words
    shown: str = queued_with("waiting for CPU")  # beyond the Literal's words, by design (see Status)
    assert shown == "queued (waiting for CPU)"
    from lorastudio.train.launch import live, manage

    assert TERMINAL_STATUSES | {"unknown"} == live.FINAL
    assert manage.RESUMABLE < TERMINAL_STATUSES and set(manage._STATUS_ORDER) <= words
