"""A run's recipe.yaml is a self-contained snapshot: the recipes it was built from may change or vanish later.

And one function starts every run (the CLI's and the Launch sheet's), refusing what the machine cannot train
before a run directory exists.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import STUDIO_BIN

from lorastudio import registry
from lorastudio.errors import StudioError
from lorastudio.train.launch import runs


@pytest.fixture
def user_recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private recipes folder holding ``pirate-base`` (extends tiny-pirate) and ``pirate-child`` (extends it)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    folder = tmp_path / "config" / "studio" / "recipes"
    folder.mkdir(parents=True)
    (folder / "pirate-base.yaml").write_text(
        "name: pirate-base\nextends: tiny-pirate\ndata:\n  columns: {instruction: instruction}\n"
        "lora:\n  r: 4\n",
        encoding="utf-8",
    )
    (folder / "pirate-child.yaml").write_text(
        "name: pirate-child\ndescription: a user recipe on a user recipe\n\n\n\n\nextends: pirate-base\n"
        "train:\n  max_steps: 3\n",
        encoding="utf-8",
    )
    return folder


def _with_adapter(run_dir: Path) -> Path:
    """Stand in for a finished run: what export and chat look for to find its adapter."""
    (run_dir / "adapter").mkdir()
    (run_dir / "adapter" / "adapter_config.json").write_text("{}", encoding="utf-8")
    return run_dir


def test_the_snapshot_is_resolved_and_names_its_origin(user_recipes: Path, tmp_path: Path) -> None:
    recipe = registry.load("pirate-child")
    run_dir = runs.start_run(recipe, root=tmp_path / "runs", start=False)
    snapshot = yaml.safe_load((run_dir / runs.RECIPE_FILE).read_text(encoding="utf-8"))
    assert "extends" not in snapshot  # nothing in it points at another recipe
    assert (
        snapshot["lora"]["r"] == 4
        and snapshot["train"]["max_steps"] == 3
        and snapshot["model"]["name"] == "tiny"
    )
    meta = runs.read_meta(run_dir)
    assert meta["recipe"] == "pirate-child" and meta["extends"] == "pirate-base"  # kept for display
    assert runs.load_run_recipe(run_dir) == recipe.model_copy(update={"extends": None})


def test_deleting_the_base_leaves_export_and_chat_working(user_recipes: Path, tmp_path: Path) -> None:
    from lorastudio.chat.engine import engine_for
    from lorastudio.export.origin import resolve_source

    run_dir = _with_adapter(
        runs.start_run(registry.load("pirate-child"), root=tmp_path / "runs", start=False)
    )
    (user_recipes / "pirate-base.yaml").unlink()
    with pytest.raises(StudioError, match="unknown base recipe 'pirate-base'"):
        registry.load("pirate-child")  # the recipe itself is broken now, the run is not
    source = resolve_source(run_dir)
    assert source.recipe.name == "pirate-child" and source.recipe.lora.r == 4
    engine = engine_for(str(run_dir))
    assert engine.recipe.train.max_steps == 3 and engine.adapter_dir == run_dir / "adapter"


def test_changing_the_base_does_not_change_the_run(user_recipes: Path, tmp_path: Path) -> None:
    run_dir = runs.start_run(registry.load("pirate-child"), root=tmp_path / "runs", start=False)
    before = runs.load_run_recipe(run_dir)
    (user_recipes / "pirate-base.yaml").write_text(
        "name: pirate-base\nextends: tiny-pirate\ndata:\n  columns: {instruction: question, output: answer}\n"
        "lora:\n  r: 64\n",
        encoding="utf-8",
    )
    assert registry.load("pirate-child").data.columns == {"instruction": "question", "output": "answer"}
    after = runs.load_run_recipe(run_dir)
    assert after == before and after.data.columns == {"instruction": "instruction"} and after.lora.r == 4


def test_an_old_run_that_still_extends_loads(user_recipes: Path, tmp_path: Path) -> None:
    """Runs written before snapshots were resolved keep ``extends``: they load by resolving it, as before."""
    run_dir = runs.start_run(registry.load("pirate-child"), root=tmp_path / "runs", start=False)
    old = registry.dump(registry.load("pirate-child"))  # what create_run used to write
    assert "extends: pirate-base" in old
    (run_dir / runs.RECIPE_FILE).write_text(old, encoding="utf-8")
    assert runs.load_run_recipe(run_dir).extends == "pirate-base"
    assert runs.load_run_recipe(run_dir).lora.r == 4


def test_fsdp_without_cuda_is_refused_before_a_run_exists(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    recipe = registry.load("tiny-pirate", ["train.distributed=fsdp", "train.devices=2"])
    with pytest.raises(StudioError, match="fsdp needs CUDA GPUs"):
        runs.start_run(recipe, root=root)
    assert not root.exists() or not any(root.iterdir())


def test_cli_refuses_fsdp_without_cuda_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = subprocess.run(
        [str(STUDIO_BIN), "train", "tiny-pirate", "train.distributed=fsdp", "--devices", "2", "--detach"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "XDG_DATA_HOME": str(data), "CUDA_VISIBLE_DEVICES": ""},
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().count("\n") == 0 and "fsdp needs CUDA GPUs" in out.stderr
    assert "Traceback" not in out.stderr
    runs_root = data / "studio" / "runs"
    assert not runs_root.exists() or not any(runs_root.iterdir())
