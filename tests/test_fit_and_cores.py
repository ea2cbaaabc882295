"""One memory-fit rule and one usable-core count in the engine, shared by the Launch sheet, chat admission,
the CPU queue and the encoding shards (issue 39)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lorastudio import registry
from lorastudio.chat.admission import Admission
from lorastudio.train.launch.memoryfit import FreeMemory, memory_fit


@pytest.mark.parametrize(
    ("need", "free", "headroom", "verdict"),
    [
        (1000.0, 4000.0, 1024.0, "fits"),
        (2976.0, 4000.0, 1024.0, "fits"),  # exactly the headroom left
        (3500.0, 4000.0, 1024.0, "tight"),  # fits only into the headroom
        (4000.0, 4000.0, 1024.0, "tight"),
        (4001.0, 4000.0, 1024.0, "short"),
        (None, 10.0, 1024.0, "unknown"),  # the model's size is unknown
        (10.0, None, 1024.0, "unknown"),  # the free memory cannot be read
        (500.0, 500.0, 0.0, "fits"),
    ],
)
def test_memory_fit_verdicts(need: float | None, free: float | None, headroom: float, verdict: str) -> None:
    assert memory_fit(need, free, headroom).verdict == verdict


@pytest.mark.parametrize(
    ("need", "free", "headroom", "ok"),
    [(2000.0, 4096.0, 1024.0, True), (3500.0, 4096.0, 1024.0, False), (None, 10.0, 1024.0, True)],
)
def test_chat_admission_is_the_shared_rule(
    need: float | None, free: float, headroom: float, ok: bool
) -> None:
    """A chat is admitted only when the model fits with its headroom kept, or a figure is unknown."""
    assert Admission("GPU 0", need, free, headroom).ok is ok
    assert ok is (memory_fit(need, free, headroom).verdict in ("fits", "unknown"))


@pytest.mark.parametrize(
    ("free_gb", "colour", "fits", "warning"),
    [
        (64.0, "green", True, None),
        (0.09, "red", False, "will not fit"),
    ],
)
def test_launch_line_follows_the_shared_rule(
    free_gb: float, colour: str, fits: bool, warning: str | None
) -> None:
    from lorastudio.models.estimate import estimate_memory
    from lorastudio.screens.launch_memory import HEADROOM, describe

    recipe = registry.load("tiny-pirate")
    est = estimate_memory(recipe, gpu=True)
    assert est is not None
    text, said = describe(recipe, gpu=(free_gb * 1024, 80 * 1024.0, "GPU 0 Test"))
    need = est.total / 2**20
    verdict = memory_fit(need, free_gb * 1024, free_gb * 1024 * (1 - HEADROOM)).verdict
    assert said is fits and (verdict != "short") is fits
    assert any(colour in str(span.style) for span in text.spans)
    assert (warning in text.plain) if warning else "will not fit" not in text.plain


def test_launch_line_tight_just_under_what_is_free() -> None:
    """Between 90 % and 100 % of what is free: yellow, and said to fit."""
    from lorastudio.models.estimate import estimate_memory
    from lorastudio.screens.launch_memory import describe

    recipe = registry.load("tiny-pirate")
    est = estimate_memory(recipe, gpu=True)
    assert est is not None
    free_mb = est.total / 2**20 / 0.95
    text, fits = describe(recipe, gpu=(free_mb, 80 * 1024.0, "GPU 0 Test"))
    assert fits is True and "tight: little headroom" in text.plain
    assert memory_fit(est.total / 2**20, free_mb, free_mb * 0.1).verdict == "tight"


def test_free_memory_names_the_device() -> None:
    assert FreeMemory("GPU 0 NVIDIA H100", 1.0, 2.0).on_gpu and not FreeMemory("CPU", 1.0, 2.0).on_gpu


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_usable_cores_follow_the_affinity() -> None:
    """Bound to one core (as taskset or a container's cpuset would), every share counts one core, whatever
    ``os.cpu_count()`` says: the TUI's threads, the encoding shards and a CPU chat beside a worker."""
    script = (
        "import os\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from lorastudio.models.threads import tui_threads, usable_cores\n"
        "from lorastudio.data.prepared.shards import worker_count\n"
        "print(usable_cores(), tui_threads(), worker_count(10**7), os.cpu_count())\n"
    )
    env = {**os.environ}
    env.pop("STUDIO_PREPARE_WORKERS", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    cores, tui, shards, _machine = map(int, out.stdout.split())
    assert (cores, tui, shards) == (1, 1, 1)


def test_usable_cores_is_the_affinity_here() -> None:
    from lorastudio.models.threads import usable_cores

    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert usable_cores() == expected
