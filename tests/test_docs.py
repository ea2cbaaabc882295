"""The docs stay in sync with the code: every ``studio`` command and flag is in docs/cli.md, every key a screen
shows is in docs/keys.md with its id, every shipped recipe and recipe field is in docs/recipes.md, and every
relative link in the README and docs/ resolves (file and heading)."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.binding import Binding

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


# -- docs/cli.md -----------------------------------------------------------------------------------
class _Caught(Exception):
    """Carries the parser ``studio`` built, caught as it starts parsing."""


def studio_parser() -> argparse.ArgumentParser:
    """The parser ``studio`` itself runs: ``main`` builds it (wherever the CLI keeps that code) and is stopped as
    it starts to parse, so nothing runs."""
    from lorastudio.cli import main

    def catch(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Caught(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_known_args", catch)
        with pytest.raises(_Caught) as caught:
            main([])
    parser = caught.value.args[0]
    assert isinstance(parser, argparse.ArgumentParser)
    assert parser.prog == "studio"
    return parser


def commands(parser: argparse.ArgumentParser, path: str = "studio") -> Iterator[tuple[str, list[str]]]:
    """Each command path (``studio runs compare``) with its option strings, subcommands depth first."""
    flags = [
        flag
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        for flag in action.option_strings
    ]
    yield path, flags
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, f"{path} {name}")


def sections(page: Path, level: str = "###") -> dict[str, str]:
    """A page's ``level`` headings -> the text under each, up to the next heading of that level or above."""
    found: dict[str, str] = {}
    heading = None
    for line in page.read_text(encoding="utf-8").splitlines():
        mark = line.split(" ", 1)[0]
        if mark and set(mark) == {"#"} and len(mark) <= len(level):
            heading = line[len(mark) :].strip() if mark == level else None
            if heading is not None:
                found[heading] = ""
        elif heading is not None:
            found[heading] += line + "\n"
    return found


def test_every_studio_command_and_flag_is_in_docs_cli() -> None:
    documented = sections(DOCS / "cli.md")
    real = dict(commands(studio_parser()))
    assert len(real) > 20, sorted(real)  # the walk reached the subcommands
    missing = [path for path in real if f"`{path}`" not in documented]
    assert not missing, f"docs/cli.md has no '### `COMMAND`' section for: {', '.join(missing)}"
    for path, flags in real.items():
        text = documented[f"`{path}`"]
        absent = [flag for flag in flags if not re.search(rf"`{re.escape(flag)}[` ]", text)]
        assert not absent, f"docs/cli.md's section on `{path}` does not explain {', '.join(absent)}"
    stale = [heading for heading in documented if heading.strip("`") not in real]
    assert not stale, f"docs/cli.md documents commands studio does not have: {', '.join(stale)}"


# -- docs/keys.md ----------------------------------------------------------------------------------
KEY_TEXT = {
    "escape": "Esc",
    "enter": "Enter",
    "slash": "/",
    "question_mark": "?",
    "plus": "+",
    "minus": "-",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "space": "Space",
    "delete": "Del",
    "up": "↑",
    "down": "↓",
    "left": "←",
    "right": "→",
    "home": "Home",
    "end": "End",
    "tab": "Tab",
}


def key_text(key: str) -> str:
    """How docs/keys.md writes a Textual key name: ``ctrl+t`` -> ``Ctrl+T``, ``escape`` -> ``Esc``, ``D`` -> ``D``."""
    if key in KEY_TEXT:
        return KEY_TEXT[key]
    if len(key) == 1:
        return key
    return "+".join(part.capitalize() if len(part) > 1 else part.upper() for part in key.split("+"))


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("ctrl+t", "Ctrl+T"),
        ("escape", "Esc"),
        ("f5", "F5"),
        ("D", "D"),
        ("shift+tab", "Shift+Tab"),
        ("/", "/"),
    ],
)
def test_key_text(key: str, text: str) -> None:
    assert key_text(key) == text


def binding_classes() -> list[type]:
    """The app and every screen and widget class that declares its own BINDINGS."""
    from lorastudio import screens, widgets
    from lorastudio.app import StudioApp

    found: list[type] = [StudioApp]
    for package in (screens, widgets):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            found += [
                cls
                for _, cls in inspect.getmembers(module, inspect.isclass)
                if cls.__module__ == module.__name__ and "BINDINGS" in cls.__dict__
            ]
    return found


def shown_bindings() -> list[tuple[str, Binding]]:
    return [
        (cls.__name__, binding)
        for cls in binding_classes()
        for binding in cls.__dict__["BINDINGS"]
        if isinstance(binding, Binding) and binding.show
    ]


def test_every_shown_key_is_in_docs_keys_with_its_id() -> None:
    rows = [
        line for line in (DOCS / "keys.md").read_text(encoding="utf-8").splitlines() if line.startswith("|")
    ]
    shown = shown_bindings()
    assert len(shown) > 50, len(shown)
    for owner, binding in shown:
        assert binding.id, f"{owner}'s binding {binding.key!r} ({binding.description}) is shown but has no id"
        row = [line for line in rows if line.rstrip().endswith(f"| `{binding.id}` |")]
        assert len(row) == 1, f"docs/keys.md has {len(row)} rows for {binding.id} ({owner}), not one"
        for key in binding.key.split(","):
            assert f"`{key_text(key.strip())}`" in row[0], f"docs/keys.md's row for {binding.id} lacks {key}"


def test_every_id_in_docs_keys_is_a_real_binding() -> None:
    real = {
        binding.id
        for cls in binding_classes()
        for binding in cls.__dict__["BINDINGS"]
        if isinstance(binding, Binding) and binding.id
    }
    text = (DOCS / "keys.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"\| `([a-z_]+\.[a-z_0-9]+)` \|$", text, re.M))
    assert documented, "docs/keys.md has no id column"
    assert not documented - real, f"docs/keys.md names bindings the code lacks: {sorted(documented - real)}"


# -- docs/recipes.md -------------------------------------------------------------------------------
def recipe_fields(model: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted field of the recipe (``grpo.rewards.length.max_words``), sections included."""
    from typing import get_args

    def model_in(annotation: Any) -> Any:
        if hasattr(annotation, "model_fields"):
            return annotation
        return next((m for m in map(model_in, get_args(annotation)) if m is not None), None)

    for name, field in model.model_fields.items():
        inner = model_in(field.annotation)
        if inner is None or inner is model:
            yield f"{prefix}{name}"
        else:
            yield from recipe_fields(inner, f"{prefix}{name}.")


def test_docs_recipes_names_every_shipped_recipe_and_every_field() -> None:
    import yaml

    from lorastudio.recipe import Recipe

    text = (DOCS / "recipes.md").read_text(encoding="utf-8")
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        name = yaml.safe_load(path.read_text(encoding="utf-8"))["name"]
        assert f"| `{name}` |" in text, f"docs/recipes.md's table of shipped recipes lacks {name}"
    fields = list(recipe_fields(Recipe))
    assert "grpo.rewards.length.max_words" in fields
    assert "train.samples.held_out" in fields
    missing = [f for f in fields if f"| `{f}` |" not in text]
    assert not missing, f"docs/recipes.md's field tables lack: {', '.join(missing)}"


# -- links -----------------------------------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Is the tune better? `studio eval`", "is-the-tune-better-studio-eval"),
        ("One GPU, one run", "one-gpu-one-run"),
        ("Vision-language models (first cut)", "vision-language-models-first-cut"),
        ("`studio runs compare`", "studio-runs-compare"),
    ],
)
def test_slug(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#+ (.+)$", strip_fences(page.read_text(encoding="utf-8")), re.M):
        base = slug(heading)
        found.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return found


def strip_fences(text: str) -> str:
    """Markdown without its fenced code blocks (a ``# comment`` in one is no heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def strip_code(text: str) -> str:
    """Markdown without fenced blocks and inline code, where ``](`` is not a link."""
    return re.sub(r"`[^`\n]*`", "", strip_fences(text))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", strip_code(page.read_text(encoding="utf-8")))
    broken = []
    for link in links:
        if re.match(r"[a-z]+:", link):  # https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link} (no {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{link} (no heading #{anchor} in {path.name})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {', '.join(broken)}"


def test_every_docs_page_is_linked_from_the_docs_index() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    unlinked = [p.name for p in DOCS.glob("*.md") if p.name != "README.md" and f"]({p.name})" not in index]
    assert not unlinked, f"docs/README.md does not link: {', '.join(unlinked)}"
