"""The command palette (Ctrl+P): the current screen's actions by name, and Runs/Recipes/Help from anywhere."""

from __future__ import annotations

import pytest
from conftest import screen_of, send_burst, wait_until

from lorastudio.app import StudioApp


def palette_titles(app: StudioApp) -> list[str]:
    from lorastudio.screens.palette import studio_commands

    return [c.title for c in studio_commands(app, app.screen)]


async def test_each_screen_offers_its_own_actions_and_navigation() -> None:
    from lorastudio.screens.launch import LaunchScreen
    from lorastudio.screens.recipes import RecipesScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, RecipesScreen)
        await wait_until(pilot, lambda: screen.entries)
        assert palette_titles(app) == ["Filter", "Preview", "Train", "Eval", "Runs", "Help"]
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen))
        assert palette_titles(app) == [
            "Launch",
            "Back",
            "Save recipe",
            "Edit YAML",
            "Data file",
            "Runs",
            "Recipes",
            "Help",
        ]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("train", "LaunchScreen"), ("runs", "RunsScreen"), ("help", "HelpScreen")],
)
async def test_a_command_typed_in_the_palette_runs(typed: str, expected: str) -> None:
    from textual.command import CommandList, CommandPalette

    from lorastudio.screens.recipes import RecipesScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, RecipesScreen)
        await wait_until(pilot, lambda: screen.entries)
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
        send_burst(app, *typed)
        await wait_until(pilot, lambda: app.screen.query_one(CommandList).option_count)
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: type(app.screen).__name__ == expected)


async def test_recipes_command_goes_back_from_a_deep_screen() -> None:
    from lorastudio.screens.launch import LaunchScreen
    from lorastudio.screens.palette import back_to_recipes
    from lorastudio.screens.recipes import RecipesScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = screen_of(app, RecipesScreen)
        await wait_until(pilot, lambda: screen.entries)
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen))
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "RunsScreen")
        back_to_recipes(app)
        await wait_until(pilot, lambda: isinstance(app.screen, RecipesScreen))
        assert len(app.screen_stack) == 2  # the default screen under the picker


async def test_the_focused_panes_keys_are_commands_too(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Monitor's Samples pane shows Earlier, Later and Base in the footer: the palette offered only the
    Monitor's own keys, so those three could not be found by name."""
    from test_tui import write_recorded_run
    from textual.command import CommandList, CommandPalette

    from lorastudio.screens.monitor import MonitorScreen
    from lorastudio.widgets.samples_view import SamplesView

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    run = write_recorded_run(tmp_path / "data" / "studio" / "runs")
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.push_screen(MonitorScreen(run))
        screen = screen_of(app, MonitorScreen)
        await wait_until(pilot, lambda: screen.snapshot is not None)
        assert not {"Earlier", "Later", "Base"} & set(palette_titles(app))  # the pane is not open
        await pilot.press("p")
        view = screen.query_one(SamplesView)
        await wait_until(pilot, lambda: screen.focused is view)
        titles = palette_titles(app)
        assert {"Earlier", "Later", "Base"} <= set(titles)
        assert titles.index("Samples") < titles.index("Earlier")  # the screen's keys, then its pane's
        assert not view.show_base
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
        send_burst(app, *"base")
        await wait_until(pilot, lambda: app.screen.query_one(CommandList).option_count)
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: view.show_base)
        assert app.screen is screen
