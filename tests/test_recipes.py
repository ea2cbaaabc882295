"""Recipes: every shipped one validates; every kind of bad recipe gets one clear message."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import get_args

import pytest

from lorastudio import registry
from lorastudio.data.datasource import is_local
from lorastudio.errors import RecipeError
from lorastudio.paths import package_recipes_dir
from lorastudio.recipe import Recipe

SHIPPED = sorted(package_recipes_dir().glob("*.yaml"))
EXPECTED = {
    "smollm2-pirate",
    "tiny-pirate",
    "llama3.2-1b-pirate",
    "llama2-medical",
    "falcon7b-guanaco",
    "qwen-csv-concepts",
    "smollm2-pirate-dpo",
    "smollm2-pirate-dora",
    "smollm2-pirate-reward",
    "tiny-pirate-grpo",
    "tiny-pirate-reward",
    "tiny-pirate-grpo-rm",
    "qwen1.5-0.5b-qlora",
    "qwen3-0.6b-tools",
    "tiny-vision",
    "smolvlm-256m-shapes",
    "smollm2-pirate-full",
    "tiny-pretrain",
}


def test_all_builtins_are_shipped() -> None:
    assert {p.stem for p in SHIPPED} == EXPECTED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_recipe_validates(path: Path) -> None:
    recipe = registry.load_file(path)
    assert recipe.name == path.stem
    if is_local(recipe.data.source):
        assert Path(recipe.data.source).exists(), "local data files ship with the recipe"


def test_notebook_settings_are_kept() -> None:
    pirate = registry.load("llama3.2-1b-pirate")
    assert pirate.model.name == "unsloth/Llama-3.2-1B-Instruct-bnb-4bit"
    assert (pirate.lora.r, pirate.train.batch_size, pirate.train.gradient_accumulation) == (16, 2, 4)
    assert (pirate.train.learning_rate, pirate.train.optimizer, pirate.train.seed) == (
        2e-4,
        "adamw_8bit",
        3407,
    )
    assert pirate.train.train_on == "responses" and pirate.model.chat_template == "llama-3.1"
    assert len(pirate.lora.target_modules) == 7
    medical = registry.load("llama2-medical")
    assert (medical.lora.r, medical.lora.alpha, medical.lora.dropout) == (64, 16, 0.1)
    assert (medical.train.batch_size, medical.train.max_steps) == (4, 100)
    falcon = registry.load("falcon7b-guanaco")
    assert falcon.train.packing and falcon.model.max_seq_length == 512 and falcon.model.add_pad_token
    qwen = registry.load("qwen1.5-0.5b-qlora")
    assert (
        qwen.model.quant_type == "nf4" and qwen.model.double_quant and qwen.model.compute_dtype == "bfloat16"
    )
    csv_recipe = registry.load("qwen-csv-concepts")
    assert csv_recipe.lora.r == 64 and csv_recipe.data.source.endswith("concepts.csv")


def test_recipe_models_are_frozen_and_documented() -> None:
    recipe = registry.load("tiny-pirate")
    from pydantic import BaseModel, ValidationError

    with pytest.raises(ValidationError):
        recipe.train.max_steps = 3  # type: ignore[misc]
    sections: list[type[BaseModel]] = [
        Recipe,
        *[
            f.annotation
            for f in Recipe.model_fields.values()
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
        ],
    ]
    for section in sections:
        for name, info in section.model_fields.items():
            assert info.description, f"{section.__name__}.{name} has no docstring"


def _write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """\
name: mine
model:
  name: tiny
data:
  source: data.jsonl
"""


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\nmodel: [unclosed\n")
    with pytest.raises(RecipeError) as err:
        registry.load_file(path)
    assert str(path) in str(err.value) and "invalid YAML" in str(err.value) and "line" in str(err.value)


def test_unknown_key_names_field_path_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "train:\n  max_step: 5\n")
    with pytest.raises(RecipeError) as err:
        registry.load_file(path)
    assert f"{path}: train.max_step (line 7): unknown key" in str(err.value)


def test_wrong_type_names_field(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "lora:\n  r: many\n")
    with pytest.raises(RecipeError) as err:
        registry.load_file(path)
    assert "lora.r (line 7)" in str(err.value) and "integer" in str(err.value)


def test_missing_required_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\nmodel:\n  name: tiny\n")
    with pytest.raises(RecipeError) as err:
        registry.load_file(path)
    assert f"{path}: data: required field is missing" in str(err.value)


def test_unknown_base_recipe(tmp_path: Path) -> None:
    path = _write(tmp_path, "extends: no-such-recipe\nname: x\n")
    with pytest.raises(RecipeError) as err:
        registry.load_file(path)
    assert "extends (line 1): unknown base recipe 'no-such-recipe'" in str(err.value)


def test_extends_and_overrides_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "config" / "studio" / "recipes"
    user.mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (user / "faster-pirate.yaml").write_text(
        "extends: tiny-pirate\nname: faster-pirate\ntrain:\n  max_steps: 7\n"
    )
    recipe = registry.load("faster-pirate", ["train.learning_rate=0.01", "lora.r=4"])
    base = registry.load("tiny-pirate")
    assert recipe.train.max_steps == 7 and recipe.train.learning_rate == 0.01 and recipe.lora.r == 4
    assert recipe.train.batch_size == base.train.batch_size and recipe.data.source == base.data.source
    assert "faster-pirate" in registry.discover()


def test_override_with_unknown_field_is_refused() -> None:
    with pytest.raises(RecipeError) as err:
        registry.load("tiny-pirate", ["train.max_stepz=3"])
    assert "train.max_stepz" in str(err.value) and "unknown key" in str(err.value)


def test_cli_validate_reports_without_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = _write(tmp_path, GOOD + "lora:\n  r: many\n")
    out = subprocess.run(
        [sys.executable, "-m", "lorastudio.cli", "validate", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 1
    assert "lora.r (line 7)" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.nonsense=3", "override 'train.nonsense=3': unknown key"),
        ("train.batch_size=abc", "override 'train.batch_size=abc': Input should be a valid integer"),
        # an unknown key deeper than one level is refused at its first unknown part: the whole key is named
        ("no.such.key=1", "override 'no.such.key=1': unknown key no.such.key ('no' is not a recipe field)"),
        (
            "train.nosuch.x=1",
            "override 'train.nosuch.x=1': unknown key train.nosuch.x ('train.nosuch' is not a recipe field)",
        ),
    ],
)
def test_bad_override_is_named_as_the_override(override: str, message: str) -> None:
    """A bad override is the user's typing, not a line of the built-in file."""
    with pytest.raises(RecipeError) as err:
        registry.load("tiny-pirate", [override])
    assert str(err.value).startswith(message) and "tiny-pirate.yaml" not in str(err.value)


def test_grpo_group_must_divide_the_replies_sampled_per_step(tmp_path: Path) -> None:
    """TRL refuses it only once the model has loaded; the recipe says so first, naming the field, its line and
    the values that would do, and counts gradient accumulation, devices and nodes."""
    path = _write(tmp_path, "extends: tiny-pirate-grpo\nname: g\ngrpo:\n  num_generations: 3\n")
    with pytest.raises(RecipeError) as err:
        registry.load_file(path)
    assert str(err.value).startswith(
        f"{path}: grpo.num_generations (line 4): 3 replies per prompt must divide"
    )
    assert "= 8 x 1 x 1 x 1 = 8 (num_generations 2, 4, 8 would)" in str(err.value)
    assert "Value error" not in str(err.value)
    assert registry.load("tiny-pirate-grpo", ["grpo.num_generations=16", "train.gradient_accumulation=2"])
    assert registry.load(
        "tiny-pirate-grpo", ["grpo.num_generations=6", "train.batch_size=3", "train.devices=2"]
    )
    assert registry.load("tiny-pirate-grpo", ["grpo.num_generations=5", "train.devices=all"])  # counted there
    with pytest.raises(RecipeError, match=r"^override 'grpo.num_generations=16': 16 replies"):
        registry.load("tiny-pirate-grpo", ["grpo.num_generations=16"])


def test_a_recipe_wide_check_names_its_field_and_the_override_that_set_it() -> None:
    with pytest.raises(RecipeError) as err:
        registry.load("tiny-pirate", ["train.method=grpo"])
    assert str(err.value) == "override 'train.method=grpo': grpo needs a grpo: section with rewards"


def test_studio_recipes_lists_whole_names_at_80_columns(tmp_path: Path) -> None:
    """The names are what the other commands take, so they are never cut; each says where it comes from, the list
    ends with the folder of the user's own, and a data file beside its recipe reads as the recipe names it."""
    import os
    import subprocess

    from conftest import STUDIO_BIN

    mine = tmp_path / "config" / "studio" / "recipes" / "my-pirate.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("extends: tiny-pirate\nname: my-pirate\n")
    env = {**os.environ, "COLUMNS": "80", "XDG_CONFIG_HOME": str(tmp_path / "config")}
    out = subprocess.run([STUDIO_BIN, "recipes"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines[:-1])
    row = {line.split()[0]: line for line in lines[1:-1]}
    assert sorted(row) == sorted(EXPECTED | {"my-pirate"})
    tiny = row["tiny-pirate"].split()
    assert tiny[1] == "tiny" and tiny[2].startswith("data/tiny_pir") and tiny[3:] == ["LoRA", "built-in"]
    assert row["my-pirate"].split()[-1] == "user"
    assert lines[-1] == f"own recipes: {mine.parent}/*.yaml (paths: studio recipes --json)"


def _has_float(annotation: object) -> bool:
    return annotation is float or any(_has_float(a) for a in get_args(annotation))


def _float_fields() -> list[tuple[str, str, list[str]]]:
    """(dotted field, recipe, overrides it needs) for every float field of every recipe section, found by
    walking the schema: a float field added later is covered without being listed here."""
    from lorastudio.recipe import RewardSpec

    found = []
    for section, info in Recipe.model_fields.items():
        cls = next(
            (a for a in (info.annotation, *get_args(info.annotation)) if hasattr(a, "model_fields")), None
        )
        if cls is None:
            continue
        base, needs = "tiny-pirate", []
        if section in ("dpo", "kto", "orpo", "reward"):
            needs = [f"train.method={section}"]
        elif section == "grpo":
            base = "tiny-pirate-grpo"
        for name, field in cls.model_fields.items():
            if _has_float(field.annotation):
                found.append((f"{section}.{name}", base, needs))
    for name, field in RewardSpec.model_fields.items():
        if _has_float(field.annotation):
            found.append((f"grpo.rewards[].{name}", "tiny-pirate-grpo", []))
    return found


FLOAT_FIELDS = _float_fields()


def test_the_float_fields_are_found() -> None:
    names = {name for name, _, _ in FLOAT_FIELDS}
    assert {
        "train.learning_rate",
        "chat.temperature",
        "grpo.reward_timeout",
        "grpo.rewards[].weight",
    } <= names
    assert len(names) >= 20


@pytest.mark.parametrize(("field", "base", "needs"), FLOAT_FIELDS, ids=[f for f, _, _ in FLOAT_FIELDS])
def test_every_float_field_refuses_nan_and_infinity(field: str, base: str, needs: list[str]) -> None:
    """One rule for every float of the recipe (bounds such as gt=0 let .inf through, and NaN past ge=0's
    message): refused when the recipe loads, naming the override, never trained or scored."""
    for value in (".nan", ".inf", "-.inf"):
        if field.startswith("grpo.rewards[]."):
            override = f"grpo.rewards=[{{regex: a, {field.rsplit('.', 1)[1]}: {value}}}]"
        else:
            override = f"{field}={value}"
        with pytest.raises(RecipeError) as err:
            registry.load(base, [*needs, override])
        assert str(err.value) == f"override {override!r}: Input should be a finite number"


def test_an_invalid_regex_is_refused_naming_field_line_and_regex(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "extends: tiny-pirate-grpo\nname: g\ngrpo:\n  rewards:\n    - keywords: [arr]\n    - regex: 'arr[a-'\n",
    )
    with pytest.raises(RecipeError) as err:
        registry.load_file(path)
    assert str(err.value) == (
        f"{path}: grpo.rewards.1 (line 6): regex 'arr[a-' is not a valid regular expression: "
        "unterminated character set at position 3"
    )


def test_a_missing_reward_file_is_refused_when_the_recipe_loads(tmp_path: Path) -> None:
    text = "extends: tiny-pirate-grpo\nname: g\ngrpo:\n  rewards:\n    - python: scores.py:score\n"
    path = _write(tmp_path, text)
    with pytest.raises(RecipeError) as err:
        registry.load_file(path)
    assert str(err.value) == f"{path}: grpo.rewards.0.python (line 5): {tmp_path / 'scores.py'}: no such file"
    (tmp_path / "scores.py").write_text(
        "def score(prompts, completions, **kw):\n    return [1.0] * len(completions)\n"
    )
    assert registry.load_file(path).grpo is not None
    override = f"grpo.rewards=[{{python: {tmp_path / 'gone.py'}:score}}]"
    with pytest.raises(RecipeError, match=r"^override .*gone\.py:score.*: .*gone\.py: no such file$"):
        registry.load_file(path, [override])


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("import sys\nsys.exit(2)\n", "importing the file raised SystemExit: 2"),
        (
            "def other(prompts, completions, **kw):\n    return []\n",
            "the file has no function 'score' (it has other)",
        ),
        ("def score(:\n", "syntax error at line 1: invalid syntax"),
    ],
    ids=["exit-at-import", "no-function", "syntax"],
)
def test_cli_validate_imports_reward_files(tmp_path: Path, source: str, message: str) -> None:
    """`studio validate` runs what a run would run first: each reward file imported, its function found."""
    import subprocess
    import sys

    (tmp_path / "scores.py").write_text(source)
    path = _write(
        tmp_path, "extends: tiny-pirate-grpo\nname: g\ngrpo:\n  rewards:\n    - python: scores.py:score\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "lorastudio.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 1, out.stdout
    assert out.stderr.strip() == f"{path}: grpo.rewards.0.python: {tmp_path / 'scores.py'}:score: {message}"
    (tmp_path / "scores.py").write_text(
        "def score(prompts, completions, **kw):\n    return [1.0] * len(completions)\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "lorastudio.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == f"{path}: ok", out.stderr


def test_a_bad_train_section_does_not_blame_the_method_section() -> None:
    """train.learning_rate=.inf used to add "this section is for train.method: grpo, but train.method is sft"."""
    with pytest.raises(RecipeError) as err:
        registry.load("tiny-pirate-grpo", ["train.learning_rate=.inf"])
    assert str(err.value) == "override 'train.learning_rate=.inf': Input should be a finite number"


@pytest.mark.parametrize(("typed", "read"), [("on", "on"), ("off", "off"), ("auto", "auto"), ("true", "on")])
def test_gradient_checkpointing_on_and_off_are_words_not_yaml_booleans(typed: str, read: str) -> None:
    """YAML 1.1 reads a bare on/off as a boolean: the override (and a recipe file) still means the word."""
    recipe = registry.load("tiny-pirate", [f"train.gradient_checkpointing={typed}"])
    assert recipe.train.gradient_checkpointing == read
