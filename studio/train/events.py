"""The run directory's event log: an append-only ``events.jsonl``, its typed events, and the one fold.

This file is the contract between the writers (the training worker, the launch supervisor, ``create_run``)
and every reader (the Monitor, Runs, Compare, ``studio runs``, ``studio train``'s progress lines, export,
chat's ``RUN@best``).

Format (``EVENTS_VERSION`` 1). Each line is one JSON object::

    {"v": 1, "t": UNIX_TIME, "kind": KIND, ...fields of that kind}

Writers flush every line; readers keep a byte offset, so a long run costs the same per refresh as a short
one, and a half-written last line is left for the next read. Fields that are None are not written (a
missing field reads as None). Each kind is a frozen dataclass below (its fields documented there):
``status``, ``metrics``, ``eval``, ``telemetry`` (with one :class:`GpuReading` per GPU), ``checkpoint``,
``log``, for the preference and RL methods ``method_metrics`` and ``completions`` (GRPO's sampled
replies), and in an evaluation's directory ``eval_task``, ``eval_progress``, ``eval_result`` and ``eval_judge``;
:data:`EVENT_KINDS` maps the kind to its class.

Reading is forward compatible: a line of a kind this version does not know loads as :class:`UnknownEvent`
(kept, folded as nothing), keys a kind does not declare are kept in ``extra`` and written back by
``to_json``, and a newer ``v`` is read for the fields this version knows. A line that is not JSON, or a
declared field whose value has the wrong type, makes that line malformed: it is skipped and counted
(``EventTail.skipped``, ``RunState.skipped``; the first named in ``RunState.bad_line``, which makes the run
``damaged`` in the listing: ``damage.py``), never raised to the reader.

:class:`RunState` is the one fold: every reader turns events into figures through it (including the
derived ones: peak VRAM, duration, mean tokens/s, best loss), never by reading the file itself.

Adding a kind (or a field):

1. Write a ``@register`` frozen dataclass subclass of :class:`Event` with ``KIND = "name"`` and its fields
   (types from :data:`_CONVERTERS`: ``str``, ``int``, ``float``, ``bool``, ``tuple[str, ...]``, each
   ``| None`` with a default of None), a docstring under each field.
2. Write it with ``writer.write("name", field=value)`` (or ``writer.emit(NameEvent(...))``).
3. Fold it in :meth:`RunState.apply` (a new ``elif isinstance(event, NameEvent)`` branch), keeping any
   new figure a plain field so the listing cache (``train/runs.py``) can store it.
4. Add it to the round-trip test in ``tests/test_events.py``. A new *field* on an existing kind needs only
   step 1: old files lack it (None), old readers keep it in ``extra``. Bump ``EVENTS_VERSION`` only when a
   field changes meaning (then fold both versions).

``sample`` (a :class:`SampleEvent`): one round of the recipe's sample prompts (``train.samples``) answered
by the model being trained, at the first step (the base, or the adapter the run resumes from), after each
evaluation and at the end: ``prompts`` and ``replies`` (prompt i answered by reply i), ``finish`` per reply
(``stop`` or ``length``) and ``seconds`` (training paused meanwhile). :class:`RunState` keeps every round
(``samples``) and the total time spent sampling (``sampling_s``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")

EVENTS_VERSION = 1
EVENTS_FILE = "events.jsonl"

TERMINAL_STATUSES = frozenset({"done", "failed", "stopped", "died"})
STATUSES = ("starting", "loading model", "loading data", "training", "saving", *sorted(TERMINAL_STATUSES))

RawEvent = dict[str, Any]
"""One line of the file as JSON gives it (what :func:`read_all` returns, for tools that check the file)."""


class MalformedEvent(ValueError):
    """A line that is not an event object, or a declared field whose value has the wrong type."""


# -- field converters ------------------------------------------------------------------------------
def _scalar(value: Any) -> Any:
    """A numpy scalar or a one-element tensor (what a trainer's logs may hold) as the plain number it is."""
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (str, bytes, dict, list, tuple)):
        try:
            return item()
        except (TypeError, ValueError, RuntimeError):
            return value
    return value


def _number(value: Any) -> float:
    if type(value) is float:  # the common case first: readers fold millions of these
        return value
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedEvent(f"not a number: {value!r}")
    return float(value)


def _integer(value: Any) -> int:
    if type(value) is int:
        return value
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedEvent(f"not an integer: {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise MalformedEvent(f"not an integer: {value!r}")
    return int(value)


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise MalformedEvent(f"not a string: {value!r}")
    return str(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise MalformedEvent(f"not true/false: {value!r}")
    return value


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise MalformedEvent(f"not a list: {value!r}")
    return tuple(_text(item) for item in value)


def _gpus(value: Any) -> tuple[GpuReading, ...]:
    if not isinstance(value, (list, tuple)):
        raise MalformedEvent(f"not a list of GPUs: {value!r}")
    return tuple(GpuReading.from_json(item) for item in value)


def _figures(value: Any) -> dict[str, float]:
    """Named numbers; a value that is not one (a trainer may log text beside them) is left out."""
    if not isinstance(value, Mapping):
        raise MalformedEvent(f"not a mapping of figures: {value!r}")
    out = {}
    for name, item in value.items():
        try:
            out[str(name)] = _number(item)
        except MalformedEvent:
            continue
    return out


def _records(value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, (list, tuple)):
        raise MalformedEvent(f"not a list: {value!r}")
    return tuple(dict(item) for item in value if isinstance(item, Mapping))


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "str | None": _text,
    "int | None": _integer,
    "float | None": _number,
    "bool | None": _flag,
    "tuple[str, ...]": _texts,
    "tuple[GpuReading, ...]": _gpus,
    "dict[str, float] | None": _figures,
    "tuple[dict[str, Any], ...]": _records,
}
"""Annotation (as written in the class) -> the function that checks and converts a JSON value to it."""

_BASE_FIELDS = frozenset({"v", "t", "kind", "extra"})
_LINE_KEYS = frozenset({"v", "t", "kind"})


def _converters(cls: type) -> dict[str, Callable[[Any], Any]]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in _BASE_FIELDS:
            continue
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if annotation not in _CONVERTERS:
            raise TypeError(f"{cls.__name__}.{f.name}: annotation {annotation!r} has no converter")
        out[f.name] = _CONVERTERS[annotation]
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, GpuReading):
        return value.to_json()
    return value


def _build(cls: type[T], values: dict[str, Any]) -> T:
    """An instance of the frozen dataclass ``cls`` from checked values, without its generated ``__init__``
    (which sets each field through ``object.__setattr__``: the costliest part of reading a long run)."""
    obj = object.__new__(cls)
    obj.__dict__.update(cls._defaults, **values)  # type: ignore[attr-defined]
    return obj


def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def _split(cls: type, data: Mapping[str, Any], skip: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(declared fields converted, the other keys kept as they came); None values read as missing."""
    known, extra = {}, {}
    converters: dict[str, Callable[[Any], Any]] = cls._converters  # type: ignore[attr-defined]
    for key, value in data.items():
        if key in skip:
            continue
        convert = converters.get(key)
        if convert is None:
            extra[key] = value
        elif value is not None:
            try:
                known[key] = convert(value)
            except MalformedEvent as exc:
                raise MalformedEvent(f"{getattr(cls, 'KIND', cls.__name__)}.{key}: {exc}") from None
    return known, extra


# -- events -----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class GpuReading:
    """One GPU at one moment (a telemetry event holds one per local GPU); None where NVML could not read it."""

    index: int | None = None
    name: str | None = None
    memory_used_mb: float | None = None
    """Memory in use on the device by every process."""
    memory_total_mb: float | None = None
    process_memory_mb: float | None = None
    """Memory this run's processes hold on the device."""
    utilization_pct: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    _converters: ClassVar[dict[str, Callable[[Any], Any]]]
    _defaults: ClassVar[dict[str, Any]]

    @classmethod
    def from_json(cls, data: Any) -> GpuReading:
        if not isinstance(data, Mapping):
            raise MalformedEvent(f"not a GPU reading: {data!r}")
        known, extra = _split(cls, data, frozenset())
        known["extra"] = extra
        return _build(cls, known)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {k: v for k, v in out.items() if v is not None} | self.extra


GpuReading._converters = _converters(GpuReading)
GpuReading._defaults = _defaults(GpuReading)


@dataclass(frozen=True, kw_only=True)
class Event:
    """What every line has. Subclasses add their kind's fields; see the module docstring to add one."""

    KIND: ClassVar[str] = ""
    _converters: ClassVar[dict[str, Callable[[Any], Any]]] = {}
    _defaults: ClassVar[dict[str, Any]] = {}

    t: float | None = None
    """Unix time the writer stamped."""
    v: int = EVENTS_VERSION
    """The format version the writer wrote."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys this version does not declare for the kind, kept as read so a round trip loses nothing."""

    @property
    def kind(self) -> str:
        return self.KIND

    @classmethod
    def from_json(cls: type[E], data: Mapping[str, Any]) -> E:
        """The event of one JSON object (``kind`` is not checked here; :func:`parse_event` dispatches on it)."""
        known, extra = _split(cls, data, _LINE_KEYS)
        t = data.get("t")
        v = data.get("v", EVENTS_VERSION)
        known["t"] = _number(t) if t is not None else None
        known["v"] = _integer(v) if v is not None else EVENTS_VERSION
        known["extra"] = extra
        return _build(cls, known)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": self.v, "t": self.t, "kind": self.kind}
        for f in dataclasses.fields(self):
            if f.name not in _BASE_FIELDS:
                value = getattr(self, f.name)
                if value is not None:
                    out[f.name] = _json_value(value)
        if out["t"] is None:
            del out["t"]
        return out | {k: v for k, v in self.extra.items() if k not in out}


E = TypeVar("E", bound=Event)

EVENT_KINDS: dict[str, type[Event]] = {}
"""kind -> its event class."""


def register(cls: type[E]) -> type[E]:
    """Class decorator: the kind's converters are built from its annotations and it joins EVENT_KINDS."""
    if not cls.KIND or cls.KIND in EVENT_KINDS:
        raise TypeError(f"{cls.__name__}: KIND must be set and unique")
    cls._converters = _converters(cls)
    cls._defaults = _defaults(cls)
    EVENT_KINDS[cls.KIND] = cls
    return cls


@register
@dataclass(frozen=True, kw_only=True)
class StatusEvent(Event):
    """The run moved to a new status (queued, starting, loading model, loading data, training, saving, or a
    final one: done, failed, stopped; ``died`` is never written, readers infer it from a vanished worker)."""

    KIND: ClassVar[str] = "status"
    status: str | None = None
    cause: str | None = None
    """Why the run failed or stopped, one line."""
    traceback: str | None = None
    """The last frames of a failure's traceback."""
    hints: tuple[str, ...] = ()
    """What to change when it ran out of memory."""
    backend: str | None = None
    """``hf`` or ``unsloth`` (on ``loading model``)."""
    device: str | None = None
    """The device's name (on ``loading model``)."""
    model: str | None = None
    source: str | None = None
    """The data source (on ``loading data``)."""
    adapter: str | None = None
    """Where the adapter was saved (on done/stopped)."""
    step: int | None = None
    max_steps: int | None = None
    world_size: int | None = None
    """How many training processes the run has."""
    pid: int | None = None
    resume: bool | None = None
    """The worker was started to continue from the latest checkpoint."""

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        if not self.hints:
            out.pop("hints", None)
        return out


@register
@dataclass(frozen=True, kw_only=True)
class MetricsEvent(Event):
    """One logging interval of training."""

    KIND: ClassVar[str] = "metrics"
    step: int | None = None
    max_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    """Throughput over this interval (eval time excluded)."""
    tokens_seen: int | None = None
    """Input tokens trained so far (over every process)."""
    eta_s: float | None = None
    elapsed_s: float | None = None
    """Seconds since this session's training began."""
    eval_loss: float | None = None
    """Only in runs logged before eval had its own kind; new writers use :class:`EvalEvent`."""


@register
@dataclass(frozen=True, kw_only=True)
class EvalEvent(Event):
    """The held-out loss at a step."""

    KIND: ClassVar[str] = "eval"
    step: int | None = None
    epoch: float | None = None
    eval_loss: float | None = None
    eval_runtime_s: float | None = None


@register
@dataclass(frozen=True, kw_only=True)
class TelemetryEvent(Event):
    """GPU and host figures, sampled by the worker's telemetry thread."""

    KIND: ClassVar[str] = "telemetry"
    gpus: tuple[GpuReading, ...] = ()
    """Every local GPU (empty without NVIDIA GPUs)."""
    gpu_note: str | None = None
    """Why there are no GPU figures."""
    torch_peak_reserved_mb: float | None = None
    """torch's peak reserved CUDA memory in this process."""
    rss_mb: float | None = None
    cpu_pct: float | None = None
    host_cpu_pct: float | None = None
    host_ram_used_mb: float | None = None
    host_ram_total_mb: float | None = None

    @property
    def vram_mb(self) -> float | None:
        """This run's GPU memory now: its processes' memory summed over the GPUs, else GPU 0's used memory."""
        mine = [g.process_memory_mb for g in self.gpus if g.process_memory_mb]
        if mine:
            return sum(mine)
        return self.gpus[0].memory_used_mb if self.gpus else None

    @property
    def peak_vram_mb(self) -> float | None:
        """The highest this reading says the run held: torch's peak reserved, else :attr:`vram_mb`."""
        return self.torch_peak_reserved_mb or self.vram_mb

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["gpus"] = [g.to_json() for g in self.gpus]  # written even when empty: "no GPU" is a reading
        return out


@register
@dataclass(frozen=True, kw_only=True)
class CheckpointEvent(Event):
    """A checkpoint was saved; with eval data, the trainer's best checkpoint so far."""

    KIND: ClassVar[str] = "checkpoint"
    step: int | None = None
    best_checkpoint: str | None = None
    """Relative to the run directory (``checkpoints/checkpoint-N``)."""
    best_eval_loss: float | None = None
    best_by: str | None = None
    """``task/metric`` when ``train.best_by`` chose the checkpoint by a task score (None: by eval loss)."""
    best_score: float | None = None
    """That checkpoint's score on ``best_by``."""


@register
@dataclass(frozen=True, kw_only=True)
class LogEvent(Event):
    """A message for the Monitor's log box: progress, a library warning, a rank's error."""

    KIND: ClassVar[str] = "log"
    message: str | None = None
    level: str | None = None
    """``info`` (when missing), ``warning`` or ``error``."""
    rank_error: bool | None = None
    """Written by a rank whose peer failed (the supervisor names the first failure)."""


REWARD_FIGURE = "reward"
"""The figure GRPO logs as its mean reward per step (TRL's name)."""


@register
@dataclass(frozen=True, kw_only=True)
class MethodMetricsEvent(Event):
    """What a preference or RL trainer (``train.method`` dpo, kto, orpo, grpo) logs beyond SFT's figures at one
    step: ``rewards/chosen``, ``rewards/margins``, ``reward``, ``reward_std``, ``kl``, ``rewards/NAME/mean``, ..."""

    KIND: ClassVar[str] = "method_metrics"
    step: int | None = None
    values: dict[str, float] | None = None
    """Figure name (as the trainer logs it) -> value."""


@register
@dataclass(frozen=True, kw_only=True)
class CompletionsEvent(Event):
    """GRPO's most recent sampled completions, for the Monitor's panel."""

    KIND: ClassVar[str] = "completions"
    step: int | None = None
    samples: tuple[dict[str, Any], ...] = ()
    """``{prompt, completion, rewards: {function: value}}`` each."""


@register
@dataclass(frozen=True, kw_only=True)
class SampleEvent(Event):
    """One round of sample replies (see the module docstring)."""

    KIND: ClassVar[str] = "sample"
    step: int | None = None
    at: str | None = None
    """``start`` (the model before training), ``eval`` (after an evaluation) or ``end``."""
    prompts: tuple[str, ...] = ()
    replies: tuple[str, ...] = ()
    """Reply i answers prompt i."""
    finish: tuple[str, ...] = ()
    """Per reply: ``stop`` (ended by itself) or ``length`` (cut at ``max_new_tokens``)."""
    references: tuple[str, ...] = ()
    """Per prompt: the data's own answer to it (a held-out row's reply, a pair's chosen one), "" where there is
    none; empty when no prompt has one."""
    seconds: float | None = None
    """Wall time of the round; training waits for it."""
    max_new_tokens: int | None = None

    def reply_to(self, prompt: str) -> str | None:
        """This round's reply to ``prompt`` (None when the round did not ask it)."""
        return next((r for p, r in zip(self.prompts, self.replies, strict=False) if p == prompt), None)

    def reference_to(self, prompt: str) -> str:
        """The data's answer to ``prompt`` ("" when it has none, or the round did not ask it)."""
        return next((r for p, r in zip(self.prompts, self.references, strict=False) if p == prompt), "")


@register
@dataclass(frozen=True, kw_only=True)
class EvalTaskEvent(Event):
    """An evaluation (``studio eval``, its own directory) started one task on one target."""

    KIND: ClassVar[str] = "eval_task"
    target: str | None = None
    task: str | None = None


@register
@dataclass(frozen=True, kw_only=True)
class EvalProgressEvent(Event):
    """How many (target, task) pairs of an evaluation are finished, of how many."""

    KIND: ClassVar[str] = "eval_progress"
    done: int | None = None
    total: int | None = None


@register
@dataclass(frozen=True, kw_only=True)
class EvalResultEvent(Event):
    """One task's figures on one target (``results.json`` holds lm-eval's whole results)."""

    KIND: ClassVar[str] = "eval_result"
    target: str | None = None
    task: str | None = None
    values: dict[str, float] | None = None
    """``task/metric`` -> value, as in studio's table."""


@register
@dataclass(frozen=True, kw_only=True)
class EvalJudgeEvent(Event):
    """The LLM judge's figures for one target of an evaluation's judged generations."""

    KIND: ClassVar[str] = "eval_judge"
    target: str | None = None
    against: str | None = None
    """Pairwise: the target it was compared with (the first); None for rubric grading."""
    win: int | None = None
    tie: int | None = None
    loss: int | None = None
    rating: float | None = None
    """Rubric: the mean 1-10 rating of the replies that could be read."""
    unparsed: int | None = None
    """Judge replies with no verdict or rating that could be read (counted, never scored)."""


@register
@dataclass(frozen=True, kw_only=True)
class TaskScoresEvent(Event):
    """The run's ``train.eval_tasks`` scored on the model being trained, at an evaluation or at the end."""

    KIND: ClassVar[str] = "task_scores"
    step: int | None = None
    at: str | None = None
    """``eval`` (with an evaluation) or ``end``."""
    values: dict[str, float] | None = None
    """``task/metric`` -> value, named as ``studio eval``'s table names them."""
    limit: int | None = None
    """Documents scored per task."""
    seconds: float | None = None
    """Wall time of the scoring; training waits for it."""


@dataclass(frozen=True, kw_only=True)
class UnknownEvent(Event):
    """A kind this version does not know (a newer writer's): kept whole in ``extra``, folded as nothing."""

    name: str = ""
    """The line's kind."""

    @property
    def kind(self) -> str:
        return self.name

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": self.v, "t": self.t, "kind": self.name}
        if self.t is None:
            del out["t"]
        return out | self.extra


def parse_event(data: Any) -> Event:
    """The typed event of one JSON line; raises :class:`MalformedEvent` for anything that is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise MalformedEvent("not an event object with a kind")
    cls = EVENT_KINDS.get(data["kind"])
    if cls is None:
        t = data.get("t")
        extra = {k: v for k, v in data.items() if k not in ("v", "t", "kind")}
        return UnknownEvent(
            name=data["kind"],
            t=float(t) if isinstance(t, (int, float)) else None,
            v=data["v"] if isinstance(data.get("v"), int) else EVENTS_VERSION,
            extra=extra,
        )
    return cls.from_json(data)


def make_event(kind: str, *, t: float | None = None, **fields: Any) -> Event:
    """The writer's keyword form: ``make_event("metrics", step=3, loss=1.2)``; bad values raise."""
    return parse_event({"v": EVENTS_VERSION, "t": t, "kind": kind, **fields})


# -- writing and reading ----------------------------------------------------------------------------
class EventWriter:
    """Appends events; safe to call from the trainer thread and the telemetry thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._handle = path.open("a", encoding="utf-8")

    def emit(self, event: Event) -> Event:
        line = json.dumps(event.to_json(), default=str) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()
        return event

    def write(self, kind: str, **fields: Any) -> Event:
        """Stamp and write an event of ``kind`` (fields by keyword; a value of the wrong type raises)."""
        return self.emit(make_event(kind, t=round(time.time(), 3), **fields))

    def status(self, status: str, **fields: Any) -> Event:
        return self.write("status", status=status, **fields)

    def close(self) -> None:
        with self._lock:
            if not self._handle.closed:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()


class EventTail:
    """Reads the lines appended since the last call; a half-written last line waits for its newline."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self.skipped = 0
        """Lines that were not JSON objects with a kind, or (for :meth:`read_events`) malformed events."""
        self.reads = 0
        """How many times the file was opened (the listing cache's tests count them)."""
        self.lines = 0
        """Complete lines read (blank and skipped ones too)."""
        self.first_bad: tuple[int, str] | None = None
        """(its number among :attr:`lines`, why) of the first line :meth:`read_events` skipped."""
        self.pending = 0
        """Bytes after the last complete line: a line being written, or one cut off."""

    def _complete_lines(self, max_bytes: int | None) -> list[bytes]:
        try:
            with self.path.open("rb") as handle:
                self.reads += 1
                handle.seek(self.offset)
                chunk = handle.read(max_bytes) if max_bytes else handle.read()
                size = os.fstat(handle.fileno()).st_size
        except OSError:  # missing, or not a readable file (a folder): nothing to read; damage.py says why
            return []
        end = chunk.rfind(b"\n")
        self.pending = max(0, size - self.offset - (end + 1))
        if end < 0:
            return []  # nothing complete yet
        self.offset += end + 1
        return chunk[:end].split(
            b"\n"
        )  # by newlines alone, as the writer ends lines (and `sed -n Np` counts)

    def _skip(self, index: int, why: str) -> None:
        self.skipped += 1
        if self.first_bad is None:
            self.first_bad = (self.lines + index + 1, why)

    def read_new(self, max_bytes: int | None = None) -> list[RawEvent]:
        """The new lines as JSON objects (readers fold :meth:`read_events` instead)."""
        events = []
        lines = self._complete_lines(max_bytes)
        for raw in lines:
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except (ValueError, RecursionError):  # RecursionError: nested too deep for Python's reader
                self.skipped += 1
                continue
            if isinstance(value, dict) and "kind" in value:
                events.append(value)
            else:
                self.skipped += 1
        self.lines += len(lines)
        return events

    def read_events(self, max_bytes: int | None = None) -> list[Event]:
        """The new lines as typed events; malformed lines are skipped and counted in ``skipped``."""
        events = []
        lines = self._complete_lines(max_bytes)
        for index, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                events.append(parse_event(json.loads(raw)))
            except MalformedEvent as exc:
                self._skip(index, str(exc))
            except (ValueError, RecursionError):  # not JSON, not UTF-8 text, or nested too deep to read
                self._skip(index, "not JSON")
        self.lines += len(lines)
        return events


def read_all(path: Path) -> list[RawEvent]:
    """Every complete line as JSON (for tests and tools that check what the file holds)."""
    return EventTail(path).read_new()


def read_events(path: Path) -> list[Event]:
    """Every complete line as a typed event."""
    return EventTail(path).read_events()


# -- the fold ---------------------------------------------------------------------------------------
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
    status: str = "unknown"
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
        """Every field but the histories, as JSON (what ``train/runs.py`` caches per run)."""
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
