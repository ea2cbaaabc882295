"""Every unsloth call studio makes, checked against the source of the release the ``gpu`` extra pins.

unsloth cannot be imported without a GPU, so its source is read instead: the pinned wheel is fetched once per
machine (``pip download --no-deps``) into the machine's cache, and its functions' signatures are parsed with
``ast``. studio's calls are found the same way (every ``from unsloth import ...`` name, called directly or
through one of its methods, anywhere under ``studio/``). Each keyword studio passes must be a parameter the
release names (a ``**kwargs`` that would swallow it silently does not count) and the positional arguments
must fit. The signatures studio relies on are also kept in ``fixtures/unsloth_signatures.json``: when the
pin moves to a release where they differ, the test fails naming what changed, so the calls are reviewed
before the fixture is updated (``STUDIO_UPDATE_UNSLOTH_SIGNATURES=1`` rewrites it).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import _MACHINE_CACHE

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "unsloth_signatures.json"
SKIPPED_FILES = ("_cpu_init.py", "__init__.py")
"""unsloth's stand-ins for machines without a GPU (and its package init's fallbacks): not the CUDA path."""


def pinned_unsloth() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'"unsloth==([^"\s]+)"', text)
    assert match, "the gpu extra must pin unsloth to a release (unsloth==VERSION)"
    return match.group(1)


def unsloth_source(version: str) -> Path:
    """The pinned release's ``unsloth`` package folder, fetched into the machine cache on first use."""
    target = Path(_MACHINE_CACHE) / "studio" / "unsloth-source" / version
    if (target / "unsloth" / "models" / "loader.py").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                tmp,
                f"unsloth=={version}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        wheels = list(Path(tmp).glob("unsloth-*.whl"))
        if done.returncode != 0 or not wheels:
            pytest.skip(
                f"cannot fetch unsloth=={version} from the package index: {done.stderr.strip()[-300:]}"
            )
        staging = Path(tmp) / "src"
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(staging, [n for n in wheel.namelist() if n.startswith("unsloth/")])
        if not target.exists():
            staging.rename(target)  # complete or absent, never half there
    return target


@dataclass(frozen=True)
class Call:
    where: str
    name: str
    """``FastLanguageModel.from_pretrained`` or ``PatchDPOTrainer``."""
    positional: int
    keywords: tuple[str, ...]


def studio_calls() -> list[Call]:
    """Every call of a name imported from unsloth (or of its attribute) in studio's engine."""
    calls = []
    for path in sorted((ROOT / "studio").rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "unsloth"
            for alias in node.names
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in names:
                name = func.id
            elif (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id in names
            ):
                name = f"{func.value.id}.{func.attr}"
            else:
                continue
            assert all(k.arg for k in node.keywords), (
                f"{path}:{node.lineno}: **kwargs into unsloth cannot be checked"
            )
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            calls.append(Call(where, name, len(node.args), tuple(k.arg for k in node.keywords if k.arg)))
    return calls


@dataclass(frozen=True)
class Signature:
    where: str
    params: tuple[str, ...]
    """Positional-or-keyword parameters in order (``self``/``cls`` left out), then keyword-only ones after a ``*``."""
    forwards: bool
    """Only ``*args``/``**kwargs`` beyond the first parameter: the real parameters are a base class's."""


def _signature(func: ast.FunctionDef, where: str, method: bool) -> Signature:
    args = func.args
    positional = [a.arg for a in args.posonlyargs + args.args]
    if method and positional and positional[0] in ("self", "cls") and not _is_static(func):
        positional = positional[1:]
    keyword_only = [a.arg for a in args.kwonlyargs]
    params = tuple(positional + (["*", *keyword_only] if keyword_only else []))
    forwards = bool(args.vararg or args.kwarg) and len(positional) <= 1 and not keyword_only
    return Signature(where, params, forwards)


def _is_static(func: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in func.decorator_list)


def unsloth_index(
    source: Path,
) -> tuple[dict[str, Signature], dict[str, tuple[list[str], dict[str, Signature]]]]:
    """(top-level functions, classes as (base names, methods)), the CUDA path's definitions first."""
    functions: dict[str, Signature] = {}
    classes: dict[str, tuple[list[str], dict[str, Signature]]] = {}
    files = sorted((source / "unsloth").rglob("*.py"), key=lambda p: ("models" not in p.parts, str(p)))
    for path in files:
        if path.name in SKIPPED_FILES:
            continue
        rel = str(path.relative_to(source))
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                functions.setdefault(node.name, _signature(node, f"{rel}:{node.lineno}", method=False))
            elif isinstance(node, ast.ClassDef) and node.name not in classes:
                methods = {
                    m.name: _signature(m, f"{rel}:{m.lineno}", method=True)
                    for m in node.body
                    if isinstance(m, ast.FunctionDef)
                }
                bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
                classes[node.name] = (bases, methods)
    return functions, classes


def resolve(
    name: str, functions: dict[str, Signature], classes: dict[str, tuple[list[str], dict[str, Signature]]]
):
    """The signature that names the parameters of ``name``: a forwarding method is followed to its base's."""
    owner, _, method = name.partition(".")
    if not method:
        if owner in functions:
            return functions[owner]
        if owner in classes and "__init__" in classes[owner][1]:
            return classes[owner][1]["__init__"]
        return None
    queue = [owner]
    while queue:
        cls = queue.pop(0)
        if cls not in classes:
            continue
        bases, methods = classes[cls]
        found = methods.get(method)
        if found is not None and not found.forwards:
            return found
        queue += bases
    return None


def problems_of(call: Call, signature: Signature | None) -> list[str]:
    if signature is None:
        return [f"{call.where}: {call.name} is not defined in the pinned unsloth"]
    named = [p for p in signature.params if p != "*"]
    positional = signature.params.index("*") if "*" in signature.params else len(signature.params)
    out = []
    if call.positional > positional:
        out.append(
            f"{call.where}: {call.name} takes {positional} positional arguments, studio passes {call.positional}"
        )
    out += [
        f"{call.where}: {call.name} has no parameter {k!r} ({signature.where})"
        for k in call.keywords
        if k not in named
    ]
    return out


@pytest.fixture(scope="module")
def pinned() -> tuple[str, Path]:
    version = pinned_unsloth()
    return version, unsloth_source(version)


def test_studio_calls_are_found() -> None:
    """The scanner sees studio's calls (so an empty list cannot pass the check below by accident)."""
    names = {c.name for c in studio_calls()}
    assert {
        "FastLanguageModel.from_pretrained",
        "FastLanguageModel.get_peft_model",
        "PatchDPOTrainer",
    } <= names


def test_every_unsloth_call_fits_the_pinned_release(pinned: tuple[str, Path]) -> None:
    version, source = pinned
    functions, classes = unsloth_index(source)
    problems = [
        p for call in studio_calls() for p in problems_of(call, resolve(call.name, functions, classes))
    ]
    assert not problems, f"studio's calls do not fit unsloth=={version}:\n" + "\n".join(problems)


def test_the_signatures_studio_relies_on_are_unchanged(pinned: tuple[str, Path]) -> None:
    version, source = pinned
    functions, classes = unsloth_index(source)
    now = {}
    for name in sorted({c.name for c in studio_calls()}):
        signature = resolve(name, functions, classes)
        assert signature is not None, name
        now[name] = list(signature.params)
    if os.environ.get("STUDIO_UPDATE_UNSLOTH_SIGNATURES") == "1":
        FIXTURE.write_text(json.dumps({"unsloth": version, "signatures": now}, indent=1) + "\n")
    kept = json.loads(FIXTURE.read_text())
    changed = [
        f"{name}: {kept['signatures'].get(name)} -> {params}"
        for name, params in now.items()
        if kept["signatures"].get(name) != params
    ]
    assert not changed, (
        f"unsloth=={version}'s signatures differ from unsloth=={kept['unsloth']}'s (tests/fixtures/"
        "unsloth_signatures.json): review studio's calls, then rerun with STUDIO_UPDATE_UNSLOTH_SIGNATURES=1\n"
        + "\n".join(changed)
    )


@pytest.mark.parametrize(
    ("call", "params", "expected"),
    [
        (Call("a.py:1", "f", 1, ("x",)), ("m", "x"), []),
        (Call("a.py:1", "f", 0, ("gone",)), ("m", "x"), ["a.py:1: f has no parameter 'gone' (u.py:1)"]),
        (
            Call("a.py:1", "f", 2, ()),
            ("m", "*", "x"),
            ["a.py:1: f takes 1 positional arguments, studio passes 2"],
        ),
        (Call("a.py:1", "f", 0, ("x",)), ("m", "*", "x"), []),
    ],
)
def test_problems_of(call: Call, params: tuple[str, ...], expected: list[str]) -> None:
    """The check itself: a renamed keyword or one positional too many is caught, a fitting call is not."""
    assert problems_of(call, Signature("u.py:1", params, forwards=False)) == expected


def test_a_forwarding_method_is_followed_to_its_base() -> None:
    source = "class Base:\n    @staticmethod\n    def f(model, r=1): ...\nclass Top(Base):\n    @staticmethod\n    def f(model, *args, **kwargs): ...\n"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "unsloth" / "models").mkdir(parents=True)
        (Path(tmp) / "unsloth" / "models" / "m.py").write_text(source)
        functions, classes = unsloth_index(Path(tmp))
    found = resolve("Top.f", functions, classes)
    assert found is not None
    assert found.params == ("model", "r")
