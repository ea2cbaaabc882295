"""Chat side by side (issue 38): each side keeps its own conversation, feedback rows are conversations, the
layout holds at 80x24 and 120x40, feedback goes to the run a target lies in, library chatter stays quiet."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import STUDIO_BIN, screen_of, wait_until

from lorastudio import registry
from lorastudio.app import StudioApp
from lorastudio.chat.feedback import DEFAULT_NAME, conversation_problem, default_path, pairs_path
from lorastudio.train.launch import runs

if TYPE_CHECKING:
    from lorastudio.screens.chat import ChatScreen

SIZES = [(80, 24), (120, 40)]
SIDE_RUN = "tiny-pirate-20261207-120000"
PROMPTS = [
    "What colour is the sky?",
    "Where is the treasure?",
    "Hello",
    "What does a cow say?",
    "Tell me a story",
    "Why?",
]


@pytest.fixture(scope="module")
def side_adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter for the tiny model with seeded, scaled-down random weights: no training (seconds), and the
    tuned side answers some prompts otherwise than the base, deterministically under greedy decoding."""
    import torch
    from peft import LoraConfig, get_peft_model

    from lorastudio.chat.engine import ChatEngine

    recipe = registry.load("tiny-pirate")
    engine = ChatEngine(recipe)
    engine.load()
    torch.manual_seed(0)
    config = LoraConfig(
        r=recipe.lora.r,
        lora_alpha=recipe.lora.alpha,
        target_modules=recipe.lora.target_modules,
        init_lora_weights=False,  # random B as well: an adapter that changes some answers
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(engine.model, config)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.mul_(0.3)  # small enough that the replies stay words
    folder = tmp_path_factory.mktemp("side-adapter") / "adapter"
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture
def side_run(side_adapter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny-pirate run (the only one, in a private data folder) with that adapter and a checkpoint."""
    from lorastudio.train.run.rundir import update_meta

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    made = runs.create_run(registry.load("tiny-pirate"))
    run_dir = made.rename(made.with_name(SIDE_RUN))  # a fixed name: the snapshots show it
    update_meta(run_dir, name=SIDE_RUN)
    shutil.copytree(side_adapter, run_dir / "adapter")
    shutil.copytree(side_adapter, run_dir / "checkpoints" / "checkpoint-2")
    return run_dir


def _valid_rows(path: Path) -> list[list[dict[str, str]]]:
    """Every SFT row of a feedback file, each checked to be a conversation to train on."""
    rows = [json.loads(line)["messages"] for line in path.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        assert conversation_problem(row) is None, row
    return rows


# -- feedback rows are conversations -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("roles", "problem"),
    [
        (["user", "assistant"], None),
        (["system", "user", "assistant"], None),
        (["system", "user", "assistant", "user", "assistant"], None),
        (["user", "assistant", "assistant"], "turn 3 is 'assistant' where 'user' belongs"),
        (["user", "assistant", "assistant", "user", "assistant"], "turn 3 is 'assistant'"),
        (["user", "user", "assistant"], "turn 2 is 'user' where 'assistant' belongs"),
        (["assistant"], "turn 1 is 'assistant' where 'user' belongs"),
        (["user"], "does not end with the assistant's reply"),
        (["system"], "does not end with the assistant's reply"),
        (["user", "system", "assistant"], "turn 2 is 'system'"),
    ],
)
def test_conversation_problem(roles: list[str], problem: str | None) -> None:
    said = conversation_problem([{"role": r, "content": "x"} for r in roles])
    assert said == problem if problem is None else problem in (said or "")


def test_feedback_log_refuses_a_row_that_is_no_conversation(tmp_path: Path) -> None:
    from lorastudio.chat.feedback import FeedbackLog

    log = FeedbackLog(tmp_path / DEFAULT_NAME)
    twice = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Arr"}]
    twice.append({"role": "assistant", "content": "Hello"})  # what side by side used to hand it
    with pytest.raises(ValueError, match="not saved to feedback.jsonl: turn 3 is 'assistant'"):
        log.mark_good([*twice, {"role": "user", "content": "Bye"}], "Farewell")
    assert not (tmp_path / DEFAULT_NAME).exists() and log.sft_rows == 0


async def _ask(pilot: Any, screen: Any, question: str) -> None:
    from textual.widgets import Input

    box = screen.query_one("#chat-input", Input)
    box.focus()
    box.value = question
    await pilot.press("enter")
    await wait_until(pilot, lambda: not screen.generating and screen.replies and screen.replies[-1].stats)


async def _open_chat(pilot: Any, app: StudioApp) -> ChatScreen:
    from lorastudio.chat.engine import with_overrides
    from lorastudio.screens.chat import ChatScreen

    await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.engine is not None)
    screen = screen_of(app, ChatScreen)
    screen.sampling = with_overrides(screen.sampling, greedy=True, max_new_tokens=12)
    return screen


async def test_each_side_keeps_its_conversation_and_feedback_rows_are_conversations(side_run: Path) -> None:
    from textual.widgets import Input, TextArea

    from lorastudio.screens.edit_reply import EditReplyScreen
    from lorastudio.widgets.chat_message import ChatMessage

    app = StudioApp(chat=str(side_run))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_chat(pilot, app)
        # single: two exchanges with the tuned model; mark the latest good, the first bad, edit the first
        await _ask(pilot, screen, PROMPTS[0])
        await _ask(pilot, screen, PROMPTS[1])
        single = list(screen.replies)
        await pilot.press("tab")
        assert not isinstance(app.focused, Input)
        await pilot.press("plus", "left_square_bracket", "minus", "e")
        await wait_until(pilot, lambda: isinstance(app.screen, EditReplyScreen))
        app.screen.query_one(TextArea).text = "Arr, blue as the sea!"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is screen)
        # side by side: two more exchanges, each side answering its own conversation
        await pilot.press("ctrl+o")
        await _ask(pilot, screen, PROMPTS[2])
        await _ask(pilot, screen, PROMPTS[3])
        tuned3, base3, tuned4, base4 = screen.replies[2:]
        assert [b.label for b in (tuned3, base3, tuned4, base4)] == ["tuned", "base", "tuned", "base"]
        common = [
            {"role": "user", "content": PROMPTS[0]},
            {"role": "assistant", "content": single[0].text},
            {"role": "user", "content": PROMPTS[1]},
            {"role": "assistant", "content": single[1].text},
            {"role": "user", "content": PROMPTS[2]},
        ]
        assert screen.contexts[tuned3] == screen.contexts[base3] == common
        ask4 = {"role": "user", "content": PROMPTS[3]}
        assert screen.contexts[tuned4] == [*common, {"role": "assistant", "content": tuned3.text}, ask4]
        assert screen.contexts[base4] == [*common, {"role": "assistant", "content": base3.text}, ask4]
        assert tuned3.text != base3.text or tuned4.text != base4.text  # the sides did answer differently
        # mark the base side's latest reply good, the tuned one's bad, and edit the tuned one
        await pilot.press("tab")
        await pilot.press("plus", "left_square_bracket", "minus", "e")
        await wait_until(pilot, lambda: isinstance(app.screen, EditReplyScreen))
        app.screen.query_one(TextArea).text = "Arr, the cow says moo, matey!"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is screen)
        edited = screen.query(ChatMessage).last()
        assert edited.label == "edited (better answer)" and edited.parent is screen.query_one("#chat-log")
        # off again: the conversation goes on as the tuned side had it
        await pilot.press("ctrl+o")
        await _ask(pilot, screen, PROMPTS[4])
        assert screen.contexts[screen.replies[-1]][-3:] == [
            ask4,
            {"role": "assistant", "content": tuned4.text},
            {"role": "user", "content": PROMPTS[4]},
        ]
        await pilot.press("ctrl+s")  # the transcript keeps every reply shown, the base side's marked
    rows = _valid_rows(side_run / DEFAULT_NAME)
    assert rows == [
        [*common[:3], {"role": "assistant", "content": single[1].text}],
        [*common[:1], {"role": "assistant", "content": "Arr, blue as the sea!"}],
        [
            *common,
            {"role": "assistant", "content": base3.text},
            ask4,
            {"role": "assistant", "content": base4.text},
        ],
        [
            *common,
            {"role": "assistant", "content": tuned3.text},
            ask4,
            {"role": "assistant", "content": "Arr, the cow says moo, matey!"},
        ],
    ]
    pairs = [json.loads(line) for line in pairs_path(side_run / DEFAULT_NAME).read_text().splitlines()]
    assert pairs[-1] == {
        "prompt": PROMPTS[3],
        "chosen": "Arr, the cow says moo, matey!",
        "rejected": tuned4.text,
    }
    transcript = [json.loads(line) for line in next((side_run / "transcripts").glob("*.jsonl")).open()]
    assert [t.get("model") for t in transcript if t["role"] == "assistant"] == [
        "tuned",
        "tuned",
        "tuned",
        "base",
        "tuned",
        "base",
        "tuned",
    ]
    assert [t.get("compare", False) for t in transcript if t.get("model") == "base"] == [True, True]


# -- the side-by-side layout ---------------------------------------------------------------------------
async def test_side_by_side_rows_keep_their_height_and_end_goes_to_the_bottom(side_run: Path) -> None:
    from textual.containers import Horizontal, VerticalScroll

    app = StudioApp(chat=str(side_run))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_chat(pilot, app)
        await pilot.press("ctrl+o")
        for prompt in PROMPTS:
            await _ask(pilot, screen, prompt)
        log = screen.query_one("#chat-log", VerticalScroll)
        await pilot.pause()

        def rows_fit() -> None:
            rows = list(log.query(".compare-row").results(Horizontal))
            assert len(rows) == len(PROMPTS)
            for row in rows:  # as tall as its taller reply (name, text, stats, margin), no line more or less
                tallest = max(b.outer_size.height + b.styles.margin.bottom for b in row.children)
                assert tallest >= 4 and row.outer_size.height == tallest, (row.outer_size, tallest)

        rows_fit()
        assert log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y  # the newest exchange is in view
        await pilot.press("tab")
        assert app.focused is log
        await pilot.press("home")
        assert log.scroll_y == 0
        await pilot.press("end")
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        rows_fit()
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        rows_fit()


def _steady_stats(app: StudioApp) -> None:
    """The replies' speed figures vary from run to run: the snapshot shows fixed ones, token counts kept."""
    from lorastudio.screens.chat import ChatScreen

    for bubble in screen_of(app, ChatScreen).replies:
        bubble.finish(
            re.sub(r"[\d.]+ tok/s · first token \d+ ms", "9.9 tok/s · first token 99 ms", bubble.stats)
        )


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_side_by_side(snap_compare, size, side_run: Path) -> None:
    async def run_before(pilot) -> None:
        screen = await _open_chat(pilot, pilot.app)
        await pilot.press("ctrl+o")
        for prompt in PROMPTS:
            await _ask(pilot, screen, prompt)
        _steady_stats(pilot.app)
        await pilot.press("tab")  # to the replies, as for feedback (and no blinking cursor in the snapshot)
        screen.query_one("#chat-log").scroll_end(animate=False)
        pilot.app.clear_notifications()  # the "chatting with" toast may or may not have timed out yet
        await pilot.pause(0.2)

    assert snap_compare(StudioApp(chat=str(side_run)), terminal_size=size, run_before=run_before)


# -- feedback goes to the run the target lies in ---------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    [
        "{run}",
        "{name}",
        "{name}@best",
        "latest",
        "{run}/adapter",
        "{run}/checkpoints/checkpoint-2",
        "{name}/checkpoints/checkpoint-2",
        "{run}/exports/merged",
        "{run}/exports/gguf-q8_0/tiny-pirate-q8_0.gguf",
    ],
)
def test_feedback_of_a_target_in_a_run_goes_to_the_run(side_run: Path, target: str) -> None:
    from lorastudio.chat.targets import run_of_target

    merged, gguf = side_run / "exports" / "merged", side_run / "exports" / "gguf-q8_0"
    merged.mkdir(parents=True)
    (merged / "recipe.yaml").write_text("name: tiny-pirate\n")
    (merged / "config.json").write_text("{}")
    gguf.mkdir()
    (gguf / "tiny-pirate-q8_0.gguf").write_bytes(b"GGUF")
    named = target.format(run=side_run, name=side_run.name)
    assert run_of_target(named) == side_run
    assert default_path(named) == side_run / DEFAULT_NAME


@pytest.mark.parametrize("target", ["{model}", "/no/such/place/adapter", "no-such-run-anywhere"])
def test_feedback_of_a_target_outside_runs_goes_to_the_data_folder(
    side_run: Path, tiny_model: Path, target: str
) -> None:
    from lorastudio.paths import data_dir

    assert default_path(target.format(model=tiny_model)) == data_dir() / DEFAULT_NAME


async def test_runs_chat_on_the_final_adapter_writes_the_runs_feedback(side_run: Path) -> None:
    """Runs, c, "adapter (final)", Tab, + (issue 38): the row goes to RUN/feedback.jsonl."""
    from lorastudio.paths import data_dir
    from lorastudio.screens.checkpoint_picker import CheckpointPicker

    app = StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: getattr(app.screen, "runs", None))
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, CheckpointPicker))
        assert [c.label for c in screen_of(app, CheckpointPicker).choices] == [
            "adapter (final)",
            "checkpoint-2",
        ]
        await pilot.press("enter")
        screen = await _open_chat(pilot, app)
        assert screen.target == str(side_run / "adapter")
        await _ask(pilot, screen, PROMPTS[0])
        await pilot.press("tab", "plus")
        assert screen.feedback.sft_rows == 1
    assert _valid_rows(side_run / DEFAULT_NAME) == [
        [{"role": "user", "content": PROMPTS[0]}, {"role": "assistant", "content": screen.replies[0].text}]
    ]
    assert not (data_dir() / DEFAULT_NAME).exists()


@pytest.mark.parametrize("entry", ["checkpoint", "monitor"])
async def test_chat_from_a_checkpoint_or_the_monitor_feeds_back_to_the_run(
    side_run: Path, entry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lorastudio.screens.chat import ChatScreen

    monkeypatch.setattr(ChatScreen, "load_engine", lambda self: None)  # where rows go is under test here
    app = StudioApp(attach=side_run) if entry == "monitor" else StudioApp()
    async with app.run_test(size=(80, 24)) as pilot:
        if entry == "monitor":
            await wait_until(pilot, lambda: type(app.screen).__name__ == "MonitorScreen")
            await pilot.press("c")
        else:
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: getattr(app.screen, "runs", None))
            await pilot.press("c", "down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen))
        expected = side_run / "checkpoints" / "checkpoint-2" if entry == "checkpoint" else side_run
        screen = screen_of(app, ChatScreen)
        assert screen.target == str(expected)
        assert screen.feedback.path == side_run / DEFAULT_NAME


def test_cli_chat_on_the_adapter_marks_into_the_run_and_prints_no_kernel_chatter(side_run: Path) -> None:
    out = subprocess.run(
        [STUDIO_BIN, "chat", str(side_run / "adapter"), "--prompt", PROMPTS[3], "--greedy", "--mark", "good"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    said = out.stdout + out.stderr
    assert "tok/s" in out.stderr and out.stdout.strip()
    assert "publisher trust" not in said and "kernels-community" not in said, said
    rows = _valid_rows(side_run / DEFAULT_NAME)
    assert len(rows) == 1 and rows[0][-1]["content"] == out.stdout.strip()


def test_quiet_silences_hub_kernel_chatter_even_where_warnings_are_captured() -> None:
    """The kernels package's offline notice, and bitsandbytes' note that its CPU kernel did not load from the
    hub, are dropped at their loggers: in the worker too, where bitsandbytes' warnings go to the Monitor."""
    from lorastudio.quiet import quiet_libraries

    quiet_libraries()
    logging.getLogger("bitsandbytes").setLevel(logging.WARNING)  # as the worker's log capture sets it
    caught: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record.getMessage())

    keep = Keep(level=logging.WARNING)
    root = logging.getLogger()
    root.addHandler(keep)
    try:
        logging.getLogger("kernels._internals.hf_hub").warning(
            "Skipping publisher trust check for 'kernels-community/x' because Hugging Face Hub is in offline mode."
        )
        cpu_ops = logging.getLogger("bitsandbytes.backends.cpu.ops")
        cpu_ops.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s.", "offline")
        cpu_ops.warning("a warning of its own")
    finally:
        root.removeHandler(keep)
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    assert caught == ["a warning of its own"]
