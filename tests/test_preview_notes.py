"""The Preview says how the template rendered a row: a reply's think block, and whether it trains."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import screen_of, wait_until

from lorastudio.app import StudioApp


def _text(widget) -> str:
    import io

    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=200)
    console.print(widget.render())
    return buffer.getvalue()


async def test_preview_shows_the_think_block_and_whether_it_trains(tiny_model: Path, tmp_path: Path) -> None:
    from lorastudio.recipe import Recipe
    from lorastudio.screens.preview import PreviewScreen
    from lorastudio.widgets.token_view import TokenView

    data = tmp_path / "reasoning.jsonl"
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} + {i}?"},
                {"role": "assistant", "content": f"{2 * i}.", "reasoning_content": f"{i} doubled"},
            ]
        }
        for i in range(3)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = Recipe.model_validate(
        {
            "name": "think",
            "model": {"name": "tiny"},
            "data": {"source": str(data), "train_on_reasoning": False},
        }
    )
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(PreviewScreen(recipe))
        screen = screen_of(app, PreviewScreen)
        await wait_until(pilot, lambda: screen.loaded and screen.query_one(TokenView).items)
        notes = screen.query_one("#sample-notes")
        assert notes.display
        assert "turn 2: the think block is masked (data.train_on_reasoning: false)" in _text(notes)
        items = screen.query_one(TokenView).items
        shown = "".join(p.text for p in items)
        trained = "".join(p.text for p in items if p.trained)
        assert "<think>\n0 doubled\n</think>" in shown
        assert "doubled" not in trained
        assert trained.startswith("0.")
