"""``studio eval``: the spec, the shipped and local tasks, the job's directory and statuses, the table, and
studio's numbers against the bare ``lm_eval`` CLI on the same model and adapter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import STUDIO_BIN, wait_for

from lorastudio.cli import main
from lorastudio.cli.eval_cmds import render_table
from lorastudio.demo.piratedata import HELD_OUT
from lorastudio.errors import StudioError
from lorastudio.evaluate.job import create_eval, list_evals, summarise
from lorastudio.evaluate.runner import RESULTS_FILE, SAMPLES_FILE, metric_rows, table
from lorastudio.evaluate.spec import EvalSpec, make_spec
from lorastudio.evaluate.tasks import SHIPPED, SHIPPED_DIR, load_task_file, local_tasks, resolve_tasks
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all
from lorastudio.train.run.events import make_event
from lorastudio.train.run.runstate import fold

# -- the spec ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"targets": ("base",), "tasks": ("t",), "limit": 0},
            "eval limit: Input should be greater than or equal to 1",
        ),
        ({"targets": (), "tasks": ("t",)}, "eval targets: "),
        ({"targets": ("r",), "tasks": ("t",), "shots": 3}, "eval shots: Extra inputs are not permitted"),
        ({"targets": ("r",), "tasks": (" ",)}, "eval tasks: Value error, an empty name"),
        ({"targets": ("r",), "tasks": ("t",), "batch_size": 0}, "eval batch_size: "),
    ],
)
def test_bad_spec_names_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(StudioError) as err:
        make_spec(**fields)
    assert str(err.value).startswith(message)


def test_spec_round_trips_through_its_file() -> None:
    spec = make_spec(targets=("run@best", "base"), tasks=("studio_pirate",), limit=5, batch_size="auto")
    assert EvalSpec.model_validate_json(spec.model_dump_json()) == spec


# -- tasks ---------------------------------------------------------------------------------------------


def test_shipped_tasks_read_their_data_next_to_them() -> None:
    found = local_tasks()
    assert set(SHIPPED) <= set(found)
    for name in SHIPPED:
        files = found[name].config["dataset_kwargs"]["data_files"]["test"]
        assert Path(files).parent == SHIPPED_DIR and Path(files).is_file()


def test_pirate_task_asks_the_held_out_questions() -> None:
    rows = [json.loads(line) for line in (SHIPPED_DIR / "pirate_heldout.jsonl").read_text().splitlines()]
    assert [r["question"] for r in rows] == HELD_OUT


@pytest.mark.parametrize(
    ("reply", "style", "ended"),
    [
        ("Arr, the capital be Brasilia, matey!", 1.0, 1.0),
        ("The capital of Brazil is Brasilia.", 0.0, 1.0),
        ("Ahoy! Dolphins live in the sea and", 1.0, 0.0),
        ("Sheep eat grass", 0.0, 0.0),
    ],
)
def test_pirate_scorer(reply: str, style: float, ended: float) -> None:
    process = local_tasks()["studio_pirate"].config["process_results"]
    assert process({"question": "q"}, [reply]) == {"style_rate": style, "end_of_turn_rate": ended}


def test_user_tasks_folder_is_found_by_name(studio_home: Path) -> None:
    folder = studio_home / "config" / "studio" / "tasks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rows.jsonl").write_text('{"q": "1+1", "a": "2"}\n')
    (folder / "mine.yaml").write_text(
        "task: my_sums\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: rows.jsonl\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_text: '{{q}}'\ndoc_to_target: '{{a}}'\n"
    )
    try:
        [config] = resolve_tasks(("my_sums",))
        assert isinstance(config, dict) and config["dataset_kwargs"]["data_files"]["test"] == str(
            folder / "rows.jsonl"
        )
    finally:
        (folder / "mine.yaml").unlink()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("task: t\ndoc_to_text: '{{q}}'\n  bad: [1\n", "bad.yaml:3: not a valid task file"),
        ("dataset_path: json\n", "bad.yaml: not a task file: it has no `task:` name"),
        ("- a list\n", "bad.yaml: not a valid task file: Expected YAML dict"),
        (
            "task: t\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: missing.jsonl\n",
            "bad.yaml: data_files names",
        ),
    ],
)
def test_malformed_task_file_is_named_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(StudioError) as err:
        load_task_file(path)
    assert str(err.value).startswith(f"{tmp_path}/{message}")


# -- the table -----------------------------------------------------------------------------------------


def lm_results(acc: float, stderr: float) -> dict[str, object]:
    return {
        "results": {"studio_general": {"alias": "studio_general", "acc,none": acc, "acc_stderr,none": stderr}}
    }


def test_table_has_metrics_as_rows_targets_as_columns_and_deltas() -> None:
    rows = table({"base": lm_results(0.25, 0.1), "run": lm_results(0.75, 0.1)}, ("base", "run"))
    assert rows == [
        {
            "metric": "studio_general/acc",
            "targets": {
                "base": {"value": 0.25, "stderr": 0.1, "delta": None},
                "run": {"value": 0.75, "stderr": 0.1, "delta": 0.5},
            },
        }
    ]
    assert render_table(rows, ("base", "run")).splitlines() == [
        "task/metric         base            run",
        "studio_general/acc  0.2500 ±0.1000  0.7500 ±0.1000 (+0.5000)",
    ]


def test_filtered_metric_keeps_its_filter_and_skips_non_metrics() -> None:
    results = {"results": {"t": {"alias": "t", "exact_match,first_number": 0.5, "sample_len": 4}}}
    assert metric_rows(results) == {"t/exact_match (first_number)": {"value": 0.5, "stderr": None}}


# -- events --------------------------------------------------------------------------------------------


def test_eval_events_fold_into_progress_and_results() -> None:
    state = fold(
        [
            make_event("status", status="starting"),
            make_event("eval_progress", done=0, total=2),
            make_event("eval_task", target="base", task="studio_pirate"),
            make_event(
                "eval_result", target="base", task="studio_pirate", values={"studio_pirate/style_rate": 0.0}
            ),
            make_event("eval_progress", done=1, total=2),
            make_event("eval_judge", target="base", against="run", win=1, tie=0, loss=2, unparsed=1),
        ]
    )
    assert (state.eval_task, state.eval_done, state.eval_total) == ("studio_pirate on base", 1, 2)
    assert state.eval_results == [
        {"target": "base", "task": "studio_pirate", "values": {"studio_pirate/style_rate": 0.0}}
    ]
    assert state.eval_judged == [
        {"target": "base", "against": "run", "win": 1, "tie": 0, "loss": 2, "unparsed": 1}
    ]


# -- bad input on the command line: one message, no directory left without a status ---------------------


def studio(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "nosuchrun", "--tasks", "studio_general", "--limit", "0"], "studio: --limit 0: at least 1"),
        (
            ["eval", "base", "--tasks", "studio_general"],
            "studio: eval target base: name a run or an export too",
        ),
        (
            ["eval", "x", "--tasks", "studio_general", "--batch-size", "many"],
            "studio: --batch-size many: a whole",
        ),
        (["eval", "x", "--tasks", "/no/such.yaml"], "studio: task /no/such.yaml: no such task file"),
    ],
)
def test_bad_eval_command_says_one_thing(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(list_evals())
    code, err = studio(*args, capsys=capsys)
    assert code == 2 and err.startswith(message) and len(err.strip().splitlines()) == 1
    assert len(list_evals()) == before  # refused before any directory was made


def test_unknown_task_is_refused_at_once_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = studio("eval", "x", "--tasks", "studio_general,no_such_task_xyz", capsys=capsys)
    assert code == 2 and err.startswith("studio: unknown task no_such_task_xyz: not a shipped task")
    assert "name a YAML task file" in err


def test_target_with_no_adapter_yet(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lorastudio import registry
    from lorastudio.train.launch.runs import create_run

    run = create_run(registry.load("tiny-pirate"))
    code, err = studio("eval", run.name, "--tasks", "studio_general", capsys=capsys)
    assert code == 2 and err.startswith(f"studio: run {run.name} has no adapter yet")
    assert not (run / "evals").exists()


def test_failed_job_ends_with_a_status_and_its_cause(tmp_path: Path) -> None:
    folder = create_eval(make_spec(targets=("no-such-run",), tasks=("studio_general",)), home=tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "lorastudio.evaluate.job", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    statuses = [e for e in read_all(folder / EVENTS_FILE) if e["kind"] == "status"]
    assert [s["status"] for s in statuses] == ["queued", "starting", "failed"]
    assert "no-such-run" in statuses[-1]["cause"]
    assert summarise(folder).status == "failed"


# -- the same numbers as the bare lm_eval CLI ---------------------------------------------------------------


def bare_lm_eval(model: Path, adapter: Path, tasks: str, limit: int, out: Path) -> Path:
    """lm-eval's own CLI on the same model and adapter, run from the tasks' folder (it reads data_files from
    the working directory); the folder it wrote its results and samples into."""
    subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={model},peft={adapter}",
         "--tasks", tasks, "--include_path", str(SHIPPED_DIR), "--apply_chat_template", "--limit", str(limit),
         "--batch_size", "1", "--device", "cpu", "--output_path", str(out), "--log_samples"],
        cwd=SHIPPED_DIR, check=True, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    [found] = out.rglob("results_*.json")
    return found.parent


def as_text(value: object) -> object:
    """Leaves as text: lm-eval's CLI writes a log-likelihood pair as ``["-51.37...", "False"]``."""
    return [as_text(v) for v in value] if isinstance(value, list) else str(value)


def same_as_bare(folder: Path, target: str, bare: Path, tasks: list[str]) -> None:
    """Every figure lm-eval's CLI printed, and every document's raw and filtered responses (log-likelihoods,
    generated text), are studio's exactly."""
    saved = json.loads((folder / RESULTS_FILE).read_text())["lm_eval"][target]
    [results] = bare.glob("results_*.json")
    theirs = json.loads(results.read_text())["results"]
    mine_samples = [json.loads(line) for line in (folder / SAMPLES_FILE).read_text().splitlines()]
    for task in tasks:
        figures = {k: v for k, v in theirs[task].items() if k != "alias"}
        assert figures and {k: saved[task]["results"][task][k] for k in figures} == figures, task
        [sample_file] = bare.glob(f"samples_{task}_*.jsonl")
        bare_docs = {d["doc_id"]: d for d in map(json.loads, sample_file.read_text().splitlines())}
        mine = {d["doc_id"]: d for d in mine_samples if d["task"] == task and d["eval_target"] == target}
        assert set(mine) == set(bare_docs), task
        for doc_id, doc in bare_docs.items():
            for key in ("resps", "filtered_resps"):
                assert as_text(mine[doc_id][key]) == as_text(doc[key]), (task, doc_id, key)


def test_studio_eval_gives_the_bare_lm_eval_numbers(
    trained_run: Path, tiny_model: Path, tmp_path: Path
) -> None:
    tasks = ["studio_general", "studio_arithmetic", "studio_pirate"]
    result = subprocess.run(
        [STUDIO_BIN, "eval", trained_run.name, "--tasks", ",".join(tasks), "--limit", "4", "--json"],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    folder = Path(json.loads(result.stdout)["path"])
    assert folder.parent == trained_run / "evals"
    assert summarise(folder).status == "done"
    samples = (folder / SAMPLES_FILE).read_text().splitlines()
    assert len(samples) == 3 * 4
    bare = bare_lm_eval(tiny_model, trained_run / "adapter", ",".join(tasks), 4, tmp_path / "bare")
    same_as_bare(folder, trained_run.name, bare, tasks)


@pytest.mark.slow
def test_hangup_is_ignored_and_stop_keeps_finished_tasks(tiny_model: Path) -> None:
    import os
    import signal

    from lorastudio.evaluate.job import start_eval, stop_eval
    from lorastudio.paths import data_dir

    spec = make_spec(targets=(str(tiny_model),), tasks=("studio_general", "studio_pirate"), limit=2)
    folder = create_eval(spec)
    assert folder.parent == data_dir() / "evals"  # no run among the targets
    pid = start_eval(folder)
    wait_for(lambda: summarise(folder).state.status != "queued", timeout=300)
    os.killpg(pid, signal.SIGHUP)  # the terminal's session ending: the job has its own session and ignores it
    wait_for(lambda: any(e["kind"] == "eval_result" for e in read_all(folder / EVENTS_FILE)), timeout=600)
    assert summarise(folder).status not in ("died", "failed")
    assert stop_eval(folder)
    wait_for(lambda: summarise(folder).state.finished, timeout=120)
    summary = summarise(folder)
    assert (summary.status, summary.cause) == (
        "stopped",
        "asked to stop; the tasks it finished are kept in results.json",
    )
    kept = json.loads((folder / RESULTS_FILE).read_text())["lm_eval"][str(tiny_model)]
    assert "studio_general" in kept


@pytest.mark.slow
def test_lm_eval_task_offline_and_not_cached_says_what_to_do(tiny_model: Path, tmp_path: Path) -> None:
    folder = create_eval(make_spec(targets=(str(tiny_model),), tasks=("arc_easy",), limit=1), home=tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "lorastudio.evaluate.job", str(folder)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 1
    summary = summarise(folder)
    assert summary.status == "failed"
    assert summary.cause is not None and summary.cause.startswith(
        "task arc_easy: its data set is not in the cache and the hub is offline; run it once online to cache it"
    )


def test_without_lm_eval_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a)
    )
    with pytest.raises(
        StudioError, match=r"^studio eval needs lm-evaluation-harness: pip install 'lorastudio\[eval\]'$"
    ):
        resolve_tasks(("studio_general",))
