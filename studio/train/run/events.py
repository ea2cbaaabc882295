"""The run directory's event kinds: one frozen dataclass per kind of line in ``events.jsonl``.

This file is the contract between the writers (the training worker, the launch supervisor, ``create_run``,
an evaluation's job) and every reader (the Monitor, Runs, Compare, ``studio runs``, ``studio train``'s
progress lines, export, chat's ``RUN@best``). The file itself is written and read by ``eventlog.py``; the
one fold that turns events into figures is ``runstate.py``.

Format (``EVENTS_VERSION`` 1). Each line is one JSON object::

    {"v": 1, "t": UNIX_TIME, "kind": KIND, ...fields of that kind}

Fields that are None are not written (a missing field reads as None). Each kind is a frozen dataclass below
(its fields documented there): ``status``, ``metrics``, ``eval``, ``telemetry`` (with one
:class:`GpuReading` per GPU), ``checkpoint``, ``log``, for the preference and RL methods ``method_metrics``
and ``completions`` (GRPO's sampled replies), ``sample`` (below), ``task_scores``, and in an evaluation's
directory ``eval_task``, ``eval_progress``, ``eval_result`` and ``eval_judge``; :data:`EVENT_KINDS` maps the
kind to its class. Writers build the class (``writer.emit(MetricsEvent(step=3, loss=1.2))``), so mypy checks
every field name and type; :data:`Status` is the one type of a run's status, :data:`TERMINAL_STATUSES` the
statuses a run ends in.

Reading is forward compatible: a line of a kind this version does not know loads as :class:`UnknownEvent`
(kept, folded as nothing), keys a kind does not declare are kept in ``extra`` and written back by
``to_json``, and a newer ``v`` is read for the fields this version knows. A line that is not JSON, or a
declared field whose value has the wrong type, makes that line malformed: it is skipped and counted
(``EventTail.skipped``, ``RunState.skipped``; the first named in ``RunState.bad_line``, which makes the run
``damaged`` in the listing: ``damage.py``), never raised to the reader.

Adding a kind (or a field):

1. Write a ``@register`` frozen dataclass subclass of :class:`Event` with ``KIND = "name"`` and its fields
   (types from :data:`_CONVERTERS`: ``str``, ``int``, ``float``, ``bool``, ``tuple[str, ...]``, each
   ``| None`` with a default of None), a docstring under each field.
2. Write it with ``writer.emit(NameEvent(field=value))``.
3. Fold it in ``RunState.apply`` (``runstate.py``: a new ``elif isinstance(event, NameEvent)`` branch),
   keeping any new figure a plain field so the listing cache (``train/launch/runs.py``) can store it.
4. Add it to the round-trip test in ``tests/test_events.py``. A new *field* on an existing kind needs only
   step 1: old files lack it (None), old readers keep it in ``extra``. Bump ``EVENTS_VERSION`` only when a
   field changes meaning (then fold both versions).

``sample`` (a :class:`SampleEvent`): one round of the recipe's sample prompts (``train.samples``) answered
by the model being trained, at the first step (the base, or the adapter the run resumes from), after each
evaluation and at the end: ``prompts`` and ``replies`` (prompt i answered by reply i), ``finish`` per reply
(``stop`` or ``length``) and ``seconds`` (training paused meanwhile). ``RunState`` keeps every round
(``samples``) and the total time spent sampling (``sampling_s``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, cast, get_args

T = TypeVar("T")

EVENTS_VERSION = 1

Status = Literal[
    "queued",
    "starting",
    "loading model",
    "loading data",
    "training",
    "saving",
    "done",
    "failed",
    "stopped",
    "died",
    "unknown",
    "damaged",
]
"""What a run (or an evaluation) is doing, everywhere a status is written or compared. ``died`` is never
written (readers infer it from a vanished worker), ``unknown`` is a run with no status event yet, and
``damaged`` is the listing's word for a run whose files cannot be read (``damage.py``). A reader may still
meet other text: a newer writer's status, or a queued status with its reason (``queued (waiting for GPU 0)``,
made by :func:`queued_with`, read back by :func:`status_word`), so compare with ``==`` and ``in`` and let
what matches none of them fall through; never assume the set is closed."""

TerminalStatus = Literal["done", "failed", "stopped", "died"]
TERMINAL_STATUSES: frozenset[Status] = frozenset(get_args(TerminalStatus))
"""The statuses a run ends in: its worker is gone and nothing more will be written."""
ENDED_STATUSES: frozenset[Status] = TERMINAL_STATUSES | {"damaged"}
"""What a listing treats as over: a terminal status, or a run whose files cannot be read."""


def queued_with(reason: str) -> Status:
    """``queued (REASON)``: a queued status that says what it waits for (the device queue, a pending Slurm job),
    as the Runs screen and ``studio runs`` show it; :func:`status_word` reads it back as ``queued``."""
    return cast("Status", f"queued ({reason})")


def status_word(status: str) -> Status:
    """The :data:`Status` a written status begins with: ``queued (waiting for GPU 0)`` -> ``queued`` (text that
    is none of them comes back as it is)."""
    return cast("Status", status.split(" (")[0])


STATUSES: tuple[Status, ...] = (
    "starting",
    "loading model",
    "loading data",
    "training",
    "saving",
    *sorted(TERMINAL_STATUSES),
)

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
    "Status | None": _text,  # any text reads (see Status): a newer writer's status is still shown
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
    status: Status | None = None
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
    """An event from its kind and fields by keyword (``make_event("metrics", step=3, loss=1.2)``; bad values
    raise), for tests and tools that build lines as data; writers construct the typed class instead."""
    return parse_event({"v": EVENTS_VERSION, "t": t, "kind": kind, **fields})
