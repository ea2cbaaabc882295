"""GRPO's reward functions, built from a recipe's ``grpo.rewards``.

Each is a plain callable with TRL's reward signature, ``fn(prompts, completions, **columns) -> list[float]``,
named for the Monitor (TRL logs ``rewards/NAME/mean``). The built-ins cover format (regex), length, exact or
numeric match against a data column and keyword presence; ``all`` multiplies several into one. A user's
function comes from a Python file: loading it and calling it are wrapped so that a syntax error, a missing
function or an exception inside it is ONE message naming the file and the function (a :class:`RewardError`,
which the worker turns into a ``failed`` status with that cause).
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lorastudio.errors import StudioError
from lorastudio.recipe import LengthReward, RewardSpec

RewardFn = Callable[..., list[float]]
_NUMBER_RE = re.compile(r"-?\d+(?:[.,]\d+)?")


class RewardError(StudioError):
    """A reward function that cannot be loaded or that failed while scoring."""


def _text(completion: Any) -> str:
    """A completion as text: TRL passes strings for string prompts and message lists for conversations."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def _words(text: str) -> int:
    return len(text.split())


def _length_score(spec: LengthReward, words: int) -> float:
    score = 1.0
    if spec.max_words is not None and words > spec.max_words:
        score = min(score, max(0.0, 1.0 - (words - spec.max_words) / spec.max_words))
    if spec.min_words is not None and words < spec.min_words:
        score = min(score, words / spec.min_words if spec.min_words else 1.0)
    if spec.target_words is not None:
        score = min(score, max(0.0, 1.0 - abs(words - spec.target_words) / spec.target_words))
    return score


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    found = _NUMBER_RE.findall(str(value))
    return float(found[-1].replace(",", ".")) if found else None


def describe(spec: RewardSpec) -> str:
    """A short name for the Monitor and the Preview: what the reward looks for."""
    if spec.name:
        return spec.name
    if spec.regex is not None:
        return f"regex {spec.regex}"
    if spec.length is not None:
        parts = [f"{k.split('_')[0]} {v}" for k, v in spec.length.model_dump().items() if v is not None]
        return "words " + ", ".join(parts)
    if spec.match is not None:
        return f"{'numeric' if spec.numeric else 'exact'} {spec.match}"
    if spec.keywords is not None:
        return f"{spec.require} of {', '.join(spec.keywords)}"
    if spec.python is not None:
        file, _, func = spec.python.rpartition(":")
        return f"{Path(file).name}:{func}"
    return " & ".join(describe(s) for s in spec.all or [])


def _scorer(spec: RewardSpec) -> Callable[[str, dict[str, Any]], float]:
    """One completion's score for a built-in reward (the row's columns in ``row``)."""
    flags = 0 if spec.case_sensitive else re.IGNORECASE
    if spec.regex is not None:
        pattern = re.compile(spec.regex, flags)
        return lambda text, row: 1.0 if pattern.search(text) else 0.0
    if spec.length is not None:
        length = spec.length
        return lambda text, row: _length_score(length, _words(text))
    if spec.match is not None:
        column, numeric, tolerance = spec.match, spec.numeric, spec.tolerance

        def match(text: str, row: dict[str, Any]) -> float:
            if column not in row:
                raise RewardError(
                    f"grpo.rewards: match: the data has no column {column!r} "
                    f"(it has {', '.join(sorted(row)) or 'none'})"
                )
            if numeric:
                got, want = _number(text), _number(row[column])
                return 1.0 if got is not None and want is not None and abs(got - want) <= tolerance else 0.0
            return 1.0 if text.strip() == str(row[column]).strip() else 0.0

        return match
    if spec.keywords is not None:
        needles = [re.compile(r"\b" + re.escape(k) + r"\b", flags) for k in spec.keywords]
        need_all = spec.require == "all"
        return lambda text, row: 1.0 if (all if need_all else any)(n.search(text) for n in needles) else 0.0
    raise ValueError("not a built-in reward")  # python and all are handled by the caller


def _rows(count: int, columns: dict[str, Any]) -> list[dict[str, Any]]:
    lists = {k: v for k, v in columns.items() if isinstance(v, list) and len(v) == count}
    return [{k: v[i] for k, v in lists.items()} for i in range(count)]


def load_user_function(target: str) -> RewardFn:
    """``FILE.py:function`` imported from its file; any failure is one message naming both."""
    file, _, name = target.rpartition(":")
    path = Path(file).expanduser()
    where = f"grpo.rewards: {path}:{name}"
    if not path.is_file():
        raise RewardError(f"{where}: the file does not exist")
    module_name = f"studio_rewards_{abs(hash(str(path.resolve())))}"
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise RewardError(f"{where}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise RewardError(f"{where}: syntax error at line {exc.lineno}: {exc.msg}") from None
    except RewardError:
        raise
    except Exception as exc:
        raise RewardError(f"{where}: importing the file raised {type(exc).__name__}: {exc}") from None
    func = getattr(module, name, None)
    if func is None:
        found = sorted(
            k
            for k, v in vars(module).items()
            if callable(v) and not k.startswith("_") and getattr(v, "__module__", None) == module_name
        )
        raise RewardError(f"{where}: the file has no function {name!r} (it has {', '.join(found) or 'none'})")
    if not callable(func):
        raise RewardError(f"{where}: {name!r} is not a function")
    return func


def _call_user(
    func: RewardFn, target: str, prompts: list[Any], completions: list[Any], kwargs: dict[str, Any]
) -> list[float]:
    file, _, name = target.rpartition(":")
    where = f"grpo.rewards: {file}:{name}"
    try:
        out = func(prompts=prompts, completions=completions, **kwargs)
    except RewardError:
        raise
    except Exception as exc:
        frames = [
            f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(Path(file).expanduser())
        ]
        line = f" (line {frames[-1].lineno})" if frames else ""
        raise RewardError(f"{where} raised {type(exc).__name__}: {exc}{line}") from None
    try:
        scores = [float(x) if x is not None else math.nan for x in out]
    except (TypeError, ValueError):
        raise RewardError(
            f"{where} must return a list of numbers, one per completion; got {out!r:.80}"
        ) from None
    if len(scores) != len(completions):
        raise RewardError(f"{where} returned {len(scores)} rewards for {len(completions)} completions")
    return scores


def build_reward(spec: RewardSpec) -> RewardFn:
    """One reward callable for TRL, named :func:`describe` (unweighted: GRPO applies ``reward_weights``)."""
    if spec.python is not None:
        target = spec.python
        user = load_user_function(target)

        def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
            return _call_user(user, target, prompts, completions, kwargs)
    elif spec.all is not None:
        parts = [build_reward(s) for s in spec.all]

        def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
            scores = [1.0] * len(completions)
            for part in parts:
                scores = [
                    a * b
                    for a, b in zip(
                        scores, part(prompts=prompts, completions=completions, **kwargs), strict=True
                    )
                ]
            return scores
    else:
        score = _scorer(spec)

        def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
            rows = _rows(len(completions), kwargs)
            return [score(_text(c), row) for c, row in zip(completions, rows, strict=True)]

    reward.__name__ = describe(spec)
    return reward


def build_rewards(specs: Sequence[RewardSpec]) -> tuple[list[RewardFn], list[float]]:
    """The recipe's reward functions and their weights, every user file loaded (so errors come first)."""
    funcs = [build_reward(s) for s in specs]
    names = [f.__name__ for f in funcs]
    for i, name in enumerate(names):  # TRL keys its metrics by name: two rewards must not share one
        if names.count(name) > 1:
            funcs[i].__name__ = names[i] = f"{name} #{names[:i].count(name) + 1}"
    return funcs, [s.weight for s in specs]


def score(
    specs: Sequence[RewardSpec],
    completions: list[str],
    rows: list[dict[str, Any]] | None = None,
    prompts: list[str] | None = None,
) -> list[dict[str, float]]:
    """Each completion's score per reward, and the weighted ``total`` (what GRPO sums), outside training."""
    funcs, weights = build_rewards(specs)
    rows = rows or [{} for _ in completions]
    columns = {k: [r.get(k) for r in rows] for k in {k for r in rows for k in r}}
    prompts = prompts or [""] * len(completions)
    per = [f(prompts=prompts, completions=completions, **columns) for f in funcs]
    out = []
    for i in range(len(completions)):
        item = {f.__name__: per[j][i] for j, f in enumerate(funcs)}
        item["total"] = sum(w * per[j][i] for j, w in enumerate(weights))
        out.append(item)
    return out
