"""Recipe values that need a newer TRL are refused at validation, naming the field and the release needed."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from lorastudio import registry
from lorastudio.errors import RecipeError
from lorastudio.train.trainer import trlneeds
from lorastudio.train.trainer.trlneeds import NEEDS, check_trl, parse_version, trl_problems


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("1.15.0", (1, 15, 0)), ("1.16.0.dev0", (1, 16, 0)), ("0.29.1+local", (0, 29, 1)), ("dev", None)],
)
def test_parse_version(text: str, parsed: tuple[int, ...] | None) -> None:
    assert parse_version(text) == parsed


@pytest.mark.parametrize(
    ("recipe", "overrides", "installed", "refused"),
    [
        ("smollm2-pirate-dpo", ["dpo.loss_type=sigmoid_norm"], "1.0.0", "dpo.loss_type: sigmoid_norm"),
        ("smollm2-pirate-dpo", ["dpo.loss_type=sigmoid_norm"], "1.10.0", None),
        ("smollm2-pirate-dpo", ["dpo.loss_type=sigmoid_norm"], "1.15.0", None),
        ("smollm2-pirate-dpo", ["dpo.loss_type=ipo"], "1.0.0", None),
        (
            "smollm2-pirate-dpo",
            ["train.method=kto", "dpo=null", "kto.loss_type=apo_zero_unpaired"],
            "0.29.1",
            "kto.loss_type: apo_zero_unpaired",
        ),
        ("tiny-pirate", [], "0.19.0", None),
    ],
)
def test_trl_problems_name_field_and_release(
    recipe: str, overrides: list[str], installed: str, refused: str | None
) -> None:
    loaded = registry.load(recipe, overrides)
    problems = trl_problems(loaded, installed)
    if refused is None:
        assert problems == []
        check_trl(loaded, installed)  # no error
        return
    assert len(problems) == 1
    assert problems[0].startswith(refused)
    assert f"TRL {installed} is installed" in problems[0]
    assert "needs TRL 1.10 or newer" in problems[0]
    with pytest.raises(RecipeError, match=rf"recipe {loaded.name}: {refused}"):
        check_trl(loaded, installed)


def test_start_run_refuses_before_a_run_directory_exists(tmp_path: Path, monkeypatch) -> None:
    from lorastudio.train.launch.runs import start_run

    recipe = registry.load("smollm2-pirate-dpo", ["dpo.loss_type=sigmoid_norm"])
    monkeypatch.setattr(trlneeds, "installed_trl", lambda: "1.0.0")  # an old TRL; the real one is newer
    with pytest.raises(RecipeError, match="needs TRL 1.10"):
        start_run(recipe, root=tmp_path / "runs", start=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_every_need_is_known_to_the_installed_trl() -> None:
    """The table's claims hold for the TRL this suite runs with (the value appears in its config's source)."""
    import importlib.util

    have = parse_version(metadata.version("trl"))
    assert have is not None
    configs = {"dpo": "trl.trainer.dpo_config", "kto": "trl.trainer.kto_config"}
    for need in NEEDS:
        spec = importlib.util.find_spec(configs[need.method])
        assert spec is not None and spec.origin is not None
        source = Path(spec.origin).read_text()
        assert (f"'{need.value}'" in source or f'"{need.value}"' in source) == (have >= need.version), need


def test_validate_passes_the_shipped_recipes_under_the_installed_trl(tmp_path: Path) -> None:
    recipe = tmp_path / "norm.yaml"
    recipe.write_text("extends: smollm2-pirate-dpo\nname: norm\ndpo:\n  loss_type: sigmoid_norm\n")
    done = subprocess.run(
        [sys.executable, "-m", "lorastudio.cli", "validate", str(recipe)], capture_output=True, text=True
    )
    have = parse_version(metadata.version("trl")) or ()
    if have >= (1, 10):
        assert done.returncode == 0, done.stderr
        assert f"{recipe}: ok" in done.stdout
    else:  # the pinned-versions lane with an old TRL: the message names the file and the field
        assert done.returncode == 1
        assert f"{recipe}: dpo.loss_type: sigmoid_norm needs TRL 1.10" in done.stderr


def test_sft_without_trls_kernels_fails_naming_why(tiny_model: Path, tmp_path: Path) -> None:
    """TRL 1.15 (the gpu extra's) on a CPU-only torch: the run fails before its model loads, saying what to
    install, not with an AttributeError from inside TRL's loss. Runs where that TRL is installed (the pinned
    lane); elsewhere the check is silent."""
    blocked = trlneeds.sft_blocker()
    if blocked is None:
        pytest.skip("this TRL trains on this machine")
    import os

    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lorastudio.cli",
            "train",
            "tiny-pirate",
            "train.max_steps=1",
            "train.samples=[]",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode != 0
    assert "status: failed (TRL 1.15" in done.stdout and "pip install 'trl>=1.16'" in done.stdout, done.stdout
    assert "status: loading model" not in done.stdout  # said before the model loads
