"""What one evaluation is: its targets and tasks, and how much of each task to run (``EvalSpec``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lorastudio.errors import StudioError

SPEC_FILE = "spec.json"
"""The resolved spec, in the evaluation's directory."""


class JudgedSpec(BaseModel):
    """Judged generations: every target answers the same prompts; the answers are scored and/or judged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompts: str
    """A JSONL file (``prompt``, optional ``reference``, other keys kept as the row's columns), ``held-out``
    (the first run target's recipe's held-out eval rows) or ``samples`` (its ``train.samples`` prompts)."""
    scores: tuple[str, ...] = ()
    """Scorers: ``exact``, ``contains``, ``regex:PATTERN``, ``rouge`` (rougeL F1 against the reference),
    ``reward:NAME`` (a reward of the run's ``grpo.rewards``) or ``FILE.py:function`` (a GRPO reward file)."""
    judge: str | None = None
    """The LLM judge: any target studio loads (a run, an export, a model folder) or an OpenAI-compatible
    endpoint's URL (``http://...``)."""
    judge_model: str | None = None
    """The endpoint's model name (None: the first it lists)."""
    judge_key_env: str | None = None
    """The environment variable holding the endpoint's API key (None: no key)."""
    rubric: str | None = None
    """Grade each answer 1-10 against this rubric instead of comparing answers pairwise."""
    greedy: bool = True
    """Answer greedily; False samples with the recipe's chat settings."""
    max_new_tokens: int | None = Field(default=None, ge=1)
    """Answer length limit (None: the recipe's ``chat.max_new_tokens``)."""
    judge_max_new_tokens: int = Field(default=256, ge=1)
    """The judge's reply length limit."""
    batch_size: int = Field(default=8, ge=1)
    """Prompts answered in one ``generate`` call."""

    @field_validator("scores")
    @classmethod
    def _scores_named(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not item.strip() for item in value):
            raise ValueError("an empty scorer")
        return tuple(item.strip() for item in value)

    @property
    def pairwise(self) -> bool:
        """Judge answers pairwise (each target against the first) rather than by the rubric."""
        return self.judge is not None and self.rubric is None


class EvalSpec(BaseModel):
    """An evaluation: each task run on each target, with lm-eval's own settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: tuple[str, ...] = Field(min_length=1)
    """``base`` (the first run target's base model), ``RUN``, ``RUN@best``, ``RUN@checkpoint-N``, an export
    folder, a GGUF file or an OpenAI-compatible endpoint's URL (``http://HOST:PORT/v1``). Table columns follow
    this order; deltas are against the first."""
    tasks: tuple[str, ...] = ()
    """lm-eval task names (shipped ``studio_*`` tasks, local YAML task files or folders, or lm-eval's own);
    empty when the evaluation is only judged generations."""
    limit: int | None = Field(default=None, ge=1)
    """At most this many documents per task (None: all)."""
    num_fewshot: int | None = Field(default=None, ge=0)
    """Few-shot examples per prompt (None: the task's own default)."""
    batch_size: int | Literal["auto"] | None = None
    """lm-eval's batch size (None: 1 on CPU, ``auto`` on a GPU)."""
    apply_chat_template: bool = True
    """Render prompts through the target's chat template, as the recipe's chat does."""
    backend: Literal["hf", "vllm"] = "hf"
    """``hf``: lm-eval's HFLM around the model chat loads; ``vllm``: lm-eval's vLLM model, a run's adapter as a
    LoRA request (CUDA and vLLM needed). An endpoint URL target is asked over HTTP either way."""
    judged: JudgedSpec | None = None
    """Judged generations in the same evaluation (None: lm-eval tasks only)."""

    @model_validator(mode="after")
    def _something_to_do(self) -> EvalSpec:
        if not self.tasks and self.judged is None:
            raise ValueError("name tasks, or prompts to judge")
        if self.judged is not None and self.judged.pairwise and len(self.targets) < 2:
            raise ValueError("a pairwise judge compares two targets or more (or give a rubric)")
        if self.judged is not None and any(t.startswith(("http://", "https://")) for t in self.targets):
            raise ValueError(
                "judged generations are answered by targets studio loads; an endpoint URL only runs tasks"
            )
        return self

    @field_validator("targets", "tasks")
    @classmethod
    def _no_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not item.strip() for item in value):
            raise ValueError("an empty name")
        return tuple(item.strip() for item in value)

    @field_validator("batch_size")
    @classmethod
    def _positive(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1 (or auto)")
        return value


def make_spec(**fields: object) -> EvalSpec:
    """The spec of ``fields``; a refused value raises a :class:`StudioError` naming the field (``limit: ...``)."""
    try:
        return EvalSpec.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "spec"
        raise StudioError(f"eval {where}: {err['msg']}") from None
