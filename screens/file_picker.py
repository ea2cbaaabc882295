"""A modal file picker for local data files (csv, json, jsonl, parquet, txt), or other suffixes (task YAML)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Label

from lorastudio.registry import LOCAL_DATA_SUFFIXES


class DataFileTree(DirectoryTree):
    """Folders and data files only; hidden entries left out."""

    suffixes: tuple[str, ...] = LOCAL_DATA_SUFFIXES

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [
            p for p in paths if not p.name.startswith(".") and (p.is_dir() or p.name.endswith(self.suffixes))
        ]


class FilePickerScreen(ModalScreen[str | None]):
    """Pick a data file; Enter on a file chooses it, Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="file_picker.cancel")]

    def __init__(self, start: Path, suffixes: tuple[str, ...] = LOCAL_DATA_SUFFIXES) -> None:
        super().__init__()
        self.start = start if start.is_dir() else Path.cwd()
        self.suffixes = suffixes

    def compose(self) -> ComposeResult:
        with Vertical(id="file-picker", classes="panel"):
            what = "a data file" if self.suffixes == LOCAL_DATA_SUFFIXES else "a file"
            yield Label(f"Pick {what} ({', '.join(self.suffixes)}) · Esc cancels", classes="title")
            tree = DataFileTree(self.start, id="file-tree")
            tree.suffixes = self.suffixes
            yield tree

    @on(DirectoryTree.FileSelected)
    def _chosen(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(str(event.path))

    def action_cancel(self) -> None:
        self.dismiss(None)
