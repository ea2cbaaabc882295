"""Type-ahead safety: keys sent in one burst, with no pause between them, as a paste or a slow SSH link does."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import screen_of, wait_until
from conftest import send_burst as burst
from test_tui import write_recorded_run

from lorastudio.app import StudioApp


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record any attempt to start a run instead of starting it."""
    started: list[object] = []
    import lorastudio.screens.monitor as monitor
    import lorastudio.train.launch.runs as runs

    monkeypatch.setattr(monitor, "start_training", lambda app, recipe, **kw: started.append(recipe))
    monkeypatch.setattr(runs, "start_worker", lambda *a, **kw: started.append(a))
    return started


@pytest.fixture(autouse=True)
def no_preview_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests only need the Preview to open, not its tokenizer and data (nor the tiny model built)."""
    from lorastudio.screens.preview import PreviewScreen

    monkeypatch.setattr(PreviewScreen, "load", lambda self: None)


async def test_filter_burst_reaches_the_box_and_starts_nothing(no_training: list[object]) -> None:
    from textual.widgets import Input

    from lorastudio.screens.preview import PreviewScreen
    from lorastudio.screens.recipes import RecipesScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, RecipesScreen)
        await wait_until(pilot, lambda: screen.entries)
        burst(app, "slash", *"tiny-pirate", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PreviewScreen))
        assert screen.query_one("#recipe-filter", Input).value == "tiny-pirate"
        shown = [e.file.name for e in screen.shown]
        assert shown[:2] == ["tiny-pirate", "tiny-pirate-grpo"] and all(
            n.startswith("tiny-pirate") for n in shown
        )
        assert no_training == []
        await pilot.pause(0.3)  # let the Preview finish mounting before the app closes


async def test_filter_burst_before_the_list_loads(
    no_training: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    from textual.widgets import Input

    from lorastudio import registry
    from lorastudio.screens.preview import PreviewScreen
    from lorastudio.screens.recipes import RecipesScreen

    real = registry.load_all

    def slow_load_all(*args, **kwargs):
        time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, "load_all", slow_load_all)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = screen_of(app, RecipesScreen)
        burst(
            app, "slash", *"tiny-pirate", "t", "enter"
        )  # "tiny-piratet" matches nothing: Enter must not act
        await wait_until(pilot, lambda: screen.query_one("#recipe-filter", Input).value == "tiny-piratet")
        assert not screen.entries, "the list loaded too early for this test"
        await wait_until(pilot, lambda: screen.entries)
        await pilot.pause(0.2)
        assert screen.shown == [] and app.screen is screen
        burst(app, "escape", "slash", *"tiny-pirate", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PreviewScreen))
        assert no_training == []
        await pilot.pause(0.3)


async def test_enter_typed_before_the_list_loads_acts_once_it_has(
    no_training: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lorastudio import registry
    from lorastudio.screens.preview import PreviewScreen

    real = registry.load_all

    def slow_load_all(*args, **kwargs):
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, "load_all", slow_load_all)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        burst(app, "slash", *"tiny-pirate", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PreviewScreen))
        assert screen_of(app, PreviewScreen).recipe.name == "tiny-pirate" and no_training == []
        await pilot.pause(0.3)


async def test_preview_search_burst_types_train_key_as_text(no_training: list[object]) -> None:
    from textual.widgets import Input

    from lorastudio import registry
    from lorastudio.screens.preview import PreviewScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(PreviewScreen(registry.load("tiny-pirate")))
        screen = screen_of(app, PreviewScreen)
        burst(app, "slash", *"turtle")
        await wait_until(pilot, lambda: screen.query_one("#preview-input", Input).value == "turtle")
        await pilot.press("escape")
        burst(app, "g", *"12")
        await wait_until(pilot, lambda: screen.query_one("#preview-input", Input).value == "12")
        assert screen.input_mode == "jump" and app.screen is screen and no_training == []


async def test_runs_down_enter_burst_attaches_the_second_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from textual.widgets import DataTable

    from lorastudio.screens.monitor import MonitorScreen
    from lorastudio.screens.runs import RunsScreen

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    root = tmp_path / "data" / "studio" / "runs"
    first = write_recorded_run(root)
    second = root / "tiny-pirate-older"
    shutil.copytree(first, second)
    meta = json.loads((second / "run.json").read_text())
    (second / "run.json").write_text(
        json.dumps({**meta, "name": second.name, "created": meta["created"] - 60})
    )
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+r")
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await wait_until(pilot, lambda: screen.query_one(DataTable).row_count == 2)
        burst(app, "down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MonitorScreen))
        assert screen_of(app, MonitorScreen).run_dir == second
        await pilot.pause(0.3)


async def test_keys_typed_after_the_filters_enter_do_not_change_what_it_opens(tiny_model: Path) -> None:
    """In one burst, keys after Enter reach the box before its Enter binding runs; Enter acts on the text before."""
    from textual.widgets import Input

    from lorastudio.screens.preview import PreviewScreen
    from lorastudio.screens.recipes import RecipesScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        recipes = app.screen
        assert isinstance(recipes, RecipesScreen)
        await wait_until(pilot, lambda: recipes.entries)
        burst(app, "slash", *"tiny-pirate", "enter", *"nnp")
        await wait_until(pilot, lambda: isinstance(app.screen, PreviewScreen))
        assert screen_of(app, PreviewScreen).recipe.name == "tiny-pirate"
        await pilot.pause(0.3)  # the filter's pending change messages arrive after Enter acted
        assert recipes.query_one("#recipe-filter", Input).value == "tiny-pirate"
        shown = [e.file.name for e in recipes.shown]
        assert shown[:2] == ["tiny-pirate", "tiny-pirate-grpo"] and all(
            n.startswith("tiny-pirate") for n in shown
        )


async def test_editing_keys_in_a_burst_act_in_order_with_the_characters(no_training: list[object]) -> None:
    """Backspace, the arrows, End and Ctrl+U act where they were typed: Textual ran an Input's bindings only
    after the characters typed behind them ("abc", Backspace, "d" gave "abc"; Ctrl+U then "400" gave "")."""
    from textual.widgets import Input

    from lorastudio import registry
    from lorastudio.screens.launch import LaunchScreen
    from lorastudio.screens.preview import PreviewScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.push_screen(LaunchScreen(registry.load("tiny-pirate")))
        screen = screen_of(app, LaunchScreen)
        steps = screen.query_one("#f-train-max-steps", Input)
        screen.set_focus(steps)
        await pilot.pause()
        burst(app, "ctrl+u", *"4001", "backspace", "left", "9", "end", "7")
        await wait_until(pilot, lambda: steps.value == "40907")
        await wait_until(pilot, lambda: screen.data["train"]["max_steps"] == 40907)
        await app.push_screen(PreviewScreen(registry.load("tiny-pirate")))
        preview = app.screen
        burst(app, "slash", *"pirat", "backspace", *"te", "home", "x", "delete")
        box = preview.query_one("#preview-input", Input)
        await wait_until(pilot, lambda: box.value == "xirate")
        assert no_training == []
