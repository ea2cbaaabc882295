"""Recipe fields that need a newer TRL than the one installed, found before a run starts instead of mid-run.

``pyproject.toml`` lets TRL range from 0.19 (the base install) to the ``gpu`` extra's ``trl<=1.15`` (unsloth's
own cap). studio's trainers take TRL's loss names as they are, so a loss the installed TRL does not know
would only fail once the model had loaded (or the Slurm job had waited in the queue). Each entry of
:data:`NEEDS` is one value of one field with the first TRL release that studio knows has it; the installed
version is read from the package metadata (no import of TRL, so it costs nothing at validation).

What was checked (by reading the releases' sources): TRL 1.0 has none of the entries below; 1.10, 1.15 and 1.16
have them all, and 1.16 added nothing the recipe schema offers, so the ``gpu`` extra's pin loses nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata

from lorastudio.errors import RecipeError
from lorastudio.recipe import Recipe


@dataclass(frozen=True)
class TrlNeed:
    """One recipe value that needs at least ``version`` of TRL."""

    method: str
    """The ``train.method`` the field belongs to."""
    field: str
    """Dotted recipe field, e.g. ``dpo.loss_type``."""
    value: str
    """The value that needs the newer release."""
    version: tuple[int, ...]
    """The first TRL release known to have it."""
    what: str
    """What TRL added, for the message."""


NEEDS: tuple[TrlNeed, ...] = (
    TrlNeed("dpo", "dpo.loss_type", "sigmoid_norm", (1, 10), "DPOConfig's loss_type 'sigmoid_norm'"),
    TrlNeed(
        "kto", "kto.loss_type", "apo_zero_unpaired", (1, 10), "KTOConfig's loss_type 'apo_zero_unpaired'"
    ),
)


def parse_version(text: str) -> tuple[int, ...] | None:
    """``1.15.0`` / ``1.16.0.dev0`` / ``0.29.1+local`` -> (1, 15, 0) ...; None when it does not start with a number."""
    match = re.match(r"(\d+(?:\.\d+)*)", text.strip())
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


def installed_trl() -> str | None:
    """The installed TRL's version string, or None when TRL is not installed."""
    try:
        return metadata.version("trl")
    except metadata.PackageNotFoundError:
        return None


def _shown(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def trl_problems(recipe: Recipe, installed: str | None = None) -> list[str]:
    """One message per recipe value the installed TRL (``installed``, read here when None) lacks."""
    installed = installed_trl() if installed is None else installed
    have = parse_version(installed) if installed else None
    if have is None:
        return []  # no TRL, or a version we cannot read: the trainer's own import says what is wrong
    section = recipe.method_section()
    problems = []
    for need in NEEDS:
        if need.method != recipe.train.method or section is None:
            continue
        value = getattr(section, need.field.split(".", 1)[1], None)
        if value == need.value and have < need.version:
            problems.append(
                f"{need.field}: {need.value} needs TRL {_shown(need.version)} or newer ({need.what}); "
                f"TRL {installed} is installed: pip install 'trl>={_shown(need.version)}', or pick another "
                f"{need.field}"
            )
    return problems


def check_trl(recipe: Recipe, installed: str | None = None) -> None:
    """RecipeError naming the recipe, the field and the TRL it needs, when the installed TRL lacks a value."""
    problems = trl_problems(recipe, installed)
    if problems:
        raise RecipeError(f"recipe {recipe.name}: " + "; ".join(problems))


def sft_blocker() -> str | None:
    """Why TRL's SFT trainer cannot compute a loss here, or None.

    TRL 1.15's SFTTrainer always computes its loss with Triton kernels (a fused LM head); where triton is
    missing (a CPU-only torch) every step failed with ``'NoneType' object has no attribute 'apply'``. TRL
    1.16 falls back to plain torch."""
    try:
        from trl.trainer import utils
    except ImportError:
        return None
    if getattr(utils, "_ChunkedLogProbFunction", True) is not None:
        return None
    found = installed_trl() or "?"
    return (
        f"TRL {found}'s SFT trainer computes its loss with Triton kernels, and triton is not installed (it comes "
        "with a CUDA build of torch); on CPU install TRL 1.16 or newer (pip install 'trl>=1.16')"
    )
