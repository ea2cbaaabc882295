"""The chat engine: streaming equals generate(), stop keeps the partial reply, adapter toggle, transcripts, CLI."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import QUESTION, STUDIO_BIN

from lorastudio.chat.engine import ChatEngine, IncrementalDecoder, Sampling, Transcript, engine_for
from lorastudio.errors import RunError


def test_streaming_equals_plain_generate(engine: ChatEngine) -> None:
    import torch

    greedy = Sampling(greedy=True, max_new_tokens=24)
    pieces: list[str] = []
    reply = engine.generate(QUESTION, greedy, on_text=pieces.append)
    ids = torch.tensor([engine.prompt_ids(QUESTION)])
    with torch.inference_mode():
        out = engine.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=24,
            eos_token_id=engine.stop_token_ids(),
            pad_token_id=engine.tokenizer.pad_token_id,
        )
    expected = engine.tokenizer.decode(out[0][ids.shape[1] :], skip_special_tokens=True)
    assert "".join(pieces) == reply.text == expected
    assert len(pieces) >= reply.tokens - 1  # one piece per token, not per word
    assert reply.first_token_s is not None and reply.tokens_per_s > 0


def test_incremental_decoder_holds_back_split_characters(tiny_tokenizer) -> None:
    ids = tiny_tokenizer("héllo ☠ matey", add_special_tokens=False)["input_ids"]
    decoder = IncrementalDecoder(tiny_tokenizer)
    pieces = [decoder.push(i) for i in ids]
    assert "".join(pieces) == "héllo ☠ matey"
    assert all("\ufffd" not in p for p in pieces)


def test_stop_keeps_the_partial_reply(engine: ChatEngine) -> None:
    stop = threading.Event()
    pieces: list[str] = []

    def on_text(text: str) -> None:
        pieces.append(text)
        if len(pieces) == 3:
            stop.set()

    reply = engine.generate(QUESTION, Sampling(greedy=True, max_new_tokens=30), on_text=on_text, stop=stop)
    assert reply.stopped and reply.text == "".join(pieces)
    assert len(pieces) <= 4  # stops within one token of the request
    full = engine.generate(QUESTION, Sampling(greedy=True, max_new_tokens=30))
    assert full.text.startswith(reply.text) and len(full.text) > len(reply.text)


def test_adapter_toggle_changes_answers_and_back(engine: ChatEngine) -> None:
    from lorastudio.demo.tinydata import PIRATE_RE

    greedy = Sampling(greedy=True, max_new_tokens=30)
    tuned = engine.generate(QUESTION, greedy, use_adapter=True).text
    base = engine.generate(QUESTION, greedy, use_adapter=False).text
    again = engine.generate(QUESTION, greedy, use_adapter=True).text
    assert PIRATE_RE.search(tuned) and not PIRATE_RE.search(base)
    assert again == tuned


def test_multi_turn_uses_the_template(engine: ChatEngine) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Arr."},
        {"role": "user", "content": "Bye"},
    ]
    text = engine.tokenizer.decode(engine.prompt_ids(messages))
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nArr.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_transcript_files_hold_the_conversation(tmp_path: Path) -> None:
    transcript = Transcript(
        "Be a pirate.",
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Arr!", "model": "tuned"}],
    )
    jsonl, md = transcript.save(tmp_path, "t")
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert lines == [
        {"role": "system", "content": "Be a pirate."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Arr!", "model": "tuned"},
    ]
    assert "**user**: Hi" in md.read_text() and "**assistant (tuned)**: Arr!" in md.read_text()


def test_run_without_adapter_is_a_clear_error(tiny_model: Path) -> None:
    from lorastudio import registry
    from lorastudio.train.launch import runs

    run_dir = runs.create_run(registry.load("tiny-pirate"))
    with pytest.raises(RunError, match="has no adapter yet"):
        engine_for(str(run_dir))
    with pytest.raises(RunError, match="no such run"):
        engine_for("no-such-run-anywhere")


def test_cli_chat_prompt(trained_run: Path) -> None:
    out = subprocess.run(
        [STUDIO_BIN, "chat", str(trained_run), "--prompt", "What does a cow say?", "--greedy"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.lower().startswith("arr") and "tok/s" in out.stderr
    base = subprocess.run(
        [
            STUDIO_BIN,
            "chat",
            str(trained_run),
            "--base",
            "--json",
            "--prompt",
            "What does a cow say?",
            "--greedy",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    reply = json.loads(base.stdout)
    assert reply["adapter"] is False and "arr" not in reply["text"].lower() and reply["tokens"] > 0
    missing = subprocess.run([STUDIO_BIN, "chat", "nope", "--prompt", "hi"], capture_output=True, text=True)
    assert missing.returncode == 2 and "no such run" in missing.stderr and "Traceback" not in missing.stderr
