"""The Runs screen groups a sweep's runs under one row (g or Enter folds it), and v on that row opens Compare on
the sweep with its best run by eval loss starred."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import send_burst, wait_until
from runs_fixtures import write_run

from lorastudio.app import StudioApp
from lorastudio.train.runs import update_meta

T0 = 1_790_000_000.0
ALONE = "tiny-pirate-20260922-130000"
SWEPT = ["tiny-pirate-20260922-110000", "tiny-pirate-20260922-120000"]


@pytest.fixture
def runs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    root = tmp_path / "data" / "studio" / "runs"
    for index, (name, lr, scale) in enumerate(zip(SWEPT, (0.003, 0.001), (12.0, 9.0), strict=True)):
        run = write_run(root, name, created=T0 + 100 * index, lr=lr, loss_scale=scale, eval_every=4)
        update_meta(run, sweep={"name": "lr", "index": index, "of": 2, "fields": {"train.learning_rate": lr}})
    write_run(root, ALONE, created=T0 + 300)
    return root


def names_shown(app: StudioApp) -> list[str]:
    from textual.widgets import DataTable

    table = app.screen.query_one(DataTable)
    return [str(table.get_row_at(i)[1]).strip() for i in range(table.row_count)]


async def test_a_sweep_is_one_group_that_folds_and_compares(runs_root: Path) -> None:
    from lorastudio.screens.compare import CompareScreen
    from lorastudio.screens.runs import RunsScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        send_burst(app, "ctrl+r")
        await wait_until(
            pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, timeout=30.0
        )
        assert names_shown(app) == [ALONE, "▾ sweep lr", SWEPT[1], SWEPT[0]]
        await pilot.press("down")  # the group's row
        assert "v compare the sweep" in str(app.screen.query_one("#run-detail").render())
        await pilot.press("g")
        assert names_shown(app) == [ALONE, "▸ sweep lr"]
        await pilot.press("enter")
        assert names_shown(app) == [ALONE, "▾ sweep lr", SWEPT[1], SWEPT[0]]
        await pilot.press("down", "g")  # g on a member folds its group too, the cursor stays on the group
        assert names_shown(app) == [ALONE, "▸ sweep lr"]
        assert app.screen.query_one("DataTable").cursor_row == 1
        await pilot.press("v")
        await wait_until(
            pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None
        )
        screen = app.screen
        assert screen.sweep == "lr" and sorted(p.name for p in screen.paths) == sorted(SWEPT)
        results = screen.query_one("#compare-results")
        letters = [str(results.get_row_at(i)[0]) for i in range(results.row_count)]
        best = min(range(2), key=lambda i: screen.comparison.runs[i].best_eval_loss)
        assert letters[best].endswith("★") and sum(letter.endswith("★") for letter in letters) == 1
        assert "train.learning_rate" in [
            str(r[0])
            for r in (
                screen.query_one("#compare-diff").get_row_at(i)
                for i in range(screen.query_one("#compare-diff").row_count)
            )
        ]
