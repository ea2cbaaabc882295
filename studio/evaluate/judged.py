"""Judged generations: every target answers the same prompts; the answers are scored and judged.

Prompts come from a JSONL file (``prompt``, optional ``reference``, other keys kept as the row's columns for
the scorers), the first run target's held-out eval rows (``held-out``) or its sample prompts (``samples``).
Each target answers in batches (greedy unless asked otherwise, the recipe's chat settings, its own system
prompt); ``answers.jsonl`` keeps every answer with its scores and any scorer failure, ``verdicts.jsonl`` every
judge reply with the verdict read from it (None where none could be read). The figures join the evaluation's
``results.json`` table as ``judged/SCORER`` and ``judge/win|tie|loss`` (or ``judge/rating``) rows, in the
lm-eval rows' shape with fields added (``n``, ``errors``, ``ci``, ``unparsed``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastudio.chat.engine import ChatEngine
from lorastudio.errors import StudioError
from lorastudio.evaluate.judge import (
    Judge,
    Outcome,
    combine,
    make_judge,
    pairwise_prompt,
    parse_rating,
    parse_verdict,
    rubric_prompt,
    wilson,
)
from lorastudio.evaluate.scorers import Scored, Scorer, build_scorer, run_scorer
from lorastudio.evaluate.spec import EvalSpec, JudgedSpec
from lorastudio.recipe import Recipe

ANSWERS_FILE = "answers.jsonl"
VERDICTS_FILE = "verdicts.jsonl"
HELD_OUT = "held-out"
SAMPLES = "samples"
DEFAULT_HELD_OUT = 50
"""Held-out prompts taken when the evaluation sets no ``--limit``."""


@dataclass(frozen=True)
class JudgedPrompt:
    """One prompt every target answers."""

    text: str
    """The user's turn (what the judge is shown as the question)."""
    reference: str = ""
    row: dict[str, Any] = field(default_factory=dict)
    """The row's other keys: columns for the scorers, as a GRPO reward gets its data's columns."""
    turns: tuple[tuple[str, str], ...] = ()
    """Earlier (role, content) turns, system left out (each target sends its own); empty: the text alone."""

    def conversation(self, system: str | None) -> list[dict[str, str]]:
        turns = self.turns or (("user", self.text),)
        head = [{"role": "system", "content": system}] if system else []
        return head + [{"role": r, "content": c} for r, c in turns]

    def columns(self) -> dict[str, Any]:
        return {**self.row, "reference": self.reference or None}


def read_prompts_file(path: Path) -> list[JudgedPrompt]:
    """The prompts of a JSONL file; a line that is not an object with a ``prompt`` string is named with its number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise StudioError(f"--prompts {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudioError(f"--prompts {path}: cannot be read ({exc})") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StudioError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise StudioError(f"{path}:{number}: needs a `prompt` string (and may have a `reference`)")
        reference = row.pop("reference", None)
        if reference is not None and not isinstance(reference, str):
            raise StudioError(f"{path}:{number}: `reference` must be a string")
        out.append(JudgedPrompt(row.pop("prompt"), reference or "", row))
    if not out:
        raise StudioError(f"--prompts {path}: no prompts in the file")
    return out


def recipe_prompts(source: str, recipe: Recipe | None, limit: int | None) -> list[JudgedPrompt]:
    """The run's held-out eval rows or its sample prompts (``train.samples``)."""
    from lorastudio.train.trainer.samples import SamplePrompt, held_out_prompts, prompt_of

    if recipe is None:
        raise StudioError(f"--prompts {source}: name a run target to take them from")
    found: list[SamplePrompt] = []
    if source == SAMPLES:
        settings = recipe.train.samples
        found = [prompt_of(recipe, text) for text in settings.prompts]
        if recipe.train.method == "sft":
            found += held_out_prompts(recipe, settings.held_out)
    else:
        found = held_out_prompts(recipe, limit or DEFAULT_HELD_OUT)
    if not found:
        raise StudioError(f"--prompts {source}: the recipe {recipe.name} has none")
    return [
        JudgedPrompt(p.text, p.reference, {}, tuple((r, c) for r, c in p.messages if r != "system"))
        for p in found
    ]


def load_prompts(judged: JudgedSpec, recipe: Recipe | None, limit: int | None) -> list[JudgedPrompt]:
    if judged.prompts in (HELD_OUT, SAMPLES):
        prompts = recipe_prompts(judged.prompts, recipe, limit)
    else:
        prompts = read_prompts_file(Path(judged.prompts).expanduser())
    return prompts[:limit] if limit else prompts


def first_run_recipe(spec: EvalSpec) -> Recipe | None:
    """The recipe of the first target that is a run (its held-out rows, samples and rewards), else None."""
    from lorastudio.chat.targets import run_of_target
    from lorastudio.train.launch.runs import load_run_recipe

    for target in spec.targets:
        run = run_of_target(target) if target != "base" else None
        if run is not None:
            return load_run_recipe(run)
    return None


@dataclass(frozen=True)
class Plan:
    """Everything a judged evaluation needs, checked before any model loads."""

    prompts: list[JudgedPrompt]
    scorers: list[Scorer]
    judge: Judge | None


def plan(spec: EvalSpec) -> Plan:
    """The prompts, scorers and judge of ``spec.judged``; bad input is one :class:`StudioError` naming it."""
    judged = spec.judged
    assert judged is not None
    recipe = first_run_recipe(spec)
    prompts = load_prompts(judged, recipe, spec.limit)
    scorers = [build_scorer(s, recipe) for s in judged.scores]
    judge = None
    if judged.judge is not None:
        judge = make_judge(
            judged.judge,
            judged.judge_model,
            judged.judge_key_env,
            judged.judge_max_new_tokens,
            judged.batch_size,
        )
    return Plan(prompts, scorers, judge)


def steps(spec: EvalSpec) -> int:
    """Progress steps of the judged part: one per target answering, one per judged target."""
    judged = spec.judged
    if judged is None:
        return 0
    judging = 0 if judged.judge is None else len(spec.targets) - (1 if judged.pairwise else 0)
    return len(spec.targets) + judging


def _append(path: Path, records: Sequence[dict[str, Any]]) -> None:
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(lines)  # one call: a stop lands before or after it, never inside a line


def _system(recipe: Recipe) -> str | None:
    return recipe.chat.system_prompt or recipe.data.system_prompt or None


def answer_all(
    engine: ChatEngine, prompts: Sequence[JudgedPrompt], judged: JudgedSpec
) -> list[dict[str, Any]]:
    from lorastudio.evaluate.generate import answer_batch

    system = _system(engine.recipe)
    out = []
    for start in range(0, len(prompts), judged.batch_size):
        chunk = prompts[start : start + judged.batch_size]
        answers = answer_batch(
            engine, [p.conversation(system) for p in chunk], judged.max_new_tokens, judged.greedy
        )
        out += [{"text": a.text, "tokens": a.tokens, "finish": a.finish} for a in answers]
    return out


def _cell(value: float | None, stderr: float | None = None, **more: Any) -> dict[str, Any]:
    return {"value": value, "stderr": stderr, "delta": None, **more}


def _with_deltas(row: dict[str, Any], targets: Sequence[str]) -> dict[str, Any]:
    first = row["targets"].get(targets[0])
    for label in targets[1:]:
        cell = row["targets"].get(label)
        if cell is not None and first is not None and None not in (cell["value"], first["value"]):
            cell["delta"] = cell["value"] - first["value"]
    return row


class JudgedRun:
    """The judged part of one evaluation: answers, scores, verdicts, and the rows they make."""

    def __init__(self, spec: EvalSpec, folder: Path, the_plan: Plan) -> None:
        assert spec.judged is not None
        self.spec, self.judged, self.folder, self.plan = spec, spec.judged, folder, the_plan
        self.answers: dict[str, list[dict[str, Any]]] = {}
        self.scored: dict[str, dict[str, Scored]] = {}
        self.outcomes: dict[str, list[Outcome | None]] = {}
        """Pairwise: target -> per prompt win/tie/loss against the first target (None: a reply unread)."""
        self.unparsed: dict[str, int] = {}
        """Judge replies whose verdict or rating could not be read, per target judged."""
        self.ratings: dict[str, list[float | None]] = {}

    def answer(self, label: str, engine: ChatEngine) -> dict[str, float]:
        """``label``'s answers to every prompt, scored and written; the mean of each scorer."""
        prompts = self.plan.prompts
        answers = answer_all(engine, prompts, self.judged)
        texts = [a["text"] for a in answers]
        rows = [p.columns() for p in prompts]
        scored = {s.name: run_scorer(s, [p.text for p in prompts], texts, rows) for s in self.plan.scorers}
        records = []
        for i, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
            record = {
                "eval_target": label,
                "index": i,
                "prompt": prompt.text,
                "reference": prompt.reference or None,
                "answer": answer["text"],
                "tokens": answer["tokens"],
                "finish": answer["finish"],
                "scores": {name: s.scores[i] for name, s in scored.items()},
            }
            errors = {name: s.errors[i] for name, s in scored.items() if s.errors[i] is not None}
            if errors:
                record["score_errors"] = errors
            records.append(record)
        _append(self.folder / ANSWERS_FILE, records)
        self.answers[label], self.scored[label] = answers, scored
        return {f"judged/{name}": m for name, s in scored.items() if (m := s.mean()[0]) is not None}

    def judge_pairwise(self, label: str) -> dict[str, Any]:
        """``label`` against the first target, each prompt asked in both orders; its win/tie/loss counts."""
        judge = self.plan.judge
        assert judge is not None
        first = self.spec.targets[0]
        mine, theirs = self.answers[label], self.answers[first]
        asks = []
        for prompt, a, b in zip(self.plan.prompts, theirs, mine, strict=True):
            ref = prompt.reference or None
            asks += [
                pairwise_prompt(prompt.text, a["text"], b["text"], ref),  # this target as B
                pairwise_prompt(prompt.text, b["text"], a["text"], ref),  # swapped: this target as A
            ]
        replies = judge.ask(asks)
        records: list[dict[str, Any]] = []
        outcomes: list[Outcome | None] = []
        unparsed = 0
        for i, prompt in enumerate(self.plan.prompts):
            raw = replies[2 * i : 2 * i + 2]
            verdicts = [parse_verdict(r) for r in raw]
            unparsed += verdicts.count(None)
            outcome = combine(verdicts[0], verdicts[1])
            outcomes.append(outcome)
            records.append(
                {
                    "mode": "pairwise",
                    "judge": judge.name,
                    "judge_model": judge.model,
                    "index": i,
                    "prompt": prompt.text,
                    "eval_target": label,
                    "against": first,
                    "orders": [f"A={first} B={label}", f"A={label} B={first}"],
                    "replies": raw,
                    "verdicts": verdicts,
                    "outcome": outcome,
                }
            )
        _append(self.folder / VERDICTS_FILE, records)
        self.outcomes[label] = outcomes
        self.unparsed[label] = unparsed
        counts = {k: outcomes.count(k) for k in ("win", "tie", "loss")}
        return {"against": first, **counts, "unparsed": self.unparsed[label]}

    def judge_rubric(self, label: str) -> dict[str, Any]:
        judge = self.plan.judge
        assert judge is not None and self.judged.rubric is not None
        asks = [
            rubric_prompt(p.text, a["text"], self.judged.rubric, p.reference or None)
            for p, a in zip(self.plan.prompts, self.answers[label], strict=True)
        ]
        replies = judge.ask(asks)
        ratings = [parse_rating(r) for r in replies]
        _append(
            self.folder / VERDICTS_FILE,
            [
                {
                    "mode": "rubric",
                    "judge": judge.name,
                    "judge_model": judge.model,
                    "index": i,
                    "prompt": p.text,
                    "eval_target": label,
                    "reply": reply,
                    "rating": rating,
                }
                for i, (p, reply, rating) in enumerate(zip(self.plan.prompts, replies, ratings, strict=True))
            ],
        )
        self.ratings[label] = ratings
        self.unparsed[label] = sum(r is None for r in ratings)
        read = [r for r in ratings if r is not None]
        return {"rating": sum(read) / len(read) if read else None, "unparsed": self.unparsed[label]}

    def rows(self) -> list[dict[str, Any]]:
        """The table rows: each scorer's mean per target, then the judge's rates or ratings."""
        targets = self.spec.targets
        out = []
        for scorer in self.plan.scorers:
            row: dict[str, Any] = {"metric": f"judged/{scorer.name}", "targets": {}}
            for label in targets:
                scored = self.scored.get(label, {}).get(scorer.name)
                if scored is None:
                    row["targets"][label] = None
                    continue
                mean, stderr, n = scored.mean()
                row["targets"][label] = _cell(mean, stderr, n=n, errors=scored.failed)
            out.append(_with_deltas(row, targets))
        if self.outcomes:
            for kind in ("win", "tie", "loss"):
                row = {"metric": f"judge/{kind}", "targets": {targets[0]: None}}
                for label in targets[1:]:
                    outcomes = self.outcomes.get(label)
                    if outcomes is None:
                        row["targets"][label] = None
                        continue
                    n = sum(o is not None for o in outcomes)
                    k = outcomes.count(kind)
                    ci = wilson(k, n)
                    row["targets"][label] = _cell(
                        k / n if n else None,
                        count=k,
                        n=n,
                        ci=list(ci) if ci else None,
                        unparsed=self.unparsed.get(label, 0),
                        against=targets[0],
                    )
                out.append(row)
        if self.ratings:
            row = {"metric": "judge/rating", "targets": {}}
            for label in targets:
                ratings = self.ratings.get(label)
                if ratings is None:
                    row["targets"][label] = None
                    continue
                scored = Scored(list(ratings))
                mean, stderr, n = scored.mean()
                row["targets"][label] = _cell(mean, stderr, n=n, unparsed=self.unparsed.get(label, 0))
            out.append(_with_deltas(row, targets))
        return out

    def summary(self) -> dict[str, Any]:
        """``results.json``'s ``judged`` section: where everything is, and what could not be read or scored."""
        judge = self.plan.judge
        return {
            "prompts": len(self.plan.prompts),
            "source": self.judged.prompts,
            "answers_file": ANSWERS_FILE,
            "verdicts_file": VERDICTS_FILE if judge is not None else None,
            "judge": judge.name if judge is not None else None,
            "judge_model": judge.model if judge is not None else None,
            "mode": None if judge is None else "pairwise" if self.judged.pairwise else "rubric",
            "unparsed": dict(self.unparsed),
            "score_errors": {
                label: {
                    name: {"count": s.failed, "first": next(e for e in s.errors if e)}
                    for name, s in scored.items()
                    if s.failed
                }
                for label, scored in self.scored.items()
            },
        }


def run_judged(
    spec: EvalSpec,
    folder: Path,
    engines: Sequence[tuple[str, ChatEngine]],
    the_plan: Plan,
    on_step: Callable[[str, str], None],
    on_loading: Callable[[str], object],
    on_result: Callable[[str, dict[str, float]], object],
    on_judged: Callable[[str, dict[str, Any]], object],
    on_update: Callable[[JudgedRun], None],
) -> JudgedRun:
    """Answer with every target (one loaded at a time), then judge; ``on_update`` after each step (results.json)."""
    run = JudgedRun(spec, folder, the_plan)
    for label, engine in engines:
        on_loading(label)
        engine.load()
        on_step(label, "answers")
        on_result(label, run.answer(label, engine))
        engine.model = None  # free it before the next target loads
        on_update(run)
    judge = the_plan.judge
    if judge is None:
        return run
    on_loading(f"judge {judge.name}")
    judge.load()
    labels = spec.targets[1:] if run.judged.pairwise else spec.targets
    for label in labels:
        on_step(label, f"judge {judge.name}")
        figures = run.judge_pairwise(label) if run.judged.pairwise else run.judge_rubric(label)
        on_judged(label, figures)
        on_update(run)
    return run


def render_notes(summary: dict[str, Any]) -> list[str]:
    """Lines under the table: unreadable judge replies and scorer failures, each counted and named."""
    lines = []
    for label, count in summary.get("unparsed", {}).items():
        if count:
            lines.append(f"judge {summary['judge']}: {count} replies on {label} had no verdict it could read")
    for label, failures in summary.get("score_errors", {}).items():
        for name, failure in failures.items():
            lines.append(f"{name} on {label}: failed on {failure['count']} answers: {failure['first']}")
    return lines
