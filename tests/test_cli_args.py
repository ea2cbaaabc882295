"""The command line: overrides anywhere on it (issue 38), the TUI refused without a terminal and a feedback file
checked before any reply is made (issue 37)."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import STUDIO_BIN
from runs_fixtures import write_run

from lorastudio.chat.feedback import destination_problem
from lorastudio.cli import main
from lorastudio.paths import runs_dir


def run_names() -> set[str]:
    return {p.name for p in runs_dir().glob("*")} if runs_dir().exists() else set()


def new_run(before: set[str]) -> Path:
    (name,) = run_names() - before
    return runs_dir() / name


def shown(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main(argv) == 0
    return yaml.safe_load(capsys.readouterr().out)


# -- overrides anywhere -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["recipe", "show", "tiny-pirate", "train.max_steps=12", "lora.r=4"],
        ["recipe", "show", "train.max_steps=12", "tiny-pirate", "lora.r=4"],
        ["recipe", "show", "train.max_steps=12", "lora.r=4", "tiny-pirate"],
    ],
)
def test_recipe_show_takes_overrides_before_and_after_the_name(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = shown(capsys, argv)
    assert recipe["name"] == "tiny-pirate"
    assert (recipe["train"]["max_steps"], recipe["lora"]["r"]) == (12, 4)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "tiny-pirate", "--no-start", "train.max_steps=12", "lora.r=4"],
        ["train", "--no-start", "tiny-pirate", "train.max_steps=12", "lora.r=4"],
        ["train", "tiny-pirate", "train.max_steps=12", "--no-start", "lora.r=4"],
        ["train", "train.max_steps=12", "--no-start", "tiny-pirate", "lora.r=4"],
        ["train", "tiny-pirate", "--devices", "1", "train.max_steps=12", "--no-start", "lora.r=4"],
        ["train", "tiny-pirate-grpo", "--from", "ADAPTER", "train.max_steps=12", "--no-start", "lora.r=4"],
        ["train", "tiny-pirate-grpo", "train.max_steps=12", "--from", "ADAPTER", "lora.r=4", "--no-start"],
    ],
)
def test_train_takes_overrides_anywhere(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    before = run_names()
    assert main([str(adapter) if word == "ADAPTER" else word for word in argv]) == 0
    run = new_run(before)
    assert capsys.readouterr().out.strip() == str(run)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recipe["name"] == ("tiny-pirate-grpo" if "tiny-pirate-grpo" in argv else "tiny-pirate")
    assert (recipe["train"]["max_steps"], recipe["lora"]["r"]) == (12, 4)
    if "--from" in argv:
        assert recipe["model"]["adapter"] == str(adapter)


def test_later_overrides_win_in_line_order(capsys: pytest.CaptureFixture[str]) -> None:
    recipe = shown(capsys, ["recipe", "show", "tiny-pirate", "train.max_steps=5", "train.max_steps=7"])
    assert recipe["train"]["max_steps"] == 7
    before = run_names()
    assert main(["train", "tiny-pirate", "train.max_steps=5", "--no-start", "train.max_steps=7"]) == 0
    assert yaml.safe_load((new_run(before) / "recipe.yaml").read_text())["train"]["max_steps"] == 7


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "RECIPE", "train.max_steps=0"],
        ["validate", "train.max_steps=0", "RECIPE"],
        ["validate", "RECIPE", "lora.r=8", "train.max_steps=0"],
    ],
)
def test_validate_applies_overrides_to_each_file(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("name: mine\nextends: tiny-pirate\n")
    assert main(["validate", str(recipe), "train.max_steps=3"]) == 0
    assert capsys.readouterr().out == f"{recipe}: ok\n"
    assert main([str(recipe) if word == "RECIPE" else word for word in argv]) == 1
    assert (
        "override 'train.max_steps=0': Input should be greater than or equal to 1" in capsys.readouterr().err
    )


def test_sweep_takes_its_grid_after_flags(capsys: pytest.CaptureFixture[str]) -> None:
    # not at a terminal and without --yes it shows the plan and starts nothing
    before = run_names()
    argv = ["sweep", "tiny-pirate", "--max", "3", "lora.r=8,16", "--name", "s1", "train.max_steps=2,3"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        "sweep s1: 3 runs of tiny-pirate (the first 3 of 4, --max), lora.r (2) x train.max_steps (2)" in err
    )
    assert "lora.r=8  train.max_steps=2" in err
    assert "lora.r=16  train.max_steps=2" in err
    assert run_names() == before


def test_prepare_takes_overrides_after_flags(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", "tiny-pirate", "--json", "data.eval_fraction=0", "--force", "lora.r=4"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["recipe"] == "tiny-pirate"
    assert summary["eval_rows"] == 0
    assert summary["train_rows"] > 0


def test_preview_takes_overrides_after_flags(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", "--json", "tiny-pirate", "--index", "2", "model.max_seq_length=28"]) == 0
    (sample,) = json.loads(capsys.readouterr().out)["samples"]
    assert (sample["index"], sample["full_length"], sample["tokens"], sample["truncated"]) == (
        2,
        34,
        28,
        True,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "tiny-pirate", "--no-start", "--nope"], "unrecognized arguments: --nope"),
        (["train", "tiny-pirate", "--no-start", "x=1", "-z"], "unrecognized arguments: -z"),
        (["stop", "some-run", "train.max_steps=3"], "unrecognized arguments: train.max_steps=3"),
        (["train", "--resume", "some-run", "train.max_steps=3"], "no RECIPE or overrides"),
    ],
)
def test_a_bad_word_is_refused_naming_it(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = run_names()
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert run_names() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "tiny-pirate", "--no-start", "max_steps"],
            "override 'max_steps': expected dotted.key=value, e.g. train.max_steps=50",
        ),
        (
            ["train", "tiny-pirate", "--no-start", "train.max_steps=lots"],
            "override 'train.max_steps=lots': Input should be a valid integer",
        ),
        (["recipe", "show", "tiny-pirate", "train.nope=1"], "train.nope"),
        (["preview", "tiny-pirate", "--json", "lora.r"], "override 'lora.r': expected dotted.key=value"),
    ],
)
def test_a_bad_override_after_a_flag_is_named(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = run_names()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("studio: ")
    assert message in err
    assert "Traceback" not in err
    assert run_names() == before


# -- the TUI only at a terminal ---------------------------------------------------------------------
TUI_COMMANDS = [
    ([], "without one run a command (`studio --help`)"),
    (["attach", "some-run"], "`studio runs --json`"),
    (["chat", "some-run"], "use --prompt TEXT or --prompts FILE"),
    (["chat", "some-run", "--base", "--save-to", "FB"], "use --prompt TEXT or --prompts FILE"),
]


@pytest.mark.parametrize(("argv", "instead"), TUI_COMMANDS)
@pytest.mark.parametrize("terminal", ["none", "stdin", "stdout"])
def test_the_tui_is_refused_without_a_terminal(
    argv: list[str], instead: str, terminal: str, tmp_path: Path
) -> None:
    """Drawn into a pipe the TUI waited for keys forever: each command that opens it refuses (exit 2) unless
    both stdin and stdout are terminals, naming the one that is not and the command to use instead."""
    argv = [str(tmp_path / "fb.jsonl") if word == "FB" else word for word in argv]
    made = None
    if argv[:1] == ["attach"]:  # attach names a bad reference before it asks for a terminal: give it a run
        made = write_run(runs_dir(), "some-run", created=1_790_000_000.0)
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [STUDIO_BIN, *argv],
            stdin=follower if terminal == "stdin" else subprocess.DEVNULL,
            stdout=follower if terminal == "stdout" else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(follower)
        os.close(leader)
        if made is not None:
            shutil.rmtree(made)
    missing = {
        "none": "stdin and stdout are not one",
        "stdin": "stdout is not one",
        "stdout": "stdin is not one",
    }
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert line.startswith("studio: "), line
    assert "\n" not in line, line
    assert "needs a terminal (" + missing[terminal] + ")" in line
    assert instead in line
    assert not (tmp_path / "fb.jsonl").exists()


def test_mark_needs_a_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "some-run", "--mark", "good"]) == 2
    assert capsys.readouterr().err == (
        "studio: --mark good: needs --prompt or --prompts (in the Chat screen, + and - mark a reply)\n"
    )


@pytest.mark.parametrize("mode", ["--prompt", "--prompts"])
def test_save_to_without_mark_is_refused_not_ignored(
    mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--save-to` only keeps marked replies: with --prompt and no --mark nothing would be saved, so the
    reply a user meant to keep is refused before any model loads, not generated and dropped."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What does a cow say?\n")
    target = tmp_path / "fb.jsonl"
    text = "hi" if mode == "--prompt" else str(prompts)
    assert main(["chat", "some-run", mode, text, "--save-to", str(target)]) == 2
    assert capsys.readouterr().err == (
        f"studio: --save-to {target}: keeps the replies marked with --mark good|bad; add --mark "
        "(or leave out --prompt and --prompts to mark replies in the Chat screen)\n"
    )
    assert not target.exists()


# -- the feedback file, checked before any reply ----------------------------------------------------
@pytest.fixture
def adapterless_run(tmp_path: Path) -> Path:
    """A run with no adapter: loading it would fail, so a refusal naming --save-to proves the check ran first."""
    return write_run(runs_dir(), f"tiny-pirate-{tmp_path.name}", created=1_790_000_000.0)


@pytest.mark.parametrize(
    ("save_to", "problem"),
    [
        ("folder", "is a folder, not a file (give a file, e.g. {tmp}/folder/feedback.jsonl)"),
        ("afile/fb.jsonl", "{tmp}/afile is a file, not a folder"),
        ("afile/deeper/still/fb.jsonl", "{tmp}/afile is a file, not a folder"),
        ("taken.jsonl", "its pairs file {tmp}/taken-pairs.jsonl: is a folder, not a file"),
    ],
)
@pytest.mark.parametrize("mode", ["--prompt", "--prompts"])
def test_a_feedback_file_that_cannot_be_written_is_refused_before_the_reply(
    save_to: str,
    problem: str,
    mode: str,
    adapterless_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "taken-pairs.jsonl").mkdir()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What does a cow say?\n")
    listing = sorted(tmp_path.rglob("*"))
    target = str(tmp_path / save_to)
    text = "hi" if mode == "--prompt" else str(prompts)
    assert main(["chat", adapterless_run.name, mode, text, "--mark", "good", "--save-to", target]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == f"studio: --save-to {target}: {problem.format(tmp=tmp_path)}\n"
    assert sorted(tmp_path.rglob("*")) == listing  # nothing created


@pytest.mark.parametrize("where", ["fb.jsonl", "new/folders/fb.jsonl", "existing.jsonl"])
def test_a_writable_destination_passes_and_nothing_is_created(tmp_path: Path, where: str) -> None:
    (tmp_path / "existing.jsonl").write_text('{"messages": []}\n')
    listing = sorted(tmp_path.rglob("*"))
    assert destination_problem(tmp_path / where) is None
    assert sorted(tmp_path.rglob("*")) == listing


def test_the_default_feedback_file_is_checked_too(
    adapterless_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (adapterless_run / "feedback.jsonl").mkdir()
    assert main(["chat", adapterless_run.name, "--prompt", "hi", "--mark", "bad"]) == 2
    assert capsys.readouterr().err.startswith(
        f"studio: feedback file {adapterless_run / 'feedback.jsonl'}: is a folder, not a file"
    )


def test_marked_replies_reach_a_new_feedback_folder(tiny_model: Path, tmp_path: Path) -> None:
    target = tmp_path / "new" / "fb.jsonl"
    done = subprocess.run(
        [
            STUDIO_BIN,
            "chat",
            str(tiny_model),
            "--prompt",
            "What does a cow say?",
            "--greedy",
            "--max-new-tokens",
            "8",
            "--mark",
            "good",
            "--save-to",
            str(target),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (row,) = [json.loads(line) for line in target.read_text().splitlines()]
    assert row["messages"][-2] == {"role": "user", "content": "What does a cow say?"}
    assert row["messages"][-1]["content"] == done.stdout.strip()
    assert "saved as a good reply" in done.stderr
