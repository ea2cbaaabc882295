"""Runs management and comparison: notes, delete, sort, resume from the stop step, compare (engine and CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import STUDIO_BIN, run_worker, stand_in_worker
from runs_fixtures import write_run, write_runs

from lorastudio import registry
from lorastudio.errors import RecipeError, RunError
from lorastudio.train.launch import compare, manage, runs
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all


@pytest.fixture
def runs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("TZ", "UTC")
    root = tmp_path / "data" / "studio" / "runs"
    write_runs(root)
    return root


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STUDIO_BIN, *args],
        capture_output=True,
        text=True,
        check=check,
        env=os.environ,
        stdin=subprocess.DEVNULL,
    )


def _mark_live(run_dir: Path) -> None:
    """Give the run a live stand-in worker, so the run counts as live."""
    stand_in_worker(run_dir)
    with (run_dir / EVENTS_FILE).open("a") as handle:
        handle.write(json.dumps({"v": 1, "t": time.time(), "kind": "status", "status": "training"}) + "\n")


# -- notes, delete, sort ----------------------------------------------------------------------------
def test_note_is_stored_in_the_run_and_listed(runs_root: Path) -> None:
    run = runs_root / "tiny-pirate-20260922-101500"
    assert manage.write_note(run, "  baseline\nlr 3e-3 ") == "baseline lr 3e-3"
    assert (run / "note.txt").read_text() == "baseline lr 3e-3\n"
    out = cli("runs", "note", "tiny-pirate-20260922-113000", "smaller", "batch")
    assert "smaller batch" in out.stdout
    listed = {r["name"]: r for r in json.loads(cli("runs", "--json").stdout)}
    assert listed[run.name]["note"] == "baseline lr 3e-3"
    assert listed["tiny-pirate-20260922-113000"]["note"] == "smaller batch"
    cli("runs", "note", run.name, "--clear")
    assert manage.read_note(run) == "" and not (run / "note.txt").exists()


def test_runs_cli_prints_whole_names_in_a_narrow_pipe(runs_root: Path) -> None:
    out = subprocess.run(
        [STUDIO_BIN, "runs"], capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "60"}
    ).stdout
    for name in ("tiny-pirate-20260922-101500", "qwen-csv-concepts-long-experiment-20260922-120000"):
        assert name in out
    assert "lr sweep, stopped to free the GPU" in out


def test_delete_removes_the_directory_and_refuses_a_live_run(runs_root: Path) -> None:
    live, done = runs_root / "tiny-pirate-20260922-113000", runs_root / "tiny-pirate-20260922-101500"
    _mark_live(live)
    with pytest.raises(RunError, match="still running"):
        manage.delete_run(live)
    assert (live / "run.json").exists()
    manage.delete_run(done)
    assert not done.exists() and not list(runs_root.glob(".*deleting"))
    assert [r.name for r in runs.list_runs(runs_root)] == [
        "qwen-csv-concepts-long-experiment-20260922-120000",
        live.name,
    ]
    with pytest.raises(RunError, match="not a run directory"):
        manage.delete_run(runs_root)


def test_delete_cli_asks_for_yes_when_not_at_a_terminal(runs_root: Path) -> None:
    name = "qwen-csv-concepts-long-experiment-20260922-120000"
    refused = cli("runs", "delete", name, check=False)
    assert refused.returncode == 2 and "--yes" in refused.stderr and (runs_root / name).exists()
    assert cli("runs", "delete", name, "--yes").stdout.strip() == f"deleted {name}"
    assert not (runs_root / name).exists()


@pytest.mark.parametrize("how", ["name", "path of the link"])
def test_deleting_a_linked_run_removes_the_link_and_keeps_its_folder(
    runs_root: Path, tmp_path: Path, how: str
) -> None:
    """A run folder kept elsewhere (a bigger disk) and linked into the runs folder: delete takes the link away
    and leaves the folder it points to whole (it used to lose run.json there, then fail with the link hidden)."""
    elsewhere = write_run(tmp_path / "big-disk", "kept-elsewhere", created=1_790_000_000.0)
    kept = sorted(p.relative_to(elsewhere) for p in elsewhere.rglob("*"))
    link = runs_root / "kept-elsewhere"
    link.symlink_to(elsewhere)
    assert "kept-elsewhere" in [r.name for r in runs.list_runs(runs_root)]
    out = cli("runs", "delete", "kept-elsewhere" if how == "name" else str(link), "--yes")
    assert out.stdout.strip() == f"deleted the link kept-elsewhere (its folder {elsewhere} is kept)"
    assert not link.is_symlink() and not list(runs_root.glob(".*deleting"))
    assert sorted(p.relative_to(elsewhere) for p in elsewhere.rglob("*")) == kept


def test_sort_orders(runs_root: Path) -> None:
    listed = runs.list_runs(runs_root)
    assert [r.name[:4] for r in manage.sort_runs(listed, "time")] == ["qwen", "tiny", "tiny"]
    by_loss = manage.sort_runs(listed, "loss")
    assert [r.last_loss for r in by_loss] == sorted(r.last_loss for r in listed if r.last_loss is not None)
    _mark_live(runs_root / "tiny-pirate-20260922-101500")
    by_status = manage.sort_runs(runs.list_runs(runs_root), "status")
    assert [r.status for r in by_status] == ["training", "stopped", "done"]
    assert manage.next_sort("time") == "loss" and manage.next_sort("status") == "time"


def test_a_grpo_run_lists_its_mean_reward_instead_of_its_loss(runs_root: Path) -> None:
    """GRPO's loss sits near zero whatever it learns: the listing shows its latest mean reward, and sorting by
    loss puts it after the runs whose loss means something, best reward first."""
    made = [
        write_run(
            runs_root, f"tiny-pirate-grpo-2026092{k}-090000", created=1758500000.0 + k, loss_scale=0.001
        )
        for k in (3, 4)
    ]
    for k, run in enumerate(made):
        with (run / EVENTS_FILE).open("a") as handle:
            for step, reward in ((11, 0.25), (12, 0.5 + k / 4)):
                event = {"kind": "method_metrics", "step": step, "values": {"reward": reward, "kl": 0.01}}
                handle.write(json.dumps({"v": 1, "t": time.time(), **event}) + "\n")
    listed = {r.name: r for r in runs.list_runs(runs_root)}
    grpo = listed[made[1].name]
    assert grpo.last_reward == 0.75 and grpo.progress == "r=0.750"
    sft = listed["tiny-pirate-20260922-101500"]
    assert sft.last_reward is None and sft.progress == f"{sft.last_loss:.4f}"
    by_loss = manage.sort_runs(list(listed.values()), "loss")
    assert [r.name for r in by_loss[-2:]] == [made[1].name, made[0].name]
    assert all(r.last_reward is None for r in by_loss[:-2])
    as_json = {r["name"]: r for r in json.loads(cli("runs", "--json").stdout)}
    assert as_json[made[0].name]["last_reward"] == 0.5
    line = next(line for line in cli("runs").stdout.splitlines() if line.startswith(made[0].name))
    assert "r=0.500" in line and "0.0001" not in line


def test_resume_refuses_live_and_finished_runs(runs_root: Path) -> None:
    with pytest.raises(RunError, match="is done"):
        manage.resume_run(runs_root / "tiny-pirate-20260922-101500")
    _mark_live(runs_root / "tiny-pirate-20260922-113000")
    with pytest.raises(RunError, match="still running"):
        manage.resume_run(runs_root / "tiny-pirate-20260922-113000")
    out = cli("resume", "tiny-pirate-20260922-101500", check=False)
    assert out.returncode == 2 and "only a stopped, failed or died run" in out.stderr


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["train.learning_rate=1"], "a resume may change only train.batch_size"),
        (["train.max_steps=9"], "a resume may change only"),
        (["train.batch_size=0"], "train.batch_size"),
        (["train.gradient_accumulation=many"], "train.gradient_accumulation"),
    ],
)
def test_resume_changes_only_how_a_batch_is_held(runs_root: Path, overrides: list[str], says: str) -> None:
    run_dir = runs_root / "tiny-pirate-20260922-101500"
    recipe_file = run_dir / runs.RECIPE_FILE
    before = recipe_file.read_text()
    with pytest.raises((RunError, RecipeError)) as caught:
        manage.resume_overrides(run_dir, overrides)
    assert says in str(caught.value) and recipe_file.read_text() == before  # nothing written
    assert manage.resume_overrides(run_dir, ["train.batch_size=1", "train.gradient_checkpointing=on"])
    train = runs.load_run_recipe(run_dir).train
    assert (train.batch_size, train.gradient_checkpointing) == (1, "on")
    assert [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.slow
def test_stop_saves_a_checkpoint_and_resume_continues_from_that_step(tiny_model: Path) -> None:
    run_dir = runs.create_run(registry.load("tiny-pirate", ["train.max_steps=400", "train.save_steps=1000"]))
    runs.start_worker(run_dir)

    def step() -> int:
        return runs.summarise(run_dir).step

    deadline = time.monotonic() + 120
    while step() < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runs.stop_run(run_dir)
    while runs.summarise(run_dir).status != "stopped" and time.monotonic() < deadline:
        time.sleep(0.1)
    stopped_at = step()
    assert 3 <= stopped_at < 400
    latest = runs.latest_checkpoint(run_dir)
    assert latest is not None and latest.name == f"checkpoint-{stopped_at}"
    labels = [c.label for c in manage.checkpoints(run_dir)]
    assert labels == ["adapter (final)", f"checkpoint-{stopped_at}"]
    # Resume with fewer steps to go, so the test stays short: the recipe snapshot is what the worker trains.
    recipe_file = run_dir / runs.RECIPE_FILE
    recipe_file.write_text(recipe_file.read_text().replace("max_steps: 400", f"max_steps: {stopped_at + 3}"))
    before = len(read_all(run_dir / EVENTS_FILE))
    # as after running out of memory: a smaller batch, the effective batch kept by accumulation
    smaller = ["train.batch_size=1", "train.gradient_accumulation=2"]
    pid, checkpoint = manage.resume_run(run_dir, overrides=smaller)
    assert checkpoint is not None and checkpoint.name == f"checkpoint-{stopped_at}"
    resumed_with = runs.load_run_recipe(run_dir).train
    assert (resumed_with.batch_size, resumed_with.gradient_accumulation) == (1, 2)
    assert runs.read_meta(run_dir)["resumed_with"] == smaller
    while (
        runs.summarise(run_dir).status not in ("done", "failed", "died") and time.monotonic() < deadline + 120
    ):
        time.sleep(0.2)
    after = read_all(run_dir / EVENTS_FILE)[before:]
    assert after[-1]["status"] == "done", after[-3:]
    steps = [e["step"] for e in after if e["kind"] == "metrics" and e.get("loss") is not None]
    assert steps == [stopped_at + 1, stopped_at + 2, stopped_at + 3]
    assert any(e.get("message") == f"resuming from checkpoint-{stopped_at}" for e in after)


@pytest.mark.slow
def test_a_run_created_with_no_start_says_so_and_resume_starts_it(tiny_model: Path) -> None:
    """`studio train --no-start` leaves a queued run no worker will ever pick up: its listing says how to start
    it, and `studio resume` (r in Runs) starts it from step 0 instead of refusing a queued run."""
    made = cli("train", "tiny-pirate", "train.max_steps=2", "train.save_steps=1000", "--no-start")
    run_dir = Path(made.stdout.strip())
    summary = runs.summarise(run_dir)
    assert summary.status == "queued" and summary.cause == runs.NOT_STARTED_CAUSE
    assert runs.NOT_STARTED_CAUSE in cli("runs", "--json").stdout
    out = cli("resume", run_dir.name)
    assert out.stdout.startswith(f"resuming {run_dir.name} from step 0")
    deadline = time.monotonic() + 180
    while runs.summarise(run_dir).status not in ("done", "failed", "died") and time.monotonic() < deadline:
        time.sleep(0.2)
    done = runs.summarise(run_dir)
    assert done.status == "done" and done.step == 2 and done.cause is None
    with pytest.raises(RunError, match="is done"):  # started once: an ordinary finished run from now on
        manage.resume_run(run_dir)


def test_cli_shows_notes_and_recipe_values_with_brackets_as_written(runs_root: Path) -> None:
    """`studio runs` and `studio runs compare` printed through Rich's markup: a note or a Llama-2 value holding
    "[/INST]" ended them with a traceback, and "[rank0]" vanished."""
    a, b = runs_root / "tiny-pirate-20260922-101500", runs_root / "tiny-pirate-20260922-113000"
    hostile = "[/INST] [rank0]: x"
    cli("runs", "note", a.name, hostile)
    recipe = b / runs.RECIPE_FILE
    recipe.write_text(recipe.read_text().replace("/srv/data/tiny_pirate.jsonl", f"'/srv/{hostile}.jsonl'"))
    listing = cli("runs")
    assert hostile in listing.stdout and "Traceback" not in listing.stderr
    compared = cli("runs", "compare", a.name, b.name)
    assert f"/srv/{hostile}.jsonl" in compared.stdout and "Traceback" not in compared.stderr


# -- compare ---------------------------------------------------------------------------------------
def test_flatten_and_differing_fields() -> None:
    flat = compare.flatten(
        {"train": {"learning_rate": 0.003, "batch_size": 8}, "lora": {"target_modules": ["q"]}}
    )
    assert flat == {"train.learning_rate": 0.003, "train.batch_size": 8, "lora.target_modules": ["q"]}
    diff = compare.differing_fields(
        [
            {
                "train.learning_rate": 0.003,
                "train.seed": 1,
                "description": "a",
                "lora.target_modules": ["q", "v"],
            },
            {
                "train.learning_rate": 0.001,
                "train.seed": 1,
                "description": "b",
                "lora.target_modules": ["q", "v"],
            },
            {
                "train.learning_rate": 0.003,
                "train.seed": 1,
                "data.eval_split": "test",
                "lora.target_modules": ["q"],
            },
        ]
    )
    assert diff == {
        "train.learning_rate": [0.003, 0.001, 0.003],
        "lora.target_modules": [["q", "v"], ["q", "v"], ["q"]],
        "data.eval_split": [None, None, "test"],
    }


def test_compare_results_and_json_shape(runs_root: Path) -> None:
    a, b = runs_root / "tiny-pirate-20260922-101500", runs_root / "tiny-pirate-20260922-113000"
    data = compare.compare_runs([a, b]).to_json()
    assert data["differing"] == {
        "train.learning_rate": {a.name: 0.003, b.name: 0.001},
        "train.batch_size": {a.name: 8, b.name: 4},
    }
    first = data["runs"][0]
    assert set(first) >= {
        "name",
        "status",
        "final_loss",
        "best_loss",
        "eval_loss",
        "best_eval_loss",
        "best_checkpoint",
        "tokens_per_s",
        "duration_s",
        "peak_vram_mb",
        "tokens_seen",
    }
    assert first["name"] == a.name and first["status"] == "done"
    assert first["final_loss"] == round(12.0 / 12**0.7, 4) == first["best_loss"]
    # eval every 4 steps; the last one is worse, so final and best eval differ
    assert first["eval_loss"] == round(6.0 / 12**0.5 + 0.5, 4)
    assert first["best_eval_loss"] == round(6.0 / 8**0.5, 4) and first["best_eval_step"] == 8
    assert first["tokens_per_s"] == round(sum(8000.0 + s for s in range(1, 13)) / 12, 1)
    assert first["duration_s"] == pytest.approx(0.5 * (2 + 2 * 12 + 3), abs=0.01)  # starting -> done
    assert first["peak_vram_mb"] is None and first["peak_rss_mb"] == 612.0
    with pytest.raises(RunError, match="two or more"):
        compare.compare_runs([a, a])


def test_compare_says_when_the_losses_are_not_the_same_measure(runs_root: Path) -> None:
    """DPO with rpo_alpha adds a supervised term to DPO's loss, and each method's loss is its own: Compare still
    draws them, and says so in the JSON, the CLI and the screen's legend."""
    a, b = runs_root / "tiny-pirate-20260922-101500", runs_root / "tiny-pirate-20260922-113000"
    assert compare.compare_runs([a, b]).loss_caveat is None  # learning rate and batch size: the same loss
    dpo = registry.load("smollm2-pirate-dpo")  # ships with rpo_alpha 1.0
    assert dpo.dpo is not None and dpo.dpo.rpo_alpha == 1.0
    (a / "recipe.yaml").write_text(registry.dump(dpo))
    (b / "recipe.yaml").write_text(registry.dump(registry.load("smollm2-pirate-dpo", ["dpo.rpo_alpha=null"])))
    caveat = compare.compare_runs([a, b]).loss_caveat
    assert caveat is not None and "dpo.rpo_alpha" in caveat and "train.method" not in caveat
    assert json.loads(cli("runs", "compare", a.name, b.name, "--json").stdout)["loss_caveat"] == caveat
    assert "not the same measure (dpo.rpo_alpha differ)" in " ".join(
        cli("runs", "compare", a.name, b.name).stdout.split()
    )
    (a / "recipe.yaml").write_text(registry.dump(registry.load("tiny-pirate")))
    assert compare.compare_runs([a, b]).loss_caveat == (
        "losses are not the same measure (train.method differ): compare shapes, not values"
    )


def test_compare_dedupes_resumed_steps_and_reads_gpu_peak(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", created=1.0, steps=6, vram_mb=5000.0)
    resumed: list[dict[str, Any]] = [
        {"kind": "status", "status": "starting"},
        {"kind": "metrics", "step": 5, "loss": 0.5},
        {"kind": "metrics", "step": 6, "loss": 0.4},
        {"kind": "status", "status": "done"},
    ]
    with (run / EVENTS_FILE).open("a") as handle:  # resumed from checkpoint-4: steps 5 and 6 logged again
        for i, event in enumerate(resumed):
            handle.write(json.dumps({"v": 1, "t": 100.0 + i, **event}) + "\n")
    result = compare.run_result(run)
    assert [s for s, _ in result.loss] == [1, 2, 3, 4, 5, 6]
    assert result.loss[-1] == (6, 0.4) and result.final_loss == 0.4
    assert result.peak_vram_mb == 5006.0
    assert result.duration_s == pytest.approx(0.5 * (2 + 2 * 6) + 3, abs=0.01)  # both sessions, not the gap


@pytest.mark.slow
def test_runs_compare_cli_on_two_short_runs_differing_in_learning_rate(tiny_model: Path) -> None:
    made = []
    for lr in ("0.003", "0.0005"):
        run_dir = runs.create_run(
            registry.load(
                "tiny-pirate",
                [
                    "train.max_steps=4",
                    "train.save_steps=2",
                    "data.eval_fraction=0.1",
                    f"train.learning_rate={lr}",
                ],
            )
        )
        result = run_worker(run_dir)
        assert result.returncode == 0, result.stdout + result.stderr
        made.append(run_dir)
    out = cli("runs", "compare", made[0].name, made[1].name, "--json")
    data = json.loads(out.stdout)
    assert data["differing"] == {"train.learning_rate": {made[0].name: 0.003, made[1].name: 0.0005}}
    for run in data["runs"]:
        assert run["status"] == "done" and run["step"] == 4
        assert isinstance(run["eval_loss"], float) and isinstance(run["final_loss"], float)
        assert run["tokens_per_s"] > 0 and run["duration_s"] > 0
    text = cli("runs", "compare", made[0].name, made[1].name).stdout
    assert "train.learning_rate" in text and "0.003" in text and "0.0005" in text and made[1].name in text


def test_chat_target_can_be_a_checkpoint_folder(runs_root: Path) -> None:
    from lorastudio.train.run.runref import resolve_run

    run = runs_root / "tiny-pirate-20260922-101500"
    checkpoint = run / "checkpoints" / "checkpoint-8"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_config.json").write_text("{}")
    for given in (
        checkpoint,
        Path(run.name) / "checkpoints" / "checkpoint-8",
    ):  # its path, or from the runs folder
        ref = resolve_run(str(given), checkpoint=True)
        assert (ref.path, ref.which) == (run.resolve(), "checkpoint-8")
    from lorastudio.chat.engine import engine_for

    with pytest.raises(RunError, match="has no adapter in checkpoints/checkpoint-9"):
        engine_for(str(run / "checkpoints" / "checkpoint-9"))
    assert [c.label for c in manage.checkpoints(run)] == ["checkpoint-8"]


def test_a_recipe_name_finds_its_own_newest_run_not_a_longer_recipes(tmp_path: Path) -> None:
    """`--from tiny-pirate` after a tiny-pirate-grpo run: the SFT run, not the newer GRPO one."""
    root = tmp_path / "runs"
    write_run(root, "tiny-pirate-20261202-010000", created=1.0)
    write_run(root, "tiny-pirate-20261202-010000-2", created=2.0)
    write_run(root, "tiny-pirate-grpo-20261202-020000", created=3.0)
    assert runs.find_run("tiny-pirate", root).name == "tiny-pirate-20261202-010000-2"
    assert (
        runs.find_run("tiny-pirate-g", root).name == "tiny-pirate-grpo-20261202-020000"
    )  # a prefix still works
    assert runs.find_run("tiny-pirate-grpo", root).name == "tiny-pirate-grpo-20261202-020000"
    with pytest.raises(RunError, match="no such run: 'tiny-pirate-dpo'"):
        runs.find_run("tiny-pirate-dpo", root)


def test_concurrent_metadata_updates_keep_every_field_and_never_leave_half_a_file(tmp_path: Path) -> None:
    """The supervisor, the worker and the TUI all update run.json; none may lose another's field."""
    import multiprocessing

    from lorastudio.train.run import rundir

    run = tmp_path / "run"
    run.mkdir()
    rundir.write_meta(run, {"format": 1, "name": "run"})
    writers = [
        multiprocessing.get_context("fork").Process(target=_set_fields, args=(run, f"w{i}")) for i in range(3)
    ]
    for w in writers:
        w.start()
    seen_broken = 0
    while any(w.is_alive() for w in writers):
        try:
            json.loads((run / "run.json").read_text())
        except ValueError:
            seen_broken += 1
    for w in writers:
        w.join()
        assert w.exitcode == 0
    meta = rundir.read_meta(run)
    assert seen_broken == 0
    assert {f"w{i}-{n}" for i in range(3) for n in range(60)} <= set(meta) and meta["name"] == "run"
    assert sorted(p.name for p in run.iterdir()) == [".run.json.lock", "run.json"]  # no temporary file left


def _set_fields(run: Path, prefix: str) -> None:
    from lorastudio.train.run import rundir

    for n in range(60):
        rundir.update_meta(run, **{f"{prefix}-{n}": n})
