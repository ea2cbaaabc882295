"""The one fold of a run's events: :class:`RunState` and how each kind of ``events.py`` applies to it.

Every reader turns events into figures through it (including the derived ones: peak VRAM, duration, mean
tokens/s, best loss), never by reading the file itself; :class:`RunReader` keeps one current from a run's
``events.jsonl`` (``eventlog.py``), folding only what was appended since its last update.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastudio.train.run.eventlog import EVENTS_FILE, EventTail
from lorastudio.train.run.events import (
    REWARD_FIGURE,
    TERMINAL_STATUSES,
    CheckpointEvent,
    CompletionsEvent,
    EvalEvent,
    EvalJudgeEvent,
    EvalProgressEvent,
    EvalResultEvent,
    EvalTaskEvent,
    Event,
    LogEvent,
    MalformedEvent,
    MethodMetricsEvent,
    MetricsEvent,
    RawEvent,
    SampleEvent,
    Status,
    StatusEvent,
    TaskScoresEvent,
    TelemetryEvent,
    parse_event,
)

Curve = list[tuple[int, float]]
TimeCurve = list[tuple[float, float]]

_CURVE = {"curve": True}
_WHOLE = {"curve": True, "whole": True}
"""A history :meth:`RunState.latest` hands over whole (copied), not cut to its last point."""
"""Field metadata of RunState's histories: the listing cache keeps only the other (scalar) fields."""

LOG_KEPT = 500
COMPLETIONS_KEPT = 8
"""GRPO completions the state keeps (the Monitor's panel shows a few)."""
"""Log-box events a RunState keeps (the Monitor's log box holds as many lines)."""


@dataclass
class RunState:
    """Everything a reader folds out of the event stream: the latest values, the histories (``curves``)
    and the derived figures, each kept as events arrive so no reader scans the histories again.

    With ``curves=False`` the histories stay empty (the run listing keeps hundreds of these); every scalar
    figure is the same either way.
    """

    curves: bool = True
    status: Status = "unknown"
    cause: str | None = None
    traceback: str | None = None
    hints: list[str] = field(default_factory=list)
    started: float | None = None
    """Time of the first event (the run directory's creation)."""
    updated: float | None = None
    """Time of the latest event."""
    step: int = 0
    """The highest step logged."""
    max_steps: int = 0
    epoch: float = 0.0
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    """The latest interval's throughput."""
    tokens_seen: int = 0
    eta_s: float | None = None
    backend: str | None = None
    device: str | None = None
    world_size: int = 1
    telemetry: TelemetryEvent | None = None
    """The latest telemetry event."""
    adapter: str | None = None
    events: int = 0
    skipped: int = 0
    """Malformed lines seen (not folded)."""
    bad_line: str | None = None
    """The first of them, ``line N is not an event: why`` (what a damaged run's listing names)."""
    lines: int = 0
    """Complete lines of the file folded (a :class:`RunReader` counts them, for :attr:`bad_line`'s number)."""
    partial_bytes: int = 0
    """Bytes after the file's last complete line when last read: a line being written, or one cut off."""
    last_loss: float | None = None
    last_reward: float | None = None
    """GRPO's latest mean reward (its ``reward`` figure): the progress figure of a method whose loss is not one.
    None for a method that logs no such figure."""
    best_reward: float | None = None
    """GRPO's highest mean reward logged (what a GRPO run's summary reports beside the final one)."""
    last_learning_rate: float | None = None
    last_eval_loss: float | None = None
    best_checkpoint: str | None = None
    """The checkpoint folder (relative to the run directory) with the lowest eval loss so far."""
    best_eval_loss: float | None = None
    """That checkpoint's eval loss, as the trainer recorded it."""
    lowest_eval_loss: float | None = None
    """The lowest eval loss logged, and its step (the earliest on a tie)."""
    lowest_eval_step: int | None = None
    best_loss: float | None = None
    """The lowest training loss logged, and its step (the earliest on a tie)."""
    best_loss_step: int | None = None
    peak_vram_mb: float | None = None
    """Highest GPU memory this run held: per reading, torch's peak reserved, else its processes' memory
    summed over the GPUs, else GPU 0's used memory."""
    peak_rss_mb: float | None = None
    training_started: float | None = None
    """Time of the first ``training`` status."""
    throughput_sum: float = 0.0
    throughput_count: int = 0
    worked_s: float = 0.0
    """Seconds of closed worker sessions (``starting`` to a final status); see :attr:`duration_s`."""
    session_started: float | None = None
    """When the open worker session began (None between sessions)."""
    logged: int = 0
    """Log-box events seen in all (``log`` keeps the latest ``LOG_KEPT``)."""
    sampling_s: float = 0.0
    """Seconds the worker spent answering the sample prompts (training waited meanwhile)."""
    completions: list[dict[str, Any]] = field(default_factory=list)
    """GRPO's most recent sampled prompts, completions and their rewards (the last ``completions`` event)."""
    eval_task: str | None = None
    """An evaluation's current pair, ``TASK on TARGET`` (``eval_task`` events)."""
    eval_done: int = 0
    """An evaluation's finished (target, task) pairs, of :attr:`eval_total`."""
    eval_total: int = 0
    eval_results: list[dict[str, Any]] = field(default_factory=list)
    """An evaluation's ``{target, task, values}`` per finished pair, in order."""
    eval_judged: list[dict[str, Any]] = field(default_factory=list)
    """An evaluation's judge figures, one per target judged (``eval_judge`` events)."""
    task_scores: dict[str, float] = field(default_factory=dict)
    """The latest ``train.eval_tasks`` score per ``task/metric`` (``task_scores`` events)."""
    task_scoring_s: float = 0.0
    """Seconds the worker spent scoring ``train.eval_tasks`` (training waited meanwhile)."""
    best_by: str | None = None
    """What chose :attr:`best_checkpoint` when not the eval loss: a ``task/metric`` of ``train.eval_tasks``."""
    best_score: float | None = None
    """That checkpoint's score on :attr:`best_by`."""

    # histories (curves=True only)
    loss: Curve = field(default_factory=list, metadata=_CURVE)
    learning_rate: Curve = field(default_factory=list, metadata=_CURVE)
    grad_norms: Curve = field(default_factory=list, metadata=_CURVE)
    throughput: Curve = field(default_factory=list, metadata=_CURVE)
    eval_loss: Curve = field(default_factory=list, metadata=_CURVE)
    vram: TimeCurve = field(default_factory=list, metadata=_CURVE)
    """(time, :attr:`TelemetryEvent.vram_mb`) per reading."""
    rss: TimeCurve = field(default_factory=list, metadata=_CURVE)
    checkpoints: list[int] = field(default_factory=list, metadata=_CURVE)
    log: list[Event] = field(default_factory=list, metadata=_CURVE)
    """The latest log-box events: log messages, statuses, checkpoints, evals."""
    samples: list[SampleEvent] = field(default_factory=list, metadata=_WHOLE)
    """Every round of sample replies, in the order written (kept whole: the Samples pane steps through them)."""
    method_points: list[tuple[int, str, float]] = field(default_factory=list, metadata=_CURVE)
    """(step, figure, value) for what a preference/RL trainer logs beyond SFT's (``rewards/margins``, ``reward``,
    ``kl``, ``rewards/NAME/mean``, ...), from ``method_metrics`` events."""
    task_points: list[tuple[int, str, float]] = field(default_factory=list, metadata=_CURVE)
    """(step, ``task/metric``, value) per ``task_scores`` event value."""

    # -- derived -----------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def min_loss(self) -> float | None:
        return self.best_loss

    @property
    def method_metrics(self) -> dict[str, list[tuple[int, float]]]:
        """:attr:`method_points` per figure: name -> [(step, value), ...]."""
        out: dict[str, list[tuple[int, float]]] = {}
        for step, name, value in self.method_points:
            out.setdefault(name, []).append((step, value))
        return out

    @property
    def task_curves(self) -> dict[str, list[tuple[int, float]]]:
        """:attr:`task_points` per ``task/metric``: name -> [(step, value), ...]."""
        out: dict[str, list[tuple[int, float]]] = {}
        for step, name, value in self.task_points:
            out.setdefault(name, []).append((step, value))
        return out

    @property
    def mean_tokens_per_s(self) -> float | None:
        """Mean of the throughput the worker reported per logging interval."""
        return self.throughput_sum / self.throughput_count if self.throughput_count else None

    @property
    def duration_s(self) -> float | None:
        """Time spent in the worker, summed over its sessions (resumes); an open session (a live run, or one
        that died) counts up to the latest event."""
        total = self.worked_s
        if self.session_started is not None and self.updated is not None:
            total += self.updated - self.session_started
        return total if total > 0 else None

    def elapsed_s(self, now: float | None = None) -> float | None:
        """Wall time since the run was created: to the last event once finished, else to ``now``."""
        if self.started is None:
            return None
        end = self.updated if self.finished or now is None else now
        return (end or self.started) - self.started

    def latest(self) -> RunState:
        """A copy with each history cut to its last point, for a UI that takes new points separately."""
        cut: dict[str, Any] = {
            f.name: list(getattr(self, f.name)[None if f.metadata.get("whole") else -1 :])
            for f in dataclasses.fields(self)
            if f.metadata
        }
        return dataclasses.replace(self, **cut)

    # -- folding -----------------------------------------------------------------------------------
    def apply(self, event: Event | RawEvent) -> None:
        if not isinstance(event, Event):
            try:
                event = parse_event(event)
            except MalformedEvent:
                self.skipped += 1
                return
        self.events += 1
        previous, t = self.updated, event.t
        if t is not None:
            self.started = self.started if self.started is not None else t
            self.updated = t
        if isinstance(event, StatusEvent):
            self._status(event, previous)
        elif isinstance(event, MetricsEvent):
            self._metrics(event)
        elif isinstance(event, EvalEvent):
            if event.eval_loss is not None:
                self._eval(event.step if event.step is not None else self.step, event.eval_loss)
            self._log(event)
        elif isinstance(event, TelemetryEvent):
            self._telemetry(event)
        elif isinstance(event, CheckpointEvent):
            if self.curves:
                self.checkpoints.append(event.step or 0)
            if event.best_checkpoint:
                self.best_checkpoint = event.best_checkpoint
                self.best_eval_loss = (
                    event.best_eval_loss if event.best_eval_loss is not None else self.best_eval_loss
                )
                self.best_by, self.best_score = event.best_by, event.best_score
            self._log(event)
        elif isinstance(event, LogEvent):
            self._log(event)
        elif isinstance(event, SampleEvent):
            self.sampling_s += event.seconds or 0.0
            if self.curves:
                self.samples.append(event)
        elif isinstance(event, MethodMetricsEvent):
            if event.values and REWARD_FIGURE in event.values:
                self.last_reward = reward = event.values[REWARD_FIGURE]
                self.best_reward = reward if self.best_reward is None else max(self.best_reward, reward)
            if self.curves and event.values:
                step = event.step if event.step is not None else self.step
                self.method_points += [(step, name, value) for name, value in event.values.items()]
        elif isinstance(event, CompletionsEvent):
            self.completions = list(event.samples)[-COMPLETIONS_KEPT:]
        elif isinstance(event, EvalTaskEvent):
            self.eval_task = f"{event.task} on {event.target}"
            self._log(event)
        elif isinstance(event, EvalProgressEvent):
            self.eval_done, self.eval_total = event.done or 0, event.total or self.eval_total
        elif isinstance(event, EvalResultEvent):
            self.eval_results.append(
                {"target": event.target, "task": event.task, "values": dict(event.values or {})}
            )
        elif isinstance(event, TaskScoresEvent):
            self.task_scoring_s += event.seconds or 0.0
            self.task_scores.update(event.values or {})
            if self.curves and event.values:
                step = event.step if event.step is not None else self.step
                self.task_points += [(step, name, value) for name, value in event.values.items()]
            self._log(event)
        elif isinstance(event, EvalJudgeEvent):
            self.eval_judged.append({k: v for k, v in event.to_json().items() if k not in ("v", "t", "kind")})

    def _log(self, event: Event) -> None:
        self.logged += 1
        if self.curves:
            self.log.append(event)
            if len(self.log) > 2 * LOG_KEPT:
                del self.log[:-LOG_KEPT]

    def _status(self, event: StatusEvent, previous: float | None) -> None:
        t = event.t
        if event.status is not None:
            self.status = event.status
        if self.status == "starting":
            self.cause = self.traceback = None
            self.hints = []
            if t is not None:
                if self.session_started is not None:  # the previous session ended without a final status
                    self.worked_s += (previous if previous is not None else t) - self.session_started
                self.session_started = t
        elif self.status in TERMINAL_STATUSES and self.session_started is not None and t is not None:
            self.worked_s += t - self.session_started
            self.session_started = None
        for key in ("cause", "traceback", "backend", "device", "adapter"):
            value = getattr(event, key)
            if value is not None:
                setattr(self, key, value)
        if event.hints:
            self.hints = list(event.hints)
        if event.max_steps:
            self.max_steps = event.max_steps
        if event.world_size:
            self.world_size = event.world_size
        if self.status == "training" and self.training_started is None and t is not None:
            self.training_started = t
        if event.status is not None:
            self._log(event)

    def _metrics(self, event: MetricsEvent) -> None:
        step = event.step if event.step is not None else self.step
        self.step = max(self.step, step)
        self.max_steps = event.max_steps or self.max_steps
        self.epoch = event.epoch or self.epoch
        if event.loss is not None:
            self.last_loss = event.loss
            if (
                self.best_loss is None
                or event.loss < self.best_loss
                or (
                    event.loss == self.best_loss
                    and self.best_loss_step is not None
                    and step < self.best_loss_step
                )
            ):
                self.best_loss, self.best_loss_step = event.loss, step
            if self.curves:
                self.loss.append((step, event.loss))
        if event.learning_rate is not None:
            self.last_learning_rate = event.learning_rate
            if self.curves:
                self.learning_rate.append((step, event.learning_rate))
        if event.grad_norm is not None:
            self.grad_norm = event.grad_norm
            if self.curves:
                self.grad_norms.append((step, event.grad_norm))
        if event.tokens_per_s is not None:
            self.tokens_per_s = event.tokens_per_s
            if event.tokens_per_s > 0 and math.isfinite(event.tokens_per_s):
                self.throughput_sum += event.tokens_per_s
                self.throughput_count += 1
            if self.curves:
                self.throughput.append((step, event.tokens_per_s))
        self.tokens_seen = max(self.tokens_seen, event.tokens_seen or 0)
        self.eta_s = event.eta_s if event.eta_s is not None else self.eta_s
        if event.eval_loss is not None:  # runs logged before eval events had their own kind
            self._eval(step, event.eval_loss)

    def _eval(self, step: int, value: float) -> None:
        self.last_eval_loss = value
        if (
            self.lowest_eval_loss is None
            or value < self.lowest_eval_loss
            or (
                value == self.lowest_eval_loss
                and self.lowest_eval_step is not None
                and step < self.lowest_eval_step
            )
        ):
            self.lowest_eval_loss, self.lowest_eval_step = value, step
        if self.curves:
            self.eval_loss.append((step, value))

    def _telemetry(self, event: TelemetryEvent) -> None:
        self.telemetry = event
        peak = event.peak_vram_mb
        if peak:
            self.peak_vram_mb = max(self.peak_vram_mb or 0.0, peak)
        if event.rss_mb:
            self.peak_rss_mb = max(self.peak_rss_mb or 0.0, event.rss_mb)
        if self.curves and event.t is not None:
            vram = event.vram_mb
            if vram is not None:
                self.vram.append((event.t, vram))
            if event.rss_mb is not None:
                self.rss.append((event.t, event.rss_mb))

    # -- the listing cache's form ------------------------------------------------------------------
    def scalars_json(self) -> dict[str, Any]:
        """Every field but the histories, as JSON (what ``train/launch/runs.py`` caches per run)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.metadata or f.name == "curves":
                continue
            value = getattr(self, f.name)
            out[f.name] = value.to_json() if isinstance(value, Event) else value
        return out

    @classmethod
    def from_scalars(cls, data: Mapping[str, Any]) -> RunState:
        """The inverse of :meth:`scalars_json` (histories empty, ``curves=False``); ValueError if it is not one."""
        names = {f.name for f in dataclasses.fields(cls) if not f.metadata and f.name != "curves"}
        if not isinstance(data, Mapping) or set(data) != names:
            raise ValueError("not a RunState summary of this version")
        values = dict(data)
        if values["telemetry"] is not None:
            telemetry = parse_event(values["telemetry"])
            if not isinstance(telemetry, TelemetryEvent):
                raise ValueError("telemetry is not a telemetry event")
            values["telemetry"] = telemetry
        values["hints"] = list(values["hints"] or [])
        state = cls(curves=False, **values)
        for f in dataclasses.fields(cls):  # a hand-edited or truncated entry must not pass as a state
            value = getattr(state, f.name)
            kind = str(f.type).removesuffix(" | None")
            if value is None and kind != f.type:
                continue
            if kind in ("int", "float") and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{f.name}: {value!r}")
            if kind == "str" and not isinstance(value, str):
                raise ValueError(f"{f.name}: {value!r}")
        if not all(isinstance(hint, str) for hint in state.hints):
            raise ValueError(f"hints: {state.hints!r}")
        return state


def fold(events: Iterable[Event | RawEvent], state: RunState | None = None) -> RunState:
    state = state or RunState()
    for event in events:
        state.apply(event)
    return state


def load_state(run_dir: Path, curves: bool = True) -> RunState:
    """The whole of a run's events folded (a reader that follows a live run keeps a :class:`RunReader`)."""
    reader = RunReader(run_dir, RunState(curves=curves))
    reader.update()
    return reader.state


class RunReader:
    """A :class:`RunState` kept current from a run's ``events.jsonl``: each update folds only what was
    appended since the last one."""

    def __init__(self, run_dir: Path, state: RunState | None = None, offset: int = 0) -> None:
        self.tail = EventTail(run_dir / EVENTS_FILE, offset)
        self.state = state or RunState()

    @property
    def offset(self) -> int:
        return self.tail.offset

    def update(self, max_bytes: int | None = None) -> list[Event]:
        """Fold the new events; returns them (for a reader that prints or charts each one)."""
        skipped, lines, base = self.tail.skipped, self.tail.lines, self.state.lines - self.tail.lines
        events = self.tail.read_events(max_bytes)
        for event in events:
            self.state.apply(event)
        state = self.state
        state.skipped += self.tail.skipped - skipped
        state.lines += self.tail.lines - lines
        state.partial_bytes = self.tail.pending
        if self.tail.first_bad is not None and state.bad_line is None:
            number, why = self.tail.first_bad
            state.bad_line = f"line {base + number} is not an event: {why}"
        return events


def load_samples(run_dir: Path) -> list[SampleEvent]:
    """A run's sample rounds, through the fold."""
    return load_state(run_dir).samples
