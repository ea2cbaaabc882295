"""GRPO's recent completions on the Monitor: a few prompts, the completions sampled for them and their rewards."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static


def _one_line(value: Any) -> str:
    return " ".join(str(value or "").split())


class CompletionsPanel(Static):
    """The last ``completions`` event of a GRPO run: each question (the user's words), the completion sampled
    for it and each reward; the text wraps to the panel's width."""

    def show(self, samples: list[dict[str, Any]]) -> None:
        text = Text("recent completions\n", style="bold")
        if not samples:
            text.append("none yet (written at each logging step)", style="dim")
        for sample in samples[-4:]:
            question = _one_line(sample.get("question"))
            if question:
                text.append(f"? {question[:200]}{'…' if len(question) > 200 else ''}\n", style="bold dim")
            else:  # written before the worker kept the question: the rendered prompt's end is all there is
                text.append(f"… {_one_line(sample.get('prompt'))[-60:]}\n", style="dim")
            # a completion cut through a multi-byte character ends in U+FFFD: the cut is shown as …, not �
            completion = _one_line(sample.get("completion"))
            whole = completion.rstrip("\ufffd").rstrip()
            text.append(f"→ {whole[:300]}{'…' if whole != completion or len(whole) > 300 else ''}\n")
            rewards = sample.get("rewards") or {}
            text.append(
                "  "
                + " · ".join(
                    f"{k} {v:.2f}" if isinstance(v, int | float) else f"{k} -" for k, v in rewards.items()
                )
                + "\n",
                style="green",
            )
        self.update(text)
