"""Studio's own commands in the command palette (Ctrl+P): the current screen's actions by name, and navigation.

The app's ``get_system_commands`` yields these after Textual's own (Theme, Quit, Keys, Screenshot). Every
screen's main actions are its footer bindings, so they are read from its ``BINDINGS`` rather than listed again
here: a key added to a screen is in the palette at once, named as its footer names it. The footer also shows
the keys of the focused pane (the Monitor's Samples pane: Earlier, Later, Base), so those follow the screen's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from textual.app import SystemCommand
from textual.binding import Binding
from textual.widget import Widget

if TYPE_CHECKING:
    from textual.app import App
    from textual.screen import Screen

NAVIGATION_ACTIONS = ("app.quit", "app.runs", "app.help", "help", "quit")
"""Screen actions that Textual's Quit and the Help command already cover (Quit on Recipes)."""


def _key_of(app: App[Any], binding: Binding) -> str:
    return app.get_key_display(Binding(binding.key.split(",")[0], ""))


def screen_commands(app: App[Any], screen: Screen[Any]) -> Iterator[SystemCommand]:
    """The footer actions of the screen, then of its focused pane (those shown, that ``check_action`` allows)."""
    for node in (screen, *_focused_panes(screen)):
        seen: set[str] = set()
        for binding in type(node).BINDINGS:
            if not isinstance(binding, Binding) or not binding.show or not binding.description:
                continue
            if binding.action in seen or binding.action in NAVIGATION_ACTIONS:
                continue
            seen.add(binding.action)
            name, _, _ = binding.action.partition("(")
            if node.check_action(name, ()) is False:
                continue
            title = binding.description.rstrip("…")
            yield SystemCommand(
                title,
                f"{_screen_name(screen)}: {binding.tooltip or binding.description} ({_key_of(app, binding)})",
                _runner(node, binding.action),
            )


def _focused_panes(screen: Screen[Any]) -> list[Widget]:
    """The focused widget and its containers below the screen, outermost first (whose keys the footer shows)."""
    chain: list[Widget] = []
    node = screen.focused
    while node is not None and node is not screen:
        chain.append(node)
        node = node.parent if isinstance(node.parent, Widget) else None
    return chain[::-1]


def _runner(node: Screen[Any] | Widget, action: str) -> Callable[[], object]:
    def run() -> object:
        # the palette has closed by now; the screen or pane may have gone meanwhile (nothing to act on then)
        if node.is_attached:
            return node.run_action(action)
        return None

    return run


def _screen_name(screen: Screen[Any]) -> str:
    return type(screen).__name__.removesuffix("Screen") or "Screen"


def navigation_commands(
    app: App[Any], screen: Screen[Any], skip: set[str] | None = None
) -> Iterator[SystemCommand]:
    """Runs, Recipes and Help from anywhere (Quit is Textual's own command), less the titles in ``skip``."""
    from lorastudio.screens.help import HelpScreen
    from lorastudio.screens.recipes import RecipesScreen
    from lorastudio.screens.runs import RunsScreen

    skip = skip or set()
    if not isinstance(screen, RunsScreen) and "Runs" not in skip:
        yield SystemCommand(
            "Runs", "Go to the list of training runs (Ctrl+R)", lambda: app.run_action("runs")
        )
    if not isinstance(screen, RecipesScreen) and any(isinstance(s, RecipesScreen) for s in app.screen_stack):
        yield SystemCommand("Recipes", "Go back to the recipe picker", lambda: back_to_recipes(app))
    if not isinstance(screen, HelpScreen):
        yield SystemCommand("Help", "Every key of this screen (F1, ?)", lambda: app.run_action("help"))


def back_to_recipes(app: App[Any]) -> None:
    """Pop the screens above the recipe picker (as Escape on each would)."""
    from lorastudio.screens.recipes import RecipesScreen

    while len(app.screen_stack) > 1 and not isinstance(app.screen, RecipesScreen):
        if not any(isinstance(s, RecipesScreen) for s in app.screen_stack):
            return
        app.pop_screen()


def studio_commands(app: App[Any], screen: Screen[Any]) -> Iterator[SystemCommand]:
    """The screen's actions, then navigation (a screen's own Runs, as on the Monitor, replaces the global one)."""
    own = list(screen_commands(app, screen))
    yield from own
    yield from navigation_commands(app, screen, {c.title for c in own})
