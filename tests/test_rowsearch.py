"""The Preview's search: which row it finds, over an Arrow table or a list, and that the screen stays live."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from conftest import send_burst as burst
from conftest import wait_until

from lorastudio.data.datasource import RowTable
from lorastudio.data.rowsearch import find_row


def _rows() -> list[dict]:
    rows: list[dict[str, Any]] = [
        {"instruction": f"Question {i}", "response": f"Answer {i}", "messages": None} for i in range(10)
    ]
    rows[3]["response"] = "The KRAKEN rises"
    rows[7]["instruction"] = "where is the kraken?"
    rows[8]["messages"] = [{"role": "user", "content": "a Parrot in a list"}]
    return rows


def _tables() -> list[RowTable]:
    from datasets import Dataset

    return [RowTable(_rows()), RowTable(Dataset.from_list(_rows()))]


def test_the_next_row_holding_the_text_case_ignored_going_round() -> None:
    for rows in _tables():
        assert find_row(rows, "kraken") == 3
        assert find_row(rows, "Kraken", after=3) == 7
        assert find_row(rows, "KRAKEN", after=7) == 3  # round to the start
        assert find_row(rows, "parrot") == 8  # inside a list of turns
        assert find_row(rows, "answer 9", after=9) == 9  # the row itself, last of all
        assert find_row(rows, "sea serpent") is None
        assert find_row(rows, "instruction") is None  # column names are not row text


def test_cancelling_stops_the_search() -> None:
    from datasets import Dataset

    assert find_row(RowTable(Dataset.from_list(_rows())), "kraken", cancelled=lambda: True) is None


async def test_searching_a_big_file_finds_its_last_row_and_keys_still_move_samples(
    tmp_path: Path, tiny_model: Path
) -> None:
    """200k rows: the search runs in a worker (it used to scan row by row on the UI thread, for minutes)."""
    from lorastudio import registry
    from lorastudio.app import StudioApp
    from lorastudio.screens.preview import PreviewScreen
    from lorastudio.widgets.token_view import TokenView

    data = tmp_path / "big.jsonl"
    with data.open("w") as handle:
        for i in range(200_000):
            handle.write(
                json.dumps(
                    {
                        "instruction": f"Question {i}?",
                        "context": "",
                        "response": "the last one" if i == 199_999 else f"Arr {i}.",
                    }
                )
                + "\n"
            )
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = PreviewScreen(registry.load("tiny-pirate", [f"data.source={data}", "data.format=dolly"]))
        await app.push_screen(screen)
        await wait_until(pilot, lambda: screen.loaded)
        start = time.perf_counter()
        burst(app, "slash", *"THE LAST", "enter")
        await wait_until(pilot, lambda: screen.index == 199_999)
        took = time.perf_counter() - start
        assert screen.query_one(TokenView).highlight == "THE LAST"
        # "p" typed ahead is not part of the search: it acts on the Preview once the search has ended.
        burst(app, "slash", *"no such text", "enter", "p")
        await wait_until(pilot, lambda: any("not found" in n.message for n in app._notifications))
        assert [n.message for n in app._notifications] == ["'no such text' not found"]
        await wait_until(pilot, lambda: screen.index == 199_998)
        await pilot.press("p")
        await wait_until(pilot, lambda: screen.index == 199_997)
        assert app.screen is screen
        assert took < 30, took  # seconds, not minutes: the whole file is matched a column at a time
