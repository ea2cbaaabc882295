"""The LLM judge: its prompts, reading its verdicts, the confidence interval, and who answers.

Pairwise (MT-Bench's way): answers A and B to one prompt, the judge asked twice with the positions swapped so
a judge that favours a position cannot decide; a verdict counts only when both orders agree, else it is a
tie. A reply whose verdict cannot be read is counted and shown, never scored (its pair is left out).
Rubric: each answer graded 1-10 against the user's rubric. The judge is any target the chat engine loads
(greedy, batched) or an OpenAI-compatible endpoint (the official ``openai`` client, the key read from an
environment variable); a judge that cannot be loaded or reached is one :class:`StudioError`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lorastudio.errors import StudioError

Verdict = Literal["A", "B", "tie"]
Outcome = Literal["win", "tie", "loss"]

PAIRWISE_PROMPT = """Please act as an impartial judge and evaluate the quality of the responses provided by two \
AI assistants to the user question displayed below. Choose the assistant that follows the user's instructions \
and answers the question better: consider helpfulness, relevance, accuracy, depth and level of detail. Avoid \
any position bias: the order in which the responses are presented must not influence your decision, nor their \
length, nor the assistants' names. Be as objective as possible. Answer with your verdict only, strictly in \
this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, "[[C]]" for a tie.
{reference}
[User Question]
{question}

[The Start of Assistant A's Answer]
{answer_a}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{answer_b}
[The End of Assistant B's Answer]"""

RUBRIC_PROMPT = """Please act as an impartial judge and evaluate the quality of the response provided by an \
AI assistant to the user question displayed below, following this rubric: {rubric}
Be as objective as possible. Rate the response on a scale of 1 to 10, strictly in this format: \
"Rating: [[5]]".
{reference}
[Question]
{question}

[The Start of Assistant's Answer]
{answer}
[The End of Assistant's Answer]"""


def _reference_block(reference: str | None) -> str:
    if not reference:
        return ""
    return f"\n[Reference Answer]\n{reference}\n[End of Reference Answer]\n"


def pairwise_prompt(question: str, answer_a: str, answer_b: str, reference: str | None = None) -> str:
    """What the judge is asked about one pair in one order."""
    return PAIRWISE_PROMPT.format(
        question=question, answer_a=answer_a, answer_b=answer_b, reference=_reference_block(reference)
    )


def rubric_prompt(question: str, answer: str, rubric: str, reference: str | None = None) -> str:
    return RUBRIC_PROMPT.format(
        question=question, answer=answer, rubric=rubric, reference=_reference_block(reference)
    )


_BRACKETED = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_BARE = re.compile(r"^\W*(?:verdict\s*:?\s*)?(A|B|C|tie)\W*$", re.IGNORECASE)
_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_RATING_BARE = re.compile(r"^\W*(?:rating\s*:?\s*)?(\d+(?:\.\d+)?)(?:\s*/\s*10)?\W*$", re.IGNORECASE)


def _label(word: str) -> Verdict:
    word = word.upper()
    return "tie" if word in ("C", "TIE") else "A" if word == "A" else "B"


def parse_verdict(reply: str) -> Verdict | None:
    """``[[A]]``/``[[B]]``/``[[C]]`` (the last one given), or a reply that is only ``A``, ``B``, ``C`` or
    ``tie``; None for anything else (two different bracketed verdicts included)."""
    found = {_label(m) for m in _BRACKETED.findall(reply)}
    if len(found) == 1:
        return found.pop()
    if found:
        return None  # "[[A]] ... [[B]]": no single verdict
    bare = _BARE.match(reply.strip())
    return _label(bare.group(1)) if bare else None


def parse_rating(reply: str) -> float | None:
    """The 1-10 rating of ``Rating: [[7]]`` (or a reply that is only a number); None outside 1-10 or unread."""
    found = _RATING.findall(reply)
    text = found[-1] if found else None
    if text is None:
        bare = _RATING_BARE.match(reply.strip())
        text = bare.group(1) if bare else None
    if text is None:
        return None
    value = float(text)
    return value if 1 <= value <= 10 else None


def combine(first: Verdict | None, swapped: Verdict | None) -> Outcome | None:
    """The pair's outcome for the answer shown as B first (and A after the swap): ``win`` only when both orders
    prefer it, ``loss`` when both prefer the other, ``tie`` when they disagree or say tie; None when either
    reply could not be read."""
    if first is None or swapped is None:
        return None
    as_b: Outcome = "loss" if first == "A" else "win" if first == "B" else "tie"
    as_a: Outcome = "win" if swapped == "A" else "loss" if swapped == "B" else "tie"
    return as_b if as_b == as_a else "tie"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of ``k`` successes in ``n`` (95 % by default); None when n is 0."""
    if n <= 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# -- who judges ----------------------------------------------------------------------------------------


def is_endpoint(judge: str) -> bool:
    return judge.startswith(("http://", "https://"))


@dataclass
class Judge:
    """A judge that answers a batch of prompts (each a single user turn) with its raw replies."""

    name: str
    engine: Any = None
    client: Any = None
    model: str | None = None
    max_new_tokens: int = 256
    batch_size: int = 8

    def load(self) -> None:
        if self.engine is not None and self.engine.model is None:
            try:
                self.engine.load()
            except StudioError as exc:
                raise StudioError(f"judge {self.name}: {exc}") from None
            except Exception as exc:  # a folder that is not a model: one line naming the judge
                raise StudioError(f"judge {self.name}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
        if self.client is not None and self.model is None:
            self.model = self._first_model()

    def _first_model(self) -> str:
        try:
            models = [m.id for m in self.client.models.list()]
        except Exception as exc:
            raise StudioError(f"judge {self.name}: {_api_error(exc)}") from None
        if not models:
            raise StudioError(f"judge {self.name}: the endpoint lists no model; name one with --judge-model")
        return str(models[0])

    def ask(self, prompts: Sequence[str]) -> list[str]:
        """The judge's raw reply to each prompt, in order."""
        if self.client is not None:
            return [self._ask_endpoint(p) for p in prompts]
        from lorastudio.evaluate.generate import answer_batch

        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = [[{"role": "user", "content": p}] for p in prompts[start : start + self.batch_size]]
            out += [a.text for a in answer_batch(self.engine, chunk, self.max_new_tokens, greedy=True)]
        return out

    def _ask_endpoint(self, prompt: str) -> str:
        try:
            reply = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=0,
                max_tokens=self.max_new_tokens,
            )
        except Exception as exc:
            raise StudioError(f"judge {self.name}: {_api_error(exc)}") from None
        return str(reply.choices[0].message.content or "")


def _api_error(exc: Exception) -> str:
    """An ``openai`` failure as one line: refused or unreachable, refused key, or the server's own message."""
    import openai

    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        return f"cannot reach the endpoint ({type(cause).__name__ if cause else 'connection error'}: {cause or exc})"
    if isinstance(exc, openai.AuthenticationError):
        return "the endpoint refused the API key (--judge-key-env)"
    if isinstance(exc, openai.APIStatusError):
        return f"the endpoint answered HTTP {exc.status_code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def make_judge(
    judge: str,
    model: str | None = None,
    key_env: str | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 8,
) -> Judge:
    """The judge ``judge`` names, nothing loaded yet: an endpoint URL (its key from ``key_env``) or a target;
    an unset key variable or a target studio cannot load is refused here."""
    if is_endpoint(judge):
        import openai

        key = "none"  # a local server (vLLM, studio serve without a key) takes any
        if key_env:
            key = os.environ.get(key_env, "")
            if not key:
                raise StudioError(f"--judge-key-env {key_env}: the variable is not set")
        client = openai.OpenAI(base_url=judge, api_key=key, max_retries=0, timeout=120.0)
        return Judge(judge, client=client, model=model, max_new_tokens=max_new_tokens, batch_size=batch_size)
    from lorastudio.chat.engine import engine_for

    try:
        engine = engine_for(judge)
    except StudioError as exc:
        raise StudioError(f"judge {judge}: {exc}") from None
    return Judge(judge, engine=engine, max_new_tokens=max_new_tokens, batch_size=batch_size)
