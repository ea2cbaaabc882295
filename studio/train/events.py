"""The run directory's event log: an append-only ``events.jsonl``.

This file is the contract between the training worker and any reader (the TUI,
``studio runs``). Each line is one JSON object with ``v`` (the format version),
``t`` (unix time) and ``kind``. Writers flush every line; readers keep a byte
offset, so a long run costs the same per refresh as a short one, and a half-written
last line is left for the next read.

Kinds: ``status``, ``metrics``, ``eval``, ``telemetry``, ``checkpoint``, ``log`` and ``sample``.

``sample`` (a :class:`SampleEvent`): one round of the recipe's sample prompts (``train.samples``) answered
by the model being trained, at the first step (the base, or the adapter the run resumes from), after each
evaluation and at the end. Fields: ``step``; ``at`` (``start``, ``eval`` or ``end``); ``prompts`` and
``replies`` (lists of equal length, prompt i answered by reply i); ``finish`` (per reply: ``stop`` when
it ended by itself, ``length`` at the token limit); ``seconds`` (wall time the round took, training
paused meanwhile); ``max_new_tokens``. :class:`RunState` keeps every round (``samples``) and the total
time spent sampling (``sampling_s``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

EVENTS_VERSION = 1
EVENTS_FILE = "events.jsonl"

TERMINAL_STATUSES = frozenset({"done", "failed", "stopped", "died"})
STATUSES = ("starting", "loading model", "loading data", "training", "saving", *sorted(TERMINAL_STATUSES))

Event = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class SampleEvent:
    """One round of sample replies (the ``sample`` kind; see the module docstring)."""

    KIND: ClassVar[str] = "sample"
    t: float | None = None
    step: int = 0
    at: str = "eval"
    """``start`` (the model before training), ``eval`` (after an evaluation) or ``end``."""
    prompts: tuple[str, ...] = ()
    replies: tuple[str, ...] = ()
    """Reply i answers prompt i."""
    finish: tuple[str, ...] = ()
    """Per reply: ``stop`` (ended by itself) or ``length`` (cut at ``max_new_tokens``)."""
    seconds: float = 0.0
    """Wall time of the round; training waits for it."""
    max_new_tokens: int | None = None

    @classmethod
    def from_json(cls, event: Event) -> SampleEvent:
        """ValueError when a field has the wrong shape (the fold then skips the line)."""

        def texts(key: str) -> tuple[str, ...]:
            value = event.get(key) or []
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise ValueError(f"sample.{key}: not a list of strings")
            return tuple(value)

        t, step, seconds = event.get("t"), event.get("step", 0), event.get("seconds", 0.0)
        if not isinstance(step, int) or not isinstance(seconds, (int, float)):
            raise ValueError("sample: step must be an integer and seconds a number")
        limit = event.get("max_new_tokens")
        return cls(t=float(t) if isinstance(t, (int, float)) else None, step=step, at=str(event.get("at", "eval")),
                   prompts=texts("prompts"), replies=texts("replies"), finish=texts("finish"),
                   seconds=float(seconds), max_new_tokens=limit if isinstance(limit, int) else None)

    def to_json(self) -> Event:
        """The fields as :meth:`EventWriter.write` takes them (``v``, ``t`` and ``kind`` are the writer's)."""
        out: Event = {"step": self.step, "at": self.at, "prompts": list(self.prompts), "replies": list(self.replies),
                      "finish": list(self.finish), "seconds": round(self.seconds, 3)}
        if self.max_new_tokens is not None:
            out["max_new_tokens"] = self.max_new_tokens
        return out

    def reply_to(self, prompt: str) -> str | None:
        """This round's reply to ``prompt`` (None when the round did not ask it)."""
        return next((r for p, r in zip(self.prompts, self.replies, strict=False) if p == prompt), None)


class EventWriter:
    """Appends events; safe to call from the trainer thread and the telemetry thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._handle = path.open("a", encoding="utf-8")

    def write(self, kind: str, **fields: Any) -> Event:
        event = {"v": EVENTS_VERSION, "t": round(time.time(), 3), "kind": kind, **fields}
        line = json.dumps(event, default=str) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()
        return event

    def status(self, status: str, **fields: Any) -> Event:
        return self.write("status", status=status, **fields)

    def close(self) -> None:
        with self._lock:
            if not self._handle.closed:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()


class EventTail:
    """Reads the events appended since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.skipped = 0

    def read_new(self, max_bytes: int | None = None) -> list[Event]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read(max_bytes) if max_bytes else handle.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []  # nothing complete yet: a half-written line waits for its newline
        complete = chunk[: end + 1]
        self.offset += len(complete)
        events = []
        for raw in complete.splitlines():
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                self.skipped += 1
                continue
            if isinstance(value, dict) and "kind" in value:
                events.append(value)
        return events


def read_all(path: Path) -> list[Event]:
    return EventTail(path).read_new()


@dataclass
class RunState:
    """Everything a reader folds out of the event stream."""

    status: str = "unknown"
    cause: str | None = None
    traceback: str | None = None
    hints: list[str] = field(default_factory=list)
    started: float | None = None
    updated: float | None = None
    step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    loss: list[tuple[int, float]] = field(default_factory=list)
    learning_rate: list[tuple[int, float]] = field(default_factory=list)
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    tokens_seen: int = 0
    eta_s: float | None = None
    backend: str | None = None
    device: str | None = None
    world_size: int = 1
    telemetry: Event | None = None
    vram_history: list[float] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    adapter: str | None = None
    events: int = 0
    eval_loss: list[tuple[int, float]] = field(default_factory=list)
    best_checkpoint: str | None = None
    """The checkpoint folder (relative to the run directory) with the lowest eval loss so far."""
    best_eval_loss: float | None = None
    peak_vram_mb: float | None = None
    """Highest GPU memory seen: torch's peak reserved, else this process's NVML figure, else the GPU's used."""
    peak_rss_mb: float | None = None
    training_started: float | None = None
    min_loss: float | None = None
    """The lowest training loss logged (kept as events arrive, so readers need not scan ``loss``)."""
    samples: list[SampleEvent] = field(default_factory=list)
    """Every round of sample replies, in the order written."""
    sampling_s: float = 0.0
    """Seconds the worker spent answering the sample prompts (training waited meanwhile)."""

    @property
    def last_loss(self) -> float | None:
        return self.loss[-1][1] if self.loss else None

    @property
    def last_eval_loss(self) -> float | None:
        return self.eval_loss[-1][1] if self.eval_loss else None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def apply(self, event: Event) -> None:
        self.events += 1
        t = event.get("t")
        if isinstance(t, (int, float)):
            self.started = self.started if self.started is not None else t
            self.updated = t
        kind = event.get("kind")
        if kind == "status":
            self.status = str(event.get("status", self.status))
            if self.status == "starting":
                self.cause = self.traceback = None
                self.hints = []
            for key in ("cause", "traceback", "backend", "device", "adapter"):
                if event.get(key) is not None:
                    setattr(self, key, event[key])
            if event.get("hints"):
                self.hints = list(event["hints"])
            if event.get("max_steps"):
                self.max_steps = int(event["max_steps"])
            if event.get("world_size"):
                self.world_size = int(event["world_size"])
            if self.status == "training" and self.training_started is None and isinstance(t, (int, float)):
                self.training_started = t
        elif kind == "metrics":
            step = int(event.get("step", self.step))
            self.step = max(self.step, step)
            self.max_steps = int(event.get("max_steps") or self.max_steps)
            self.epoch = float(event.get("epoch") or self.epoch)
            if event.get("loss") is not None:
                self.loss.append((step, float(event["loss"])))
                self.min_loss = min(self.min_loss, self.loss[-1][1]) if self.min_loss is not None else self.loss[-1][1]
            if event.get("learning_rate") is not None:
                self.learning_rate.append((step, float(event["learning_rate"])))
            self.grad_norm = event.get("grad_norm", self.grad_norm)
            self.tokens_per_s = event.get("tokens_per_s", self.tokens_per_s)
            self.tokens_seen = int(event.get("tokens_seen") or self.tokens_seen)
            self.eta_s = event.get("eta_s", self.eta_s)
            if event.get("eval_loss") is not None:  # runs logged before eval events had their own kind
                self.eval_loss.append((step, float(event["eval_loss"])))
        elif kind == "eval":
            if event.get("eval_loss") is not None:
                self.eval_loss.append((int(event.get("step", self.step)), float(event["eval_loss"])))
        elif kind == "telemetry":
            self.telemetry = event
            gpus = event.get("gpus") or []
            if gpus:
                self.vram_history.append(float(gpus[0].get("memory_used_mb") or 0.0))
                del self.vram_history[:-600]
            vram = event.get("torch_peak_reserved_mb") or (
                (gpus[0].get("process_memory_mb") or gpus[0].get("memory_used_mb")) if gpus else None)
            if vram:
                self.peak_vram_mb = max(self.peak_vram_mb or 0.0, float(vram))
            if event.get("rss_mb"):
                self.peak_rss_mb = max(self.peak_rss_mb or 0.0, float(event["rss_mb"]))
        elif kind == "checkpoint":
            self.checkpoints.append(int(event.get("step", 0)))
            if event.get("best_checkpoint"):
                self.best_checkpoint = str(event["best_checkpoint"])
                self.best_eval_loss = event.get("best_eval_loss", self.best_eval_loss)
        elif kind == "sample":
            try:
                sample = SampleEvent.from_json(event)
            except ValueError:
                return
            self.samples.append(sample)
            self.sampling_s += sample.seconds


def fold(events: Iterator[Event] | list[Event], state: RunState | None = None) -> RunState:
    state = state or RunState()
    for event in events:
        state.apply(event)
    return state


def load_samples(run_dir: Path) -> list[SampleEvent]:
    """A run's sample rounds, through the fold."""
    return fold(read_all(run_dir / EVENTS_FILE)).samples
