"""What one evaluation is: its targets and tasks, and how much of each task to run (``EvalSpec``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lorastudio.errors import StudioError

SPEC_FILE = "spec.json"
"""The resolved spec, in the evaluation's directory."""


class EvalSpec(BaseModel):
    """An evaluation: each task run on each target, with lm-eval's own settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: tuple[str, ...] = Field(min_length=1)
    """``base`` (the first run target's base model), ``RUN``, ``RUN@best``, ``RUN@checkpoint-N``, or an
    export folder. Table columns follow this order; deltas are against the first."""
    tasks: tuple[str, ...] = Field(min_length=1)
    """lm-eval task names (shipped ``studio_*`` tasks, local YAML task files or folders, or lm-eval's own)."""
    limit: int | None = Field(default=None, ge=1)
    """At most this many documents per task (None: all)."""
    num_fewshot: int | None = Field(default=None, ge=0)
    """Few-shot examples per prompt (None: the task's own default)."""
    batch_size: int | Literal["auto"] | None = None
    """lm-eval's batch size (None: 1 on CPU, ``auto`` on a GPU)."""
    apply_chat_template: bool = True
    """Render prompts through the target's chat template, as the recipe's chat does."""

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
