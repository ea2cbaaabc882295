"""The engine's stages import one way only: faces -> chat/export -> train -> data -> models -> ground.

Checked statically (every ``import``, also those inside functions), so a lazy upward import fails too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "studio"

# Lower rank = lower stage; a module may import its own rank or below. chat and export share a rank
# but must not import each other.
RANK = {"ground": 0, "models": 1, "data": 2, "train": 3, "chat": 4, "export": 4, "face": 5}
GROUND = {"recipe", "registry", "paths", "errors", "quiet", "__init__"}
FACES = {"cli", "app", "worker", "screens", "widgets", "mcpserver"}


def stage_of(module: str) -> str:
    """``lorastudio.data.encode`` -> ``data``; ``lorastudio.cli`` -> ``face``; ``lorastudio`` -> ``ground``."""
    parts = module.split(".")
    if parts[0] != "lorastudio":
        raise ValueError(module)
    if len(parts) == 1 or parts[1] in GROUND:
        return "ground"
    if parts[1] in FACES:
        return "face"
    if parts[1] in RANK:
        return parts[1]
    raise AssertionError(f"{module}: not in any stage; add it to a stage package or to the ground")


def module_name(path: Path) -> str:
    rel = path.relative_to(ENGINE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["lorastudio", *parts])


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module an import statement names, relative imports resolved against ``module``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # ``from lorastudio import registry`` names a module through its alias
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names
                      if target == "lorastudio" and alias.name != "__version__"]
    return found


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    own = stage_of(module)
    bad = []
    for line, target in imported_modules(source, module, is_package):
        top = target.split(".")[0]
        if top == "textual" and module != "lorastudio.app":
            bad.append(f"{module}:{line} imports textual (only lorastudio.app may)")
        if top != "lorastudio" or target == "lorastudio":
            continue
        theirs = stage_of(target)
        if RANK[theirs] > RANK[own] or (RANK[theirs] == RANK[own] and theirs != own and own != "face"):
            bad.append(f"{module}:{line} ({own}) imports {target} ({theirs})")
    return bad


def engine_files() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


def test_every_engine_module_belongs_to_a_stage() -> None:
    for path in engine_files():
        stage_of(module_name(path))


def test_imports_point_one_way_and_engine_has_no_textual() -> None:
    bad: list[str] = []
    for path in engine_files():
        bad += violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not bad, "\n".join(bad)


def test_every_stage_package_says_what_it_owns() -> None:
    for stage in ("data", "models", "train", "chat", "export"):
        doc = ast.get_docstring(ast.parse((ENGINE / stage / "__init__.py").read_text()))
        assert doc and doc.startswith(f"Stage ``{stage}``") and "never" in doc, stage


@pytest.mark.parametrize(("module", "source"), [
    ("lorastudio.data.encode", "from lorastudio.train.runs import find_run"),
    ("lorastudio.models.tiny", "def f():\n    from lorastudio.data import encode"),
    ("lorastudio.data.encode", "from ..train import runs"),
    ("lorastudio.recipe", "from lorastudio import registry\nfrom lorastudio.models import estimate"),
    ("lorastudio.chat.engine", "from lorastudio.export import gguf"),
    ("lorastudio.train.worker", "import textual.app"),
])
def test_checker_catches_upward_imports(module: str, source: str) -> None:
    assert violations(source, module)


@pytest.mark.parametrize(("module", "source"), [
    ("lorastudio.data.encode", "from lorastudio.models.templates import TEMPLATES\nfrom . import formats"),
    ("lorastudio.cli", "from lorastudio.chat.engine import engine_for\nfrom lorastudio.export import x"),
    ("lorastudio.app", "from textual.app import App"),
])
def test_checker_allows_downward_imports(module: str, source: str) -> None:
    assert violations(source, module) == []
