"""The Launch sheet's form: which recipe fields it edits, how their text becomes values, and validation.

Plain Python (no Textual), so the form's logic is tested without a screen.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from lorastudio.recipe import DpoSection, GrpoSection, KtoSection, Recipe, TrainSection
from lorastudio.registry import error_location, read_value


@dataclass(frozen=True)
class FieldSpec:
    """One editable recipe field: its dotted path, its label and how its text is read."""

    path: str
    label: str
    kind: str = "value"  # value (read as YAML), text (kept as typed), optional (empty = unset), list, bool,
    # optional_list (a list; empty = unset)
    choices: tuple[str, ...] = ()


def _choices(section: type[BaseModel], name: str) -> tuple[str, ...]:
    """A Literal field's values, read from the recipe model so the form never lists a stale set."""
    return tuple(str(v) for v in get_args(section.model_fields[name].annotation))


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("model.name", "model", "text"),
    FieldSpec("model.adapter", "start from", "optional"),  # a run (NAME, NAME@best) or an adapter folder
    FieldSpec("data.source", "data source", "text"),
    FieldSpec(
        "data.format",
        "format",
        choices=(
            "auto",
            "alpaca",
            "dolly",
            "sharegpt",
            "messages",
            "prompt_completion",
            "text",
            "guanaco",
            "llama2",
            "human_assistant",
        ),
    ),
    FieldSpec("model.max_seq_length", "max length"),
    FieldSpec("model.load_in_4bit", "4-bit (QLoRA)", "bool"),
    FieldSpec("train.tuning", "tuning", choices=_choices(TrainSection, "tuning")),
    FieldSpec("train.freeze_trainable_layers", "trainable layers", "optional"),
    FieldSpec("train.freeze_trainable_modules", "trainable modules", "optional_list"),
    FieldSpec("train.embedding_learning_rate", "embedding lr", "optional"),
    FieldSpec("lora.r", "LoRA r"),
    FieldSpec("lora.alpha", "LoRA alpha"),
    FieldSpec("lora.dropout", "LoRA dropout"),
    FieldSpec("lora.target_modules", "LoRA targets", "list"),
    FieldSpec("lora.use_dora", "DoRA", "bool"),
    FieldSpec("lora.init", "LoRA init", "text"),  # text, not choices: pissa_niter_N takes any N
    FieldSpec("lora.plus_lr_ratio", "LoRA+ lr ratio", "optional"),
    FieldSpec("train.epochs", "epochs"),
    FieldSpec("train.max_steps", "max steps", "optional"),
    FieldSpec("train.batch_size", "batch size"),
    FieldSpec("train.gradient_accumulation", "grad accumulation"),
    FieldSpec("train.learning_rate", "learning rate"),
    FieldSpec(
        "train.scheduler", "scheduler", choices=("linear", "cosine", "constant", "constant_with_warmup")
    ),
    FieldSpec("train.warmup_steps", "warmup steps"),
    FieldSpec("data.eval_fraction", "eval fraction"),
    FieldSpec("train.packing", "packing", "bool"),
    FieldSpec("train.train_on", "train on", choices=("responses", "last_response", "all")),
    FieldSpec("train.seed", "seed"),
    FieldSpec("train.save_steps", "save steps"),
    FieldSpec("train.save_total_limit", "checkpoints kept"),
)
BY_PATH = {f.path: f for f in FIELDS}

FREEZE_FIELDS = ("train.freeze_trainable_layers", "train.freeze_trainable_modules")
"""Shown (and kept in the recipe) only with ``train.tuning: freeze``; hidden they are unset, as the recipe
refuses them with any other tuning."""


def applies(spec: FieldSpec, data: dict[str, Any]) -> bool:
    """Whether the form shows ``spec`` for the recipe in ``data``: the LoRA fields only for ``tuning: lora``
    (full and freeze train the model's own weights), the freeze fields only for ``tuning: freeze``, and the
    embedding learning rate for continued pretraining or once it is set."""
    tuning = get_path(data, "train.tuning")
    if spec.path.startswith("lora."):
        return tuning in (None, "lora")
    if spec.path in FREEZE_FIELDS:
        return tuning == "freeze"
    if spec.path == "train.embedding_learning_rate":
        return get_path(data, "train.method") == "pretrain" or get_path(data, spec.path) is not None
    return True


METHOD_FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    "dpo": (
        FieldSpec("dpo.beta", "DPO beta"),
        FieldSpec("dpo.loss_type", "loss type", choices=_choices(DpoSection, "loss_type")),
        FieldSpec("dpo.rpo_alpha", "rpo alpha", "optional"),
        FieldSpec("dpo.label_smoothing", "label smoothing"),
        FieldSpec("dpo.simpo_gamma", "SimPO gamma"),
        FieldSpec("dpo.max_prompt_length", "max prompt length", "optional"),
    ),
    "kto": (
        FieldSpec("kto.beta", "KTO beta"),
        FieldSpec("kto.loss_type", "loss type", choices=_choices(KtoSection, "loss_type")),
        FieldSpec("kto.desirable_weight", "good weight"),
        FieldSpec("kto.undesirable_weight", "bad weight"),
        FieldSpec("kto.max_prompt_length", "max prompt length", "optional"),
    ),
    "orpo": (
        FieldSpec("orpo.beta", "ORPO beta"),
        FieldSpec("orpo.max_prompt_length", "max prompt length", "optional"),
    ),
    "reward": (
        FieldSpec("reward.center_rewards_coefficient", "center rewards", "optional"),
        FieldSpec("reward.max_prompt_length", "max prompt length", "optional"),
    ),
    "grpo": (
        FieldSpec("grpo.num_generations", "generations"),
        FieldSpec("grpo.max_completion_length", "max reply tokens"),
        FieldSpec("grpo.temperature", "temperature"),
        FieldSpec("grpo.top_p", "top p"),
        FieldSpec("grpo.beta", "KL beta"),
        FieldSpec("grpo.loss_type", "loss type", choices=_choices(GrpoSection, "loss_type")),
        FieldSpec("grpo.scale_rewards", "scale rewards", choices=_choices(GrpoSection, "scale_rewards")),
        FieldSpec("grpo.max_prompt_length", "max prompt length", "optional"),
    ),
}
"""The fields of each method's section (``train.method``), shown below the common ones."""


def method_fields(data: dict[str, Any]) -> tuple[FieldSpec, ...]:
    """The fields of the recipe's method section, with one weight field per GRPO reward (empty for sft)."""
    method = get_path(data, "train.method")
    fields = METHOD_FIELDS.get(str(method), ())
    if method == "grpo":
        rewards = get_path(data, "grpo.rewards")
        fields += tuple(
            FieldSpec(f"grpo.rewards.{i}.weight", f"reward {i + 1} weight")
            for i in range(len(rewards) if isinstance(rewards, list) else 0)
        )
    return fields


def with_method_defaults(recipe: Recipe, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the method's section filled with its defaults when the recipe gives none, so the form
    shows what will be used (and a diff against it lists only what was edited)."""
    section = recipe.method_section()
    if section is not None and data.get(recipe.train.method) is None:
        data = {**data, recipe.train.method: section.model_dump(mode="json")}
    return data


def get_path(data: dict[str, Any], path: str) -> Any:
    """The value at a dotted path; a number part indexes a list (``grpo.rewards.0.weight``)."""
    cursor: Any = data
    for part in path.split("."):
        if isinstance(cursor, list) and part.isdigit():
            cursor = cursor[int(part)] if int(part) < len(cursor) else None
        else:
            cursor = cursor.get(part) if isinstance(cursor, dict) else None
    return cursor


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    cursor: Any = data
    for part in parents:
        if isinstance(cursor, list):
            cursor = cursor[int(part)]
            continue
        if cursor.get(part) is None:  # an absent section, or one dumped as null (dpo: None)
            cursor[part] = {}
        cursor = cursor[part]
    if isinstance(cursor, list):
        cursor[int(last)] = value
    else:
        cursor[last] = value


def format_value(spec: FieldSpec, value: Any) -> str:
    """The text an Input shows for a value."""
    if value is None:
        return ""
    if spec.kind in ("list", "optional_list") and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_value(spec: FieldSpec, text: str) -> Any:
    """Text typed in the form -> the value given to the recipe model (which then judges it)."""
    text = text.strip()
    if spec.kind == "text":
        return text
    if spec.kind in ("list", "optional_list"):
        if spec.kind == "optional_list" and text in ("", "none", "null", "-"):
            return None
        if text == "all-linear":
            return text
        return [part.strip() for part in text.replace(" ", ",").split(",") if part.strip()]
    if spec.kind == "optional" and text in ("", "none", "null", "-"):
        return None
    if spec.choices:
        return text
    return read_value(text) if text else None


def validate(
    data: dict[str, Any], fields: tuple[FieldSpec, ...] | None = None
) -> tuple[Recipe | None, dict[str, str]]:
    """The recipe, or None and a message per field path ("" for errors no form field shows).

    ``fields`` are the form's fields: the common ones and the method's (by default, as ``data`` names it).
    """
    fields = fields if fields is not None else FIELDS + method_fields(data)
    try:
        return Recipe.model_validate(data), {}
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for err in exc.errors():
            path, msg = error_location(err)
            loc = ".".join(str(p) for p in path)
            field = next((f.path for f in fields if loc == f.path or loc.startswith(f.path + ".")), "")
            named = next((f.path for f in fields if msg.startswith(f.path + ": ")), "")
            if not field and named:  # a section-wide check names its field first: "train.tuning: ..."
                field, msg = named, msg[len(named) + 2 :]
            if not field:
                msg = f"{loc}: {msg}"
            errors.setdefault(field, msg)
        return None, errors


def diff(original: dict[str, Any], edited: dict[str, Any]) -> dict[str, Any]:
    """Only what changed, nested by section (what a recipe that ``extends`` the original must hold)."""
    out: dict[str, Any] = {}
    for key, value in edited.items():
        before = original.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = diff(before, value)
            if nested:
                out[key] = nested
        elif value != before:
            out[key] = copy.deepcopy(value)
    return out


def changed_paths(changes: dict[str, Any], prefix: str = "") -> list[str]:
    paths: list[str] = []
    for key, value in changes.items():
        path = f"{prefix}{key}"
        paths += changed_paths(value, path + ".") if isinstance(value, dict) else [path]
    return paths
