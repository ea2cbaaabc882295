"""The STUDIO_* environment: one typed object, every variable documented, bad values refused by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lorastudio.errors import StudioError
from lorastudio.settings import FIELDS, Settings, read_settings, variable
from lorastudio.train.launch.rendezvous import wait_s
from lorastudio.train.trainer.backend import Hardware, choose_backend
from lorastudio.train.trainer.distributed import timeout_s
from lorastudio.train.trainer.queue import device_name

ROOT = Path(__file__).resolve().parent.parent
# shell variables of the Slurm batch script, and serve's hand-over of its key to the server process
NOT_SETTINGS = {"STUDIO_RUN", "STUDIO_PYTHON", "STUDIO_MAIN_ADDRESS", "STUDIO_RESUME", "STUDIO_SERVE_API_KEY"}


def test_unset_is_the_documented_defaults() -> None:
    got = read_settings({})
    assert got == Settings()
    assert (got.backend, got.queue_cpu, got.node_wait_s, got.dist_timeout_s) == ("auto", False, 600.0, 1800)
    assert (got.prepared_cache_gb, got.prepare_workers, got.accelerate_config) == (20.0, None, None)


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"STUDIO_BACKEND": "HF"}, "backend", "hf"),
        ({"STUDIO_BACKEND": "transformers"}, "backend", "hf"),
        ({"STUDIO_BACKEND": " unsloth "}, "backend", "unsloth"),
        ({"STUDIO_BACKEND": ""}, "backend", "auto"),
        ({"STUDIO_QUEUE_CPU": "1"}, "queue_cpu", True),
        ({"STUDIO_QUEUE_CPU": "off"}, "queue_cpu", False),
        ({"STUDIO_NODE_WAIT_S": "90.5"}, "node_wait_s", 90.5),
        ({"STUDIO_DIST_TIMEOUT_S": "60"}, "dist_timeout_s", 60),
        ({"STUDIO_PREPARED_CACHE_GB": "0"}, "prepared_cache_gb", 0.0),
        ({"STUDIO_PREPARE_WORKERS": "3"}, "prepare_workers", 3),
        ({"STUDIO_ACCELERATE_CONFIG": "/etc/acc.yaml"}, "accelerate_config", Path("/etc/acc.yaml")),
    ],
)
def test_each_variable_reads_as_its_type(env: dict[str, str], field: str, value: object) -> None:
    assert getattr(read_settings(env), field) == value


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"STUDIO_BACKEND": "torch"}, "STUDIO_BACKEND='torch'"),
        ({"STUDIO_QUEUE_CPU": "maybe"}, "STUDIO_QUEUE_CPU='maybe': give 1"),
        ({"STUDIO_NODE_WAIT_S": "soon"}, "STUDIO_NODE_WAIT_S='soon': input should be a valid number"),
        ({"STUDIO_NODE_WAIT_S": "0"}, "STUDIO_NODE_WAIT_S='0': input should be greater than or equal to 1"),
        ({"STUDIO_DIST_TIMEOUT_S": "1.5"}, "STUDIO_DIST_TIMEOUT_S='1.5'"),
        ({"STUDIO_PREPARED_CACHE_GB": "-1"}, "STUDIO_PREPARED_CACHE_GB='-1'"),
        ({"STUDIO_PREPARE_WORKERS": "0"}, "STUDIO_PREPARE_WORKERS='0'"),
        ({"STUDIO_SUPERVISOR_PID": "me"}, "STUDIO_SUPERVISOR_PID='me'"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(StudioError) as caught:
        read_settings(env)
    assert str(caught.value).startswith(says), str(caught.value)


def test_the_readers_take_their_value_from_the_settings() -> None:
    assert wait_s({"STUDIO_NODE_WAIT_S": "42"}) == 42.0
    assert timeout_s({"STUDIO_DIST_TIMEOUT_S": "77"}) == 77
    assert device_name(False, {"STUDIO_QUEUE_CPU": "1"}) == "CPU"
    assert device_name(False, {}) is None
    cpu = Hardware(False, False, "cpu")
    assert choose_backend(cpu, unsloth_importable=True, env={"STUDIO_BACKEND": "transformers"}) == "hf"
    with pytest.raises(StudioError, match="STUDIO_BACKEND='gpu'"):
        choose_backend(cpu, env={"STUDIO_BACKEND": "gpu"})


def test_every_variable_is_documented_and_every_one_read_is_a_setting() -> None:
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    for field in FIELDS:
        assert Settings.model_fields[field].description, f"{field} has no docstring"
        assert f"| `{variable(field)}` |" in page, f"{variable(field)} is not in docs/settings.md's table"
    named = {
        m
        for folder in ("studio", "screens", "widgets")
        for path in (ROOT / folder).rglob("*.py")
        for m in re.findall(r"STUDIO_[A-Z_]+[A-Z]", path.read_text(encoding="utf-8"))
    }
    assert named - NOT_SETTINGS <= {variable(f) for f in FIELDS}, named - NOT_SETTINGS
