"""The Eval screen and evaluations elsewhere: opened from Runs, Monitor and recipes with keys in bursts, a
finished evaluation's table and samples, refusals, snapshots at 80x24 and 120x40, Compare's and `runs compare`'s
scores, a sweep ranked by an evaluation, and the progress and significance rules."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import screen_of, send_burst, wait_until
from eval_fixtures import base_and_run_samples, figures_for, stand_in_job, write_eval
from runs_fixtures import write_runs
from textual.widgets import Input

from lorastudio.app import StudioApp
from lorastudio.cli import main
from lorastudio.evaluate.job import list_evals, summarise
from lorastudio.evaluate.scores import Cell, Row, format_eta, progress, read_samples, read_table
from lorastudio.screens.eval_samples import EvalSamplesScreen
from lorastudio.screens.evaluate import EvalScreen
from lorastudio.screens.recipes import RecipesScreen

SIZES = [(80, 24), (120, 40)]
NEWEST, MIDDLE, OLDEST = (
    "qwen-csv-concepts-long-experiment-20260922-120000",
    "tiny-pirate-20260922-113000",
    "tiny-pirate-20260922-101500",
)
EVAL_ID = "20260922-130000-abcd"
T0 = 1_790_010_000.0
"""When the fixture evaluation's first task started."""


@pytest.fixture
def runs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    root = tmp_path / "data" / "studio" / "runs"
    write_runs(root)
    return root


@pytest.fixture
def finished_eval(runs_root: Path) -> Path:
    """base against MIDDLE on two tasks: acc 0.25 -> 0.75 (stands out), exact match 0.5 -> 0.5."""
    return write_eval(
        runs_root / MIDDLE / "evals",
        EVAL_ID,
        ("base", MIDDLE),
        {"base": figures_for(0.25, 0.5), MIDDLE: figures_for(0.75, 0.5)},
        samples=base_and_run_samples(MIDDLE),
    )


def plain(widget) -> str:
    import io

    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    content = getattr(widget, "content", None)  # a Static's own renderable (a table, text, markup)
    console.print(content if content is not None and not isinstance(content, str) else widget.render())
    return console.export_text()


def eval_targets(app) -> str | None:
    """The Eval screen's targets field once it is up (None before)."""

    screen = app.screen
    if not isinstance(screen, EvalScreen) or not screen.is_mounted:
        return None
    found = screen.query("#eval-targets")
    return found.first(Input).value if found else None


def table_text(table) -> list[list[str]]:
    return [[str(getattr(c, "plain", c)) for c in table.get_row_at(i)] for i in range(table.row_count)]


# -- opening it: Runs (marked runs), Monitor, recipes ---------------------------------------------------


async def test_runs_e_opens_eval_on_the_marked_runs_after_base(runs_root: Path) -> None:

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        send_burst(app, "ctrl+r", "space", "space", "e")
        await wait_until(pilot, lambda: eval_targets(app) == f"base {NEWEST} {MIDDLE}", timeout=30.0)
        footer_keys = {b.id for (_, b, *_) in app.screen.active_bindings.values() if b.id}
        assert "eval.start" in footer_keys


async def test_runs_e_with_nothing_marked_takes_the_highlighted_run(runs_root: Path) -> None:

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        send_burst(app, "ctrl+r", "down", "down", "e")
        await wait_until(pilot, lambda: eval_targets(app) == f"base {OLDEST}", timeout=30.0)


async def test_monitor_e_opens_eval_on_its_run(runs_root: Path) -> None:

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        send_burst(app, "ctrl+r", "down", "enter", "e")
        await wait_until(pilot, lambda: eval_targets(app) == f"base {MIDDLE}", timeout=30.0)
        send_burst(app, "escape")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "MonitorScreen", timeout=10.0)


async def test_recipe_e_opens_eval_on_its_newest_run(runs_root: Path) -> None:
    from textual.widgets import OptionList

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: getattr(app.screen, "loaded", False), timeout=30.0)
        names = [e.file.name for e in screen_of(app, RecipesScreen).shown]
        app.screen.query_one(OptionList).highlighted = names.index("tiny-pirate")
        send_burst(app, "e")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, EvalScreen) and app.screen.query("#eval-targets"),
            timeout=10.0,
        )  # pushed, and composed
        box = app.screen.query_one("#eval-targets", Input)
        await wait_until(pilot, lambda: box.value == f"base {MIDDLE}", timeout=10.0)


# -- a finished evaluation: table, samples, past evaluations ------------------------------------------------


async def test_past_evaluation_reopens_with_its_table_and_samples(finished_eval: Path) -> None:
    from lorastudio.screens.eval_list import EvalListScreen
    from lorastudio.screens.evaluate import EvalScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        send_burst(app, "ctrl+r", "e", "ctrl+l")
        await wait_until(
            pilot, lambda: isinstance(app.screen, EvalListScreen) and app.screen.evals is not None, 30.0
        )
        send_burst(app, "enter")
        await wait_until(
            pilot, lambda: isinstance(app.screen, EvalScreen) and app.screen.table is not None, 30.0
        )
        screen = app.screen
        assert screen.query_one("#eval-targets", Input).value == f"base {MIDDLE}"
        assert screen.query_one("#eval-tasks", Input).value == "studio_general studio_arithmetic"
        assert screen.query_one("#eval-limit", Input).value == "2"
        rows = table_text(screen.query_one("#eval-results"))
        assert rows == [
            ["studio_arithmetic/exact_match (first_number)", "0.500 ±0.250", "0.500 ±0.250 +0.000"],
            ["studio_general/acc", "0.250 ±0.100", "0.750 ±0.100 +0.500 ◆"],
        ]
        progress_text = plain(screen.query_one("#eval-progress"))
        assert progress_text.startswith("done · 4/4 task runs")
        assert "ETA" not in progress_text
        send_burst(app, "down", "enter")  # the acc row's documents
        await wait_until(
            pilot, lambda: isinstance(app.screen, EvalSamplesScreen) and app.screen.rows is not None, 30.0
        )
        assert screen_of(app, EvalSamplesScreen).metric == "studio_general/acc"
        text = plain(app.screen.query_one("#eval-samples"))
        for words in ("What colour is the sky", "How many legs", "reference", "blue", "green", "eight"):
            assert words in text, words
        send_burst(app, "escape")
        await wait_until(pilot, lambda: isinstance(app.screen, EvalScreen), 10.0)


async def test_row_without_samples_says_so(runs_root: Path) -> None:
    from lorastudio.screens.evaluate import EvalScreen

    folder = write_eval(
        runs_root / MIDDLE / "evals", EVAL_ID, ("base", MIDDLE), {"base": figures_for(0.2, 0.1)}
    )
    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.push_screen(EvalScreen(folder=folder))
        await wait_until(pilot, lambda: getattr(app.screen, "table", None) is not None, 30.0)
        send_burst(app, "enter")
        await wait_until(
            pilot, lambda: isinstance(app.screen, EvalSamplesScreen) and app.screen.rows is not None, 30.0
        )
        text = plain(app.screen.query_one("#eval-samples"))
        assert "no per-document outputs" in text
        assert "studio_arithmetic" in text


@pytest.mark.parametrize(
    ("targets", "tasks", "limit", "message"),
    [
        ("", "studio_general", "", "targets: name one or more"),
        (MIDDLE, "", "", "tasks: name one or more"),
        (MIDDLE, "studio_general", "0", "limit 0: at least 1 document per task"),
        ("base", "studio_general", "", "eval target base: name a run or an export too"),
        (MIDDLE, "/no/such.yaml", "", "task /no/such.yaml: no such task file"),
    ],
)
async def test_bad_form_is_refused_naming_the_field_and_starts_nothing(
    runs_root: Path, targets: str, tasks: str, limit: str, message: str
) -> None:

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.push_screen(EvalScreen([]))
        await wait_until(pilot, lambda: eval_targets(app) == "", 10.0)
        screen = screen_of(app, EvalScreen)
        screen.query_one("#eval-targets", Input).value = targets
        screen.query_one("#eval-tasks", Input).value = tasks
        screen.query_one("#eval-limit", Input).value = limit
        send_burst(app, "ctrl+s")
        title = screen.query_one("#eval-title")
        await wait_until(pilot, lambda: message in plain(title), 60.0)
        assert not screen.starting
    assert list_evals() == []


async def test_start_typed_right_after_the_limit_reads_the_limit(runs_root: Path) -> None:
    """Ctrl+S in the same burst as the last digit acts on the field as typed (type-ahead)."""

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        send_burst(app, "ctrl+r", "e")
        await wait_until(pilot, lambda: eval_targets(app) == f"base {NEWEST}", 30.0)
        screen = app.screen
        assert isinstance(screen, EvalScreen)
        send_burst(app, "tab", "tab", "0", "ctrl+s")
        title = screen.query_one("#eval-title")
        await wait_until(pilot, lambda: "limit" in plain(title), 60.0)
        assert "limit 0: at least 1 document per task" in plain(title)
    assert list_evals() == []


# -- snapshots -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_eval_finished(snap_compare, size, finished_eval: Path) -> None:

    async def run_before(pilot) -> None:
        await pilot.app.push_screen(EvalScreen(folder=finished_eval))
        await wait_until(pilot, lambda: getattr(pilot.app.screen, "table", None) is not None, 30.0)
        await pilot.pause(0.2)

    assert snap_compare(StudioApp(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_eval_samples(snap_compare, size, finished_eval: Path) -> None:

    async def run_before(pilot) -> None:
        await pilot.app.push_screen(EvalSamplesScreen(finished_eval, "studio_general/acc", ["base", MIDDLE]))
        await wait_until(pilot, lambda: getattr(pilot.app.screen, "rows", None) is not None, 30.0)
        await pilot.pause(0.2)

    assert snap_compare(StudioApp(), terminal_size=size, run_before=run_before)


# -- the rules: progress and ETA, what stands out, samples read defensively ---------------------------------


@pytest.fixture
def live_eval(runs_root: Path):
    """base finished both tasks (30 s each); the run's first task is running, its job alive (a stand-in)."""
    folder = write_eval(
        runs_root / MIDDLE / "evals",
        EVAL_ID,
        ("base", MIDDLE),
        {"base": figures_for(0.2, 0.1)},
        status="running",
    )
    proc = stand_in_job(folder)
    yield folder
    proc.kill()
    proc.wait()


def test_live_evaluation_progress_and_eta(live_eval: Path) -> None:
    """Three pairs left at the finished pairs' mean (30 s), less the 10 s the running one has had."""
    summary = summarise(live_eval)
    assert summary.status == "loading model"
    state = progress(summary, now=T0 + 60 + 10)
    assert state.pairs == {
        ("base", "studio_general"): "done",
        ("base", "studio_arithmetic"): "done",
        (MIDDLE, "studio_general"): "running",
        (MIDDLE, "studio_arithmetic"): "waiting",
    }
    assert (state.done, state.total, state.eta_s, state.running) == (2, 4, 50.0, True)
    assert progress(summary, now=T0 + 60 + 45).eta_s == 30.0  # past the mean: the running one counts as spent


def test_died_evaluation_shows_no_eta_and_no_running_task(live_eval: Path) -> None:
    (live_eval / "job.json").write_text(json.dumps({"pid": 1, "pid_started": 0}))
    summary = summarise(live_eval)
    state = progress(summary, now=T0 + 70)
    assert summary.status == "died"
    assert state.eta_s is None
    assert "running" not in state.pairs.values()


async def test_live_evaluation_on_screen(live_eval: Path) -> None:

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.push_screen(EvalScreen(folder=live_eval))
        await wait_until(pilot, lambda: getattr(app.screen, "table", None) is not None, 30.0)
        text = plain(app.screen.query_one("#eval-progress"))
        lines = text.splitlines()
        assert lines[0].startswith("running · 2/4 task runs · ETA ")  # its status says loading model
        assert lines[1].split() == ["base", "✓", "studio_general", "✓", "studio_arithmetic"]
        assert lines[2].split() == [MIDDLE, "▶", "studio_general", "·", "studio_arithmetic"]
        rows = table_text(app.screen.query_one("#eval-results"))
        assert rows[1] == ["studio_general/acc", "0.200 ±0.100", "-"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "ETA after the first task"), (50.0, "ETA 0m50s"), (125.4, "ETA 2m05s"), (3725.0, "ETA 1h02m")],
)
def test_eta_text(seconds: float | None, text: str) -> None:
    assert format_eta(seconds) == text


@pytest.mark.parametrize(
    ("base", "other", "stands_out"),
    [
        (Cell(0.25, 0.1), Cell(0.75, 0.1, 0.5), True),  # 0.5 > 0.141
        (Cell(0.5, 0.3), Cell(0.8, 0.3, 0.3), False),  # 0.3 < 0.424
        (Cell(0.5, 0.1), Cell(0.2, 0.1, -0.3), True),  # a drop stands out too
        (Cell(0.5, None), Cell(0.9, 0.1, 0.4), False),  # no stderr: not claimed
        (None, Cell(0.9, 0.1, None), False),
    ],
)
def test_delta_stands_out_beyond_combined_stderr(base: Cell | None, other: Cell, stands_out: bool) -> None:
    assert Row("t/acc", {"a": base, "b": other}).stands_out("b", "a") is stands_out


def test_generated_answer_shows_the_reply_and_what_was_scored(finished_eval: Path) -> None:
    rows = read_samples(finished_eval, "studio_arithmetic/exact_match (first_number)")
    assert [(r.prompt, r.reference, r.answers) for r in rows] == [
        ("What is 2 + 2? Answer with the number only.", "4", {"base": "7", MIDDLE: "4"}),
        ("What is 7 + 5? Answer with the number only.", "12", {"base": "12 apples  → 12", MIDDLE: "12"}),
    ]
    assert [r.scores for r in rows] == [{"base": 0.0, MIDDLE: 1.0}, {"base": 1.0, MIDDLE: 1.0}]


def test_table_and_samples_are_read_defensively(tmp_path: Path) -> None:
    """Rows of another shape (a judged generation's extra fields, a cell that is not a figure) and broken
    sample lines are shown with what they have or skipped."""
    folder = tmp_path / "e"
    folder.mkdir()
    (folder / "results.json").write_text(
        json.dumps(
            {
                "spec": {"targets": ["base", "r"]},
                "table": [
                    {
                        "metric": "judge/score",
                        "kind": "judged",
                        "targets": {"base": {"value": 3}, "r": "n/a"},
                    },
                    "not a row",
                    {"targets": {}},
                ],
            }
        )
    )
    found = read_table(folder)
    assert found is not None
    assert found.targets == ("base", "r")
    [row] = found.rows
    assert row.cells == {"base": Cell(3.0, None, None), "r": None}
    assert row.extra == {"kind": "judged"}
    (folder / "samples.jsonl").write_text(
        '{"task": "judge", "eval_target": "r", "doc_id": 0, "prompt": "Say hi", "answer": "Ahoy", "score": 4}\n'
        '{"task": "judge", "eval_tar'
    )
    [sample] = read_samples(folder, "judge/score")
    assert (sample.prompt, sample.answers, sample.scores) == ("Say hi", {"r": "Ahoy"}, {"r": 4.0})
    assert read_table(tmp_path) is None


# -- Compare and `studio runs compare` show each run's latest scores -------------------------------------


def older_eval(runs_root: Path) -> Path:
    """An older evaluation of MIDDLE (acc 0.1): the newer one (finished_eval) is the one shown."""
    return write_eval(
        runs_root / MIDDLE / "evals", "20260922-125900-0000", (MIDDLE,), {MIDDLE: figures_for(0.1, 0.1)}
    )


async def test_compare_shows_each_runs_latest_evaluation(finished_eval: Path, runs_root: Path) -> None:
    older_eval(runs_root)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        send_burst(app, "ctrl+r", "down", "space", "space", "v")  # MIDDLE (A) and OLDEST (B)
        await wait_until(pilot, lambda: getattr(app.screen, "comparison", None) is not None, 30.0)
        rows = table_text(app.screen.query_one("#compare-evals"))
        assert rows == [
            ["studio_arithmetic/exact_match (first_number)", "0.5000", "-"],
            ["studio_general/acc", "0.7500", "-"],
            ["evaluation", EVAL_ID, "-"],
        ]
        assert "latest evaluation" in plain(app.screen.query_one("#compare-evals-label"))


def test_runs_compare_prints_and_returns_latest_scores(
    finished_eval: Path, runs_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    older_eval(runs_root)
    assert main(["runs", "compare", MIDDLE, OLDEST, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["eval"] for r in data["runs"]] == [
        {
            "eval": EVAL_ID,
            "target": MIDDLE,
            "scores": {"studio_arithmetic/exact_match (first_number)": 0.5, "studio_general/acc": 0.75},
        },
        None,
    ]
    assert main(["runs", "compare", MIDDLE, OLDEST]) == 0
    out = capsys.readouterr().out
    section = out[out.index("latest evaluation") :].splitlines()
    assert section[2].split() == ["studio_arithmetic/exact_match", "(first_number)", "0.5000", "-"]
    assert section[3].split() == ["studio_general/acc", "0.7500", "-"]


# -- a sweep ranked by an evaluation ------------------------------------------------------------------------


def make_sweep(runs_root: Path) -> list[str]:
    """The three recorded runs as the sweep ``lr`` (index order: OLDEST, MIDDLE, NEWEST); OLDEST and NEWEST
    evaluated (acc 0.4 and 0.9), MIDDLE not."""
    order = [OLDEST, MIDDLE, NEWEST]
    for index, name in enumerate(order):
        meta_file = runs_root / name / "run.json"
        meta = json.loads(meta_file.read_text())
        meta["sweep"] = {"name": "lr", "index": index, "fields": {"train.learning_rate": 0.001 * (index + 1)}}
        meta_file.write_text(json.dumps(meta))
    write_eval(
        runs_root / OLDEST / "evals", "20260922-140000-aaaa", (OLDEST,), {OLDEST: figures_for(0.4, 0.0)}
    )
    write_eval(
        runs_root / NEWEST / "evals", "20260922-140100-bbbb", (NEWEST,), {NEWEST: figures_for(0.9, 0.0)}
    )
    return order


@pytest.mark.parametrize("command", [["runs", "compare", "--sweep", "lr"], ["sweep", "rank", "lr"]])
def test_rank_by_eval_orders_a_sweep(
    runs_root: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    make_sweep(runs_root)
    assert main([*command, "--rank-by", "eval:studio_general/acc", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ranked_by"] == "eval:studio_general/acc"
    assert data["best"] == NEWEST
    assert [(r["name"], r["rank"], r["eval_score"]) for r in data["runs"]] == [
        (NEWEST, 1, 0.9),
        (OLDEST, 2, 0.4),
        (MIDDLE, None, None),
    ]
    assert main([*command, "--rank-by", "eval:studio_general/acc"]) == 0
    out = capsys.readouterr().out
    assert "ranked by eval:studio_general/acc (latest evaluation, higher first)" in out
    names = [line.split()[1] for line in out.splitlines()[2:5]]
    assert names == [NEWEST, OLDEST, MIDDLE]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["runs", "compare", "--sweep", "lr", "--rank-by", "acc"],
            "studio: --rank-by acc: give eval:TASK/METRIC",
        ),
        (["runs", "compare", "--sweep", "lr", "--rank-by", "eval:acc"], "studio: --rank-by eval:acc: give"),
        (
            ["runs", "compare", MIDDLE, OLDEST, "--rank-by", "eval:a/b"],
            "studio: runs compare: --rank-by ranks",
        ),
        (["sweep", "rank"], "studio: usage: studio sweep rank NAME"),
    ],
)
def test_bad_rank_by_says_one_thing(
    runs_root: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make_sweep(runs_root)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert len(err.strip().splitlines()) == 1


# -- end to end: a real evaluation started from the screen ----------------------------------------------


@pytest.mark.slow
async def test_screen_runs_a_real_evaluation_on_the_tiny_model(tiny_model: Path) -> None:
    """Targets, tasks and limit typed in one burst, Ctrl+S: the job runs lm-eval on the tiny model (limit 2)
    and the screen shows its progress, then its table; Enter shows the documents."""
    from lorastudio.screens.evaluate import EvalScreen

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.push_screen(EvalScreen([]))
        await wait_until(pilot, lambda: eval_targets(app) == "", 10.0)
        screen = screen_of(app, EvalScreen)
        screen.query_one("#eval-tasks", Input).value = ""
        send_burst(app, *str(tiny_model), "tab", *"studio_general,studio_arithmetic", "tab", "2", "ctrl+s")
        await wait_until(pilot, lambda: screen.folder is not None, 120.0)
        assert screen.query_one("#eval-targets", Input).value == str(tiny_model)
        await wait_until(
            pilot,
            lambda: screen.summary is not None and screen.summary.status in ("done", "failed", "died"),
            900.0,
        )
        assert screen.summary is not None
        assert screen.summary.status == "done", screen.summary.cause
        assert screen.summary.spec.limit == 2
        assert screen.focused is screen.query_one("#eval-results")
        assert plain(screen.query_one("#eval-progress")).startswith("done · 2/2 task runs")
        rows = table_text(screen.query_one("#eval-results"))
        assert [r[0] for r in rows] == ["studio_arithmetic/exact_match (first_number)", "studio_general/acc"]
        assert all(r[1] != "-" for r in rows)
        send_burst(app, "down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EvalSamplesScreen) and app.screen.rows, 60.0)
        samples = screen_of(app, EvalSamplesScreen)
        assert samples.rows is not None
        assert len(samples.rows) == 2
        assert all(str(tiny_model) in r.answers for r in samples.rows)


async def test_judge_row_shows_every_verdict_and_raw_reply(tmp_path: Path) -> None:
    """A recorded pairwise evaluation: Enter on judge/win shows each prompt, both answers and, under the judged
    one, the outcome and each order's verdict with the judge's raw reply (an unreadable one said so); a
    rubric line and a line cut by a stop are read as they are."""
    folder = write_eval(tmp_path / "evals", EVAL_ID, ("a", "b"), {})
    answers = [
        {"eval_target": label, "index": i, "prompt": f"question {i}", "reference": None, "answer": f"{label} says {i}",
         "scores": {"contains": 1.0 if label == "b" else 0.0}}
        for label in ("a", "b") for i in range(2)
    ]  # fmt: skip
    verdicts = [
        {"mode": "pairwise", "index": 0, "eval_target": "b", "against": "a", "orders": ["A=a B=b", "A=b B=a"],
         "replies": ["B is better [[B]]", "A wins [[A]]"], "verdicts": ["B", "A"], "outcome": "win"},
        {"mode": "pairwise", "index": 1, "eval_target": "b", "against": "a", "orders": ["A=a B=b", "A=b B=a"],
         "replies": ["hmm, both fine", "[[C]]"], "verdicts": [None, "tie"], "outcome": None},
    ]  # fmt: skip
    (folder / "answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers) + '{"eval_tar')
    (folder / "verdicts.jsonl").write_text("".join(json.dumps(v) + "\n" for v in verdicts))
    rows = read_samples(folder, "judge/win")
    assert [(r.prompt, r.answers) for r in rows] == [
        (f"question {i}", {"a": f"a says {i}", "b": f"b says {i}"}) for i in range(2)
    ]
    assert rows[0].judged == {"b": "judge: win\nA=a B=b → B: B is better [[B]]\nA=b B=a → A: A wins [[A]]"}
    assert rows[1].judged["b"].startswith("judge: undecided\nA=a B=b → unreadable: hmm, both fine")
    scored = read_samples(folder, "judged/contains")
    assert [r.scores for r in scored] == [{"a": 0.0, "b": 1.0}] * 2
    assert all(not r.judged for r in scored)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.push_screen(EvalSamplesScreen(folder, "judge/win", ["a", "b"]))
        await wait_until(pilot, lambda: getattr(app.screen, "rows", None), 30.0)
        text = " ".join(plain(app.screen.query_one("#eval-samples")).split())
        for shown in (
            "2 documents",
            "b says 0",
            "judge: win",
            "A=a B=b → B: B is better [[B]]",
            "unreadable: hmm",
        ):
            assert shown in text or shown in str(app.screen.query_one("#eval-samples-title").render()), shown
