"""Shared fixtures: one private XDG home per test session, the tiny model built once, one trained run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def studio_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point XDG_* at a temporary folder for the whole session (subprocesses inherit it)."""
    home = tmp_path_factory.mktemp("home")
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data")):
        os.environ[var] = str(home / sub)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["STUDIO_BACKEND"] = os.environ.get("STUDIO_BACKEND", "hf")
    os.environ.pop("NO_COLOR", None)
    return home


@pytest.fixture(scope="session")
def tiny_model(studio_home: Path) -> Path:
    from lorastudio.models.tiny import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def run_worker(run_dir: Path, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lorastudio.worker", str(run_dir), *extra],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def trained_run(tiny_model: Path) -> Path:
    """tiny-pirate trained to the end (the recipe as shipped)."""
    from lorastudio import registry
    from lorastudio.train import runs

    run_dir = runs.create_run(registry.load("tiny-pirate"))
    result = run_worker(run_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


STUDIO_BIN = str(Path(sys.executable).parent / "studio")
"""The installed console script of this interpreter's environment."""
