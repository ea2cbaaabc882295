"""Packaging and architecture rules: one import package, and the import boundaries."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import STUDIO_BIN

ROOT = Path(__file__).resolve().parent.parent
ENGINE = sorted(
    ".".join(["lorastudio", *p.relative_to(ROOT / "studio").with_suffix("").parts]).removesuffix(".__init__")
    for p in (ROOT / "studio").rglob("*.py")
    if p.name != "app.py"
)


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_engine_never_imports_textual() -> None:
    code = "\n".join(f"import {m}" for m in ENGINE)
    loaded = _modules_after(code)
    assert not any(m == "textual" or m.startswith("textual.") for m in loaded)


def test_screens_and_widgets_import_no_torch_at_module_level() -> None:
    screens = [p.stem for p in (ROOT / "screens").glob("*.py") if p.stem != "__init__"]
    widgets = [p.stem for p in (ROOT / "widgets").glob("*.py") if p.stem != "__init__"]
    code = "import lorastudio.app\n" + "\n".join(
        [f"import lorastudio.screens.{s}" for s in screens]
        + [f"import lorastudio.widgets.{w}" for w in widgets]
    )
    loaded = _modules_after(code)
    heavy = {"torch", "transformers", "trl", "peft", "datasets", "bitsandbytes"}
    assert not heavy & loaded, heavy & loaded


@pytest.mark.parametrize("folder", ["studio", "screens", "widgets", "recipes"])
def test_bare_folder_name_refuses_import(folder: str) -> None:
    out = subprocess.run([sys.executable, "-c", f"import {folder}"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0
    assert "installs as 'lorastudio" in out.stderr


def test_wheel_holds_only_lorastudio(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("lorastudio-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"lorastudio", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    for needed in (
        "lorastudio/recipes/tiny-pirate.yaml",
        "lorastudio/recipes/data/tiny_pirate.jsonl",
        "lorastudio/recipes/data/tiny_corpus/harbour.md",  # tiny-pretrain's corpus folder
        "lorastudio/app.tcss",
        "lorastudio/screens/recipes.py",
        "lorastudio/widgets/token_view.py",
        "lorastudio/evaluate/shipped/studio_pirate.yaml",  # studio eval's shipped tasks and their rows
        "lorastudio/evaluate/shipped/general_mc.jsonl",
    ):
        assert needed in names
    # every engine module ships: a subpackage missing from pyproject's packages list would not
    shipped = {
        "lorastudio/" + p.relative_to(ROOT / "studio").as_posix() for p in (ROOT / "studio").rglob("*.py")
    }
    assert not shipped - set(names), sorted(shipped - set(names))
    entry_points = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    )
    assert "studio = lorastudio.cli:main" in entry_points
    assert "lorastudio = lorastudio.cli:main" in entry_points


def test_version_and_help() -> None:
    version = subprocess.run([STUDIO_BIN, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("studio (lorastudio) ")
    helptext = subprocess.run([STUDIO_BIN, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("recipes", "preview", "train", "runs", "chat", "attach", "validate"):
        assert command in helptext


def test_every_package_folder_is_listed_in_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"lorastudio": ROOT / "studio"} | {
        name: ROOT / folder for name, folder in setuptools["package-dir"].items()
    }
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            found.add(".".join([name, *parts]))
    assert found - set(setuptools["packages"]) == set(), "add these to pyproject's packages list"
