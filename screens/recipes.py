"""Screen 1: the recipe picker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList
from textual.widgets.option_list import Option

from lorastudio.screens import navigate as nav
from lorastudio.screens.focus import focus_now, typing_in
from lorastudio.screens.navigate import go
from lorastudio.widgets.filter_input import FilterInput
from lorastudio.widgets.recipe_details import RecipeDetails
from lorastudio.widgets.title_header import TitleHeader

if TYPE_CHECKING:
    from lorastudio.recipecards import RecipeCard
    from lorastudio.registry import RecipeEntry

WATCH_EVERY_S = 1.0
"""How often the user recipes folder is looked at (a few stats, in a thread) for added, edited, removed files."""


class RecipesScreen(Screen[None]):
    """A filterable list of recipes with a details pane; Enter opens the preview."""

    # Textual focuses the first focusable widget when a screen starts, which was the (hidden) filter box: keys
    # typed while studio started (`/tiny-pirate` in the terminal before the first paint) went into it as text,
    # "/" included, before on_mount's focus on the list landed
    AUTO_FOCUS = "#recipe-list"

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="recipes.down"),
        Binding("k", "cursor_up", "Up", show=False, id="recipes.up"),
        Binding("slash", "filter", "Filter", id="recipes.filter", priority=True),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="recipes.clear"),
        Binding("enter", "choose", "Preview", id="recipes.choose"),
        Binding("t", "train", "Train…", id="recipes.train"),
        Binding("e", "eval", "Eval", id="recipes.eval"),
        Binding("q", "app.quit", "Quit", id="recipes.quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[RecipeEntry] = []
        """The recipes, validated (empty until they are)."""
        self.cards: list[RecipeCard] = []
        """What the list shows of each recipe: the cached cards until the recipes are validated."""
        self.shown: list[RecipeCard] = []
        self.loaded = False
        """The recipes are validated: Enter and t act (before, they wait for it)."""
        self._submit_pending = False  # Enter in the filter before the list loaded: act on it once loaded
        self._pending: str | None = None  # Enter or t on the list before it was validated: act once it is
        self._state: tuple[tuple[str, int, int], ...] | None = None  # the user recipes as last read

    def compose(self) -> ComposeResult:
        yield TitleHeader()
        yield FilterInput(placeholder="filter recipes (name, model, tags)…", id="recipe-filter")
        with Horizontal(id="recipes-body"):
            yield OptionList(id="recipe-list", classes="panel")
            with VerticalScroll(id="recipe-details", classes="panel"):
                yield RecipeDetails(id="details")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        self.query_one(RecipeDetails).update("loading recipes…")
        self.call_after_refresh(self.load_recipes)  # after the first paint: the thread competes for the GIL

    @work(thread=True, exclusive=True, group="recipes-load", exit_on_error=False)
    def load_recipes(self) -> None:
        """pydantic and YAML stay off the first frame: the list as last shown (cached cards, read with the
        standard library) fills in a moment after the first paint, then the recipes are validated behind it."""
        from lorastudio.recipecards import listing_state, read_cards
        from lorastudio.train.trainer import telemetry

        listing = listing_state()  # before reading: a file written meanwhile makes the cache stale
        cached = read_cards(listing)
        if cached is not None:
            self.app.call_from_thread(self._listed, *cached)
        on_gpu = telemetry.has_gpu()  # the details pane's est. VRAM, or est. RAM (as the Launch sheet says)
        self._validate(listing, cached, on_gpu)

    def _validate(
        self, listing: list[object], cached: tuple[list[RecipeCard], bool] | None, on_gpu: bool | None
    ) -> None:
        """(In a worker thread.) Every recipe validated; the cards rewritten when they changed."""
        from lorastudio.recipecards import write_cards
        from lorastudio.registry import load_all, user_recipes_state
        from lorastudio.widgets.recipe_details import card_of

        state = user_recipes_state()  # before reading: a file written meanwhile is read at the next look
        entries = load_all()
        cards = [card_of(entry) for entry in entries]
        seen_gpu = self.query_one(RecipeDetails).on_gpu if on_gpu is None else on_gpu
        if cached != (cards, seen_gpu):
            write_cards(listing, cards, seen_gpu)
        self.app.call_from_thread(self._loaded, entries, cards, state, on_gpu)

    def on_screen_resume(self) -> None:
        if self.loaded:
            self.watch_recipes()  # a recipe saved on the Launch sheet, or by hand meanwhile, shows at once

    @work(thread=True, exclusive=True, group="recipes-watch", exit_on_error=False)
    def watch_recipes(self) -> None:
        """Re-read the recipes when a user recipe file was added, edited or removed since the last read."""
        from lorastudio.recipecards import listing_state
        from lorastudio.registry import user_recipes_state

        if user_recipes_state() == self._state:
            return
        self._validate(listing_state(), None, None)

    def _listed(self, cards: list[RecipeCard], on_gpu: bool) -> None:
        """The cached cards, shown until the validated recipes replace them."""
        if self.loaded:
            return
        self.query_one(RecipeDetails).on_gpu = on_gpu
        self.cards = cards
        self._fill(self.query_one("#recipe-filter", Input).value)

    def _loaded(
        self,
        entries: list[RecipeEntry],
        cards: list[RecipeCard],
        state: tuple[tuple[str, int, int], ...] = (),
        on_gpu: bool | None = None,
    ) -> None:
        first = not self.loaded
        if on_gpu is not None:
            self.query_one(RecipeDetails).on_gpu = on_gpu
        keep = self.current.file.name if self.cards and self.current is not None else None
        self.entries = entries
        self.cards = cards
        self._state = state
        self.loaded = True
        self._fill(self.query_one("#recipe-filter", Input).value, keep)
        if first:
            self.set_interval(WATCH_EVERY_S, self.watch_recipes)
        if self._submit_pending:
            self._submit_pending = False
            if self._one_meant():
                self.action_choose()
        pending, self._pending = self._pending, None
        if pending == "choose":
            self.action_choose()
        elif pending == "train":
            self.action_train()

    def _fill(self, needle: str, keep: str | None = None) -> None:
        """List the recipes matching ``needle``, highlighting the file named ``keep`` if still listed."""
        needle = needle.lower().strip()
        self.shown = [c for c in self.cards if not needle or needle in self._haystack(c)]
        # a recipe named exactly what was typed comes first, so Enter opens it (tiny-pirate beside tiny-pirate-grpo)
        self.shown.sort(key=lambda e: not self._named(e, needle))
        options = self.query_one(OptionList)
        options.clear_options()
        for card in self.shown:
            # one line each, cut by the list's text-overflow (app.tcss); a plain str as before, not a rich
            # Text: the list is on the first frame, and Text prompts slowed its paint (benchmarks/startup.py)
            label = card.file.name
            if card.title is None:
                label += "  (invalid)"
            elif card.offline:
                label += "  (offline)"
            options.add_option(Option(label, id=card.file.name))
        names = [e.file.name for e in self.shown]
        index = names.index(keep) if keep in names else 0
        if self.shown:
            options.highlighted = index
        self.query_one(RecipeDetails).show(self.shown[index] if self.shown else None)

    @staticmethod
    def _named(card: RecipeCard, needle: str) -> bool:
        return bool(needle) and needle in (card.file.name.lower(), (card.title or "").lower())

    def _one_meant(self) -> bool:
        """Enter in the filter opens a recipe: the only one shown, or the one named exactly what was typed."""
        needle = self.query_one("#recipe-filter", Input).value.lower().strip()
        return len(self.shown) == 1 or (bool(self.shown) and self._named(self.shown[0], needle))

    @staticmethod
    def _haystack(card: RecipeCard) -> str:
        parts = [card.file.name]
        if card.title is not None:
            parts += [card.model, card.description, *card.tags]
        return " ".join(parts).lower()

    @property
    def current(self) -> RecipeCard | None:
        index = self.query_one(OptionList).highlighted
        return self.shown[index] if index is not None and 0 <= index < len(self.shown) else None

    def _entry(self, action: str) -> RecipeEntry | None:
        """The highlighted recipe, validated; before the list is, None (``action`` runs once it is)."""
        card = self.current
        if card is None:
            return None
        if not self.loaded:
            self._pending = action
            return None
        return next((e for e in self.entries if e.file.name == card.file.name), None)

    @on(OptionList.OptionHighlighted)
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.query_one(RecipeDetails).show(self.current)

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.action_choose()

    @on(Input.Changed, "#recipe-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._fill(self.query_one("#recipe-filter", Input).value)  # not event.value: Enter may have reset it

    @on(Input.Submitted, "#recipe-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        box = self.query_one("#recipe-filter", FilterInput)
        text = box.entered(event.value)
        if box.value != text:  # keys typed after Enter in a burst were meant for what Enter opens
            box.value = text
            self._fill(text)
        focus_now(self.query_one(OptionList))
        if not self.loaded:
            self._submit_pending = True
        elif self._one_meant():
            self.query_one(OptionList).highlighted = 0
            self.action_choose()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # "/" is a priority binding so the keys after it reach the box; typed into the box it is text.
        return not (action == "filter" and typing_in(self))

    def action_cursor_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()

    def action_filter(self) -> None:
        box = self.query_one("#recipe-filter", Input)
        box.add_class("visible")
        focus_now(box)

    def action_clear_filter(self) -> None:
        box = self.query_one("#recipe-filter", Input)
        box.value = ""
        box.remove_class("visible")
        box.display = False
        focus_now(self.query_one(OptionList))

    def action_choose(self) -> None:
        entry = self._entry("choose")
        if entry is None:
            return
        if entry.recipe is None:
            self.notify(entry.error or "invalid recipe", title="invalid recipe", severity="error")
            return
        if not entry.recipe.train.supervised:  # prompt and replies per part (screens/method_preview.py)
            go(self.app, nav.MethodPreview(entry.recipe))
            return
        go(self.app, nav.Preview(entry.recipe))

    def action_train(self) -> None:
        """Open the Launch sheet; nothing trains until Enter there."""
        entry = self._entry("train")
        if entry is not None and entry.recipe is not None:
            go(self.app, nav.Launch(entry.recipe, base=entry.file.name))

    def action_eval(self) -> None:
        """The Eval screen on the recipe's newest run against its base (found there, on a worker thread)."""
        entry = self.current
        if entry is not None:
            go(self.app, nav.Eval(recipe=entry.file.name))
