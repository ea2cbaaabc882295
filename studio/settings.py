"""Every ``STUDIO_*`` environment variable studio reads, as one typed object (``Settings``).

Each field's docstring is that variable's documentation (docs/settings.md's table is checked against it).
A value that does not parse is refused with a message naming the variable, never silently replaced by the
default.
Read per environment once (``read_settings``): a worker's environment is the supervisor's plus what it sets.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lorastudio.errors import StudioError

PREFIX = "STUDIO_"


class Settings(BaseModel):
    """studio's environment: each field is the variable ``STUDIO_<FIELD>`` (upper case)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    backend: Literal["auto", "hf", "unsloth"] = "auto"
    """``hf`` (transformers + peft + TRL) or ``unsloth``; unset, unsloth is used on CUDA when it imports.
    ``transformers`` is read as ``hf``. ``unsloth`` without a GPU, or with ``train.devices`` > 1, is refused."""
    queue_cpu: bool = False
    """``1``: runs on the CPU wait for each other in a queue instead of sharing the cores (a sweep sets it)."""
    node_wait_s: float = Field(600.0, ge=1)
    """Seconds the machines of a multi-node run wait for each other at the start (600 by default)."""
    dist_timeout_s: int = Field(1800, ge=1)
    """The process-group timeout of a multi-device run, in seconds (1800 by default, as transformers')."""
    accelerate_config: Path | None = None
    """An ``accelerate config`` file passed to ``accelerate launch`` for multi-device runs."""
    prepared_cache_gb: float = Field(20.0, ge=0)
    """Size of the prepared-data cache in GB before its least recently used entries go (20 by default)."""
    prepare_workers: int | None = Field(None, ge=1)
    """Processes that encode a large data set (unset: one per core, at most 8)."""
    supervisor_pid: int | None = Field(None, ge=1)
    """Set by studio for the processes of a multi-device run: the supervisor's pid, which run.json keeps."""


FIELDS = tuple(Settings.model_fields)


def variable(field: str) -> str:
    """The environment variable of ``field``: ``STUDIO_NODE_WAIT_S`` for ``node_wait_s``."""
    return PREFIX + field.upper()


_ALIASES = {"backend": {"transformers": "hf"}}
_FLAGS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def read_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings of ``env`` (this process's environment by default); an unparsable value raises a
    :class:`StudioError` naming the variable and what it takes."""
    env = os.environ if env is None else env
    given = tuple((f, env[variable(f)].strip()) for f in FIELDS if env.get(variable(f), "").strip())
    return _parse(given)


@functools.lru_cache(maxsize=32)
def _parse(given: tuple[tuple[str, str], ...]) -> Settings:
    raw: dict[str, object] = {}
    for field, value in given:
        if field == "queue_cpu":
            flag = _FLAGS.get(value.lower())
            if flag is None:
                raise StudioError(f"{variable(field)}={value!r}: give 1 (queue CPU runs) or 0")
            raw[field] = flag
        else:
            raw[field] = _ALIASES.get(field, {}).get(
                value.lower(), value.lower() if field == "backend" else value
            )
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0])
        raise StudioError(f"{variable(field)}={dict(given)[field]!r}: {err['msg'].lower()}") from None
