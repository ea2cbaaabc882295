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
