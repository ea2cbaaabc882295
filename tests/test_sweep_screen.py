"""The Runs screen groups a sweep's runs under one row (g or Enter folds it), and v on that row opens Compare on
the sweep with its best run by eval loss starred."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import screen_of, send_burst, wait_until
from runs_fixtures import write_run

from lorastudio.app import StudioApp
from lorastudio.train.launch.runs import update_meta

T0 = 1_790_000_000.0
ALONE = "tiny-pirate-20260922-130000"
SWEPT = ["tiny-pirate-20260922-110000", "tiny-pirate-20260922-120000"]
MEMBERS = [f"lr=0.001  {SWEPT[1]}", f"lr=0.003  {SWEPT[0]}"]
"""The members' name cells: the value the sweep gave each first (their names differ only in the time)."""


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
    from textual.widgets import DataTable

    from lorastudio.screens.compare import CompareScreen
    from lorastudio.screens.runs import RunsScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        send_burst(app, "ctrl+r")
        await wait_until(
            pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, timeout=30.0
        )
        assert names_shown(app) == [ALONE, "▾ sweep lr", *MEMBERS]
        await pilot.press("down")  # the group's row
        assert "v compare the sweep" in str(app.screen.query_one("#run-detail").render())
        await pilot.press("g")
        assert names_shown(app) == [ALONE, "▸ sweep lr"]
        await pilot.press("enter")
        assert names_shown(app) == [ALONE, "▾ sweep lr", *MEMBERS]
        await pilot.press("down", "g")  # g on a member folds its group too, the cursor stays on the group
        assert names_shown(app) == [ALONE, "▸ sweep lr"]
        assert app.screen.query_one(DataTable).cursor_row == 1
        await pilot.press("v")
        await wait_until(
            pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None
        )
        screen = screen_of(app, CompareScreen)
        assert screen.sweep == "lr" and sorted(p.name for p in screen.paths) == sorted(SWEPT)
        results = screen.query_one("#compare-results", DataTable)
        letters = [str(results.get_row_at(i)[0]) for i in range(results.row_count)]
        comparison = screen.comparison
        assert comparison is not None
        best = min(range(2), key=lambda i: comparison.runs[i].best_eval_loss)
        assert letters[best].endswith("★") and sum(letter.endswith("★") for letter in letters) == 1
        assert "train.learning_rate" in [
            str(r[0])
            for r in (
                screen.query_one("#compare-diff", DataTable).get_row_at(i)
                for i in range(screen.query_one("#compare-diff", DataTable).row_count)
            )
        ]


@pytest.fixture
def sweeps_started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[object]:
    """The plans the Launch sheet starts (recorded, not trained); a fixed machine for the memory estimate."""
    import lorastudio.models.estimate as estimate
    import lorastudio.train.launch.memoryfit as memory
    import lorastudio.train.launch.sweep as sweep
    from lorastudio.models.tiny import CONFIG

    monkeypatch.setattr(memory, "free_gpu", lambda: None)
    monkeypatch.setattr(memory, "free_host", lambda: memory.FreeMemory("CPU", 20 * 1024.0, 24 * 1024.0))
    monkeypatch.setattr(estimate, "find_model_config", lambda recipe: {**CONFIG, "vocab_size": 640})
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    plans: list[object] = []

    def start_sweep(plan, root=None) -> list[Path]:
        plans.append(plan)
        return []

    monkeypatch.setattr(sweep, "start_sweep", start_sweep)
    return plans


async def test_the_launch_sheet_starts_a_sweep_from_comma_separated_values(
    sweeps_started: list[object],
) -> None:
    from textual.widgets import Input, Label

    from lorastudio import registry
    from lorastudio.screens.confirm import ConfirmScreen
    from lorastudio.screens.launch import LaunchScreen
    from lorastudio.screens.runs import RunsScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        sheet = LaunchScreen(registry.load("tiny-pirate"))
        await app.push_screen(sheet)
        await wait_until(pilot, lambda: sheet.estimate_text is not None)
        rate = sheet.query_one("#f-train-learning-rate", Input)
        sheet.set_focus(rate)
        rate.value = "0.001, -1"
        await wait_until(pilot, lambda: sheet.sweep_axes.get("train.learning_rate") == ["0.001", "-1"])
        assert str(sheet.query_one("#e-train-learning-rate", Label).content) == "sweep: 2 values"
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.screen is sheet and sweeps_started == []  # -1 is refused before anything starts
        rate.value = "0.001, 0.003"
        steps = sheet.query_one("#f-train-max-steps", Input)
        steps.value = "4, 8"
        await wait_until(pilot, lambda: len(sheet.sweep_axes) == 2)
        status = str(sheet.query_one("#launch-status", Label).content)
        assert "sweep of 4 runs over train.max_steps, train.learning_rate" in status  # in the form's order
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
        (plan,) = sweeps_started
        assert [p.fields for p in plan.points] == [  # type: ignore[attr-defined]
            {"train.max_steps": 4, "train.learning_rate": 0.001},
            {"train.max_steps": 4, "train.learning_rate": 0.003},
            {"train.max_steps": 8, "train.learning_rate": 0.001},
            {"train.max_steps": 8, "train.learning_rate": 0.003},
        ]


@pytest.mark.parametrize(
    "fields",
    [
        {"train.learning_rate": [0.003, 0.001]},
        {"train.learning_rate": [0.003, 0.001], "lora.r": [8, 16], "train.max_steps": [12, 24]},
    ],
    ids=["one-field", "three-fields"],
)
async def test_at_80_columns_a_sweeps_rows_show_their_swept_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fields: dict[str, list[float | int]]
) -> None:
    """Issue 38 (Runs at 80 columns): a sweep's members were listed by names that differ only in the time; on
    screen each member's row leads with the values its sweep gave it, whole."""
    from test_runs_screen import screen_lines

    from lorastudio.screens.runs import RunsScreen, swept_values

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    root = tmp_path / "data" / "studio" / "runs"
    given = [{key: values[i] for key, values in fields.items()} for i in range(2)]
    for index, name in enumerate(SWEPT):
        run = write_run(root, name, created=T0 + 100 * index)
        update_meta(run, sweep={"name": "grid", "index": index, "of": 2, "fields": given[index]})
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        send_burst(app, "ctrl+r")
        await wait_until(
            pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, timeout=30.0
        )
        await pilot.pause()
        lines = screen_lines(app)
        for values in given:
            shown = swept_values(values)
            assert shown.startswith("lr=") and sum(shown in line for line in lines) == 1, (shown, lines)
