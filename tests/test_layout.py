"""The engine's stages import one way only: faces -> evaluate/serve -> chat/export -> train -> data -> models -> ground.

Checked statically (every ``import``, also those inside functions), so a lazy upward import fails too.
The same import graph must have no cycles, widgets never import screens, and each stage package's
docstring (and the README's layout section) names every module in it.
"""

from __future__ import annotations

import ast
import re
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "studio"

# Lower rank = lower stage; a module may import its own rank or below. chat and export share a rank
# but must not import each other. evaluate and serve sit above chat and export (equal ranks may not import
# each other): evaluate loads its models through the chat engine; serve reads targets as chat does and merges
# through export.
RANK = {
    "ground": 0,
    "models": 1,
    "data": 2,
    "train": 3,
    "chat": 4,
    "export": 4,
    "evaluate": 5,
    "serve": 5,
    "face": 6,
}
GROUND = {
    "recipe",
    "registry",
    "paths",
    "errors",
    "quiet",
    "progress",
    "demo",
    "hub",
    "jsonout",
    "recipecards",
    "settings",
    "__init__",
}
FACES = {
    "cli",
    "app",
    "worker",
    "screens",
    "widgets",
    "mcpserver",
    "mcpwire",
}


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


def from_target(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module ``from X import ...`` names, a relative ``X`` resolved against ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module an import statement names, relative imports resolved against ``module``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = from_target(node, module, is_package)
            found.append((node.lineno, target))
            # ``from lorastudio import registry`` names a module through its alias
            found += [
                (node.lineno, f"{target}.{alias.name}")
                for alias in node.names
                if target == "lorastudio" and alias.name != "__version__"
            ]
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
    for stage in ("data", "models", "train", "chat", "export", "evaluate", "serve"):
        doc = ast.get_docstring(ast.parse((ENGINE / stage / "__init__.py").read_text()))
        assert doc and doc.startswith(f"Stage ``{stage}``") and "never" in doc, stage


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("lorastudio.data.encode", "from lorastudio.train.launch.runs import find_run"),
        ("lorastudio.models.tiny", "def f():\n    from lorastudio.data import encode"),
        ("lorastudio.data.encode", "from ..train import runs"),
        ("lorastudio.recipe", "from lorastudio import registry\nfrom lorastudio.models import estimate"),
        ("lorastudio.chat.engine", "from lorastudio.export import gguf"),
        ("lorastudio.train.trainer.trainrun", "import textual.app"),
    ],
)
def test_checker_catches_upward_imports(module: str, source: str) -> None:
    assert violations(source, module)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        (
            "lorastudio.data.encode",
            "from lorastudio.models.templates import TEMPLATES\nfrom . import formats",
        ),
        ("lorastudio.cli", "from lorastudio.chat.engine import engine_for\nfrom lorastudio.export import x"),
        ("lorastudio.app", "from textual.app import App"),
    ],
)
def test_checker_allows_downward_imports(module: str, source: str) -> None:
    assert violations(source, module) == []


# --- no import cycles ------------------------------------------------------------------------------------

# The engine (studio/, its faces cli and app included), the screens and the widgets. A screen opens the next
# one through the app (screens/navigate.py), never by importing it, so no cycle runs through the screens.
PACKAGE_DIRS = {
    "lorastudio": ENGINE,
    "lorastudio.screens": ROOT / "screens",
    "lorastudio.widgets": ROOT / "widgets",
}

Graph = dict[str, dict[str, int]]
"""module -> {imported module: line of its first import}; only the package's own modules."""


def engine_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def import_graph(sources: dict[str, tuple[str, bool]]) -> Graph:
    """Edges from every import statement (module level or inside a function) between ``sources``' modules.

    ``sources`` maps a module name to (its source, whether it is a package ``__init__``). ``from pkg import
    name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
    """
    graph: Graph = {module: {} for module in sources}
    for module, (source, is_package) in sources.items():
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = from_target(node, module, is_package)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in sources else base for a in node.names]
            for target in targets:
                if target in sources and target != module:
                    graph[module].setdefault(target, node.lineno)
    return graph


def strongly_connected(graph: Graph) -> list[set[str]]:
    """Each group of two or more modules that all reach one another through imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(start: str) -> None:
        # Tarjan's algorithm without recursion: (node, iterator over its edges) frames.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, edges = work[-1]
            child = next(edges, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group: set[str] = set()
                while True:
                    member = stack.pop()
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return groups


def cycles(graph: Graph) -> list[list[str]]:
    """Each strongly connected group as one chain ``[a, b, ..., a]`` through it (the shortest from its first)."""
    return [_chain(graph, group) for group in strongly_connected(graph)]


def _chain(graph: Graph, group: set[str]) -> list[str]:
    """The shortest way from the group's first module back to itself, inside the group."""
    start = min(group)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node]):
            if child not in group:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, node, start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(group)


def describe(graph: Graph, group: set[str]) -> str:
    """``a:12 -> b:40 -> a``: each module with the line of its import of the next; other members after it."""
    chain = _chain(graph, group)
    short = [m.removeprefix("lorastudio.") for m in chain]
    steps = [f"{short[i]}:{graph[chain[i]][chain[i + 1]]}" for i in range(len(chain) - 1)]
    rest = sorted(m.removeprefix("lorastudio.") for m in group - set(chain))
    return " -> ".join([*steps, short[-1]]) + (f" (also in this cycle: {', '.join(rest)})" if rest else "")


def engine_cycles() -> tuple[Graph, list[set[str]]]:
    modules = engine_modules()
    graph = import_graph({m: (p.read_text(), p.name == "__init__.py") for m, p in modules.items()})
    return graph, strongly_connected(graph)


def test_engine_has_no_import_cycles() -> None:
    graph, found = engine_cycles()
    assert not found, "import cycles:\n" + "\n".join(describe(graph, c) for c in found)


def test_cycle_check_covers_screens_and_widgets() -> None:
    """The real graph holds the screens and widgets, with the app's lazy imports of them as edges."""
    graph, _ = engine_cycles()
    assert "lorastudio.screens.runs" in graph and "lorastudio.widgets.chart" in graph
    assert "lorastudio.screens.monitor" in graph["lorastudio.app"]  # a function-level import counts
    assert "lorastudio.screens.navigate" in graph["lorastudio.screens.runs"]


def test_cycle_finder_catches_screens_opening_each_other() -> None:
    """Recipes opening Launch, which opens Monitor, which goes back to Recipes: each import inside a method."""
    sources = {
        "lorastudio.screens": ("", True),
        "lorastudio.screens.recipes": ("def t(self):\n    from lorastudio.screens.launch import L\n", False),
        "lorastudio.screens.launch": ("def go(self):\n    from lorastudio.screens import monitor\n", False),
        "lorastudio.screens.monitor": ("def back(self):\n    from .recipes import RecipesScreen\n", False),
    }
    graph = import_graph(sources)
    assert cycles(graph) == [
        [
            "lorastudio.screens.launch",
            "lorastudio.screens.monitor",
            "lorastudio.screens.recipes",
            "lorastudio.screens.launch",
        ]
    ]
    sources["lorastudio.screens.monitor"] = ("def back(self):\n    go(self.app, Recipes())\n", False)
    assert cycles(import_graph(sources)) == []


def test_cycle_finder_reports_a_chain() -> None:
    sources = {
        "lorastudio.data.a": ("import os\nfrom lorastudio.data import b\n", False),
        "lorastudio.data.b": ("def f():\n    from . import c\n", False),
        "lorastudio.data.c": ("def g():\n    import lorastudio.data.a\n", False),
        "lorastudio.data.d": ("from .a import x\n", False),
        "lorastudio.data": ("", True),
    }
    graph = import_graph(sources)
    found = cycles(graph)
    assert found == [["lorastudio.data.a", "lorastudio.data.b", "lorastudio.data.c", "lorastudio.data.a"]]
    assert describe(graph, set(found[0])) == "data.a:2 -> data.b:2 -> data.c:2 -> data.a"
    assert cycles(import_graph({k: v for k, v in sources.items() if k != "lorastudio.data.c"})) == []


# --- widgets never import screens ------------------------------------------------------------------------


def screen_imports(source: str, module: str) -> list[str]:
    return [
        f"{module}:{line} imports {target}"
        for line, target in imported_modules(source, module, False)
        if target == "lorastudio.screens" or target.startswith("lorastudio.screens.")
    ]


def test_widgets_never_import_screens() -> None:
    bad: list[str] = []
    for path in sorted((ROOT / "widgets").glob("*.py")):
        bad += screen_imports(path.read_text(), f"lorastudio.widgets.{path.stem}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "source",
    [
        "from lorastudio.screens.messages import LoadProgress",
        "def f():\n    from ..screens import monitor",
        "import lorastudio.screens.chat",
        "from lorastudio import screens",
    ],
)
def test_screen_import_check_catches(source: str) -> None:
    assert screen_imports(source, "lorastudio.widgets.chart")


# --- each stage package names its modules ---------------------------------------------------------------

STAGE_PACKAGES = ("data", "models", "train", "chat", "export", "evaluate", "serve", "demo", "cli")


def modules_of(package: str) -> list[str]:
    return sorted(p.stem for p in (ENGINE / package).glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("package", STAGE_PACKAGES)
def test_stage_docstring_names_every_module(package: str) -> None:
    doc = ast.get_docstring(ast.parse((ENGINE / package / "__init__.py").read_text())) or ""
    missing = [m for m in modules_of(package) if f"``{m}``" not in doc]
    assert not missing, f"lorastudio.{package}'s docstring does not name: {', '.join(missing)}"


def readme_layout() -> dict[str, str]:
    """README's layout block: each folder (``studio/data/``) -> its text, continuation lines included."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"^## Layout\n+```\n(.*?)^```", text, re.M | re.S)
    assert block, "README has no ## Layout code block"
    entries: dict[str, str] = {}
    folder = ""
    for line in block.group(1).splitlines():
        if line[:1].strip():
            folder, _, rest = line.partition(" ")
            entries[folder] = rest
        else:
            entries[folder] += " " + line.strip()
    return entries


@pytest.mark.parametrize("package", ["", *STAGE_PACKAGES])
def test_readme_layout_names_every_module(package: str) -> None:
    folder = f"studio/{package}/" if package else "studio/"
    entry = readme_layout().get(folder)
    assert entry is not None, f"README's layout section has no {folder} line"
    if package:
        names = modules_of(package)
    else:
        names = sorted(p.stem for p in ENGINE.glob("*.py") if p.name != "__init__.py")
        names += sorted(p.name for p in ENGINE.iterdir() if (p / "__init__.py").is_file())
        names = [n for n in names if n not in STAGE_PACKAGES]
    words = set(re.findall(r"[A-Za-z_]+", entry))
    missing = [n for n in names if n not in words]
    assert not missing, f"README's layout line for {folder} does not name: {', '.join(missing)}"


def test_cli_module_names_are_used_nowhere_else() -> None:
    """The README's layout section names a module by a word: a cli module sharing its name with one elsewhere
    (``runs``, ``export``, ``preview``) would be named by a word that does not say which."""
    cli = set(modules_of("cli")) - {"__main__"}
    elsewhere = {
        p.stem
        for folder in (ENGINE, ROOT / "screens", ROOT / "widgets", ROOT / "recipes")
        for p in folder.rglob("*.py")
        if p.parent != ENGINE / "cli"
    }
    assert not cli & elsewhere, f"cli modules named like others: {', '.join(sorted(cli & elsewhere))}"
