"""A modal file picker for local data files (csv, json, jsonl, parquet, txt)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Label

from lorastudio.registry import LOCAL_DATA_SUFFIXES


class DataFileTree(DirectoryTree):
    """Folders and data files only; hidden entries left out."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [
            p
            for p in paths
            if not p.name.startswith(".") and (p.is_dir() or p.name.endswith(LOCAL_DATA_SUFFIXES))
        ]


class FilePickerScreen(ModalScreen[str | None]):
    """Pick a data file; Enter on a file chooses it, Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="file_picker.cancel")]

    def __init__(self, start: Path) -> None:
        super().__init__()
        self.start = start if start.is_dir() else Path.cwd()

    def compose(self) -> ComposeResult:
        with Vertical(id="file-picker", classes="panel"):
            yield Label(f"Pick a data file ({', '.join(LOCAL_DATA_SUFFIXES)}) · Esc cancels", classes="title")
            yield DataFileTree(self.start, id="file-tree")

    @on(DirectoryTree.FileSelected)
    def _chosen(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(str(event.path))

    def action_cancel(self) -> None:
        self.dismiss(None)
