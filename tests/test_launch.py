"""The Launch sheet: form edits validated at once, the memory estimate, Enter/Escape, Ctrl+S and $EDITOR."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import screen_of, wait_until
from conftest import send_burst as burst
from test_tui import screen_text

from lorastudio import registry
from lorastudio.app import StudioApp
from lorastudio.models.estimate import estimate_memory
from lorastudio.screens.launch_fields import BY_PATH, diff, parse_value, validate

if TYPE_CHECKING:
    from lorastudio.recipe import Recipe
    from lorastudio.screens.launch import LaunchScreen

SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Recipe]:
    calls: list[Recipe] = []
    from textual.screen import Screen

    import lorastudio.screens.monitor as monitor

    def start_training(app, recipe) -> None:
        calls.append(recipe)
        app.push_screen(Screen())  # stands in for the Monitor, as the real one pushes it

    monkeypatch.setattr(monitor, "start_training", start_training)
    return calls


@pytest.fixture(autouse=True)
def fixed_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No GPU and 20 of 24 GB RAM free, so the estimate line is the same everywhere; a private config dir."""
    import lorastudio.train.launch.memoryfit as memory

    monkeypatch.setattr(memory, "free_gpu", lambda: None)
    monkeypatch.setattr(memory, "free_host", lambda: memory.FreeMemory("CPU", 20 * 1024.0, 24 * 1024.0))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    # the tiny model's architecture whether or not this session has built it (its vocabulary size varies)
    import lorastudio.models.estimate as estimate
    from lorastudio.models.tiny import CONFIG

    monkeypatch.setattr(
        estimate, "find_model_config", lambda recipe: {**CONFIG, "vocab_size": 640, "hidden_act": "silu"}
    )


# -- engine-side pieces ---------------------------------------------------------------------------
def test_fields_parse_and_validate() -> None:
    data = registry.load("tiny-pirate").model_dump(mode="json")
    data["train"]["batch_size"] = parse_value(BY_PATH["train.batch_size"], "0")
    data["lora"]["target_modules"] = parse_value(BY_PATH["lora.target_modules"], "q_proj, v_proj")
    data["train"]["max_steps"] = parse_value(BY_PATH["train.max_steps"], "")
    recipe, errors = validate(data)
    assert recipe is None and set(errors) == {"train.batch_size"}
    assert "greater than or equal to 1" in errors["train.batch_size"]
    data["train"]["batch_size"] = 4
    recipe, errors = validate(data)
    assert recipe is not None
    assert (
        errors == {} and recipe.lora.target_modules == ["q_proj", "v_proj"] and recipe.train.max_steps is None
    )
    original = registry.load("tiny-pirate").model_dump(mode="json")
    assert diff(original, recipe.model_dump(mode="json")) == {
        "lora": {"target_modules": ["q_proj", "v_proj"]},
        "train": {"batch_size": 4, "max_steps": None},
    }


def test_memory_estimate_follows_the_architecture() -> None:
    recipe = registry.load("tiny-pirate")
    est = estimate_memory(recipe, gpu=True, gradient_checkpointing=False)
    assert est is not None and est.source == "config.json"
    from lorastudio.models.estimate import find_model_config

    config = find_model_config(recipe)
    assert config is not None
    vocab = config["vocab_size"]  # 640 before the tiny model is built, its tokenizer's after
    # tied embeddings + 4 blocks (q,o 128x128; k,v 128x64; gate,up,down 128x384; 2 norms) + final norm
    assert est.params == vocab * 128 + 4 * (2 * 128 * 128 + 2 * 128 * 64 + 3 * 128 * 384 + 2 * 128) + 128
    # LoRA r=16 on the 7 projections: q,o (128x128), k,v (128x64), gate,up (128x384), down (384x128)
    assert est.lora_params == 4 * 16 * (2 * 256 + 2 * 192 + 3 * 512)
    assert est.optimizer == est.lora_params * 8
    four_bit = estimate_memory(
        recipe.model_copy(update={"model": recipe.model.model_copy(update={"load_in_4bit": True})}),
        gpu=True,
        gradient_checkpointing=False,
    )
    assert four_bit is not None and four_bit.weights < est.weights / 2.5
    checkpointed = estimate_memory(recipe, gpu=True, gradient_checkpointing=True)
    assert checkpointed is not None and checkpointed.activations < est.activations
    bigger = recipe.model_copy(update={"train": recipe.train.model_copy(update={"batch_size": 16})})
    bigger_est = estimate_memory(bigger, gpu=True, gradient_checkpointing=False)
    assert bigger_est is not None and bigger_est.activations == pytest.approx(2 * est.activations)
    cpu = estimate_memory(recipe, gpu=False)
    assert cpu is not None and cpu.weights == 2 * est.weights  # fp32 on CPU


def test_memory_line_warns_when_it_will_not_fit() -> None:
    from lorastudio.screens.launch_memory import describe

    recipe = registry.load("tiny-pirate")
    text, fits = describe(recipe, gpu=(100.0, 8000.0, "GPU 0 Tiny"))
    assert fits is False and "will not fit" in text.plain and "free on GPU 0 Tiny" in text.plain
    assert any("red" in str(span.style) for span in text.spans)
    text, fits = describe(recipe, gpu=(80_000.0, 81_000.0, "GPU 0 H100"))
    assert fits is True and "est. VRAM" in text.plain and "will not fit" not in text.plain


# -- the screen -----------------------------------------------------------------------------------
async def open_launch(pilot, name: str = "tiny-pirate") -> LaunchScreen:
    from lorastudio.screens.launch import LaunchScreen

    app = pilot.app
    await wait_until(pilot, lambda: app.screen.entries)
    for _ in range(len(app.screen.entries)):  # smollm2-pirate is the default; these tests use the tiny model
        if app.screen.current.file.name == name:
            break
        await pilot.press("down")
    await pilot.press("t")
    await wait_until(
        pilot,
        lambda: (
            isinstance(app.screen, LaunchScreen)
            and app.screen.estimate_text is not None
            and app.screen.epochs_counted
        ),
    )
    return screen_of(app, LaunchScreen)


async def test_t_opens_launch_escape_starts_nothing(started: list[Recipe]) -> None:
    from lorastudio.screens.recipes import RecipesScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_launch(pilot)
        text = screen_text(app)
        assert "Launch · tiny-pirate" in text
        assert "est. host RAM (CPU training)" in text and "20.0 of 24.0 GB RAM available" in text
        await pilot.press("escape")
        assert isinstance(app.screen, RecipesScreen) and started == []


async def test_edits_are_validated_and_enter_starts_exactly_one_run(started: list[Recipe]) -> None:
    from textual.widgets import Input, Label

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot)
        batch = screen.query_one("#f-train-batch-size", Input)
        screen.set_focus(batch)
        batch.value = ""
        burst(app, "0")
        await wait_until(
            pilot,
            lambda: (
                "greater than or equal to 1" in str(screen.query_one("#e-train-batch-size", Label).content)
            ),
        )
        await pilot.press("enter")
        assert started == [] and app.screen is screen  # invalid: not launched
        steps = screen.query_one("#f-train-max-steps", Input)
        batch.value = "4"
        screen.set_focus(steps)
        steps.value = ""
        burst(app, *"12", "enter", "enter")  # typed and launched in one burst; the second Enter does nothing
        await wait_until(pilot, lambda: started)
        await pilot.pause(0.3)
        assert len(started) == 1
        assert started[0].train.max_steps == 12 and started[0].train.batch_size == 4


async def test_the_4bit_switch_says_on_or_off_in_words(started: list[Recipe]) -> None:
    """The switch alone is colours (gone under NO_COLOR or in a text capture); the word beside it follows it."""
    from textual.widgets import Label

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_launch(pilot)
        word = screen.query_one("#v-model-load-in-4bit", Label)
        assert str(word.content) == "off" and "4-bit (QLoRA)" in screen_text(app)
        screen.set_focus(screen.query_one("#f-model-load-in-4bit"))
        await pilot.press("space")
        await wait_until(pilot, lambda: str(word.content) == "on")
        assert screen.data["model"]["load_in_4bit"] is True and started == []


async def test_ctrl_s_saves_a_recipe_that_extends_the_original(started: list[Recipe], tmp_path: Path) -> None:
    import yaml
    from textual.widgets import Input

    from lorastudio.cli import main

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot)
        screen.query_one("#f-lora-r", Input).value = "8"
        screen.query_one("#f-train-save-total-limit", Input).value = "2"
        await pilot.pause(0.2)
        await pilot.press("ctrl+s")
        assert screen.saved is not None
        edited = screen.current
    saved = screen.saved
    assert (
        saved.parent == tmp_path / "config" / "studio" / "recipes" and saved.name == "tiny-pirate-custom.yaml"
    )
    body = yaml.safe_load(saved.read_text())
    assert body["extends"] == "tiny-pirate"
    assert {k: v for k, v in body.items() if k not in ("name", "description", "extends")} == {
        "lora": {"r": 8},
        "train": {"save_total_limit": 2},
    }
    assert main(["validate", str(saved)]) == 0
    loaded = registry.load("tiny-pirate-custom")

    def strip(recipe):
        return {
            k: v
            for k, v in recipe.model_dump(mode="json").items()
            if k not in ("name", "description", "extends")
        }

    assert strip(loaded) == strip(edited) and started == []


async def test_e_edits_yaml_and_revalidates(
    started: list[Recipe], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from textual.widgets import Input, Label

    def editor(name: str, old: str, new: str) -> Path:
        """An $EDITOR that replaces one line of the file it is given."""
        script = tmp_path / name
        script.write_text(
            f"import sys, pathlib\np = pathlib.Path(sys.argv[1])\n"
            f"p.write_text(p.read_text().replace({old!r}, {new!r}))\n"
        )
        return script

    good = editor("good.py", "max_steps: 80", "max_steps: 7")
    bad = editor("bad.py", "max_steps: 7", "max_steps: -1")
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot)
        monkeypatch.setenv("VISUAL", f"{sys.executable} {good}")
        await pilot.press("e")
        await pilot.pause(0.2)
        assert screen.current is not None and screen.current.train.max_steps == 7
        assert screen.query_one("#f-train-max-steps", Input).value == "7"
        monkeypatch.setenv("VISUAL", f"{sys.executable} {bad}")
        await pilot.press("e")
        await pilot.pause(0.2)
        status = str(screen.query_one("#launch-status", Label).content)
        assert "not valid" in status and "train.max_steps" in status and "line" in status
        assert screen.current is not None and screen._draft_text is not None
        assert screen.current.train.max_steps == 7  # the form keeps the last valid recipe
        assert "max_steps: -1" in screen._draft_text  # and the edit is kept for the next `e`
        assert started == []


async def test_start_from_names_a_run_and_the_launch_records_its_adapter_folder(
    started: list[Recipe], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SFT -> DPO/GRPO pipeline from the TUI: "start from" takes what --from takes; a name that finds no
    run is refused under the field, and a good one is launched as the adapter folder it names now."""
    import json

    from textual.widgets import Input, Label

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    sft = tmp_path / "data" / "studio" / "runs" / "tiny-pirate-20260101-000000"
    (sft / "adapter").mkdir(parents=True)
    (sft / "run.json").write_text(json.dumps({"format": 1, "name": sft.name, "recipe": "tiny-pirate"}))
    (sft / "adapter" / "adapter_config.json").write_text("{}")
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_launch(pilot)
        start = screen.query_one("#f-model-adapter", Input)
        assert start.value == "" and "start from" in screen_text(app)
        screen.set_focus(start)
        burst(app, *"no-such-run", "enter")
        error = screen.query_one("#e-model-adapter", Label)
        await wait_until(pilot, lambda: "no such run: 'no-such-run'" in str(error.content))
        assert started == [] and app.screen is screen
        start.value = ""
        burst(app, *"tiny-pirate", "enter")
        await wait_until(pilot, lambda: started)
        assert started[0].model.adapter == str((sft / "adapter").resolve())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_launch(snap_compare, size) -> None:
    async def run_before(pilot) -> None:
        await open_launch(pilot)
        await pilot.pause(0.3)

    assert snap_compare(StudioApp(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_launch_grpo(snap_compare, size) -> None:
    """The grpo section's fields below the common ones (scrolled to them)."""

    async def run_before(pilot) -> None:
        screen = await open_launch(pilot, "tiny-pirate-grpo")
        screen.query_one("#launch-form").scroll_end(animate=False)
        await pilot.pause(0.3)

    assert snap_compare(StudioApp(), terminal_size=size, run_before=run_before)


async def test_ctrl_o_picks_a_local_data_file(started: list[Recipe], tmp_path: Path) -> None:
    from textual.widgets import Input

    from lorastudio.screens.file_picker import DataFileTree, FilePickerScreen

    rows = tmp_path / "mine.jsonl"
    rows.write_text('{"instruction": "hi", "response": "arr"}\n')
    (tmp_path / "notes.md").write_text("not data")
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot)
        await pilot.press("ctrl+o")
        picker = app.screen
        assert isinstance(picker, FilePickerScreen)
        shown = [p.name for p in picker.query_one(DataFileTree).filter_paths(tmp_path.iterdir())]
        assert "mine.jsonl" in shown and "notes.md" not in shown
        picker.dismiss(str(rows))
        await wait_until(
            pilot,
            lambda: (
                app.screen is screen
                and screen.current is not None
                and screen.current.data.source == str(rows)
            ),
        )
        assert screen.query_one("#f-data-source", Input).value == str(rows)


async def test_tab_and_text_typed_in_one_burst_land_in_the_next_field(started: list[Recipe]) -> None:
    """Tab, Tab, then letters in one burst (a paste, a slow SSH link): focus moves as each Tab is dequeued, so
    the letters land in the second field (start from) instead of going to the field that had focus."""
    from textual.widgets import Input

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_launch(pilot)
        burst(app, "tab", "tab", "X", "Y")
        await wait_until(pilot, lambda: screen.query_one("#f-model-adapter", Input).value == "XY")
        burst(app, "shift+tab", "Z")
        await wait_until(pilot, lambda: screen.focused is screen.query_one("#f-model-name", Input))
        await pilot.pause()
        assert screen.query_one("#f-model-name", Input).value.endswith("Z")
        assert screen.data["model"]["adapter"] == "XY" and started == []


# -- the method's own section (dpo/kto/orpo/grpo) ----------------------------------------------------
@pytest.mark.parametrize(
    ("method", "section", "expected"),
    [
        ("sft", None, []),
        (
            "dpo",
            None,
            [
                "dpo.beta",
                "dpo.loss_type",
                "dpo.rpo_alpha",
                "dpo.label_smoothing",
                "dpo.simpo_gamma",
                "dpo.max_prompt_length",
            ],
        ),
        (
            "kto",
            None,
            [
                "kto.beta",
                "kto.loss_type",
                "kto.desirable_weight",
                "kto.undesirable_weight",
                "kto.max_prompt_length",
            ],
        ),
        ("orpo", None, ["orpo.beta", "orpo.max_prompt_length"]),
        ("reward", None, ["reward.center_rewards_coefficient", "reward.max_prompt_length"]),
        (
            "grpo",
            {"rewards": [{"regex": "arr"}, {"length": {"max_words": 9}, "weight": 0.5}]},
            [
                "grpo.num_generations",
                "grpo.max_completion_length",
                "grpo.temperature",
                "grpo.top_p",
                "grpo.beta",
                "grpo.loss_type",
                "grpo.scale_rewards",
                "grpo.max_prompt_length",
                "grpo.rewards.0.weight",
                "grpo.rewards.1.weight",
            ],
        ),
    ],
)
def test_each_method_has_its_sections_fields_with_defaults(
    method: str, section: dict | None, expected: list[str]
) -> None:
    from lorastudio.screens.launch_fields import get_path, method_fields, with_method_defaults

    data = registry.load("tiny-pirate").model_dump(mode="json")
    data["train"]["method"] = method
    if section is not None:
        data[method] = section
    recipe, errors = validate(data)
    assert errors == {} and recipe is not None
    data = with_method_defaults(recipe, recipe.model_dump(mode="json"))
    fields = method_fields(data)
    assert [f.path for f in fields] == expected
    for spec in fields:  # every field shows the value training will use, never an empty box
        assert get_path(data, spec.path) is not None or spec.kind == "optional", spec.path


@pytest.mark.parametrize(
    ("path", "text", "message"),
    [
        ("dpo.beta", "0", "greater than 0"),
        ("dpo.rpo_alpha", "-1", "greater than 0"),
        ("dpo.loss_type", "nope", "sigmoid"),
        ("dpo.label_smoothing", "0.5", "less than 0.5"),
        ("reward.center_rewards_coefficient", "0", "greater than 0"),
        ("reward.max_prompt_length", "0", "greater than or equal to 1"),
    ],
)
def test_method_fields_are_validated_like_the_others(path: str, text: str, message: str) -> None:
    from lorastudio.screens.launch_fields import method_fields, set_path

    name = "smollm2-pirate-reward" if path.startswith("reward.") else "smollm2-pirate-dpo"
    data = registry.load(name).model_dump(mode="json")
    spec = next(f for f in method_fields(data) if f.path == path)
    set_path(data, path, parse_value(spec, text))
    recipe, errors = validate(data)
    assert recipe is None and set(errors) == {path} and message in errors[path]


async def test_grpo_fields_show_edit_and_launch(started: list[Recipe]) -> None:
    from textual.widgets import Input, Label

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_launch(pilot, "tiny-pirate-grpo")
        generations = screen.query_one("#f-grpo-num-generations", Input)
        assert generations.value == "8" and screen.query_one("#f-grpo-rewards-1-weight", Input).value == "0.5"
        assert screen.query_one("#f-grpo-temperature", Input).value == "0.7"
        screen.set_focus(generations)
        generations.value = ""
        burst(app, "3")  # 8 replies per step cannot be split in groups of 3
        error = screen.query_one("#e-grpo-num-generations", Label)
        await wait_until(pilot, lambda: "must divide" in str(error.content))
        await pilot.press("enter")
        assert started == []
        generations.value = ""
        burst(app, "4", *["tab"] * 9)  # to the second reward's weight, past the 8 other grpo fields
        weight = screen.query_one("#f-grpo-rewards-1-weight", Input)
        await wait_until(pilot, lambda: screen.focused is weight)
        weight.value = ""
        burst(app, *"2.5", "enter")
        await wait_until(pilot, lambda: started)
        recipe = started[0]
        assert recipe.grpo is not None
        assert recipe.grpo.num_generations == 4 and [r.weight for r in recipe.grpo.rewards] == [1.0, 2.5]


async def test_dpo_fields_show_the_section_and_save_only_edits(started: list[Recipe], tmp_path: Path) -> None:
    import yaml
    from textual.widgets import Input

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot, "smollm2-pirate-dpo")
        assert "dpo settings" in screen_text(app)
        assert screen.query_one("#f-dpo-rpo-alpha", Input).value == "1.0"
        assert screen.query_one("#f-dpo-simpo-gamma", Input).value == "0.5"  # a default, shown
        beta = screen.query_one("#f-dpo-beta", Input)
        screen.set_focus(beta)
        beta.value = ""
        burst(app, *"0.3")
        await wait_until(
            pilot,
            lambda: (
                screen.current is not None
                and screen.current.dpo is not None
                and screen.current.dpo.beta == 0.3
            ),
        )
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: screen.saved is not None)
        assert screen.saved is not None
        saved = yaml.safe_load(screen.saved.read_text(encoding="utf-8"))
        assert saved["dpo"] == {"beta": 0.3}


# -- max_steps wins over epochs -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "rows", "note"),
    [
        ([], 209, "max_steps 80 wins: 3.06 epochs"),
        (["train.max_steps=null"], 209, ""),  # epochs rule: nothing to say
        ([], None, "max_steps 80 wins over epochs"),  # a hub data set: not fetched to count it
        (["train.gradient_accumulation=2"], 209, "max_steps 80 wins: 6.12 epochs"),
        (["train.devices=2", "train.nodes=2"], 320, "max_steps 80 wins: 8.00 epochs"),
    ],
)
def test_max_steps_note_says_it_wins_and_the_epochs_it_makes(
    overrides: list[str], rows: int | None, note: str
) -> None:
    from lorastudio.data.datasource import max_steps_note

    assert max_steps_note(registry.load("tiny-pirate", overrides), rows) == note


@pytest.mark.parametrize(
    ("name", "text", "extra", "rows"),
    [
        ("d.jsonl", '{"a": 1}\n\n{"a": 2}\n' * 10, {}, 20),  # blank lines are no rows; < 32: none held out
        ("d.jsonl", '{"a": 1}\n' * 100, {}, 84),  # 16 held out (the default's minimum)
        ("d.jsonl", '{"a": 1}\n' * 100, {"eval_fraction": 0.0}, 100),
        ("d.jsonl", '{"a": 1}\n' * 100, {"limit": 10}, 10),
        ("d.csv", 'q,a\n"two\nlines",x\n' + "q,a\n" * 9, {}, 10),  # a quoted newline is one row
        ("d.parquet", "", {}, None),  # not counted without building it
    ],
    ids=["blank-lines", "default-holdout", "no-eval", "limit", "csv-quoted-newline", "parquet"],
)
def test_training_rows_are_counted_without_loading_the_data(
    tmp_path: Path, name: str, text: str, extra: dict, rows: int | None
) -> None:
    from lorastudio.data.datasource import train_rows_count
    from lorastudio.recipe import DataSection

    (tmp_path / name).write_text(text, encoding="utf-8")
    assert train_rows_count(DataSection(source=str(tmp_path / name), **extra)) == rows
    assert train_rows_count(DataSection(source="org/dataset")) is None  # the hub is not fetched to count


def test_a_grpo_step_takes_one_prompt_per_group() -> None:
    from lorastudio.data.datasource import max_steps_note, train_rows_count

    recipe = registry.load("tiny-pirate-grpo")  # 323 prompts, 16 held out; 8 replies a step, 8 per prompt
    rows = train_rows_count(recipe.data)
    assert rows == 307 and max_steps_note(recipe, rows) == "max_steps 40 wins: 0.13 epochs"


async def test_the_epochs_field_says_max_steps_wins(started: list[Recipe]) -> None:
    from textual.widgets import Input, Label

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_launch(pilot)
        note = screen.query_one("#e-train-epochs", Label)
        await wait_until(pilot, lambda: str(note.content) == "max_steps 80 wins: 3.06 epochs")
        steps = screen.query_one("#f-train-max-steps", Input)
        screen.set_focus(steps)
        steps.value = ""
        await wait_until(pilot, lambda: str(note.content) == "")  # no max_steps: the epochs count
        burst(app, *"40")
        await wait_until(pilot, lambda: str(note.content) == "max_steps 40 wins: 1.53 epochs")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_data_path_is_shown_whole(started: list[Recipe], size: tuple[int, int]) -> None:
    from textual.widgets import Input

    app = StudioApp()
    async with app.run_test(size=size) as pilot:
        screen = await open_launch(pilot)
        box = screen.query_one("#f-data-source", Input)
        await pilot.pause()
        assert box.value == "recipes/data/tiny_pirate.jsonl" and box.tooltip == box.value
        assert box.content_region.width > len(box.value)  # the input is wide enough: nothing cut
        box.value = "~/datasets/pirates/2026-12/pirate_dialogues_cleaned_train.jsonl"
        await pilot.pause()
        assert box.tooltip == box.value  # a longer one is whole in the tooltip


async def test_the_lora_group_edits_dora_init_and_lora_plus(started: list[Recipe]) -> None:
    from textual.widgets import Input, Label

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot)
        text = screen_text(app)
        assert "DoRA" in text and "LoRA init" in text and "LoRA+ lr ratio" in text
        init = screen.query_one("#f-lora-init", Input)
        assert init.value == "default"
        screen.set_focus(init)
        init.value = ""
        burst(app, *"eva")
        await wait_until(
            pilot, lambda: "eva is not supported" in str(screen.query_one("#e-lora-init", Label).content)
        )
        await pilot.press("enter")
        assert started == []  # refused: nothing launched
        init.value = ""
        burst(app, *"pissa")
        await wait_until(pilot, lambda: screen.data["lora"]["init"] == "pissa" and not screen.errors)
        screen.set_focus(screen.query_one("#f-lora-use-dora"))
        await pilot.press("space")
        await wait_until(pilot, lambda: str(screen.query_one("#v-lora-use-dora", Label).content) == "on")
        ratio = screen.query_one("#f-lora-plus-lr-ratio", Input)
        screen.set_focus(ratio)
        burst(app, *"16", "enter")
        await wait_until(pilot, lambda: started)
        lora = started[0].lora
        assert (lora.init, lora.use_dora, lora.plus_lr_ratio) == ("pissa", True, 16.0)


@pytest.mark.parametrize(
    ("edits", "field", "message"),
    [
        ({"lora.init": "loftq", "model.load_in_4bit": True}, "lora.init", "loftq quantizes the base itself"),
        ({"lora.init": "pissa_niter_x"}, "lora.init", "choose one of default, gaussian, pissa"),
        ({"lora.plus_lr_ratio": -1}, "lora.plus_lr_ratio", "greater than 0"),
    ],
)
def test_lora_variant_errors_show_at_their_field(edits: dict[str, object], field: str, message: str) -> None:
    from lorastudio.screens.launch_fields import set_path

    data = registry.load("tiny-pirate").model_dump(mode="json")
    for path, value in edits.items():
        set_path(data, path, value)
    recipe, errors = validate(data)
    assert recipe is None and list(errors) == [field] and message in errors[field]


# -- tuning: lora | full | freeze ------------------------------------------------------------------
def _shown(screen: LaunchScreen, path: str) -> bool:
    return bool(screen.query_one(f"#row-{path.replace('.', '-').replace('_', '-')}").display)


async def test_tuning_choice_shows_only_the_fields_that_apply_and_launches_freeze(
    started: list[Recipe],
) -> None:
    from textual.widgets import Input, Label

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot)
        assert "tuning" in screen_text(app) and screen.query_one("#f-train-tuning", Input).value == "lora"
        assert _shown(screen, "lora.r") and _shown(screen, "lora.use_dora")
        assert not _shown(screen, "train.freeze_trainable_layers")
        assert not _shown(screen, "train.embedding_learning_rate")  # sft, and unset
        tuning = screen.query_one("#f-train-tuning", Input)
        screen.set_focus(tuning)
        tuning.value = ""
        burst(app, *"freeze")
        # freeze without saying what trains: the message is at the tuning field, not a status line
        await wait_until(
            pilot,
            lambda: (
                "freeze needs train.freeze_trainable_layers"
                in str(screen.query_one("#e-train-tuning", Label).content)
            ),
        )
        assert not _shown(screen, "lora.r") and not _shown(screen, "lora.init")  # the LoRA group is hidden
        assert _shown(screen, "train.freeze_trainable_layers") and _shown(
            screen, "train.freeze_trainable_modules"
        )
        await pilot.press("enter")
        assert started == []
        layers = screen.query_one("#f-train-freeze-trainable-layers", Input)
        screen.set_focus(layers)
        burst(app, "0")
        await wait_until(
            pilot,
            lambda: (
                "greater than or equal to 1"
                in str(screen.query_one("#e-train-freeze-trainable-layers", Label).content)
            ),
        )
        layers.value = ""
        burst(app, "2")
        await wait_until(pilot, lambda: screen.data["train"]["freeze_trainable_layers"] == 2)
        modules = screen.query_one("#f-train-freeze-trainable-modules", Input)
        screen.set_focus(modules)
        burst(app, *"mlp, lm_head")
        await wait_until(
            pilot, lambda: screen.data["train"]["freeze_trainable_modules"] == ["mlp", "lm_head"]
        )
        assert not screen.errors
        burst(app, "enter")
        await wait_until(pilot, lambda: started)
        t = started[0].train
        assert (t.tuning, t.freeze_trainable_layers, t.freeze_trainable_modules) == (
            "freeze",
            2,
            ["mlp", "lm_head"],
        )


async def test_full_tuning_hides_lora_and_clears_the_freeze_fields(started: list[Recipe]) -> None:
    """Back from freeze, the freeze fields hide and unset (the recipe refuses them with another tuning);
    4-bit weights with full tuning are refused at the tuning field."""
    from textual.widgets import Input, Label

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot)
        tuning = screen.query_one("#f-train-tuning", Input)
        screen.set_focus(tuning)
        tuning.value = ""
        burst(app, *"freeze")
        await wait_until(pilot, lambda: _shown(screen, "train.freeze_trainable_layers"))
        screen.query_one("#f-train-freeze-trainable-layers", Input).value = "1"
        await wait_until(
            pilot, lambda: screen.current is not None and screen.current.train.tuning == "freeze"
        )
        tuning.value = ""
        burst(app, *"full")
        await wait_until(pilot, lambda: not _shown(screen, "train.freeze_trainable_layers"))
        assert not _shown(screen, "lora.r") and not screen.errors
        assert screen.data["train"]["freeze_trainable_layers"] is None
        screen.set_focus(screen.query_one("#f-model-load-in-4bit"))
        await pilot.press("space")
        await wait_until(
            pilot,
            lambda: "4-bit weights cannot" in str(screen.query_one("#e-train-tuning", Label).content),
        )
        await pilot.press("space")
        await wait_until(pilot, lambda: not screen.errors)
        tuning.value = "lora"
        await wait_until(pilot, lambda: _shown(screen, "lora.r"))
        assert not _shown(screen, "train.freeze_trainable_layers")
        tuning.value = "full"
        await wait_until(pilot, lambda: not _shown(screen, "lora.r"))
        screen.set_focus(tuning)
        burst(app, "enter")
        await wait_until(pilot, lambda: started)
        assert started[0].train.tuning == "full" and started[0].train.freeze_trainable_layers is None


async def test_pretrain_shows_the_embedding_learning_rate(started: list[Recipe]) -> None:
    from textual.widgets import Input

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_launch(pilot, "tiny-pretrain")
        assert _shown(screen, "train.embedding_learning_rate") and "embedding lr" in screen_text(app)
        box = screen.query_one("#f-train-embedding-learning-rate", Input)
        screen.set_focus(box)
        burst(app, *"2e-5", "enter")
        await wait_until(pilot, lambda: started)
        assert started[0].train.embedding_learning_rate == 2e-5


@pytest.mark.parametrize(
    ("edits", "field", "message"),
    [
        ({"train.tuning": "freeze"}, "train.tuning", "freeze needs train.freeze_trainable_layers"),
        ({"train.tuning": "full", "model.load_in_4bit": True}, "train.tuning", "4-bit weights cannot"),
        ({"train.tuning": "partial"}, "train.tuning", "'lora', 'full' or 'freeze'"),
        (
            {"train.tuning": "freeze", "train.freeze_trainable_layers": 0},
            "train.freeze_trainable_layers",
            ">= 1",
        ),
        ({"train.embedding_learning_rate": 0}, "train.embedding_learning_rate", "greater than 0"),
    ],
)
def test_tuning_errors_show_at_their_field(edits: dict[str, object], field: str, message: str) -> None:
    from lorastudio.screens.launch_fields import set_path

    data = registry.load("tiny-pirate").model_dump(mode="json")
    for path, value in edits.items():
        set_path(data, path, value)
    recipe, errors = validate(data)
    assert (
        recipe is None
        and list(errors) == [field]
        and message in errors[field].replace("greater than or equal to", ">=")
    )
