"""Sweeps: one run per point of a grid of recipe overrides, queued on the device queue and grouped by name.

``studio sweep RECIPE train.learning_rate=1e-4,3e-4 lora.r=8,16`` is a 2x2 grid: every value is validated
on its own before anything starts (a bad one names its key and value), then every point is validated whole,
then one run directory per point is created and its worker started. The workers wait on the device queue
(``queue.py``), so members train one at a time on a GPU; on the CPU a sweep queues its members too
(``STUDIO_QUEUE_CPU=1`` in their environment), instead of sharing the cores between them. Each member's
``run.json`` holds ``sweep``: the sweep's name, the point's index and the swept fields' values, which is all
that groups them: listing, comparing and stopping a sweep read it back.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastudio import registry
from lorastudio.errors import RecipeError, RunError
from lorastudio.recipe import Recipe
from lorastudio.settings import variable
from lorastudio.train.launch.compare import RunResult, run_result
from lorastudio.train.launch.runs import RUN_FILE, STAMP_FORMAT, read_meta, start_run, start_worker, stop_run
from lorastudio.train.run.damage import DAMAGED

SWEEP_KEY = "sweep"
"""The ``run.json`` entry of a sweep member: ``{"name", "index", "of", "fields": {dotted key: value}}``."""

QUEUE_ENV = {variable("queue_cpu"): "1"}
"""The members' environment: on the CPU they queue like GPU runs, so one trains at a time."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

MAX_POINTS = 64
"""The most runs a sweep plans unless told how many to start (``--max N``, MCP's ``max_runs``): a typo such as
``lora.r=1,2,...`` pasted twice must not queue thousands of runs, each with a run directory."""


def split_values(raw: str) -> list[str]:
    """``1e-4,3e-4`` -> two values; commas inside ``[]``, ``{}`` or quotes stay (``[q_proj,v_proj]`` is one).
    A bracket or quote left open (or closed twice) raises ValueError naming it."""
    values: list[str] = []
    current: list[str] = []
    opened: list[str] = []  # the brackets still open, innermost last
    quote = ""
    for char in raw:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            opened.append(char)
        elif char in "]}":
            if not opened or "[{"["]}".index(char)] != opened[-1]:
                raise ValueError(f"a {char!r} that closes nothing")
            opened.pop()
        elif char == "," and not opened:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    # unbalanced, the value would be read as one string and refused for a reason that has nothing to do with it
    if quote or opened:
        raise ValueError(f"an unclosed {quote or opened[-1]!r}")
    values.append("".join(current).strip())
    return values


@dataclass(frozen=True)
class Axis:
    """One swept field: its dotted key and the values as typed (read as YAML, like any override)."""

    key: str
    values: list[str]


def parse_grid(args: Iterable[str]) -> tuple[list[Axis], list[str]]:
    """The axes (fields with several comma-separated values) and the fixed overrides (one value)."""
    axes: list[Axis] = []
    fixed: list[str] = []
    seen: set[str] = set()
    for text in args:
        parts, _ = registry.parse_override(text)  # names the text when it is not key=value
        key = ".".join(parts)
        if key in seen:
            raise RecipeError(f"sweep: {key} is given twice; list all its values once ({key}=a,b,c)")
        seen.add(key)
        try:
            values = split_values(text.split("=", 1)[1])
        except ValueError as exc:
            raise RecipeError(f"sweep {text!r}: {exc}") from None
        if len(values) == 1:
            fixed.append(f"{key}={values[0]}")
            continue
        if any(not v for v in values):
            raise RecipeError(f"sweep {text!r}: an empty value between commas")
        if len(set(values)) != len(values):
            raise RecipeError(f"sweep {text!r}: a value is listed twice")
        axes.append(Axis(key, values))
    return axes, fixed


@dataclass(frozen=True)
class Point:
    """One run of the sweep: its overrides (fixed ones first), the swept fields' values, the resolved recipe."""

    index: int
    overrides: list[str]
    fields: dict[str, Any]
    recipe: Recipe


@dataclass(frozen=True)
class SweepPlan:
    name: str
    recipe: str
    axes: list[Axis]
    fixed: list[str]
    points: list[Point]
    grid_size: int
    """Points in the whole grid; ``points`` holds fewer when ``--max`` cut it."""
    stamp: str = ""
    """When the sweep was planned (``STAMP_FORMAT``): its default name and every run's name carry it, so a
    sweep ``…-101148`` holds runs ``…-101148``, however long validating and creating them took."""

    @property
    def keys(self) -> list[str]:
        return [axis.key for axis in self.axes]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "sweep"


def plan_sweep(
    recipe: str,
    args: list[str],
    name: str | None = None,
    max_points: int | None = None,
    root: Path | None = None,
    max_option: str = "--max N",
) -> SweepPlan:
    """Expand and validate the grid; raises before anything is created. ``max_points`` keeps the first N points;
    without it a grid of more than :data:`MAX_POINTS` is refused, naming ``max_option`` (how the caller's user
    says N)."""
    axes, fixed = parse_grid(args)
    return _plan(
        lambda overrides: registry.load(recipe, overrides), axes, fixed, name, max_points, root, max_option
    )


def plan_from_data(
    data: dict[str, Any], axes: list[Axis], name: str | None = None, root: Path | None = None
) -> SweepPlan:
    """The same from a recipe's fields as a mapping (the Launch sheet's form), the axes' values as typed."""

    def load(overrides: list[str]) -> Recipe:
        return registry.validate_data(
            registry.apply_overrides(data, overrides), "the launch sheet", overrides=overrides
        )

    return _plan(load, axes, [], name, None, root, "")


def _plan(
    load: Callable[[list[str]], Recipe],
    axes: list[Axis],
    fixed: list[str],
    name: str | None,
    max_points: int | None,
    root: Path | None,
    max_option: str,
) -> SweepPlan:
    if not axes:
        raise RecipeError(
            "sweep: give at least one field with several comma-separated values, "
            "e.g. train.learning_rate=1e-4,3e-4"
        )
    if max_points is not None and max_points < 1:
        raise RecipeError("sweep --max: give a number of runs, 1 or more")
    grid_size = math.prod(len(axis.values) for axis in axes)
    if max_points is None and grid_size > MAX_POINTS:
        limit = f", or {max_option} to start the first N" if max_option else ""
        raise RecipeError(
            f"sweep: the grid has {grid_size} points "
            f"({' x '.join(f'{a.key} ({len(a.values)})' for a in axes)}), more than {MAX_POINTS} runs; "
            f"give fewer values{limit} (nothing was started)"
        )
    # each value alone first (the other axes at their first values: a swept field may need another one, as
    # train.freeze_trainable_layers needs train.tuning: freeze), so the message names the one at fault
    firsts = {axis.key: f"{axis.key}={axis.values[0]}" for axis in axes}
    try:
        base = load([*fixed, *firsts.values()])
    except RecipeError as exc:
        load(fixed)  # a fixed override at fault: its own message
        raise RecipeError(f"sweep: {exc} (nothing was started)") from None
    for axis in axes:
        for value in axis.values:
            try:
                load([*fixed, *{**firsts, axis.key: f"{axis.key}={value}"}.values()])
            except RecipeError as exc:
                raise RecipeError(f"sweep: {exc} (nothing was started)") from None
    if base.train.devices != 1:
        raise RecipeError(
            "sweep: runs on several devices do not wait on the device queue; sweep with "
            "train.devices=1 (nothing was started)"
        )
    from lorastudio.train.trainer.trackers import check_available

    check_available(base)
    if name is not None and not _NAME.fullmatch(name):
        raise RecipeError(f"sweep --name {name!r}: use letters, digits, '.', '_' and '-'")
    stamp = time.strftime(STAMP_FORMAT)
    name = name or f"{_slug(base.name)}-sweep-{stamp}"
    if members(name, root):
        raise RecipeError(f"sweep {name!r} already exists; pick another --name")
    combos = itertools.islice(itertools.product(*(axis.values for axis in axes)), max_points or grid_size)
    points = []
    for index, combo in enumerate(combos):
        overrides = [*fixed, *(f"{axis.key}={value}" for axis, value in zip(axes, combo, strict=True))]
        try:
            resolved = load(overrides)
        except RecipeError as exc:
            raise RecipeError(f"sweep: {exc} (nothing was started)") from None
        dumped = resolved.model_dump(mode="json")
        points.append(Point(index, overrides, {axis.key: _at(dumped, axis.key) for axis in axes}, resolved))
    return SweepPlan(name, base.name, axes, fixed, points, grid_size, stamp)


def _at(data: dict[str, Any], key: str) -> Any:
    """The value at a dotted key, whole (a swept mapping such as ``lora.rank_pattern`` stays one value)."""
    value: Any = data
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def start_sweep(plan: SweepPlan, root: Path | None = None, start: bool = True) -> list[Path]:
    """Create every member's run directory (named in its run.json, its name stamped with the sweep's time),
    then, unless ``start`` is false, start their workers on the queue."""
    created = []
    for point in plan.points:
        meta = {
            SWEEP_KEY: {
                "name": plan.name,
                "index": point.index,
                "of": len(plan.points),
                "fields": point.fields,
            }
        }
        run_dir = start_run(
            point.recipe, root, start=False, meta=meta, stamp=plan.stamp or None
        )  # all exist before the first one trains
        created.append(run_dir)
    for run_dir in created if start else ():
        start_worker(run_dir, env=QUEUE_ENV)
    return created


# -- reading sweeps back ----------------------------------------------------------------------------
def sweep_of(path: Path) -> dict[str, Any] | None:
    """The run's ``sweep`` entry, or None for a run started on its own."""
    entry = read_meta(path).get(SWEEP_KEY)
    return entry if isinstance(entry, dict) and entry.get("name") else None


def _runs_root(root: Path | None) -> Path:
    from lorastudio.paths import runs_dir

    return root or runs_dir()


def members(name: str, root: Path | None = None) -> list[Path]:
    """The sweep's run directories in grid order."""
    folder = _runs_root(root)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        entry = sweep_of(path) if (path / RUN_FILE).exists() else None
        if entry is not None and entry["name"] == name:
            found.append((int(entry.get("index", 0)), path))
    return [path for _, path in sorted(found)]


def stop_sweep(name: str, root: Path | None = None) -> tuple[list[Path], list[Path]]:
    """SIGTERM every live member (queued ones first, so none takes the device a stopping one frees).
    Returns (asked to stop, already ended)."""
    from lorastudio.train.launch.runs import summarise

    runs = members(name, root)
    if not runs:
        raise RunError(f"no sweep named {name!r} (see `studio runs`)")
    queued_first = sorted(runs, key=lambda p: not summarise(p).status.startswith("queued"))
    stopped: list[Path] = []
    ended: list[Path] = []
    for path in queued_first:
        (stopped if stop_run(path) else ended).append(path)
    return stopped, ended


@dataclass
class SweepEntry:
    """One member in the ranking: its results, swept values, place (1 = best) and whether it is the best."""

    result: RunResult
    fields: dict[str, Any]
    rank: int | None
    best: bool = False


@dataclass
class SweepComparison:
    name: str
    keys: list[str]
    ranked_by: str
    """``best_eval_loss`` when any member evaluated, else ``final_loss``."""
    entries: list[SweepEntry] = field(default_factory=list)

    @property
    def best(self) -> SweepEntry | None:
        return next((e for e in self.entries if e.best), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep": self.name,
            "fields": self.keys,
            "ranked_by": self.ranked_by,
            "best": self.best.result.name if self.best else None,
            "runs": [
                {"rank": e.rank, "best": e.best, "fields": e.fields, **e.result.to_json()}
                for e in self.entries
            ],
        }


def _member_result(path: Path) -> RunResult:
    """The member's results; a damaged member (``damage.py``) is listed unranked, its figures not trusted,
    so it does not keep the others from being compared."""
    try:
        return run_result(path)
    except RunError:
        return RunResult(path.name, path, "?", DAMAGED, 0, 0)


def compare_sweep(name: str, root: Path | None = None) -> SweepComparison:
    """The sweep's members ranked by best eval loss (final train loss when none evaluated), best first."""
    runs = members(name, root)
    if not runs:
        raise RunError(f"no sweep named {name!r} (see `studio runs`)")
    entries = []
    keys: list[str] = []
    for path in runs:
        entry = sweep_of(path) or {}
        fields = dict(entry.get("fields") or {})
        keys += [k for k in fields if k not in keys]
        entries.append(SweepEntry(_member_result(path), fields, None))
    ranked_by = (
        "best_eval_loss" if any(e.result.best_eval_loss is not None for e in entries) else "final_loss"
    )
    scored = sorted(
        (e for e in entries if getattr(e.result, ranked_by) is not None),
        key=lambda e: getattr(e.result, ranked_by),
    )
    for place, item in enumerate(scored, 1):
        item.rank = place
    if scored:
        scored[0].best = True
    unscored = [e for e in entries if e.rank is None]
    return SweepComparison(name, keys, ranked_by, [*scored, *unscored])


def sweep_names(root: Path | None = None) -> list[str]:
    """Every sweep's name, newest first."""
    folder = _runs_root(root)
    if not folder.is_dir():
        return []
    newest: dict[str, float] = {}
    for path in folder.iterdir():
        entry = sweep_of(path) if (path / RUN_FILE).exists() else None
        if entry is not None:
            created = float(read_meta(path).get("created") or 0)
            newest[entry["name"]] = max(newest.get(entry["name"], 0.0), created)
    return sorted(newest, key=lambda n: newest[n], reverse=True)
