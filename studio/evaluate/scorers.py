"""Scorers of judged generations: reference match (exact, contains, regex, rouge) and GRPO reward functions.

A scorer is called as TRL calls a reward, ``fn(prompts=..., completions=..., **columns) -> list[float | None]``
(``reference`` and the prompt row's own keys are the columns), so a GRPO reward file scores an evaluation
unchanged: ``reward:NAME`` builds one of the run's ``grpo.rewards`` and ``FILE.py:function`` a user's file,
both through ``train/trainer/rewards.py``'s own :func:`build_reward`. Each answer is scored on its own: a scorer
that raises or returns something other than a number fails that answer only; the failure is counted and its
message (naming the scorer, its file and function) kept, never a score. None means "does not apply" (no
reference), left out of the mean like TRL's NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lorastudio.errors import StudioError
from lorastudio.recipe import Recipe, RewardSpec

ScoreFn = Callable[..., list[float | None]]
REFERENCE_SCORERS = ("exact", "contains", "rouge")
"""Scorers comparing an answer with its prompt's reference (None where a prompt has none)."""


@dataclass(frozen=True)
class Scorer:
    """One ``--score``: its name (the table's ``judged/NAME`` row) and the callable."""

    name: str
    fn: ScoreFn


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _per_reference(rule: Callable[[str, str], float]) -> ScoreFn:
    def score(prompts: list[Any], completions: list[str], **columns: Any) -> list[float | None]:
        refs = columns.get("reference") or [None] * len(completions)
        return [None if not ref else rule(str(c), str(ref)) for c, ref in zip(completions, refs, strict=True)]

    return score


def _rouge_l(answer: str, reference: str) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(scorer.score(reference, answer)["rougeL"].fmeasure)


def _regex(pattern: str) -> ScoreFn:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise StudioError(f"--score regex:{pattern}: not a valid regular expression: {exc}") from None

    def score(prompts: list[Any], completions: list[str], **columns: Any) -> list[float | None]:
        return [1.0 if compiled.search(str(c)) else 0.0 for c in completions]

    return score


def recipe_reward(recipe: Recipe | None, name: str, where: str) -> RewardSpec:
    """The reward of ``recipe``'s ``grpo.rewards`` shown as ``name`` (its ``name`` or its Monitor name)."""
    from lorastudio.train.trainer.rewards import describe

    rewards = list(recipe.grpo.rewards) if recipe is not None and recipe.grpo is not None else []
    found = [r for r in rewards if name in (r.name, describe(r))]
    if not found:
        names = ", ".join(repr(describe(r)) for r in rewards) or "none: name a run of a GRPO recipe"
        raise StudioError(f"--score {where}: no reward {name!r} in the run's grpo.rewards (it has {names})")
    return found[0]


def build_scorer(text: str, recipe: Recipe | None = None) -> Scorer:
    """The scorer a ``--score`` names; an unknown one, a bad regex or a file that does not load is one
    :class:`StudioError` naming it. ``recipe`` (the first run target's) holds the rewards ``reward:NAME`` takes."""
    from lorastudio.train.trainer.rewards import build_reward, user_reward

    if text == "exact":
        return Scorer(text, _per_reference(lambda a, r: float(_norm(a) == _norm(r))))
    if text == "contains":
        return Scorer(text, _per_reference(lambda a, r: float(_norm(r) in _norm(a))))
    if text == "rouge":
        return Scorer("rougeL", _per_reference(_rouge_l))
    if text.startswith("regex:"):
        return Scorer(text, _regex(text.removeprefix("regex:")))
    if text.startswith("reward:"):
        spec = recipe_reward(recipe, text.removeprefix("reward:"), text)
        return Scorer(text, build_reward(spec, f"--score {text}"))
    file, _, func = text.rpartition(":")
    if file.endswith(".py") and func:
        return Scorer(text, user_reward(text, "--score"))  # loaded now: its errors before any answer
    raise StudioError(
        f"--score {text}: not a scorer (exact, contains, regex:PATTERN, rouge, reward:NAME, FILE.py:function)"
    )


@dataclass
class Scored:
    """One scorer's results on one target's answers."""

    scores: list[float | None]
    """Per answer: the score, None where it does not apply or the scorer failed."""
    errors: list[str | None] = field(default_factory=list)
    """Per answer: the scorer's failure (named), None where it scored."""

    @property
    def failed(self) -> int:
        return sum(e is not None for e in self.errors)

    def mean(self) -> tuple[float | None, float | None, int]:
        """Mean, its standard error, and how many answers it is over."""
        values = [s for s in self.scores if s is not None]
        if not values:
            return None, None, 0
        mean = sum(values) / len(values)
        if len(values) < 2:
            return mean, None, 1
        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        return mean, math.sqrt(var / len(values)), len(values)


def run_scorer(
    scorer: Scorer, prompts: Sequence[str], answers: Sequence[str], rows: Sequence[dict[str, Any]]
) -> Scored:
    """Every answer scored on its own (a failure costs that answer only, and is kept)."""
    out = Scored([], [])
    for prompt, answer, row in zip(prompts, answers, rows, strict=True):
        try:
            [value] = _one(scorer, prompt, answer, row)
        except StudioError as exc:
            out.scores.append(None)
            out.errors.append(str(exc))
            continue
        except Exception as exc:  # a built-in's own failure: still named, still counted
            out.scores.append(None)
            out.errors.append(f"--score {scorer.name} raised {type(exc).__name__}: {exc}")
            continue
        out.scores.append(value)
        out.errors.append(None)
    return out


def _one(scorer: Scorer, prompt: str, answer: str, row: dict[str, Any]) -> list[float | None]:
    got = scorer.fn(prompts=[prompt], completions=[answer], **{k: [v] for k, v in row.items()})
    try:
        values = [None if x is None else float(x) for x in got]
    except (TypeError, ValueError):
        raise StudioError(f"--score {scorer.name} must return a list of numbers; got {got!r:.80}") from None
    if len(values) != 1:
        raise StudioError(f"--score {scorer.name} returned {len(values)} scores for 1 answer")
    if values[0] is not None and not math.isfinite(values[0]):
        raise StudioError(f"--score {scorer.name} returned {values[0]!r}: a score must be a finite number")
    return values
