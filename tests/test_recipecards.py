"""The picker's cached list: shown before the recipes are validated, never stale, never a broken start."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import send_burst, wait_until
from test_method_tui import text_of

from lorastudio import recipecards, registry
from lorastudio.app import StudioApp
from lorastudio.paths import cache_dir, user_recipes_dir
from lorastudio.widgets.recipe_details import card_of


def fresh_cards() -> list[recipecards.RecipeCard]:
    return [card_of(entry) for entry in registry.load_all()]


def test_cards_round_trip_and_go_stale_when_a_recipe_file_changes(tmp_path: Path) -> None:
    state = recipecards.listing_state()
    cards = fresh_cards()
    recipecards.write_cards(state, cards, False)
    assert recipecards.read_cards(state) == (cards, False)
    # what the picker shows of a recipe comes back as it was written (the details rows included)
    tiny = next(c for c in cards if c.file.name == "tiny-pirate")
    assert tiny.title == "tiny-pirate"
    assert tiny.offline
    assert ("packing", "no") in tiny.rows
    assert any(key == recipecards.MEMORY_ROW for key, _ in tiny.rows)
    # a user recipe added (then edited) is a different listing: the old cards are never read for it
    user = user_recipes_dir()
    user.mkdir(parents=True, exist_ok=True)
    mine = user / "cards-probe.yaml"
    try:
        mine.write_text("extends: tiny-pirate\ndescription: one\n", encoding="utf-8")
        added = recipecards.listing_state()
        assert added != state
        assert recipecards.read_cards(added) is None
        recipecards.write_cards(added, fresh_cards(), False)
        time.sleep(0.01)
        mine.write_text("extends: tiny-pirate\ndescription: two, longer\n", encoding="utf-8")
        assert recipecards.read_cards(recipecards.listing_state()) is None
    finally:
        mine.unlink(missing_ok=True)


@pytest.mark.parametrize(
    "content",
    ["", "{not json", "[]", '{"state": null}', '{"state": 1, "cards": [{"name": 1}]}', "\x00\x01"],
    ids=["empty", "broken", "a-list", "no-state", "wrong-card", "binary"],
)
def test_a_damaged_cache_is_read_as_none(content: str) -> None:
    path = cache_dir() / recipecards.CARDS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    assert recipecards.read_cards(recipecards.listing_state()) is None
    # and a card whose fields changed shape is refused, not half-read
    path.write_text(
        json.dumps({"state": recipecards.listing_state(), "cards": [{"name": "x"}]}), encoding="utf-8"
    )
    assert recipecards.read_cards(recipecards.listing_state()) is None


def test_a_read_only_cache_costs_nothing_but_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # cache_dir() is under a file: nothing can be written
    recipecards.write_cards(recipecards.listing_state(), fresh_cards(), False)
    assert recipecards.read_cards(recipecards.listing_state()) is None
    assert list(tmp_path.iterdir()) == [blocked]


async def test_the_list_shows_from_the_cards_before_validation_and_enter_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lorastudio.screens.launch import LaunchScreen
    from lorastudio.screens.recipes import RecipesScreen

    recipecards.write_cards(recipecards.listing_state(), fresh_cards(), False)
    real = registry.load_all

    def slow_load_all(*args: Any, **kwargs: Any) -> list[registry.RecipeEntry]:
        time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, "load_all", slow_load_all)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, RecipesScreen)
        await wait_until(pilot, lambda: screen.shown)
        assert not screen.loaded
        assert not screen.entries
        assert [c.file.name for c in screen.shown][:2] == ["smollm2-pirate", "tiny-pirate"]
        details = text_of(screen.query_one("#details"))
        assert "smollm2-pirate" in details
        assert "est. RAM" in details
        send_burst(app, "j", "t")  # tiny-pirate's Launch sheet, asked before the recipe is validated
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen), timeout=20)
        assert screen.loaded
        assert app.screen.recipe.name == "tiny-pirate"
        await pilot.pause(0.2)


async def test_a_stale_cache_is_rewritten_and_the_list_is_the_validated_one() -> None:
    from lorastudio.screens.recipes import RecipesScreen

    state = recipecards.listing_state()
    cards = fresh_cards()
    # cards that differ from what the recipes say now (an older build's, say) under the current state
    wrong = [
        recipecards.RecipeCard(c.file, c.title, c.model, "OLD TEXT", c.tags, c.error, c.rows) for c in cards
    ]
    recipecards.write_cards(state, wrong, False)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, RecipesScreen)
        await wait_until(pilot, lambda: screen.loaded)
        assert screen.cards == cards
    assert recipecards.read_cards(state) == (cards, False)


@pytest.mark.parametrize(
    ("name", "overrides", "row", "targets"),
    [
        ("tiny-pirate", [], "LoRA  r=16 alpha=32 dropout=0", None),
        ("smollm2-pirate-full", [], "Full", "every weight (no adapter)"),
        (
            "tiny-pirate",
            ["train.tuning=freeze", "train.freeze_trainable_layers=2"],
            "Freeze (last 2 layers)",
            "only what the method row names",
        ),
        (
            "tiny-pirate",
            [
                "train.tuning=freeze",
                "train.freeze_trainable_layers=1",
                "train.freeze_trainable_modules=[mlp]",
            ],
            "Freeze (last 1 layer: mlp)",
            None,
        ),
        (
            "tiny-pirate",
            ["train.tuning=freeze", "train.freeze_trainable_modules=[lm_head]"],
            "Freeze (lm_head)",
            None,
        ),
        (
            "tiny-pirate",
            [
                "lora.use_dora=true",
                "lora.init=pissa",
                "lora.plus_lr_ratio=16",
                "lora.modules_to_save=[lm_head]",
            ],
            "DoRA  r=16 alpha=32 dropout=0, init pissa, LoRA+ B lr x16, saves lm_head",
            None,
        ),
        (
            "tiny-pretrain",
            ["train.tuning=lora"],
            "LoRA+PRETRAIN  r=16 alpha=16 dropout=0, embeddings lr 0.0002",
            None,
        ),
        ("tiny-pretrain", [], "Full+PRETRAIN, embeddings lr 0.0002", None),
        ("tiny-pirate-reward", [], "LoRA+REWARD  r=16 alpha=32 dropout=0", None),
    ],
)
def test_the_method_row_says_what_trains(
    name: str, overrides: list[str], row: str, targets: str | None
) -> None:
    """Full and freeze show no adapter settings; LoRA shows its variants; the method after a +."""
    from lorastudio.registry import RecipeEntry, discover

    entry = RecipeEntry(discover()[name], registry.load(name, overrides), None)
    rows = dict(card_of(entry).rows)
    assert rows["method"] == row
    if targets is not None:
        assert rows["targets"] == targets


def spy_load_all(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record when the recipes are validated (``registry.load_all`` called), and let it run."""
    calls: list[float] = []
    real = registry.load_all

    def recorded(*args: Any, **kwargs: Any) -> list[registry.RecipeEntry]:
        calls.append(time.monotonic())
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, "load_all", recorded)
    return calls


@pytest.mark.parametrize(
    ("keys", "opens"),
    [(("j", "t"), "LaunchScreen"), (("/", *"tiny-pirate", "enter"), "PreviewScreen")],
    ids=["t-on-the-list", "enter-in-the-filter"],
)
async def test_validation_waits_past_the_first_screen_unless_a_recipe_is_asked_for(
    keys: tuple[str, ...], opens: str, monkeypatch: pytest.MonkeyPatch, tiny_model: Path
) -> None:
    """Listed from the cards, the app goes idle with pydantic not yet at work (issue 39: ready within 1.2x of a
    bare Textual app); a key that needs a validated recipe starts the validation at once and acts on it."""
    from lorastudio.screens import recipes as recipes_screen

    recipecards.write_cards(recipecards.listing_state(), fresh_cards(), False)
    monkeypatch.setattr(recipes_screen, "VALIDATE_AFTER_S", 600.0)
    calls = spy_load_all(monkeypatch)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, recipes_screen.RecipesScreen)
        await wait_until(pilot, lambda: screen.shown)
        await pilot.pause()  # idle: nothing validates behind the list
        assert calls == []
        assert not screen.loaded
        assert "smollm2-pirate" in text_of(screen.query_one("#details"))
        send_burst(app, *keys)
        await wait_until(pilot, lambda: type(app.screen).__name__ == opens, timeout=60)
        assert len(calls) == 1
        assert screen.loaded
        assert app.screen.recipe.name == "tiny-pirate"


async def test_without_cards_validation_does_not_wait_and_quitting_never_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No cards (a first start, a recipe edited): nothing is listed until validated, so it starts at once. With
    cards, quitting while the validation waits ends its worker without validating."""
    from lorastudio.screens import recipes as recipes_screen

    (cache_dir() / recipecards.CARDS_FILE).unlink(missing_ok=True)
    monkeypatch.setattr(recipes_screen, "VALIDATE_AFTER_S", 600.0)
    calls = spy_load_all(monkeypatch)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, recipes_screen.RecipesScreen)
        await wait_until(pilot, lambda: screen.loaded, timeout=30)
        assert len(calls) == 1
    assert recipecards.read_cards(recipecards.listing_state()) is not None  # written for the next start
    began = time.monotonic()
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        picker = app.screen
        assert isinstance(picker, recipes_screen.RecipesScreen)
        await wait_until(pilot, lambda: picker.shown)
    assert time.monotonic() - began < 60
    assert len(calls) == 1


async def test_the_warm_up_imports_start_once_the_recipes_are_validated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Preview's warm-up imports and the validation both hold the GIL; Enter needs the validation first."""
    from lorastudio.models import resolve as sources
    from lorastudio.screens import recipes as recipes_screen

    recipecards.write_cards(recipecards.listing_state(), fresh_cards(), False)
    monkeypatch.setattr(recipes_screen, "VALIDATE_AFTER_S", 1.0)
    seen: list[bool] = []
    app = StudioApp()
    monkeypatch.setattr(
        sources,
        "warm_up_imports",
        lambda: seen.append(isinstance(app.screen, recipes_screen.RecipesScreen) and app.screen.loaded),
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: seen, timeout=30)
        await pilot.pause(0.5)
    assert seen == [True]
