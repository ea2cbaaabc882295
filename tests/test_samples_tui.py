"""The Monitor's Samples pane, Compare's samples view and ``studio runs samples`` on a recorded run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import wait_until
from test_tui import SIZES, screen_text, text_of, write_recorded_run

from lorastudio.app import StudioApp
from lorastudio.screens.monitor import MonitorScreen
from lorastudio.widgets.samples_view import SamplesView

PROMPTS = ("Where is the treasure?", "How do I boil an egg?")
REFERENCES = ("Arr, the treasure be buried where X marks the spot!", "")
"""The held-out row's own reply to the first prompt; the second (a recipe's own prompt) has none."""
ROUNDS = [
    (0, "start", ("The treasure is in the bank.", "Boil water, add the egg.")),
    (6, "eval", ("Arr, the treasure be in the bank.", "Boil water, add the egg, matey.")),
    (
        12,
        "end",
        ("Arr, the treasure be buried on the isle, matey!", "Arr, boil the water and drop the egg in!"),
    ),
]


def add_samples(run: Path) -> Path:
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    t0 = events[0]["t"]
    extra = [
        {
            "v": 1,
            "t": t0 + 0.9 + step * 0.25 + 0.01,
            "kind": "sample",
            "step": step,
            "at": at,
            "prompts": list(PROMPTS),
            "replies": list(replies),
            "finish": ["stop", "length"],
            "seconds": 1.25,
            "max_new_tokens": 64,
            "references": list(REFERENCES),
        }
        for step, at, replies in ROUNDS
    ]
    merged = sorted(events + extra, key=lambda e: e["t"])
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in merged))
    return run


@pytest.fixture
def sampled_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    return add_samples(write_recorded_run(tmp_path / "data" / "studio" / "runs"))


async def _open(app: StudioApp, pilot, run: Path) -> MonitorScreen:
    await app.push_screen(MonitorScreen(run))
    screen = app.screen
    assert isinstance(screen, MonitorScreen)
    await wait_until(pilot, lambda: screen.snapshot is not None and screen.snapshot.state.finished)
    await pilot.pause()
    return screen


async def test_samples_pane_steps_through_history(sampled_run: Path) -> None:
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot, sampled_run)
        view = screen.query_one(SamplesView)
        assert not view.display
        await pilot.press("p")
        assert view.display
        assert app.focused is view
        body = text_of(view.query_one("#samples-body"))
        assert "end · step 12" in body
        assert "round 3/3" in body
        assert "buried on the isle" in body
        # the data's answer under the reply it belongs to, and none where the data has none
        treasure, egg = body.split("▌ ")[1:]
        assert "reference: Arr, the treasure be buried where X marks the spot!" in " ".join(treasure.split())
        assert "reference" not in egg
        assert "3.8 s sampling in all" in body
        # the changes from the previous round are marked: added words green, dropped ones struck through
        spans = view.render_text().spans
        styles = {str(s.style) for s in spans}
        assert "bold green" in styles
        assert "red strike" in styles
        await pilot.press("left")
        body = text_of(view.query_one("#samples-body"))
        assert "eval · step 6" in body
        assert "round 2/3 (held)" in body
        assert "Arr, the treasure be in the bank." in body
        await pilot.press("left", "left")  # stops at the first round
        body = text_of(view.query_one("#samples-body"))
        assert "base · step 0" in body
        assert "round 1/3" in body
        assert "added" not in body
        await pilot.press("end")
        assert "round 3/3" in text_of(view.query_one("#samples-body"))
        await pilot.press("b")
        body = text_of(view.query_one("#samples-body"))
        assert "base: The treasure is in the bank." in body
        assert "base: Boil water, add the egg." in body
        await pilot.press("p")
        assert not view.display
        assert screen.query_one("#charts").display


async def test_compare_shows_replies_side_by_side(sampled_run: Path, tmp_path: Path) -> None:
    import shutil

    from lorastudio.screens.compare import CompareScreen

    other = sampled_run.parent / "tiny-pirate-other"
    shutil.copytree(sampled_run, other)
    lines = (other / "events.jsonl").read_text().replace("buried on the isle", "under the palm").splitlines()
    (other / "events.jsonl").write_text("\n".join(lines) + "\n")
    app = StudioApp()
    async with app.run_test(size=(160, 40)) as pilot:
        await app.push_screen(CompareScreen([sampled_run, other]))
        await pilot.pause()
        await pilot.press("p")
        await wait_until(pilot, lambda: getattr(app.screen, "histories", None) is not None)
        await pilot.pause()
        text = screen_text(app)
        assert "buried on the isle" in text
        assert "under the palm" in text
        assert "Where is the treasure?" in text
        await pilot.press("b")
        await pilot.pause()
        assert "The treasure is in the bank." in screen_text(app)


def test_cli_runs_samples(sampled_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lorastudio.cli import main

    assert main(["runs", "samples", sampled_run.name, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["prompts"] == list(PROMPTS)
    assert [r["step"] for r in data["rounds"]] == [0, 6, 12]
    assert data["rounds"][2]["replies"][0]["reply"] == ROUNDS[2][2][0]
    assert data["sampling_s"] == 3.75
    assert main(["runs", "samples", sampled_run.name]) == 0
    out = capsys.readouterr()
    assert "end · step 12" in out.out
    assert "{+" in out.out
    assert "[-" in out.out
    assert "3 rounds, 3.8 s spent sampling" in out.err


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_samples_pane(snap_compare, size, sampled_run: Path) -> None:
    async def run_before(pilot) -> None:
        await wait_until(
            pilot,
            lambda: (
                getattr(pilot.app.screen, "snapshot", None) is not None
                and pilot.app.screen.snapshot.state.finished
            ),
        )
        await pilot.press("p", "left")
        await pilot.pause(0.3)

    assert snap_compare(StudioApp(attach=sampled_run), terminal_size=size, run_before=run_before)
