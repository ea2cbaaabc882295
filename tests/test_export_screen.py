"""The Export screen: reached with `x` from Runs and a finished Monitor, estimate shown, a GGUF export driven
by keys end to end, failures shown on the screen; snapshots at 80x24 and 120x40."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import screen_of, wait_until
from test_tui import SIZES, text_of, write_recorded_run

from lorastudio.app import StudioApp


@pytest.fixture
def lora_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Path) -> Path:
    """A finished recorded run with a real (random-init, nonzero B) LoRA adapter on the tiny model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("TZ", "UTC")
    run = write_recorded_run(tmp_path / "data" / "studio" / "runs")
    (run / "recipe.yaml").write_text(
        "name: tiny-pirate\nmodel:\n  name: tiny\ndata:\n  source: x.jsonl\n  format: messages\n"
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=4,
            lora_alpha=8,
            init_lora_weights=False,
            target_modules=["q_proj", "v_proj"],
            task_type="CAUSAL_LM",
        ),
    )
    peft_model.save_pretrained(run / "adapter")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(run / "adapter")
    return run


async def test_runs_x_opens_export_and_a_gguf_export_runs_by_keys(lora_run: Path) -> None:
    from textual.widgets import DataTable, Select

    from lorastudio.screens.export import ExportScreen
    from lorastudio.screens.recipes import RecipesScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: screen_of(pilot, RecipesScreen).entries)
        await pilot.press("ctrl+r")
        await wait_until(
            pilot,
            lambda: (
                pilot.app.screen.query(DataTable) and pilot.app.screen.query_one(DataTable).row_count == 1
            ),
        )
        await pilot.press("x")
        screen = app.screen
        assert isinstance(screen, ExportScreen)
        assert screen.run_dir == lora_run
        await wait_until(pilot, lambda: screen.estimate is not None, timeout=180)
        assert "estimated size: 1.8 MB" in text_of(screen.query_one("#export-estimate"))
        assert screen.query_one("#export-quant", Select).disabled
        await pilot.press("down", "enter")  # merged -> gguf in the format list
        assert screen.format == "gguf"
        assert not screen.query_one("#export-quant", Select).disabled
        await wait_until(pilot, lambda: screen.estimate is not None and "gguf" in str(screen._default_out()))
        await pilot.press("ctrl+e")
        await wait_until(pilot, lambda: screen.result is not None, timeout=300)
        result = screen.result
        assert result.out == lora_run / "exports" / "gguf-f16"
        assert (result.out / "tiny-pirate-f16.gguf").stat().st_size > 100_000
        assert (result.out / "Modelfile").exists()
        shown = text_of(screen.query_one("#export-result"))
        assert "measured" in shown
        assert "estimated" in shown
        await pilot.press("ctrl+e")  # again: the folder now exists and is not empty
        await wait_until(pilot, lambda: "not empty" in text_of(screen.query_one("#export-result")))
        assert (result.out / "tiny-pirate-f16.gguf").exists()  # the first export is untouched
        await pilot.press("escape")
        assert not isinstance(app.screen, ExportScreen)


async def test_finished_monitor_x_opens_export(lora_run: Path) -> None:
    from lorastudio.screens.export import ExportScreen
    from lorastudio.screens.monitor import MonitorScreen

    app = StudioApp(attach=lora_run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, MonitorScreen)
                and pilot.app.screen.snapshot is not None
                and pilot.app.screen.snapshot.state.finished
            ),
        )
        await pilot.press("x")
        assert isinstance(app.screen, ExportScreen)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_export(snap_compare, size, lora_run: Path) -> None:
    from lorastudio.screens.export import ExportScreen

    async def run_before(pilot) -> None:
        await pilot.app.push_screen(ExportScreen(lora_run))
        await wait_until(pilot, lambda: pilot.app.screen.estimate is not None, timeout=180)
        await pilot.pause(0.3)

    assert snap_compare(StudioApp(), terminal_size=size, run_before=run_before)
