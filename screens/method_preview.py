"""The Preview of a preference or RL recipe (``train.method`` dpo, kto, orpo, grpo): what trains, per part.

A pair shows its prompt once (masked) and the chosen and rejected replies with their trained tokens marked,
exactly as the trainer gets them (the encoder of ``studio/data/preference.py``); the replies sit side by side
when the terminal is wide and stack when it is not. A GRPO row shows the generation prompt as the model sees
it and the reward functions that will score its replies. The statistics count pairs kept and skipped (and why)
and truncation at the recipe's limits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Label, ProgressBar, Static

from lorastudio.recipe import Recipe
from lorastudio.screens.messages import LoadProgress, show_load_progress, start_model_load
from lorastudio.screens.navigate import Launch, go
from lorastudio.screens.worker_failures import HandlesWorkerFailures
from lorastudio.widgets.title_header import TitleHeader

WIDE_COLUMNS = 120
"""From this width the chosen and rejected replies are shown side by side."""


@dataclass
class MethodLoaded(Message):
    """The encoder, the rows and every row's statistics are ready."""

    encoder: Any
    rows: Any
    stats: Any


class MethodPreviewScreen(HandlesWorkerFailures, Screen[None]):
    """One row at a time: prompt, then each reply (or, for GRPO, the prompt and the rewards)."""

    BINDINGS = [
        Binding("n,right,l", "next", "Next", id="method_preview.next"),
        Binding("p,left,h", "previous", "Prev", id="method_preview.previous"),
        Binding("s", "toggle_special", "Specials", id="method_preview.special"),
        Binding("t", "train", "Train…", id="method_preview.train"),
        Binding("escape", "back", "Back", id="method_preview.back"),
    ]

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.recipe = recipe
        self.encoder: Any = None
        self.rows: Any = None
        self.index = 0
        self.show_special = True

    def compose(self) -> ComposeResult:
        yield TitleHeader()
        yield Label(
            f"Preview · {self.recipe.name} · {self.recipe.train.method}", id="preview-title", classes="title"
        )
        yield Label("loading tokenizer and data…", id="method-header")
        yield ProgressBar(total=1.0, show_eta=False, id="method-progress")
        with VerticalScroll(id="method-scroll"):
            yield Static("", id="method-legend", classes="muted")
            yield Static("", id="method-prompt", classes="panel")
            with Container(id="method-replies"):
                yield Static("", id="method-chosen", classes="panel")
                yield Static("", id="method-rejected", classes="panel")
            yield Static("", id="method-stats", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self._layout(self.app.size.width)
        self.query_one("#method-progress").display = False
        self.query_one("#method-scroll").display = False  # empty panels until the rows are there
        self.load()

    def on_resize(self, event: events.Resize) -> None:
        self._layout(event.size.width)

    def _layout(self, width: int) -> None:
        replies = self.query_one("#method-replies")
        replies.set_class(width >= WIDE_COLUMNS, "wide")

    @work(thread=True, exclusive=True, group="method-preview", exit_on_error=False)
    def load(self) -> None:
        from lorastudio.data.preference import encode_rows, method_encoder

        progress, _ = start_model_load(self.post_message)
        encoder, rows = method_encoder(self.recipe, progress=progress)
        _, stats = encode_rows(encoder, rows.rows)
        self.post_message(MethodLoaded(encoder, rows, stats))

    def on_load_progress(self, message: LoadProgress) -> None:
        bar = self.query_one("#method-progress", ProgressBar)
        show_load_progress(bar, self.query_one("#method-header", Label), self.recipe.model.name, message)

    def worker_failed(self, worker: Any, message: str) -> None:
        self.query_one("#method-progress").display = False
        header = self.query_one("#method-header", Label)
        header.update(Text(message, style="bold red"))  # a path or a row's text, never markup

    def on_method_loaded(self, message: MethodLoaded) -> None:
        from lorastudio.data.tokenview import legend

        self.encoder, self.rows, self.stats = message.encoder, message.rows, message.stats
        self.query_one("#method-progress").display = False
        self.query_one("#method-scroll").display = True
        self.query_one("#method-legend", Static).update(legend("NO_COLOR" in os.environ))
        self.query_one("#method-stats", Static).update(self._stats_text())
        self.show_sample(self.index)

    def _stats_text(self) -> str:
        data = self.stats.to_json()
        kind = "pairs" if self.encoder.format in ("preference", "preference_messages", "hh") else "rows"
        lines = [
            f"[b]{kind}[/] {data['used']} kept of {data['rows']} · format {data['format']} · "
            f"template {escape(self.encoder.template_name)}"
        ]
        if data["skipped"]:
            lines.append(
                "skipped: "
                + escape(
                    ", ".join(
                        f"{n} {why} (row {data['skipped_rows'][why][0] + 1})"
                        for why, n in data["skipped"].items()
                    )
                )
            )
        else:
            lines.append("skipped: none")
        lines.append(
            f"prompts truncated {data['prompt_truncated']} · replies truncated {data['reply_truncated']} "
            f"(max_seq_length {self.recipe.model.max_seq_length}, max_prompt_length "
            f"{self.encoder.max_prompt_length or 'none'})"
        )
        means = [
            f"{k[5:-7]} {v:g}" for k, v in data.items() if k.startswith("mean_") and k.endswith("_tokens")
        ]
        lines.append("mean tokens: " + " · ".join(means))
        if data.get("labels"):
            lines.append("labels: " + ", ".join(f"{k} {v}" for k, v in data["labels"].items()))
        return "\n".join(lines)

    def show_sample(self, index: int) -> None:
        from lorastudio.data.formats import SkipRow
        from lorastudio.data.preference import EncodedPair, EncodedUnpaired, sample_parts
        from lorastudio.data.tokenview import render

        if self.encoder is None:
            return
        table = self.rows.rows
        self.index = max(0, min(index, len(table) - 1))
        header = self.query_one("#method-header", Label)
        prompt_box, chosen_box, rejected_box = (
            self.query_one(f"#method-{n}", Static) for n in ("prompt", "chosen", "rejected")
        )
        try:
            sample = self.encoder.encode_row(table[self.index])
        except SkipRow as skip:
            header.update(f"row {self.index + 1}/{len(table)} · skipped: {escape(str(skip))}")
            for box in (prompt_box, chosen_box, rejected_box):
                box.update("")
            return
        parts = sample_parts(self.encoder.tokenizer, sample)
        no_color = "NO_COLOR" in os.environ

        def shown(name: str, title: str) -> Any:
            from rich.text import Text

            text = Text.from_markup(f"[b]{title}[/] ({len(parts[name])} tokens)\n")
            text.append_text(render(parts[name], show_special=self.show_special, no_color=no_color))
            return text

        truncated = " · prompt TRUNCATED" if sample.prompt_truncated else ""
        prompt_box.update(
            shown(
                "prompt",
                "prompt · masked" if "completion" in parts or "chosen" in parts else "generation prompt",
            )
        )
        if isinstance(sample, EncodedPair):
            header.update(
                f"pair {self.index + 1}/{len(table)} · prompt {len(sample.prompt_ids)} · chosen "
                f"{len(sample.chosen_ids)} · rejected {len(sample.rejected_ids)} tokens{truncated}"
            )
            chosen_box.update(shown("chosen", "chosen" + (" · TRUNCATED" if sample.chosen_truncated else "")))
            rejected_box.update(
                shown("rejected", "rejected" + (" · TRUNCATED" if sample.rejected_truncated else ""))
            )
            rejected_box.display = True
        elif isinstance(sample, EncodedUnpaired):
            label = "desirable" if sample.label else "undesirable"
            header.update(
                f"row {self.index + 1}/{len(table)} · {label} · prompt {len(sample.prompt_ids)} · "
                f"completion {len(sample.completion_ids)} tokens{truncated}"
            )
            chosen_box.update(shown("completion", f"completion · {label}"))
            rejected_box.display = False
        else:
            header.update(
                f"prompt {self.index + 1}/{len(table)} · {len(sample.prompt_ids)} tokens{truncated} · "
                f"{self.recipe.grpo.num_generations if self.recipe.grpo else 0} replies sampled per prompt"
            )
            chosen_box.update(self._rewards_text(sample))
            rejected_box.display = False

    def _rewards_text(self, sample: Any) -> str:
        from lorastudio.train.trainer.rewards import describe

        grpo = self.recipe.grpo
        lines = ["[b]reward functions[/] (weighted sum)"]
        for spec in grpo.rewards if grpo else []:
            where = f" · file {spec.python.rpartition(':')[0]}" if spec.python else ""
            lines.append(escape(f"  {describe(spec)} × {spec.weight:g}{where}"))
        if sample.extra:
            lines.append(
                "[b]columns passed to the rewards[/]: "
                + escape(", ".join(f"{k}={str(v)[:40]!r}" for k, v in sample.extra.items()))
            )
        return "\n".join(lines)

    def action_next(self) -> None:
        self.show_sample(self.index + 1)

    def action_previous(self) -> None:
        self.show_sample(self.index - 1)

    def action_toggle_special(self) -> None:
        self.show_special = not self.show_special
        self.show_sample(self.index)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_train(self) -> None:
        go(self.app, Launch(self.recipe))
