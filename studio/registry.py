"""Find, load and resolve recipes: built-ins, the user's config dir, and paths.

Every failure becomes a :class:`RecipeError` whose message names the file, the
field path and, where YAML knows it, the line.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lorastudio.errors import RecipeError
from lorastudio.paths import package_recipes_dir, user_recipes_dir
from lorastudio.recipe import Recipe, RewardSpec
from lorastudio.recipecards import RecipeFile

LOCAL_DATA_SUFFIXES = (
    ".csv",
    ".json",
    ".jsonl",
    ".parquet",
    ".txt",
    ".csv.gz",
    ".json.gz",
    ".jsonl.gz",
    ".txt.gz",
)
"""Names a local data file may end in (the text kinds gzip-compressed too)."""


def discover(extra: list[Path] | None = None) -> dict[str, RecipeFile]:
    """Recipe files by name; user recipes shadow built-ins, explicit paths shadow both."""
    found: dict[str, RecipeFile] = {}
    sources: list[tuple[Path, str]] = [(package_recipes_dir(), "built-in"), (user_recipes_dir(), "user")]
    for folder, origin in sources:
        if folder.is_dir():
            for path in sorted(folder.glob("*.y*ml")):
                found[path.stem] = RecipeFile(path.stem, path, origin)
    for path in extra or []:
        found[path.stem] = RecipeFile(path.stem, path, "path")
    return found


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Best line number (1-based) for a pydantic error location in a composed YAML tree."""
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    line = k.start_mark.line + 1
                    node = v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: several times faster


def _read_yaml(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed mapping and the raw text (kept so errors can find line numbers later)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: cannot read recipe: not UTF-8 text (byte {exc.start})") from None
    data = parse_text(text, path)
    _resolve_local_source(data, path.parent)
    _resolve_reward_files(data, path.parent)
    return data, text


def parse_text(text: str, path: Path | str) -> dict[str, Any]:
    """A recipe's YAML text as a mapping (not validated); ``path`` only names it in the error."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        raise RecipeError(f"{path}: the file is empty")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections, not {type(data).__name__}")
    return data


def _compose(text: str | None) -> yaml.Node | None:
    """The YAML node tree, only built when an error needs line numbers."""
    if text is None:
        return None
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return None


def _resolve_local_source(data: dict[str, Any], base: Path) -> None:
    """Make a relative local data path absolute, relative to the recipe that names it."""
    section = data.get("data")
    if not isinstance(section, dict) or not isinstance(section.get("source"), str):
        return
    source = section["source"]
    candidate = Path(source).expanduser()
    if not candidate.is_absolute() and (
        source.endswith(LOCAL_DATA_SUFFIXES) or source.startswith(".") or (base / candidate).is_dir()
    ):  # a folder of shards beside the recipe
        resolved = base / candidate
        if resolved.exists() or not candidate.exists():
            section["source"] = str(resolved)
        else:
            section["source"] = str(candidate.resolve())


def _resolve_reward_files(data: dict[str, Any], base: Path) -> None:
    """Make ``grpo.rewards[].python: FILE.py:fn`` absolute, relative to the recipe that names it."""
    grpo = data.get("grpo")
    pending = list(grpo.get("rewards") or []) if isinstance(grpo, dict) else []
    while pending:
        spec = pending.pop()
        if not isinstance(spec, dict):
            continue
        pending += [s for s in spec.get("all") or [] if isinstance(s, dict)]
        target = spec.get("python")
        if isinstance(target, str) and ":" in target:
            file, _, func = target.rpartition(":")
            if not Path(file).expanduser().is_absolute():
                spec["python"] = f"{base / Path(file).expanduser()}:{func}"


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_value(raw: str) -> Any:
    """One value as typed on a command line or in a form, read as YAML (``50`` is a number, ``a`` a string)."""
    try:
        return yaml.load(raw, Loader=_Loader) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.max_steps=50`` -> (["train", "max_steps"], 50); the value is read as YAML."""
    if "=" not in text:
        raise RecipeError(f"override {text!r}: expected dotted.key=value, e.g. train.max_steps=50")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise RecipeError(f"override {text!r}: empty key")
    return parts, read_value(raw)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        cursor = data
        for part in parts[:-1]:
            nxt = cursor.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise RecipeError(f"override {text!r}: {part} is not a section")
            cursor = nxt
        cursor[parts[-1]] = value
    return data


def _raw_with_bases(
    path: Path, files: dict[str, RecipeFile], seen: tuple[str, ...] = ()
) -> tuple[dict[str, Any], str]:
    data, text = _read_yaml(path)
    base_name = data.get("extends")
    if base_name is None:
        return data, text
    if not isinstance(base_name, str):
        raise RecipeError(f"{path}: extends: expected a recipe name, got {base_name!r}")
    if base_name in seen:
        chain = " -> ".join((*seen, base_name))
        raise RecipeError(f"{path}: extends: circular chain {chain}")
    base_file = files.get(base_name)
    if base_file is None:
        line = _line_of(_compose(text), ("extends",))
        known = ", ".join(sorted(files)) or "none"
        raise RecipeError(
            f"{path}: extends{f' (line {line})' if line else ''}: unknown base recipe {base_name!r} (known: {known})"
        )
    base_data, _ = _raw_with_bases(base_file.path, files, (*seen, data.get("name", path.stem)))
    base_data.pop("name", None)
    base_data.pop("description", None)
    return _deep_merge(base_data, data), text


def error_location(err: Any) -> tuple[tuple[str | int, ...], str]:
    """One pydantic error of a recipe as (field path, message in plain words).

    A recipe-wide check (a model validator, reported at the top level) names the field it is about at the
    start of its message, ``grpo.num_generations: ...``; that becomes its path.
    """
    loc, msg = tuple(err["loc"]), str(err["msg"])
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
        msg = str(err["ctx"]["error"])  # the validator's own words, without pydantic's "Value error, "
    named = msg.split(": ", 1)[0]
    if not loc and ": " in msg and named.replace(".", "").replace("_", "").isalnum():
        loc, msg = tuple(named.split(".")), msg.split(": ", 1)[1]
    return loc, msg


def _format_validation(
    path: Path | str, exc: ValidationError, node: yaml.Node | None, overrides: list[str] | None = None
) -> str:
    # An error on a field that an override set is the override's fault, not a line of the file.
    by_key = {tuple(parse_override(text)[0]): text for text in overrides or []}
    lines = []
    for err in exc.errors():
        loc, msg = error_location(err)
        field = ".".join(str(p) for p in loc) or "(top level)"
        override, key = _override_at(loc, by_key)
        line = _line_of(node, loc) if node is not None and override is None else None
        if override is not None:
            if err["type"] == "extra_forbidden" and len(loc) < len(key):
                # no.such.key=1 is refused at "no": name the whole key the user typed, and where it went wrong
                msg = f"unknown key {'.'.join(key)} ({field!r} is not a recipe field)"
            lines.append(f"override {override!r}: {msg}")
            continue
        where = f" (line {line})" if line else ""
        lines.append(f"{path}: {field}{where}: {msg}")
    return "\n".join(lines)


def _override_at(
    loc: tuple[str | int, ...], by_key: dict[tuple[str, ...], str]
) -> tuple[str | None, tuple[str, ...]]:
    """The override (and its key) that an error at ``loc`` is about: one that set that field or a field inside
    it, or one whose key goes through ``loc`` (``no.such.key=1`` makes an unknown key ``no``)."""
    for key, text in by_key.items():
        if loc[: len(key)] == key or (loc and key[: len(loc)] == loc):
            return text, key
    return None, ()


def validate_data(
    data: dict[str, Any], path: Path | str, text: str | None = None, overrides: list[str] | None = None
) -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(_format_validation(path, exc, _compose(text), overrides)) from None


def load_file(
    path: Path, overrides: list[str] | None = None, files: dict[str, RecipeFile] | None = None
) -> Recipe:
    """Load one recipe file, resolving ``extends`` against the known recipes."""
    path = Path(path)
    files = files if files is not None else discover()
    data, text = _raw_with_bases(path, files)
    data.setdefault("name", path.stem)
    if overrides:
        data = apply_overrides(data, overrides)
    recipe = validate_data(data, path, text, overrides)
    _check_reward_files(recipe, path, text, overrides)
    return recipe


def _check_reward_files(recipe: Recipe, path: Path, text: str, overrides: list[str] | None) -> None:
    """Every ``grpo.rewards[].python`` file exists: said when the recipe loads, not once a run has started.
    (Whether its function imports is ``studio validate``'s check: that runs the file's code.)"""
    if recipe.grpo is None:
        return
    pending: list[tuple[tuple[str | int, ...], RewardSpec]] = [
        (("grpo", "rewards", i), spec) for i, spec in enumerate(recipe.grpo.rewards)
    ]
    while pending:
        loc, spec = pending.pop(0)
        pending += [((*loc, "all", i), s) for i, s in enumerate(spec.all or [])]
        if spec.python is None:
            continue
        file = Path(spec.python.rpartition(":")[0]).expanduser()
        if file.is_file():
            continue
        problem = f"{file}: no such file"
        by_key = {tuple(parse_override(o)[0]): o for o in overrides or []}
        override, _ = _override_at((*loc, "python"), by_key)
        if override is not None:
            raise RecipeError(f"override {override!r}: {problem}")
        line = _line_of(_compose(text), (*loc, "python"))
        field = ".".join(map(str, (*loc, "python")))
        raise RecipeError(f"{path}: {field}{f' (line {line})' if line else ''}: {problem}")


def load(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """A recipe by name (built-in or user) or by file path."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.exists():
            raise RecipeError(f"{candidate}: no such recipe file")
        return load_file(candidate, overrides, discover([candidate]))
    files = discover()
    entry = files.get(name_or_path)
    if entry is None:
        known = ", ".join(sorted(files))
        raise RecipeError(f"unknown recipe {name_or_path!r} (known: {known})")
    return load_file(entry.path, overrides, files)


@dataclass(frozen=True)
class RecipeEntry:
    """A discovered recipe with either its validated model or the error that stops it."""

    file: RecipeFile
    recipe: Recipe | None
    error: str | None


def user_recipes_state() -> tuple[tuple[str, int, int], ...]:
    """Name, mtime and size of each user recipe file: it changes when one is added, edited or removed, so a
    running TUI re-reads the recipes only then (a few stats, cheap enough to ask every second)."""
    folder = user_recipes_dir()
    state = []
    try:
        for path in sorted(folder.glob("*.y*ml")):
            try:
                st = path.stat()
            except OSError:  # removed between the listing and the stat: the next look sees it gone
                continue
            state.append((path.name, st.st_mtime_ns, st.st_size))
    except OSError:
        return ()
    return tuple(state)


def load_all(extra: list[Path] | None = None) -> list[RecipeEntry]:
    files = discover(extra)
    entries = []
    for f in files.values():
        try:
            entries.append(RecipeEntry(f, load_file(f.path, None, files), None))
        except RecipeError as exc:
            entries.append(RecipeEntry(f, None, str(exc)))
    return sorted(
        entries,
        key=lambda e: (e.file.name not in DEFAULT_ORDER, DEFAULT_ORDER.get(e.file.name, 0), e.file.name),
    )


DEFAULT_ORDER = {"smollm2-pirate": 0, "tiny-pirate": 1}
"""Listed first: the real offline demo is the highlighted default (it needs no GPU and no hub),
then the fast toy one."""


def dump(recipe: Recipe) -> str:
    return dump_data(recipe.model_dump(mode="json"))


def dump_data(data: dict[str, Any]) -> str:
    """A recipe's mapping (valid or not) as YAML, in the recipe's own field order."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# -- snapshots: a recipe frozen into a run (or an export), loaded without the recipe registry --------
def dump_snapshot(recipe: Recipe) -> str:
    """The fully resolved recipe with no ``extends``: it loads on its own, whatever happens to the base later."""
    data = recipe.model_dump(mode="json")
    data.pop("extends", None)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def load_snapshot(path: Path) -> Recipe:
    """A snapshot written by :func:`dump_snapshot`, validated as it is (no base recipes are read).

    Snapshots written before they were self-contained still name their base in ``extends``; those are
    resolved against today's recipes as they always were.
    """
    path = Path(path)
    data, text = _read_yaml(path)
    if data.get("extends") is not None:
        return load_file(path)
    data.setdefault("name", path.stem)
    return validate_data(data, path, text)


def save_user_recipe(
    base: str, changes: dict[str, Any], full: dict[str, Any] | None = None, folder: Path | None = None
) -> Path:
    """Write a user recipe ``BASE-custom[-N].yaml`` that ``extends: BASE`` with only ``changes``.

    When ``base`` is not a known recipe name (a recipe loaded from a path), ``full`` is written whole
    instead, so the file always validates on its own.
    """
    folder = folder or user_recipes_dir()
    stem = f"{base}-custom"
    n = 1
    while (folder / f"{stem}.yaml").exists() or stem in discover():
        n += 1
        stem = f"{base}-custom-{n}"
    edited = ", ".join(_dotted(changes)) or "nothing"
    if base in discover():
        body: dict[str, Any] = {
            "name": stem,
            "description": f"{base} with {edited} changed",
            "extends": base,
            **{k: v for k, v in changes.items() if k not in ("name", "description", "extends")},
        }
    elif full is not None:
        body = {**full, "name": stem, "description": f"{base} with {edited} changed", "extends": None}
        body.pop("extends")
    else:
        raise RecipeError(f"cannot save: {base!r} is not a known recipe to extend")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}.yaml"
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(body, sort_keys=False, allow_unicode=True), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise RecipeError(f"{folder}: cannot save the recipe: {exc.strerror or exc}") from None
    return path


def _dotted(changes: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in changes.items():
        out += _dotted(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return out
