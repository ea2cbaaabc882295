"""Runs and Compare screens: Pilot tests pressing keys with no pauses, snapshots at 80x24 and 120x40."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import screen_of, send_burst, stand_in_worker, wait_until
from runs_fixtures import write_runs

from lorastudio.app import StudioApp

if TYPE_CHECKING:
    from lorastudio.screens.runs import RunsScreen

SIZES = [(80, 24), (120, 40)]
NEWEST, MIDDLE, OLDEST = (
    "qwen-csv-concepts-long-experiment-20260922-120000",
    "tiny-pirate-20260922-113000",
    "tiny-pirate-20260922-101500",
)


@pytest.fixture
def runs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    root = tmp_path / "data" / "studio" / "runs"
    write_runs(root)
    return root


async def burst(pilot, *keys: str) -> None:
    """A burst of keys, then a moment for the app to take them in."""
    send_burst(pilot.app, *keys)
    await pilot.pause(0.3)


def current_name(screen: RunsScreen) -> str | None:
    """The name of the run under the Runs screen's cursor (None with no run there)."""
    run = screen._current()
    return None if run is None else run.name


def plain(widget) -> str:
    import io

    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.render())
    return console.export_text()


async def test_burst_down_enter_attaches_to_the_highlighted_run(runs_root: Path) -> None:
    from lorastudio.screens.monitor import MonitorScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await burst(pilot, "ctrl+r", "down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MonitorScreen), timeout=30.0)
        assert screen_of(app, MonitorScreen).run_dir == runs_root / MIDDLE
        await pilot.pause(0.3)


async def test_keys_typed_while_the_list_loads_act_in_order(
    runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lorastudio.screens import runs as runs_screen
    from lorastudio.screens.monitor import MonitorScreen

    real = runs_screen.load_rows

    def slow_rows():
        time.sleep(1.0)  # a long events file: the list arrives after the keys
        return real()

    monkeypatch.setattr(runs_screen, "load_rows", slow_rows)
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await burst(pilot, "ctrl+r", "down", "down", "space", "up", "enter")
        screen = app.screen
        # The keys behind ctrl+r reach the Runs screen once it is up, before its list: it keeps them in order.
        assert isinstance(screen, runs_screen.RunsScreen) and not screen.loaded
        await wait_until(pilot, lambda: isinstance(app.screen, MonitorScreen), timeout=30.0)
        assert screen_of(app, MonitorScreen).run_dir == runs_root / MIDDLE and screen.marked == [OLDEST]
        await pilot.pause(0.3)


async def test_burst_down_down_enter_after_open(runs_root: Path) -> None:
    from lorastudio.screens.monitor import MonitorScreen
    from lorastudio.screens.runs import RunsScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        assert isinstance(app.screen, RunsScreen)
        await pilot.pause(0.5)
        await burst(pilot, "down", "down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MonitorScreen), timeout=30.0)
        assert screen_of(app, MonitorScreen).run_dir == runs_root / OLDEST


async def test_space_marks_and_v_opens_compare(runs_root: Path) -> None:
    from textual.widgets import DataTable

    from lorastudio.screens.compare import CompareScreen
    from lorastudio.widgets.compare_chart import CompareChart

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await burst(pilot, "ctrl+r", "down", "space", "space", "v")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen), timeout=30.0)
        screen = screen_of(app, CompareScreen)
        assert screen.paths == [runs_root / MIDDLE, runs_root / OLDEST]
        await wait_until(pilot, lambda: screen.comparison is not None, timeout=30.0)
        await pilot.pause()
        diff = screen.query_one("#compare-diff", DataTable)
        rows = {
            row[0]: [str(c) for c in row[1:]] for row in (diff.get_row_at(i) for i in range(diff.row_count))
        }
        assert rows == {"train.learning_rate": ["0.001", "0.003"], "train.batch_size": ["4", "8"]}
        results = screen.query_one("#compare-results", DataTable)
        assert results.row_count == 2 and results.get_row_at(0)[1] == f"{9.0 / 12**0.7:.4f}"
        chart = plain(screen.query_one(CompareChart))
        assert "step" in chart and any("\u2800" < ch <= "\u28ff" for ch in chart)
        assert MIDDLE in plain(screen.query_one("#compare-legend"))
        await pilot.press("e", "l")
        assert "eval loss" in plain(screen.query_one("#compare-title"))
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)
        await pilot.pause(0.3)


async def test_compare_warns_when_the_losses_are_not_the_same_measure(runs_root: Path) -> None:
    """An SFT run beside a GRPO run: the legend says their losses are not one measure."""
    from lorastudio import registry
    from lorastudio.screens.compare import CompareScreen

    (runs_root / MIDDLE / "recipe.yaml").write_text(registry.dump(registry.load("tiny-pirate-grpo")))
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await burst(pilot, "ctrl+r", "down", "space", "space", "v")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen), timeout=30.0)
        screen = screen_of(app, CompareScreen)
        await wait_until(pilot, lambda: screen.comparison is not None, timeout=30.0)
        await pilot.pause()
        assert MIDDLE in plain(screen.query_one("#compare-legend"))
        caveat = screen.query_one("#compare-caveat")
        assert "not the same measure (train.method" in " ".join(plain(caveat).split())
        assert caveat.display and caveat.region.height >= 1  # on screen, whatever the legend's height


async def test_compare_needs_two_marks(runs_root: Path) -> None:
    from lorastudio.screens.runs import RunsScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r", "space", "v")
        assert isinstance(app.screen, RunsScreen) and app.screen.marked == [NEWEST]
        await pilot.press("up", "space")  # unmark again
        assert app.screen.marked == []


async def test_delete_asks_and_removes_the_directory(runs_root: Path) -> None:
    from lorastudio.screens.confirm import ConfirmScreen
    from lorastudio.screens.runs import RunsScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await burst(pilot, "ctrl+r", "down", "delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=30.0)
        await pilot.pause()
        question = app.screen.query_one("#confirm-question")
        # the long path wraps inside the box at 80 columns instead of being cut at its edge
        assert question.region.right <= 80 and question.size.height >= 3
        assert str(runs_root / MIDDLE) in plain(question)
        await pilot.press("n")  # the answer comes once the question is on screen
        assert isinstance(app.screen, RunsScreen) and (runs_root / MIDDLE).exists()
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await wait_until(pilot, lambda: MIDDLE not in screen.working)  # removed on a worker thread
        assert not (runs_root / MIDDLE).exists()
        assert [r.name for r in screen.runs] == [NEWEST, OLDEST]


def status_cell(screen: RunsScreen, name: str) -> str:
    from textual.widgets import DataTable

    return str(screen.query_one(DataTable).get_cell(name, "status"))


async def test_delete_runs_on_a_worker_and_the_row_says_so(
    runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Typed in one burst, Delete and y start the removal on a thread: meanwhile the row says "deleting…" and
    the keys behind it still act (the event loop is free); once done the row and the folder are gone."""
    import threading

    from lorastudio.screens.runs import RunsScreen
    from lorastudio.train.launch import manage

    gate = threading.Event()
    real = manage.delete_run

    def held_delete(path: Path) -> str:  # the real delete, once the test has looked at the row
        gate.wait(30)
        return real(path)

    monkeypatch.setattr(manage, "delete_run", held_delete)
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        send_burst(app, "ctrl+r", "down", "delete", "y", "down")
        await wait_until(
            pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.working, timeout=30.0
        )
        screen = screen_of(app, RunsScreen)
        await wait_until(pilot, lambda: current_name(screen) == OLDEST)  # the Down behind y moved on
        assert screen.working == {MIDDLE: "delete"} and status_cell(screen, MIDDLE) == "deleting…"
        assert (runs_root / MIDDLE / "run.json").exists()
        await pilot.press("up", "delete")  # a second Delete of the same run is refused, not started again
        assert any(f"{MIDDLE}: deleting…" in n.message for n in app._notifications)
        gate.set()
        await wait_until(pilot, lambda: not screen.working)
        assert not (runs_root / MIDDLE).exists()
        assert [r.name for r in screen.runs] == [NEWEST, OLDEST]
        assert any(n.message == f"deleted {MIDDLE}" for n in app._notifications)


async def test_a_failed_delete_is_a_notification_naming_the_run(runs_root: Path) -> None:
    """The run's worker started between the question and the answer: the delete, on its thread, refuses;
    the notification names the run, the row shows its status again and nothing is removed."""
    from lorastudio.screens.confirm import ConfirmScreen
    from lorastudio.screens.runs import RunsScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await burst(pilot, "ctrl+r", "down", "delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=30.0)
        stand_in_worker(runs_root / MIDDLE)
        with (runs_root / MIDDLE / "events.jsonl").open("a") as handle:
            handle.write(
                json.dumps({"v": 1, "t": time.time(), "kind": "status", "status": "training"}) + "\n"
            )
        await pilot.press("y")
        screen = screen_of(app, RunsScreen)
        await wait_until(pilot, lambda: not screen.working)
        failed = [n for n in app._notifications if n.severity == "error"]
        assert failed and failed[-1].title == f"cannot delete {MIDDLE}" and MIDDLE in failed[-1].message
        assert "still running" in failed[-1].message
        assert (runs_root / MIDDLE / "run.json").exists() and status_cell(screen, MIDDLE) != "deleting…"


async def test_delete_refuses_a_live_run(runs_root: Path) -> None:
    from lorastudio.screens.runs import RunsScreen

    stand_in_worker(runs_root / NEWEST)
    with (runs_root / NEWEST / "events.jsonl").open("a") as handle:
        handle.write(json.dumps({"v": 1, "t": time.time(), "kind": "status", "status": "training"}) + "\n")
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r", "delete")
        assert isinstance(app.screen, RunsScreen)
        assert (runs_root / NEWEST / "run.json").exists()


async def test_note_sort_and_detail(runs_root: Path) -> None:
    from textual.widgets import DataTable

    from lorastudio.screens.runs import RunsScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r", "down", "n", "ctrl+u", *"smaller batch", "enter")
        screen = screen_of(app, RunsScreen)
        assert (runs_root / MIDDLE / "note.txt").read_text() == "smaller batch\n"
        table = screen.query_one(DataTable)
        note = str(table.get_row(MIDDLE)[-1])  # cut beside the long names at 80 columns, whole below
        assert note.endswith("…") and "smaller batch".startswith(note[:-1]) and len(note) >= 6
        assert "note: smaller batch" in plain(screen.query_one("#run-detail"))
        await pilot.press("o")  # by loss: lowest last loss first
        assert screen.sort_key == "loss"
        assert [r.name for r in screen.runs] == [MIDDLE, OLDEST, NEWEST]
        assert current_name(screen) == MIDDLE  # the cursor stays on the same run
        await pilot.press("o")
        assert screen.sort_key == "status" and [r.status for r in screen.runs] == ["stopped", "done", "done"]
        await pilot.press("n", "escape")  # cancelling keeps the note
        assert (runs_root / MIDDLE / "note.txt").exists()


async def test_chat_offers_checkpoints_then_opens_chat(
    runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lorastudio.screens.chat import ChatScreen
    from lorastudio.screens.checkpoint_picker import CheckpointPicker

    monkeypatch.setattr(
        ChatScreen, "load_engine", lambda self: None
    )  # the choice is under test, not the model

    run = runs_root / NEWEST
    for folder in ("adapter", "checkpoints/checkpoint-4", "checkpoints/checkpoint-7"):
        (run / folder).mkdir(parents=True)
        (run / folder / "adapter_config.json").write_text("{}")
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r", "c")
        picker = app.screen
        assert isinstance(picker, CheckpointPicker)
        assert [c.label for c in picker.choices] == ["adapter (final)", "checkpoint-7", "checkpoint-4"]
        await pilot.press("down", "down", "enter")
        assert isinstance(app.screen, ChatScreen)
        assert app.screen.target == str(run / "checkpoints" / "checkpoint-4")


# -- snapshots -------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_runs_managed(snap_compare, size, runs_root: Path) -> None:
    async def run_before(pilot) -> None:
        await pilot.press("ctrl+r", "space", "down", "space")
        await pilot.pause(0.2)

    assert snap_compare(StudioApp(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_compare(snap_compare, size, runs_root: Path) -> None:
    async def run_before(pilot) -> None:
        await pilot.press("ctrl+r", "space", "space", "space", "v")
        await wait_until(
            pilot, lambda: getattr(pilot.app.screen, "comparison", None) is not None, timeout=30.0
        )
        await pilot.pause(0.2)

    assert snap_compare(StudioApp(), terminal_size=size, run_before=run_before)


def test_chart_overlays_series_on_shared_axes() -> None:
    from lorastudio.widgets.compare_chart import SERIES_COLORS, render_chart

    text = render_chart([("A", [(1, 4.0), (10, 1.0)]), ("B", [(1, 2.0), (20, 0.5)])], width=40, height=10)
    lines = text.plain.splitlines()
    assert len(lines) == 10 and all(len(line) <= 40 for line in lines)
    assert lines[0].lstrip().startswith("4 ┤") and lines[7].lstrip().startswith("0.5 ┤")  # y from both runs
    assert lines[-1].split() == ["1", "step", "20"]  # x spans both runs
    styles = {span.style for span in text.spans}
    assert SERIES_COLORS[0] in styles and SERIES_COLORS[1] in styles
    assert "(log y)" in render_chart([("A", [(1, 100.0), (2, 1.0)])], 40, 8, log_y=True).plain
    assert render_chart([("A", [])], 40, 8).plain == "no loss logged yet"


async def test_stop_and_resume_refuse_clearly_on_a_finished_run(runs_root: Path) -> None:
    from lorastudio.screens.runs import RunsScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        await wait_until(
            pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, timeout=30.0
        )
        await pilot.press("down", "s", "r")  # a done run: no question, no worker started
        assert isinstance(app.screen, RunsScreen)
        screen = app.screen
        await wait_until(pilot, lambda: not screen.working)  # the resume is refused on its worker thread
        messages = [n.message for n in app._notifications]
        assert any("no live worker" in m for m in messages)
        assert any("only a stopped, failed or died run can be resumed" in m for m in messages)
        assert "pid" not in json.loads((runs_root / MIDDLE / "run.json").read_text())


async def test_help_over_the_monitor_lists_every_key_once_with_a_name(runs_root: Path) -> None:
    """The chart keys 1-5 have names, and the app's ctrl+r is listed beside the Monitor's own r (both Runs)."""
    from textual.widgets import Static

    from lorastudio.screens.help import HelpScreen
    from lorastudio.screens.monitor import MonitorScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await burst(pilot, "ctrl+r", "down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MonitorScreen), timeout=30.0)
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), timeout=10.0)
        import io

        from rich.console import Console

        console = Console(width=80, file=io.StringIO(), record=True, color_system=None)
        console.print(app.screen.query_one(Static).content)  # the table itself
        rows = [" ".join(line.split()) for line in console.export_text().splitlines()]
        assert "r, ^r Runs" in rows and "1 loss chart" in rows and "5 memory MiB chart" in rows
        assert not any("select_chart" in row for row in rows)
        assert sum(row.startswith("s ") for row in rows) == 1  # Stop, once


HOSTILE = "[/INST] [rank0]: [b]x[/b]"
"""Text that Textual's and Rich's markup would eat ("[rank0]", "[b]") or refuse with a crash ("[/INST]")."""


async def test_notes_recipe_values_and_causes_are_shown_as_written(runs_root: Path) -> None:
    """A note, a recipe value (Llama-2's "[/INST]") and a worker's error are text, never markup: the app
    crashed on "[/INST]" and silently dropped "[rank0]"."""
    from textual.widgets import DataTable

    from lorastudio.screens.compare import CompareScreen
    from lorastudio.screens.monitor import MonitorScreen

    (runs_root / MIDDLE / "note.txt").write_text(HOSTILE)
    recipe = runs_root / MIDDLE / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("/srv/data/tiny_pirate.jsonl", f"'/srv/{HOSTILE}.jsonl'"))
    with (runs_root / OLDEST / "events.jsonl").open("a") as handle:
        handle.write(
            json.dumps({"v": 1, "t": 2e9, "kind": "status", "status": "failed", "cause": HOSTILE}) + "\n"
        )
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await burst(pilot, "ctrl+r")
        await wait_until(pilot, lambda: getattr(app.screen, "loaded", False), timeout=30.0)
        table = app.screen.query_one(DataTable)
        cells = [str(cell) for i in range(table.row_count) for cell in table.get_row_at(i)]
        assert HOSTILE in cells
        await burst(pilot, "down", "space", "space", "v")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen), timeout=30.0)
        screen = screen_of(app, CompareScreen)
        await wait_until(pilot, lambda: screen.comparison is not None, timeout=30.0)
        await pilot.pause()
        diff = screen.query_one("#compare-diff", DataTable)
        rows = {
            str(row[0]): [str(c) for c in row[1:]]
            for row in (diff.get_row_at(i) for i in range(diff.row_count))
        }
        assert rows["data.source"] == [f"/srv/{HOSTILE}.jsonl", "/srv/data/tiny_pirate.jsonl"]
        await pilot.press("escape")
        await burst(pilot, "down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MonitorScreen), timeout=30.0)
        await wait_until(pilot, lambda: HOSTILE in plain(app.screen.query_one("#status-line")), timeout=30.0)


# -- 80 columns: every column on screen, Home/End, the footer's keys ------------------------------
def screen_lines(app) -> list[str]:
    """The terminal's lines as the user sees them."""
    strips = app.screen._compositor.render_strips()
    return ["".join(segment.text for segment in strip) for strip in strips]


async def test_at_80_columns_a_long_status_leaves_every_column_on_screen(runs_root: Path) -> None:
    """A queued run's status names its cause: the table shows ``queued``, the details pane the cause, and
    step, loss and start time stay on screen beside the longest name."""
    from runs_fixtures import write_queued_run
    from textual.widgets import DataTable

    from lorastudio.screens.runs import RunsScreen

    write_queued_run(runs_root, "tiny-pirate-20260922-150000", created=1_790_012_000.0)
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, timeout=30)
        await pilot.pause()
        table = app.screen.query_one("#runs-table", DataTable)
        assert table.virtual_size.width <= table.size.width  # nothing off to the right
        assert str(table.get_row_at(0)[2]) == "queued"
        lines = screen_lines(app)
        queued = next(line for line in lines if "tiny-pirate-20260922-150000" in line)
        assert "queued " in queued and "0/?" in queued and "09-21 17:33" in queued
        long = next(line for line in lines if "stopped" in line)
        assert "…20260922-120000" in long and "7/40" in long and "5.1223" in long and "09-21 16:13" in long
        assert "queued (waiting for CPU)" in plain(app.screen.query_one("#run-detail"))


async def test_home_and_end_move_to_the_first_and_last_run(
    runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lorastudio.screens import runs as runs_screen

    real = runs_screen.load_rows

    def slow_rows():
        time.sleep(1.0)  # the list arrives after the keys
        return real()

    monkeypatch.setattr(runs_screen, "load_rows", slow_rows)
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await burst(pilot, "ctrl+r", "end")  # typed before the list arrives: acted on once it does
        await wait_until(
            pilot, lambda: isinstance(app.screen, runs_screen.RunsScreen) and app.screen.loaded, timeout=30
        )
        screen = screen_of(app, runs_screen.RunsScreen)
        table = screen.query_one("#runs-table", runs_screen.RunsTable)
        await wait_until(pilot, lambda: not app.keys_waiting, timeout=10)
        assert table.cursor_row == 2 and current_name(screen) == OLDEST
        await pilot.press("home")
        assert table.cursor_row == 0 and current_name(screen) == NEWEST
        await pilot.press("end", "up")
        assert current_name(screen) == MIDDLE


async def test_the_footer_shows_the_main_keys_whole_at_80_columns(runs_root: Path) -> None:
    from lorastudio.screens.runs import RunsScreen

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, timeout=30)
        await pilot.pause()
        footer = screen_lines(app)[-1]
        for key in ("space Mark", "v Compare", "c Chat", "s Stop", "r Resume", "x Export", "D Delete"):
            assert key in footer, footer
        assert footer.index("space Mark") < footer.index("v Compare") < footer.index("D Delete")
        assert footer.rstrip().endswith("^p palette"), footer  # no next key's letter beside it (paletteN)


async def test_compare_at_80x24_shows_the_differences_and_scrolls_to_the_last(runs_root: Path) -> None:
    """Four runs, one of them GRPO (a caveat line, 21 fields differ): the legend and caveat take rows, yet the
    differences are on screen, every run's column with them, and the pane scrolls by keyboard to the last."""
    from runs_fixtures import write_run

    from lorastudio import registry
    from lorastudio.screens.compare import CompareScreen

    write_run(runs_root, "tiny-pirate-20260922-130000", created=1_790_009_000.0, lr=0.0005)
    (runs_root / MIDDLE / "recipe.yaml").write_text(registry.dump(registry.load("tiny-pirate-grpo")))
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await burst(pilot, "ctrl+r", "space", "space", "space", "space", "v")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen), timeout=30.0)
        screen = screen_of(app, CompareScreen)
        await wait_until(pilot, lambda: screen.comparison is not None, timeout=30.0)
        fields = list(screen.comparison.differing)
        assert len(fields) > 10

        def visible() -> str:
            return "\n".join(screen_lines(app)[:-1])  # above the footer

        # some differences, not just their title, once the table has been drawn (a loaded machine takes a while)
        await wait_until(pilot, lambda: sum(f" {name} " in visible() for name in fields) >= 3, timeout=30.0)
        assert "recipe fields that differ" in visible()
        header = next(line for line in screen_lines(app) if line.startswith(" field "))
        # every run's column on screen (the pane's scrollbar may draw its thumb at the row's end)
        assert [word for word in header.split()[1:] if word.isalpha()] == ["A", "B", "C", "D"]
        assert not any(f" {fields[-1]} " in line for line in screen_lines(app))
        await pilot.press("end")  # the pane has the focus: its scroll is animated
        await wait_until(pilot, lambda: any(f" {fields[-1]} " in line for line in screen_lines(app)[:-1]))
        await pilot.press("home")
        await wait_until(pilot, lambda: "recipe fields that differ" in "\n".join(screen_lines(app)))
