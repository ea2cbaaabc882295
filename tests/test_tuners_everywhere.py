"""The tuners (``train.tuning``, the LoRA variants, pretrain and reward) wherever recipes are used: Compare's
fields that differ, sweeps over them, MCP's start_run, and docs/tuning.md naming every one of their fields."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from runs_fixtures import write_run

from lorastudio.errors import RecipeError
from lorastudio.recipe import LoraSection, TrainSection
from lorastudio.train.launch import sweep
from lorastudio.train.launch.compare import compare_runs

ROOT = Path(__file__).resolve().parent.parent


def _with(run: Path, extra: str) -> Path:
    """The run's recipe.yaml with ``extra`` (YAML lines) added to it."""
    recipe = run / "recipe.yaml"
    recipe.write_text(recipe.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return run


def test_compare_lists_tuning_and_dora_among_the_fields_that_differ(tmp_path: Path) -> None:
    dora = _with(write_run(tmp_path, "dora", created=1.0), "  tuning: lora\nlora:\n  use_dora: true\n")
    full = _with(write_run(tmp_path, "full", created=2.0), "  tuning: full\n")
    freeze = _with(
        write_run(tmp_path, "freeze", created=3.0),
        "  tuning: freeze\n  freeze_trainable_layers: 1\n  embedding_learning_rate: 1.0e-4\n",
    )
    comparison = compare_runs([dora, full, freeze])
    differing = comparison.differing
    assert differing["train.tuning"] == ["lora", "full", "freeze"]
    assert differing["lora.use_dora"] == [True, False, False]
    assert differing["train.freeze_trainable_layers"] == [None, None, 1]
    assert differing["train.embedding_learning_rate"] == [None, None, 1e-4]
    assert comparison.loss_caveat is None  # the tuning changes how training goes, not what the loss is
    # two runs alike in all of these: none of them listed
    same = compare_runs(
        [dora, _with(write_run(tmp_path, "dora2", created=4.0, lr=0.001), "lora:\n  use_dora: true\n")]
    )
    assert set(same.differing) == {"train.learning_rate"}


async def test_the_compare_screen_shows_the_tuning_and_dora_rows(tmp_path: Path) -> None:
    from conftest import screen_of, wait_until
    from textual.widgets import DataTable

    from lorastudio.app import StudioApp
    from lorastudio.screens.compare import CompareScreen

    dora = _with(write_run(tmp_path, "dora", created=1.0), "lora:\n  use_dora: true\n")
    full = _with(write_run(tmp_path, "full", created=2.0), "  tuning: full\n")
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(CompareScreen([dora, full]))
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = screen_of(app, CompareScreen)
        await wait_until(pilot, lambda: screen.comparison is not None)
        await pilot.pause()
        diff = screen.query_one("#compare-diff", DataTable)
        rows = {
            str(row[0]): [str(c) for c in row[1:]]
            for row in (diff.get_row_at(i) for i in range(diff.row_count))
        }
        assert rows == {"lora.use_dora": ["true", "false"], "train.tuning": ["lora", "full"]}


@pytest.mark.parametrize(
    ("grid", "key", "expected"),
    [
        (["lora.use_dora=true,false"], "lora.use_dora", [True, False]),
        (["lora.init=default,pissa,olora"], "lora.init", ["default", "pissa", "olora"]),
        (["lora.plus_lr_ratio=4,16"], "lora.plus_lr_ratio", [4.0, 16.0]),
        (["train.tuning=lora,full"], "train.tuning", ["lora", "full"]),
        (
            ["train.tuning=freeze", "train.freeze_trainable_layers=1,2"],
            "train.freeze_trainable_layers",
            [1, 2],
        ),
        (["train.embedding_learning_rate=1e-5,1e-4"], "train.embedding_learning_rate", [1e-5, 1e-4]),
        (
            ["lora.rank_pattern={q_proj: 4},{q_proj: 32}"],
            "lora.rank_pattern",
            [{"q_proj": 4}, {"q_proj": 32}],
        ),
    ],
)
def test_a_sweep_expands_the_tuners_and_validates_each_member(
    grid: list[str], key: str, expected: list[object]
) -> None:
    plan = sweep.plan_sweep("tiny-pirate", grid)
    assert [point.fields[key] for point in plan.points] == expected
    dumped = [point.recipe.model_dump(mode="json") for point in plan.points]
    section, field = key.split(".")
    assert [d[section][field] for d in dumped] == expected


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (["train.tuning=lora,freeze"], "train.tuning: freeze needs train.freeze_trainable_layers"),
        (["lora.init=pissa,eva"], "eva is not supported"),
        (["train.tuning=full,lora", "model.load_in_4bit=true"], "4-bit weights cannot"),
        (["lora.plus_lr_ratio=16,0"], "greater than 0"),
    ],
)
def test_a_sweep_with_one_bad_tuner_value_starts_nothing_and_names_it(grid: list[str], message: str) -> None:
    with pytest.raises(RecipeError) as caught:
        sweep.plan_sweep("tiny-pirate", grid)
    assert message in str(caught.value) and "nothing was started" in str(caught.value)


def test_the_launch_sheet_sweeps_the_tuning() -> None:
    from lorastudio import registry

    data = registry.load("tiny-pirate").model_dump(mode="json")
    plan = sweep.plan_from_data(
        data, [sweep.Axis("lora.use_dora", ["true", "false"]), sweep.Axis("train.tuning", ["lora", "full"])]
    )
    assert [(p.recipe.lora.use_dora, p.recipe.train.tuning) for p in plan.points] == [
        (True, "lora"),
        (True, "full"),
        (False, "lora"),
        (False, "full"),
    ]


def test_mcp_start_run_takes_the_tuners_and_refuses_a_bad_one_by_name(tiny_model: Path) -> None:
    pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'lorastudio[mcp]')")
    from lorastudio.train.trainer.trlneeds import sft_blocker

    if (blocked := sft_blocker()) is not None:  # the gpu extra's TRL on a CPU-only torch (the pinned lane)
        pytest.skip(blocked)
    import yaml
    from test_mcp import call, data_of, run_client, text_of, wait_status

    async def body(session: Any) -> None:
        refused = await call(session, "start_run", recipe="tiny-pirate", overrides=["train.tuning=freeze"])
        assert refused.is_error and text_of(refused).startswith(
            "override 'train.tuning=freeze': train.tuning: freeze needs"
        )
        checked = data_of(
            await call(
                session,
                "validate_recipe",
                recipe="tiny-pirate",
                overrides=["lora.use_dora=true", "lora.init=pissa", "lora.plus_lr_ratio=16"],
            )
        )
        assert checked["valid"] is True, checked
        started = data_of(
            await call(
                session,
                "start_run",
                recipe="tiny-pirate",
                overrides=[
                    "train.tuning=freeze",
                    "train.freeze_trainable_layers=1",
                    "train.max_steps=1",
                    "train.samples=[]",
                    "data.eval_fraction=0",
                ],
            )
        )
        status = await wait_status(session, started["run"])
        assert status["status"] == "done", status
        run = Path(started["path"])
        train = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))["train"]
        assert (train["tuning"], train["freeze_trainable_layers"]) == ("freeze", 1)
        assert (run / "model" / "config.json").is_file()  # the whole model saved, no adapter

    run_client(body)


# -- docs/tuning.md --------------------------------------------------------------------------------
TUNING_FIELDS = {
    "lora": (
        "use_rslora",
        "use_dora",
        "init",
        "plus_lr_ratio",
        "modules_to_save",
        "rank_pattern",
        "alpha_pattern",
    ),
    "train": (
        "tuning",
        "freeze_trainable_layers",
        "freeze_trainable_modules",
        "embedding_learning_rate",
        "method",
    ),
}


def test_docs_tuning_names_every_tuning_field_and_the_readme_links_it() -> None:
    text = (ROOT / "docs" / "tuning.md").read_text(encoding="utf-8")
    for section, names in TUNING_FIELDS.items():
        model = LoraSection if section == "lora" else TrainSection
        for name in names:
            assert name in model.model_fields, f"{section}.{name} is no longer a recipe field"
            assert f"`{section}.{name}`" in text, f"docs/tuning.md does not explain {section}.{name}"
    for value in ("full", "freeze", "pretrain", "reward", "pissa", "olora", "loftq", "DoRA", "LoRA+"):
        assert value in text
    # every lora.init the recipe accepts is in the table
    from lorastudio.recipe import LORA_INITS

    assert all(f"`{init}`" in text for init in LORA_INITS)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"\]\(docs/tuning\.md\)", readme)
