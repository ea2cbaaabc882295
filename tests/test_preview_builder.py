"""One preview builder (cli/preview_cmds.py): ``studio preview`` of an SFT and of a dpo recipe, as text and as
JSON, and the MCP server's ``preview`` tool show the same encoded rows, a refused row named with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorastudio import mcpserver
from lorastudio.cli import main

SFT_ROWS = [
    {"instruction": "Hi", "context": "", "response": "Arr!", "category": "x"},
    {"instruction": "", "context": "", "response": "", "category": "x"},
    {"instruction": "Who?", "context": "", "response": "Me, matey.", "category": "x"},
]
PAIRS = [
    {"prompt": "Hi", "chosen": "Arr!", "rejected": "Hello."},
    {"prompt": "Bad", "chosen": "", "rejected": ""},
    {"prompt": "Who?", "chosen": "Me, matey.", "rejected": "Me."},
]


def _overrides(tmp_path: Path, method: str) -> list[str]:
    rows = SFT_ROWS if method == "sft" else PAIRS
    data = tmp_path / f"{method}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    extra = [] if method == "sft" else [f"train.method={method}", "data.format=preference"]
    return [f"data.source={data}", *extra]


def _preview(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["preview", "tiny-pirate", *argv, "--count", "3"]) == 0
    return capsys.readouterr().out


def test_dpo_preview_shows_each_part_a_skipped_pair_and_pair_statistics(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = _overrides(tmp_path, "dpo")
    data = json.loads(_preview(capsys, *overrides, "--json"))
    assert (data["recipe"], data["method"], data["format"]) == ("tiny-pirate", "dpo", "preference")
    first, skipped, last = data["samples"]
    assert skipped == {"index": 1, "skipped": "empty chosen"}
    assert "".join(p["text"] for p in first["chosen"]["pieces"]) == "Arr!<|eot_id|>"
    assert first["chosen"]["trained_tokens"] == first["chosen"]["tokens"] == 3
    assert first["prompt"]["trained_tokens"] == 0
    assert last["index"] == 2
    assert (data["stats"]["rows"], data["stats"]["used"], data["stats"]["skipped"]) == (
        3,
        2,
        {"empty chosen": 1},
    )
    assert "rewards" not in data

    monkeypatch.setenv("NO_COLOR", "1")
    text = _preview(capsys, *overrides)
    assert text.startswith("tiny-pirate  method: dpo  format: preference (template tokenizer)\n")
    assert "sample 0 · chosen (3 tokens)\n⟦Arr!<|eot_id|>⟧" in text
    assert "sample 0 · rejected (3 tokens)\n⟦Hello.<|eot_id|>⟧" in text
    assert "sample 1: skipped (empty chosen)" in text
    assert "rows 3  used 2  skipped 1 {'empty chosen': 1}  prompts truncated 0  replies" in text


def test_sft_preview_counts_tokens_and_names_a_skipped_row(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = _overrides(tmp_path, "sft")
    data = json.loads(_preview(capsys, *overrides, "--json"))
    assert "method" not in data
    assert data["format"] == "dolly"
    assert data["samples"][1] == {"index": 1, "skipped": "empty instruction"}
    assert data["samples"][0]["trained_tokens"] == 3
    assert data["samples"][2]["trained_tokens"] == 6
    monkeypatch.setenv("NO_COLOR", "1")
    text = _preview(capsys, *overrides)
    assert text.startswith("tiny-pirate  format: dolly (template tokenizer)\n")
    assert "sample 0: 22 tokens, 3 trained\n" in text
    assert "sample 1: skipped (empty instruction)" in text
    assert "rows 3  used 2  skipped 1 {'empty instruction': 1}  truncated 0  trained ratio" in text


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_mcp_preview_is_the_cli_preview_as_text(
    method: str,
    tiny_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tool's sample text is what ``studio preview`` prints under NO_COLOR, part by part (a dpo recipe
    raised KeyError 'preference' in the tool before it shared the CLI's builder)."""
    overrides = _overrides(tmp_path, method)
    shown = mcpserver.preview("tiny-pirate", overrides, index=2)
    monkeypatch.setenv("NO_COLOR", "1")
    text = _preview(capsys, *overrides)
    sample = shown["sample"]
    assert sample["index"] == 2
    assert shown["stats"]["rows"] == 3
    assert shown["stats"]["used"] == 2
    if method == "sft":
        assert "method" not in shown
        assert sample["trained_tokens"] == 6
        assert f"sample 2: {sample['tokens']} tokens, 6 trained\n{sample['text']}\n" in text
    else:
        assert shown["method"] == "dpo"
        assert set(sample) == {"index", "prompt", "chosen", "rejected"}
        assert sample["chosen"]["text"] == "⟦Me, matey.<|eot_id|>⟧"
        for part in ("prompt", "chosen", "rejected"):
            tokens, said = sample[part]["tokens"], sample[part]["text"]
            assert f"sample 2 · {part} ({tokens} tokens)\n{said}\n" in text
    assert mcpserver.preview("tiny-pirate", overrides, index=1)["sample"]["skipped"].startswith("empty ")


def test_mcp_preview_of_a_grpo_recipe_lists_its_rewards(tiny_model: Path) -> None:
    shown = mcpserver.preview("tiny-pirate-grpo")
    assert shown["method"] == "grpo"
    assert set(shown["sample"]) == {"index", "prompt"}
    assert shown["sample"]["prompt"]["trained_tokens"] == 0
    assert shown["rewards"]
    assert all({"name", "weight"} <= set(r) for r in shown["rewards"])
