"""Why a reply ended (finish_reason) and `studio chat --prompts FILE` (issue 10)."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

from conftest import QUESTION, STUDIO_BIN

from lorastudio.chat.engine import ChatEngine, Sampling


def test_finish_reason_stop_length_cancelled(engine: ChatEngine) -> None:
    ended = engine.generate(QUESTION, Sampling(greedy=True, max_new_tokens=60))
    assert ended.finish_reason == "stop"
    assert ended.tokens < 60
    assert ended.text.lower().startswith("arr")
    cut = engine.generate(QUESTION, Sampling(greedy=True, max_new_tokens=2))
    assert cut.finish_reason == "length"
    assert cut.tokens == 2
    stop = threading.Event()
    stop.set()
    cancelled = engine.generate(QUESTION, Sampling(greedy=True, max_new_tokens=60), stop=stop)
    assert cancelled.finish_reason == "cancelled"
    assert cancelled.stopped


def test_cli_prompts_file_json_lines_in_order(trained_run: Path, tmp_path: Path) -> None:
    questions = ["What does a cow say?", "", "What colour is the grass?", "Where does a fish live?"]
    file = tmp_path / "questions.txt"
    file.write_text("\n".join(questions) + "\n")
    out = subprocess.run(
        [
            STUDIO_BIN,
            "chat",
            str(trained_run),
            "--prompts",
            str(file),
            "--json",
            "--greedy",
            "--max-new-tokens",
            "40",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [x["prompt"] for x in lines] == [q for q in questions if q]
    assert all(
        x["finish_reason"] == "stop" and x["adapter"] and x["text"].lower().startswith("arr") for x in lines
    )
    plain = subprocess.run(
        [STUDIO_BIN, "chat", str(trained_run), "--prompts", str(file), "--greedy", "--max-new-tokens", "3"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert plain.returncode == 0, plain.stderr
    replies = plain.stdout.splitlines()
    assert len(replies) == 3
    assert all(r.lower().startswith("arr") for r in replies)
    assert plain.stderr.count("length]") == 3  # three replies cut at 3 tokens, said on stderr


def test_cli_prompts_bad_file_is_one_line(trained_run: Path, tmp_path: Path) -> None:
    missing = tmp_path / "none.txt"
    out = subprocess.run(
        [STUDIO_BIN, "chat", str(trained_run), "--prompts", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.startswith(f"studio: --prompts {missing}: cannot read it")
    assert len(out.stderr.strip().splitlines()) == 1
    (tmp_path / "blank.txt").write_text("\n \n")
    out = subprocess.run(
        [STUDIO_BIN, "chat", str(trained_run), "--prompts", str(tmp_path / "blank.txt")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "no prompts in it" in out.stderr
