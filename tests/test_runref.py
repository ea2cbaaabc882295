"""Run references (issue 37): one resolver for every command, the TUI and the MCP server.

Empty, wildcard, ambiguous and non-run-path references are refused with one line naming the reference (and the
runs it could mean); nothing is deleted, stopped, noted or started. Destructive commands take only an exact
name or a path. ``--from`` and ``chat RUN@latest`` say which run and checkpoint they took.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from runs_fixtures import write_run

from lorastudio import cli, mcpserver
from lorastudio.errors import RunError, StudioError
from lorastudio.train.run.runref import resolve_run

OLD, OLD2, GRPO = (
    "tiny-pirate-20261202-010000",
    "tiny-pirate-20261202-010000-2",
    "tiny-pirate-grpo-20261202-020000",
)
"""Two runs of tiny-pirate and a newer one of tiny-pirate-grpo: its name starts with the other recipe's."""


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private runs folder holding the three runs (each with a final adapter and checkpoints 4 and 8)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    folder = tmp_path / "data" / "studio" / "runs"
    for created, name in enumerate((OLD, OLD2, GRPO), 1):
        run = write_run(folder, name, created=float(created), eval_every=4, steps=8)
        for part in ("adapter", "checkpoints/checkpoint-4", "checkpoints/checkpoint-8"):
            (run / part).mkdir(parents=True)
            (run / part / "adapter_config.json").write_text("{}")
            (run / part / "trainer_state.json").write_text("{}")
        with (run / "events.jsonl").open("a") as events:  # as the worker records its best checkpoint
            best = {"kind": "checkpoint", "step": 4, "best_checkpoint": "checkpoints/checkpoint-4"}
            events.write(json.dumps({"v": 1, "t": created + 100.0, **best, "best_eval_loss": 1.0}) + "\n")
    (tmp_path / "elsewhere").mkdir()
    return folder


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under the runs folder with its bytes: what must be unchanged after a refused command."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def studio(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


ALL = f"{GRPO}, {OLD2}, {OLD}"
"""The candidates, newest first, as a refusal lists them."""

BAD = [
    pytest.param("", ["''", ALL], id="empty"),
    pytest.param("   ", ["'   '", ALL], id="blank"),
    pytest.param("*", ["'*'", "wildcards", ALL], id="star"),
    pytest.param("**", ["'**'", "wildcards", ALL], id="globstar"),
    pytest.param("tiny-pirate-2026*", ["'tiny-pirate-2026*'", "wildcards"], id="prefix-star"),
    pytest.param("?", ["'?'", "wildcards"], id="question"),
    pytest.param("[t]iny-pirate", ["'[t]iny-pirate'", "wildcards"], id="bracket"),
    pytest.param("tiny-pirate-2026", ["'tiny-pirate-2026'", "2 runs", f"{OLD2}, {OLD}"], id="ambiguous"),
    pytest.param("tiny", ["'tiny'", "3 runs", ALL], id="ambiguous-3"),
    pytest.param("@best", ["'@best'", "no run named", ALL], id="no-name-at-best"),
    pytest.param("ELSEWHERE", ["elsewhere'", "is not a run directory"], id="abs-dir"),
    pytest.param("/nowhere/at/all", ["'/nowhere/at/all'", "is not a run directory"], id="abs-missing"),
    pytest.param("no-such", ["no such run: 'no-such'"], id="unknown"),
]


def override_said(reference: str, as_override: bool) -> list[str] | None:
    """An override's value is read as YAML first: ``?`` is refused there, naming the override; blank is ''."""
    if as_override and reference == "?":
        return ["override 'model.adapter=?'"]
    return ["empty run reference ''"] if as_override and reference == "   " else None


COMMANDS = [
    pytest.param(["runs", "delete", "REF", "--yes"], id="delete"),
    pytest.param(["stop", "REF"], id="stop"),
    pytest.param(["resume", "REF"], id="resume"),
    pytest.param(["attach", "REF"], id="attach"),
    pytest.param(["runs", "note", "REF", "hello"], id="note"),
    pytest.param(["runs", "samples", "REF"], id="samples"),
    pytest.param(["runs", "compare", "REF", OLD], id="compare"),
    pytest.param(["export", "REF", "--estimate"], id="export"),
    pytest.param(["chat", "REF", "--prompt", "hi"], id="chat"),
    pytest.param(["train", "tiny-pirate", "--from", "REF", "--no-start"], id="train-from"),
    pytest.param(["train", "--resume", "REF"], id="train-resume"),
    pytest.param(["train", "tiny-pirate", "model.adapter=REF", "--no-start"], id="model-adapter"),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("reference", "said"), BAD)
def test_a_bad_reference_is_refused_by_every_command_and_changes_nothing(
    root: Path, capsys: pytest.CaptureFixture[str], command: list[str], reference: str, said: list[str]
) -> None:
    reference = reference.replace("ELSEWHERE", str(root.parent.parent.parent / "elsewhere"))
    said = override_said(reference, "model.adapter=REF" in command) or said
    before = files_of(root)
    argv = [a.replace("REF", reference) for a in command]
    code, out, err = studio(capsys, *argv)
    assert code == 2, (out, err)
    assert err.startswith("studio: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for part in said:
        assert part in err, err
    assert files_of(root) == before  # nothing deleted, stopped, noted; no run created


@pytest.mark.parametrize(
    ("reference", "means"),
    [
        pytest.param("latest", GRPO, id="latest"),
        pytest.param("tiny-pirate", OLD2, id="recipe-name"),
        pytest.param("tiny-pirate-g", GRPO, id="unique-prefix"),
    ],
)
@pytest.mark.parametrize(
    "command", [["runs", "delete", "REF", "--yes"], ["stop", "REF"]], ids=["delete", "stop"]
)
def test_destructive_commands_take_only_an_exact_name_or_path(
    root: Path, capsys: pytest.CaptureFixture[str], command: list[str], reference: str, means: str
) -> None:
    before = files_of(root)
    code, _, err = studio(capsys, *[a.replace("REF", reference) for a in command])
    assert code == 2 and err.count("\n") == 1
    assert f"'{reference}' is not a run's exact name (it means {means}" in err, err
    assert files_of(root) == before


@pytest.mark.parametrize(
    "reference", [OLD, f"{OLD}/", "PATH"], ids=["exact-name", "name-with-slash", "absolute-path"]
)
def test_delete_takes_an_exact_name_or_a_path(
    root: Path, capsys: pytest.CaptureFixture[str], reference: str
) -> None:
    reference = reference.replace("PATH", str(root / OLD))
    code, out, _ = studio(capsys, "runs", "delete", reference, "--yes")
    assert code == 0 and out == f"deleted {OLD}\n"
    assert sorted(p.name for p in root.iterdir()) == [OLD2, GRPO]


@pytest.mark.parametrize(
    ("reference", "name", "which", "how"),
    [
        ("latest", GRPO, None, "latest"),
        (OLD, OLD, None, "name"),
        ("tiny-pirate", OLD2, None, "recipe"),
        ("tiny-pirate-grpo", GRPO, None, "recipe"),
        ("tiny-pirate-g", GRPO, None, "prefix"),
        (f"{OLD}@best", OLD, "best", "name"),
        (f"{OLD}@latest", OLD, "latest", "name"),
        (f"{OLD}@8", OLD, "checkpoint-8", "name"),
        (f"{OLD}@checkpoint-4", OLD, "checkpoint-4", "name"),
        (f"{OLD}@final", OLD, "final", "name"),
        ("latest@best", GRPO, "best", "latest"),
        (f"{OLD}/checkpoints/checkpoint-4", OLD, "checkpoint-4", "path"),
        (f"{OLD}/adapter", OLD, "final", "path"),
    ],
)
def test_the_reference_rules(root: Path, reference: str, name: str, which: str | None, how: str) -> None:
    ref = resolve_run(reference, checkpoint=True)
    assert (ref.name, ref.which, ref.how) == (name, which, how)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (f"{OLD}@best", f"'{OLD}@best': this command takes a run, not one of its checkpoints (give '{OLD}')"),
        (f"{OLD}@", f"'{OLD}@': nothing after the @ (say @best, @latest, @final or @checkpoint-N)"),
        (f"{OLD}@worst", f"'{OLD}@worst': unknown checkpoint 'worst' after the @"),
        ("x" * 300, "no such run: 'xxx"),
        ("a\x00b", "no such run: 'a\\x00b'"),
        ("~nobody-here/run", "'~nobody-here/run' is not a run directory"),
    ],
)
def test_odd_references_get_a_message_not_a_traceback(root: Path, reference: str, message: str) -> None:
    with pytest.raises(RunError) as caught:
        resolve_run(reference)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


MCP_TOOLS = [
    pytest.param("run_status", lambda ref: mcpserver.run_status(ref), id="run_status"),
    pytest.param("stop_run", lambda ref: mcpserver.stop_run(ref), id="stop_run"),
    pytest.param("resume_run", lambda ref: mcpserver.resume_run(ref), id="resume_run"),
    pytest.param("samples", lambda ref: mcpserver.samples(ref), id="samples"),
    pytest.param("compare_runs", lambda ref: mcpserver.compare_runs([ref, OLD]), id="compare_runs"),
    pytest.param("export", lambda ref: mcpserver.export(ref), id="export"),
    pytest.param("chat", lambda ref: mcpserver.chat(ref, "hi"), id="chat"),
    pytest.param(
        "start_run", lambda ref: mcpserver.start_run("tiny-pirate", [f"model.adapter={ref}"]), id="start_run"
    ),
]


@pytest.mark.parametrize(("name", "tool"), MCP_TOOLS)
@pytest.mark.parametrize(("reference", "said"), BAD)
def test_mcp_tools_refuse_the_same_references(
    root: Path, name: str, tool: Callable[[str], object], reference: str, said: list[str]
) -> None:
    reference = reference.replace("ELSEWHERE", str(root.parent.parent.parent / "elsewhere"))
    said = override_said(reference, name == "start_run") or said
    before = files_of(root)
    with pytest.raises(StudioError) as caught:
        tool(reference)
    for part in said:
        assert part in str(caught.value)
    assert files_of(root) == before


@pytest.mark.parametrize("reference", ["latest", "tiny-pirate", "tiny-pirate-g"])
def test_mcp_stop_run_takes_only_an_exact_name(root: Path, reference: str) -> None:
    with pytest.raises(RunError, match=f"'{reference}' is not a run's exact name"):
        mcpserver.stop_run(reference)
    assert mcpserver.run_status(reference)["run"] in (GRPO, OLD2)  # reading one is fine


def test_sweep_stop_takes_a_sweep_name_exactly(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("", "*", "tiny"):
        code, _, err = studio(capsys, "sweep", "stop", name)
        assert code == 2 and f"no sweep named {name!r}" in err
        with pytest.raises(StudioError, match=f"no sweep named {name!r}"):
            mcpserver.stop_sweep(name)


@pytest.mark.parametrize(
    ("reference", "said", "adapter"),
    [
        ("tiny-pirate", f"run {OLD2} (its recipe's newest run), its final adapter", f"{OLD2}/adapter"),
        ("latest", f"run {GRPO} (the newest run), its final adapter", f"{GRPO}/adapter"),
        (f"{OLD}@best", f"run {OLD}, checkpoint-4 (its best)", f"{OLD}/checkpoints/checkpoint-4"),
        (f"{OLD}@checkpoint-8", f"run {OLD}, checkpoint-8", f"{OLD}/checkpoints/checkpoint-8"),
    ],
)
def test_train_from_says_which_run_and_checkpoint_it_took(
    root: Path, capsys: pytest.CaptureFixture[str], reference: str, said: str, adapter: str
) -> None:
    code, out, err = studio(capsys, "train", "tiny-pirate", "--from", reference, "--no-start")
    assert code == 0, err
    assert f"--from {reference}: {said}\n" in err
    created = Path(out.strip())
    assert f"adapter: {root.resolve() / adapter}\n" in (created / "recipe.yaml").read_text()


@pytest.mark.parametrize(
    ("reference", "source"),
    [
        (f"{OLD}@latest", f"run {OLD}, checkpoint-8 (its latest)"),
        (f"{OLD}@best", f"run {OLD}, checkpoint-4 (its best)"),
        ("latest", f"run {GRPO} (the newest run), its final adapter"),
        (f"{OLD}/checkpoints/checkpoint-4", f"run {OLD}, checkpoint-4"),
    ],
)
def test_a_chat_engine_says_which_run_and_checkpoint_it_loads(
    root: Path, reference: str, source: str
) -> None:
    from lorastudio.chat.engine import engine_for

    engine = engine_for(reference)
    assert engine.source == source
    assert engine.adapter_dir is not None and engine.adapter_dir.parent.name in ("checkpoints", OLD, GRPO)


def test_the_runs_listing_json_is_untouched(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The resolver reads run.json only; the listing still finds every run (newest first)."""
    code, out, _ = studio(capsys, "runs", "--json")
    assert code == 0 and [r["name"] for r in json.loads(out)] == [GRPO, OLD2, OLD]


@pytest.fixture
def real_checkpoint(tiny_model: Path, root: Path) -> Path:
    """A real LoRA adapter on the tiny model saved as OLD's checkpoint-8 (its latest complete one)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = root / OLD / "checkpoints" / "checkpoint-8"
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(r=2, target_modules="all-linear")
    )
    model.save_pretrained(folder)
    return folder


def test_cli_chat_at_latest_says_which_checkpoint_it_loaded(
    real_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = studio(
        capsys, "chat", f"{OLD}@latest", "--prompt", "hi", "--max-new-tokens", "2", "--greedy"
    )
    assert code == 0, err
    assert f"chat: run {OLD}, checkpoint-8 (its latest)\n" in err and "tuned" in err


async def test_the_chat_screen_says_which_checkpoint_latest_took(real_checkpoint: Path) -> None:
    from conftest import wait_until
    from textual.widgets import Label

    from lorastudio.app import StudioApp

    async with StudioApp(chat=f"{OLD}@latest").run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: getattr(pilot.app.screen, "engine", None) is not None)
        said = f"run {OLD}, checkpoint-8 (its latest)"
        assert str(pilot.app.screen.query_one("#chat-status", Label).content) == f"ready · {said}"
        assert [n.message for n in pilot.app._notifications] == [f"chatting with {said}"]
        assert "checkpoint-8" in str(pilot.app.screen.query_one("#chat-title", Label).content)
