"""One chat bubble that grows as tokens stream in; a reply's reasoning is dimmed."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from lorastudio.data.encode import THINK_CLOSE, THINK_OPEN


def reply_body(text: str) -> Text:
    """A reply with the reasoning it opens with (``<think>…</think>``, still open while it streams) dimmed, so
    the answer stands out; the tags stay, as the model wrote them."""
    stripped = text.lstrip()
    if not stripped.startswith(THINK_OPEN):
        return Text(text)
    end = text.find(THINK_CLOSE, len(text) - len(stripped))
    if end < 0:
        return Text(text, style="dim italic")
    end += len(THINK_CLOSE)
    body = Text()  # not Text(style=...): that style would cover the answer appended after it
    body.append(text[:end], style="dim italic")
    body.append(text[end:])
    return body


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
        if self.role == "user" or not self.text:
            body.append(self.text or ("…" if self.role != "user" else ""))
        else:
            body.append_text(reply_body(self.text))
        if self.stats:
            body.append(f"\n{self.stats}", style="dim")
        self.update(body)
