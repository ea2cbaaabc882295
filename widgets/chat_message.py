"""One chat bubble that grows as tokens stream in."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class ChatMessage(Static):
    """A user prompt or an assistant reply; replies get a stats line when they finish."""

    DEFAULT_CSS = """
    ChatMessage { padding: 0 1; margin: 0 0 1 0; height: auto; width: 1fr; }
    ChatMessage.user { border-left: thick $accent; }
    ChatMessage.assistant { border-left: thick $success; }
    ChatMessage.base { border-left: thick $warning; }
    """

    def __init__(self, role: str, label: str, text: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.role = role
        self.label = label
        self.text = text
        self.stats = ""
        self.add_class(role)

    def on_mount(self) -> None:
        self._render_text()

    def append(self, piece: str) -> None:
        self.text += piece
        self._render_text()

    def finish(self, stats: str) -> None:
        self.stats = stats
        self._render_text()

    def _render_text(self) -> None:
        body = Text()
        body.append(f"{self.label}\n", style="bold")
        body.append(self.text or ("…" if self.role != "user" else ""))
        if self.stats:
            body.append(f"\n{self.stats}", style="dim")
        self.update(body)
