"""Chat beside a live run (issue 24): memory admission, CPU thread share, ``RUN@latest``, feedback rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_worker, screen_of, state_of, wait_for, wait_until

from lorastudio import registry
from lorastudio.chat import admission
from lorastudio.chat.feedback import FeedbackLog, pairs_path
from lorastudio.errors import StudioError
from lorastudio.train.launch import memoryfit, runs


def test_refused_when_the_model_does_not_fit(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lorastudio.chat.engine import engine_for

    monkeypatch.setattr(memoryfit, "free_memory", lambda gpu: memoryfit.FreeMemory("CPU", 100.0, 200.0))
    engine = engine_for(str(tiny_model))
    need = admission.chat_need_mb(engine.recipe, gpu=False)
    assert need is not None
    assert need > 0
    with pytest.raises(StudioError) as caught:
        engine.load()
    message = str(caught.value)
    assert f"{need:,.0f} MiB" in message
    assert "CPU has 100 MiB available RAM" in message
    assert "4 bits" in message
    assert "wait for the run to finish" in message
    assert engine.model is None  # refused before anything loaded


def test_gpu_refusal_names_vram_and_cpu() -> None:
    refused = admission.Admission("GPU 0", 6000.0, 4096.0, 1024.0)
    assert not refused.ok
    text = refused.message("big/model")
    assert "6,000 MiB" in text
    assert "4,096 MiB free VRAM" in text
    assert "CUDA_VISIBLE_DEVICES" in text
    assert admission.Admission("GPU 0", 2000.0, 4096.0, 1024.0).ok
    assert admission.Admission("CPU", None, 10.0, 1024.0).ok  # unknown size: admitted


@pytest.fixture
def own_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU slots counted in a folder of this test's own: a training run another test of this session left
    going (its worker still saving) holds a slot in the shared one."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def test_chat_threads_share_cores_with_cpu_workers(own_locks: None) -> None:
    from lorastudio.train.trainer.queue import CpuSlot

    assert admission.chat_threads(cores=4) is None
    slot = CpuSlot()
    try:
        assert admission.chat_threads(cores=4) == 2
        assert admission.chat_threads(cores=2) == 1
    finally:
        slot.release()


def test_a_generating_chat_holds_a_cpu_slot_so_the_workers_give_up_their_share(own_locks: None) -> None:
    from lorastudio.train.trainer.queue import CpuSlot, fair_threads, live_cpu_workers

    with admission.cpu_share(cores=2) as threads:  # no worker: nothing held, torch left alone
        assert threads is None
        assert live_cpu_workers() == 0
    worker = CpuSlot()  # a training worker's slot
    try:
        with admission.cpu_share(cores=2) as threads:
            assert threads == 1
            assert live_cpu_workers() == 2
            assert fair_threads(2, live_cpu_workers()) == 1  # what the worker's own share rule now gives it
        assert live_cpu_workers() == 1  # released when the reply ends
    finally:
        worker.release()


def test_feedback_rows_and_pairs(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "feedback.jsonl")
    ask = [{"role": "system", "content": "Be a pirate."}, {"role": "user", "content": "Where is the gold?"}]
    assert "bad" in log.mark_bad(ask, "In the bank.")
    assert "paired" in log.mark_good(ask, "Arr, buried on the isle!")
    other = [{"role": "user", "content": "Hello?"}]
    log.edited(other, "Hi.", "Ahoy, matey!")
    sft = [json.loads(line) for line in (tmp_path / "feedback.jsonl").read_text().splitlines()]
    assert sft == [
        {"messages": [*ask, {"role": "assistant", "content": "Arr, buried on the isle!"}]},
        {"messages": [*other, {"role": "assistant", "content": "Ahoy, matey!"}]},
    ]
    pairs = [json.loads(line) for line in pairs_path(tmp_path / "feedback.jsonl").read_text().splitlines()]
    assert pairs == [
        {"prompt": "Where is the gold?", "chosen": "Arr, buried on the isle!", "rejected": "In the bank."},
        {"prompt": "Hello?", "chosen": "Ahoy, matey!", "rejected": "Hi."},
    ]
    again = FeedbackLog(tmp_path / "feedback.jsonl")  # counts what the files already hold
    assert (again.sft_rows, again.pair_rows) == (2, 2)
    assert "(2 SFT rows)" in again.summary()


@pytest.mark.slow
def test_feedback_file_validates_previews_and_trains(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lorastudio.cli import main

    log = FeedbackLog(tmp_path / "feedback.jsonl")
    for i in range(4):
        log.mark_good([{"role": "user", "content": f"Question {i}?"}], f"Arr, answer {i}, matey!")
    recipe = tmp_path / "from-feedback.yaml"
    recipe.write_text(
        "name: from-feedback\nmodel:\n  name: tiny\n  max_seq_length: 64\n"
        "data:\n  source: feedback.jsonl\n  format: messages\n"
        "train:\n  max_steps: 2\n  batch_size: 2\n  samples: []\n"
    )
    assert main(["validate", str(recipe)]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["preview", str(recipe), "--json"]) == 0
    preview = json.loads(capsys.readouterr().out)
    assert preview["format"] == "messages"
    assert preview["stats"]["used"] == 4
    run_dir = runs.create_run(registry.load(str(recipe)))
    result = run_worker(run_dir)
    assert result.returncode == 0, result.stderr
    state = state_of(run_dir)
    assert state.status == "done"
    assert state.step == 2
    assert state.loss


@pytest.mark.slow
def test_chat_with_latest_checkpoint_of_a_live_run(tiny_model: Path) -> None:
    from lorastudio.chat.engine import Sampling, engine_for
    from lorastudio.train.trainer.adapters import latest_complete_checkpoint

    run_dir = runs.create_run(
        registry.load(
            "tiny-pirate",
            ["train.max_steps=60", "train.save_steps=5", "train.samples=[]", "data.eval_fraction=0"],
        )
    )
    runs.start_worker(run_dir)
    checkpoint = wait_for(lambda: latest_complete_checkpoint(run_dir), timeout=600)
    assert not state_of(run_dir).finished  # the run is still training when the chat picks its checkpoint
    engine = engine_for(f"{run_dir.name}@latest")
    assert engine.adapter_dir is not None
    assert engine.adapter_dir.parent.name == "checkpoints"
    assert int(engine.adapter_dir.name.split("-")[1]) >= int(checkpoint.name.split("-")[1])
    engine.load()
    reply = engine.generate(
        [{"role": "user", "content": "Where is the treasure?"}], Sampling(greedy=True, max_new_tokens=8)
    )
    assert reply.tokens > 0
    wait_for(lambda: state_of(run_dir).finished, timeout=900, every=1.0)
    state = state_of(run_dir)
    assert state.status == "done"
    assert state.step == 60


async def test_chat_feedback_keys(tiny_model: Path, tmp_path: Path) -> None:
    from textual.widgets import Input, TextArea

    from lorastudio.app import StudioApp
    from lorastudio.chat.engine import with_overrides
    from lorastudio.screens.chat import ChatScreen
    from lorastudio.screens.edit_reply import EditReplyScreen

    target = tmp_path / "mine.jsonl"
    app = StudioApp(chat=str(tiny_model), chat_base=True, save_to=str(target))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.engine is not None)
        screen = screen_of(app, ChatScreen)
        screen.sampling = with_overrides(screen.sampling, greedy=True, max_new_tokens=6)
        box = screen.query_one("#chat-input", Input)
        box.value = "Where is the treasure?"
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.replies and not screen.generating)
        await pilot.press("plus")  # typed into the box, not feedback
        assert box.value == "+"
        assert not target.exists()
        box.value = ""
        await pilot.press("tab")
        assert not isinstance(app.focused, Input)
        await pilot.press("plus")
        assert screen.feedback.sft_rows == 1
        assert "(1 SFT rows)" in str(screen.query_one("#chat-feedback").render())
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, EditReplyScreen))
        app.screen.query_one(TextArea).text = "Arr, it be buried on the isle!"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen))
        await pilot.pause()
        assert screen.feedback.sft_rows == 2
        assert screen.feedback.pair_rows == 1
        rows = [json.loads(line) for line in target.read_text().splitlines()]
        assert rows[1]["messages"][-1] == {"role": "assistant", "content": "Arr, it be buried on the isle!"}
        pair = json.loads(pairs_path(target).read_text())
        assert pair["chosen"] == "Arr, it be buried on the isle!"
        assert pair["prompt"] == "Where is the treasure?"
        assert "mine-pairs.jsonl (1 pairs)" in str(screen.query_one("#chat-feedback").render())
