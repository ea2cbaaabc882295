"""Keys typed in one burst act on the screen the key before them opened (issue 38): no stacked Previews racing
on the prepared-data cache, the Monitor's footer matching the pane a fast `p p` leaves, Help's title."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import screen_of, wait_until
from conftest import send_burst as burst
from test_tui import text_of, write_recorded_run

from lorastudio.app import StudioApp


@pytest.fixture
def fresh_cache(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty prepared-data cache (so the Preview builds its entry), with the session's tiny model in it."""
    cache = tmp_path / "cache"
    (cache / "studio").mkdir(parents=True)
    (cache / "studio" / "tiny-base").symlink_to(tiny_model, target_is_directory=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache / "studio" / "prepared"


async def test_enter_enter_burst_opens_one_preview_with_its_stats(
    fresh_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/tiny-var3` Enter Enter in one burst stacked two Previews that prepared one cache key at once
    (FileExistsError / FileNotFoundError toasts, an empty stats pane): the second Enter belongs to the
    Preview the first one opened, where it does nothing."""
    from lorastudio.screens.preview import PreviewScreen
    from lorastudio.screens.recipes import RecipesScreen
    from lorastudio.widgets.stats_panel import StatsPanel

    user = tmp_path / "config" / "studio" / "recipes"
    user.mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (user / "tiny-var3.yaml").write_text(
        "extends: tiny-pirate\nname: tiny-var3\nmodel:\n  max_seq_length: 100\n"
    )
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        recipes = screen_of(app, RecipesScreen)
        await wait_until(pilot, lambda: recipes.entries)
        burst(app, "slash", *"tiny-var3", "enter", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PreviewScreen) and app.screen.loaded)
        preview = screen_of(app, PreviewScreen)
        panel = preview.query_one(StatsPanel)
        await wait_until(pilot, lambda: "computing" not in text_of(panel) and "used" in text_of(panel))
        await pilot.pause(0.3)
        assert [type(s) for s in app.screen_stack].count(PreviewScreen) == 1
        assert app.screen is preview
        assert preview.recipe.name == "tiny-var3"
        assert preview.recipe.model.max_seq_length == 100
        assert [n.message for n in app._notifications if n.severity == "error"] == []
        assert "rows" in text_of(panel)
        assert "truncated" in text_of(panel)
        assert [p.name for p in fresh_cache.iterdir() if p.name.endswith(".tmp")] == []


async def test_fast_p_p_leaves_the_charts_and_their_footer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`p p` typed fast: the Samples pane opened and closed, but its deferred focus landed on the hidden pane,
    so the footer went on showing the Samples keys (Earlier, Later, Base)."""
    from lorastudio.screens.monitor import MonitorScreen
    from lorastudio.widgets.samples_view import SamplesView

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    run = write_recorded_run(tmp_path / "data" / "studio" / "runs")
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.push_screen(MonitorScreen(run))
        screen = screen_of(app, MonitorScreen)
        await wait_until(pilot, lambda: screen.snapshot is not None)
        acted: list[bool] = []
        real = screen.action_samples

        def counted() -> None:
            real()
            acted.append(screen.has_class("-samples"))

        monkeypatch.setattr(screen, "action_samples", counted)
        burst(app, "p", "p")
        view = screen.query_one(SamplesView)
        # both keys acted: opened, then closed (on a loaded machine the second waits behind the first's effects)
        await wait_until(pilot, lambda: len(acted) == 2, timeout=20)
        assert acted == [True, False]
        assert not view.display
        await pilot.pause(0.2)  # and the deferred focus of the first, were there one, has landed
        assert screen.focused is not view
        shown = {b.binding.id for b in screen.active_bindings.values() if b.binding.show}
        assert "monitor.samples" in shown
        assert not {i for i in shown if i and i.startswith("samples.")}


@pytest.mark.parametrize(
    ("opener", "title"),
    [
        ("recipes", "Keys · Recipes"),
        ("method", "Keys · Preview · tiny-pirate-grpo · grpo"),
    ],
)
async def test_help_is_titled_as_the_screen_calls_itself(opener: str, title: str, monkeypatch) -> None:
    """The title read `Keys · MethodPreview` (the class's name): it is the screen's own title line."""
    from lorastudio import registry
    from lorastudio.screens.help import HelpScreen
    from lorastudio.screens.method_preview import MethodPreviewScreen

    monkeypatch.setattr(MethodPreviewScreen, "load", lambda self: None)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        if opener == "method":
            await app.push_screen(MethodPreviewScreen(registry.load("tiny-pirate-grpo")))
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        assert title in " ".join(text_of(app.screen.query_one("Static")).split())  # (the title wraps)
