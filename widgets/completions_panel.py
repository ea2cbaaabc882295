"""GRPO's recent completions on the Monitor: a few prompts, the completions sampled for them and their rewards."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static


class CompletionsPanel(Static):
    """The last ``completions`` event of a GRPO run (the prompt's end, the completion, each reward)."""

    def show(self, samples: list[dict[str, Any]]) -> None:
        text = Text("recent completions\n", style="bold")
        if not samples:
            text.append("none yet (written at each logging step)", style="dim")
        for sample in samples[-4:]:
            prompt = " ".join(str(sample.get("prompt", "")).split())[-60:]
            completion = " ".join(str(sample.get("completion", "")).split())[:160]
            rewards = sample.get("rewards") or {}
            text.append(f"… {prompt}\n", style="dim")
            text.append(f"→ {completion}\n")
            text.append(
                "  "
                + " · ".join(
                    f"{k} {v:.2f}" if isinstance(v, int | float) else f"{k} -" for k, v in rewards.items()
                )
                + "\n",
                style="green",
            )
        self.update(text)
