"""The Export screen: pick a format (adapter, merged, GGUF + quant), a checkpoint and a folder; see the size
estimated before and measured after; the export runs in a worker thread with a progress bar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, ProgressBar, RadioButton, RadioSet, Select

from lorastudio.screens.messages import LoadProgress
from lorastudio.screens.navigate import Serve, go
from lorastudio.screens.worker_failures import HandlesWorkerFailures
from lorastudio.widgets.text_input import TextInput
from lorastudio.widgets.title_header import TitleHeader

if TYPE_CHECKING:  # for types only: the worker imports the exporter, off the start-up path
    from lorastudio.export.exporter import ExportResult

FORMATS = ("adapter", "merged", "gguf")
QUANTS = (
    "f16",
    "q8_0",
    "bf16",
    "f32",
    "q5_1",
    "q5_0",
    "q4_1",
    "q4_0",
)  # as lorastudio.export.ggufwrite.QUANTS
FORMAT_HELP = {
    "adapter": "LoRA adapter, tokenizer, chat template, model card",
    "merged": "16-bit base + adapter merged: plain transformers",
    "gguf": "one GGUF for llama.cpp / Ollama, with a Modelfile",
}


@dataclass
class Estimated(Message):
    key: tuple[str, str, int | None]
    size: int | None
    error: str | None = None


@dataclass
class ExportDone(Message):
    result: ExportResult


class ExportScreen(HandlesWorkerFailures, Screen[None]):
    """Export one run: format, quant, checkpoint, output folder; estimate, progress, measured size."""

    BINDINGS = [
        Binding("ctrl+e", "start", "Export", id="export.start", priority=True),
        Binding("f6", "serve", "Serve", id="export.serve"),
        Binding("escape", "back", "Back", id="export.back"),
    ]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.format = "merged"
        self.exporting = False
        self.result: Any = None
        self.estimate: int | None = None
        self._checkpoints: list[int] = []

    def compose(self) -> ComposeResult:
        from lorastudio.export.origin import checkpoints

        self._checkpoints = checkpoints(self.run_dir)
        yield TitleHeader()
        yield Label(f"Export · {self.run_dir.name}", classes="title")
        with Horizontal(id="export-body"):
            with Vertical(id="export-form", classes="panel"):
                yield Label("format", classes="muted")
                with RadioSet(id="export-format"):
                    for fmt in FORMATS:
                        yield RadioButton(fmt, value=fmt == self.format, id=f"format-{fmt}")
                yield Label(FORMAT_HELP[self.format], id="export-format-help", classes="muted")
                with Horizontal(classes="export-row"):
                    with Vertical():
                        yield Label("GGUF quant", classes="muted")
                        yield Select(
                            [(q, q) for q in QUANTS],
                            value="f16",
                            allow_blank=False,
                            id="export-quant",
                            disabled=True,
                        )
                    with Vertical():
                        yield Label("from", classes="muted")
                        options = [("final adapter", -1)] + [
                            (f"checkpoint {s}", s) for s in reversed(self._checkpoints)
                        ]
                        yield Select(options, value=-1, allow_blank=False, id="export-checkpoint")
                yield Label("output folder (empty: RUN/exports/FORMAT)", classes="muted")
                yield TextInput(placeholder=self._shown_out(), id="export-out")
            with Vertical(id="export-status", classes="panel"):
                yield Label("estimated size: …", id="export-estimate")
                yield ProgressBar(total=1.0, show_eta=False, id="export-progress")
                yield Label("Ctrl+E to export", id="export-message", classes="muted")
                yield Label("", id="export-result")
                yield Button("Export", id="export-button", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        formats = self.query_one("#export-format", RadioSet)
        formats._selected = FORMATS.index(self.format)  # highlight the chosen format, not the first one
        formats.focus()
        self.refresh_estimate()

    # -- choices ------------------------------------------------------------------------------
    def _quant(self) -> str:
        return str(self.query_one("#export-quant", Select).value)

    def _checkpoint(self) -> int | None:
        value = self.query_one("#export-checkpoint", Select).value
        return None if value in (-1, Select.BLANK) else int(value)  # type: ignore[arg-type]

    def _default_out(self) -> Path:
        quant = self._quant() if self.is_mounted else "f16"
        name = self.format if self.format != "gguf" else f"gguf-{quant}"
        checkpoint = self._checkpoint() if self.is_mounted else None
        return self.run_dir / "exports" / (name + (f"-step{checkpoint}" if checkpoint is not None else ""))

    def _shown_out(self) -> str:
        return str(self._default_out().relative_to(self.run_dir.parent))

    @on(RadioSet.Changed, "#export-format")
    def _format_changed(self, event: RadioSet.Changed) -> None:
        self.format = FORMATS[event.index]
        self.query_one("#export-format-help", Label).update(FORMAT_HELP[self.format])
        self.query_one("#export-quant", Select).disabled = self.format != "gguf"
        self._choices_changed()

    @on(Select.Changed)
    def _select_changed(self) -> None:
        self._choices_changed()

    def _choices_changed(self) -> None:
        self.query_one("#export-out", Input).placeholder = self._shown_out()
        self.refresh_estimate()

    # -- estimate ----------------------------------------------------------------------------
    def refresh_estimate(self) -> None:
        self.query_one("#export-estimate", Label).update("estimated size: …")
        self._estimate((self.format, self._quant(), self._checkpoint()))

    @work(thread=True, exclusive=True, group="export-estimate", exit_on_error=False)
    def _estimate(self, key: tuple[str, str, int | None]) -> None:
        from lorastudio.errors import StudioError
        from lorastudio.export.exporter import ExportRequest, estimate_bytes

        fmt, quant, checkpoint = key
        try:
            size = estimate_bytes(ExportRequest(str(self.run_dir), fmt, checkpoint, quant))
        except StudioError as exc:
            self.post_message(Estimated(key, None, str(exc)))
            return
        self.post_message(Estimated(key, size))

    def on_estimated(self, message: Estimated) -> None:
        from lorastudio.export.staging import human_size

        if message.key != (self.format, self._quant(), self._checkpoint()):
            return  # an older choice's answer
        self.estimate = message.size
        label = self.query_one("#export-estimate", Label)
        if message.error:
            label.update(f"cannot export: {escape(message.error)}")
            label.add_class("error")
        else:
            label.update(f"estimated size: {human_size(message.size)}")
            label.remove_class("error")

    # -- export ------------------------------------------------------------------------------
    @on(Button.Pressed, "#export-button")
    def action_start(self) -> None:
        if self.exporting:
            self.notify("an export is already running")
            return
        from lorastudio.export.exporter import ExportRequest

        typed = self.query_one("#export-out", Input).value.strip()
        request = ExportRequest(
            str(self.run_dir),
            self.format,
            self._checkpoint(),
            self._quant(),
            Path(typed).expanduser() if typed else None,
        )
        self.exporting = True
        self.result = None
        self.query_one("#export-result", Label).update("")
        self.query_one("#export-message", Label).update("starting…")
        self.query_one("#export-progress", ProgressBar).update(progress=0.0)
        self._run_export(request)

    @work(thread=True, exclusive=True, group="export-run", exit_on_error=False)
    def _run_export(self, request: Any) -> None:
        from lorastudio.export.exporter import export
        from lorastudio.models.threads import share_cores

        share_cores()  # merging beside a training worker: see models/threads.py
        result = export(request, lambda f, m: self.post_message(LoadProgress(f, m)))
        self.post_message(ExportDone(result))

    def on_load_progress(self, message: LoadProgress) -> None:
        if not self.exporting:
            return
        self.query_one("#export-progress", ProgressBar).update(progress=message.fraction)
        self.query_one("#export-message", Label).update(escape(message.text[:70]))

    def on_export_done(self, message: ExportDone) -> None:
        from lorastudio.export.staging import human_size

        self.exporting = False
        self.result = result = message.result
        self.query_one("#export-progress", ProgressBar).update(progress=1.0)
        self.query_one("#export-message", Label).update(f"done in {result.seconds:.1f} s")
        self.query_one("#export-result", Label).update(
            f"measured {human_size(result.measured_bytes)} (estimated {human_size(result.estimated_bytes)})\n"
            f"{escape(str(result.out))}"
        )
        self.notify(f"exported {result.format} to {result.out}")

    def worker_failed(self, worker: Any, message: str) -> None:
        if worker.group != "export-run" or not self.exporting:
            return
        self.exporting = False
        self.query_one("#export-message", Label).update("export failed; nothing was left half-written")
        label = self.query_one("#export-result", Label)
        label.update(escape(message))
        label.add_class("error")

    def action_serve(self) -> None:
        """The Serve panel on what was just exported (a merged model, a GGUF), else on the run itself."""
        if self.exporting:
            self.notify("the export is still running; serve it once it is written", severity="warning")
            return
        exported = self.result is not None and self.result.format != "adapter"
        go(self.app, Serve(str(self.result.out if exported else self.run_dir)))

    def action_back(self) -> None:
        if self.exporting:
            self.notify("the export is still running; wait for it to finish", severity="warning")
            return
        self.app.pop_screen()
