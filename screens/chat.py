"""Screen 4: chat with the tuned model (or its base), streamed token by token."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, ProgressBar, Switch

from lorastudio.screens.messages import LoadProgress
from lorastudio.screens.worker_failures import HandlesWorkerFailures
from lorastudio.widgets.chat_message import ChatMessage
from lorastudio.widgets.prompt_input import PromptInput
from lorastudio.widgets.text_input import TextInput
from lorastudio.widgets.title_header import TitleHeader

if TYPE_CHECKING:  # for types only: the worker imports the engine, off the start-up path
    from lorastudio.chat.endpoint import EndpointEngine
    from lorastudio.chat.engine import ChatEngine, Reply

SETTINGS = ["temperature", "top_p", "min_p", "top_k", "max_new_tokens", "repetition_penalty"]
"""The recipe's ``chat`` fields the sampling panel edits (the recipe model reads and judges the text)."""


@dataclass
class EngineReady(Message):
    engine: ChatEngine | EndpointEngine
    side: EndpointEngine | None = None
    """A served model that answers beside ``engine`` (side by side)."""


@dataclass
class Chunk(Message):
    """New text for a reply bubble (never replaced: every piece counts)."""

    target: ChatMessage
    text: str


@dataclass
class ReplyDone(Message):
    target: ChatMessage
    reply: Reply
    side: bool
    """The base model's reply beside the tuned one (side by side): it continues the base side's conversation."""


@dataclass
class GenerationOver(Message):
    pass


class ChatScreen(HandlesWorkerFailures, Screen[None]):
    """Multi-turn chat with the recipe's template; base/tuned toggle and side-by-side compare."""

    BINDINGS = [
        Binding("escape", "stop_or_back", "Stop/Back", id="chat.stop"),
        Binding("ctrl+t", "toggle_adapter", "Base/Tuned", id="chat.toggle"),
        Binding("ctrl+o", "toggle_compare", "Compare", id="chat.compare"),
        Binding("ctrl+n", "new_conversation", "New", id="chat.new"),
        Binding("ctrl+s", "save", "Save", id="chat.save"),
        Binding("f2", "settings", "Settings", id="chat.settings"),
        Binding("up", "history(-1)", "History", show=False, id="chat.history_up"),
        Binding("down", "history(1)", "History", show=False, id="chat.history_down"),
        Binding("plus", "feedback('good')", "Good", id="chat.good"),
        Binding("minus", "feedback('bad')", "Bad", id="chat.bad"),
        Binding("e", "edit_reply", "Edit", id="chat.edit"),
        Binding(
            "left_square_bracket", "select_reply(-1)", "Earlier reply", show=False, id="chat.reply_earlier"
        ),
        Binding("right_square_bracket", "select_reply(1)", "Later reply", show=False, id="chat.reply_later"),
    ]

    def __init__(
        self,
        target: str,
        base_only: bool = False,
        save_to: str | None = None,
        model: str | None = None,
        key_env: str | None = None,
        versus: tuple[str, str | None, str | None] | None = None,
    ) -> None:
        super().__init__()
        self.target = target
        self.base_only = base_only
        self.model = model
        self.key_env = key_env
        """For an endpoint target (``http://HOST:PORT/v1``): the model to ask for, the API key's variable."""
        self.versus = versus
        """(URL, model, API key variable) of a served model to compare side by side with ``target``."""
        self.side_engine: Any = None
        self.engine: Any = None
        self.sampling: Any = None
        self.system_prompt: str | None = None
        self.turns: list[dict[str, Any]] = []
        """Every turn shown, side-by-side replies marked ``compare``: the transcript Ctrl+S saves."""
        self.history: list[dict[str, str]] = []
        """The conversation the next prompt continues (the tuned side's when side by side)."""
        self.side_history: list[dict[str, str]] | None = None
        """The base side's own conversation while side by side: neither model sees the other's replies."""
        self.prompts: list[str] = []
        self.history_index = 0
        self.compare = False
        self.stop_event = threading.Event()
        self.generating = False
        self.save_to = save_to
        self.feedback: Any = None
        self.contexts: dict[ChatMessage, list[dict[str, str]]] = {}
        """The conversation each reply bubble answered (for feedback rows)."""
        self.replies: list[ChatMessage] = []
        """Finished reply bubbles in order; feedback keys act on the selected one (the latest by default)."""
        self.selected: ChatMessage | None = None
        self.load_failed = False
        """The model could not be loaded (a run with no adapter yet, say): Ctrl+T loads the base model instead."""

    def compose(self) -> ComposeResult:
        yield TitleHeader()
        yield Label("Chat · loading…", id="chat-title", classes="title")
        yield Label("", id="chat-status", classes="muted")
        yield ProgressBar(total=1.0, show_eta=False, id="chat-progress")
        with Horizontal(id="chat-body"):
            yield VerticalScroll(id="chat-log")
            with VerticalScroll(id="chat-settings", classes="panel"):
                yield Label("Sampling", classes="title")
                for name in SETTINGS:
                    with Horizontal(classes="settings-row"):
                        yield Label(name.replace("_", " "))
                        yield TextInput(id=f"set-{name}")
                with Horizontal(classes="settings-row"):
                    yield Label("greedy")
                    yield Switch(id="set-greedy")
                # Shown once the model is loaded, for a template that takes the switch (Qwen3's).
                with Horizontal(classes="settings-row", id="thinking-row"):
                    yield Label("thinking")
                    yield Switch(id="set-thinking")
                yield Label("system prompt")
                yield TextInput(id="set-system")
                yield Label("", id="set-error", classes="error")
        yield PromptInput(
            placeholder="type a message, Enter to send (Esc stops a reply)", id="chat-input", disabled=True
        )
        yield Label("", id="chat-feedback", classes="muted")
        yield Footer()

    def on_mount(self) -> None:
        from pathlib import Path

        from lorastudio.chat.feedback import FeedbackLog, default_path

        path = Path(self.save_to).expanduser() if self.save_to else default_path(self.target)
        self.feedback = FeedbackLog(path)
        self._show_feedback()
        self.load_engine()

    @work(thread=True, exclusive=True, group="chat-load", exit_on_error=False)
    def load_engine(self) -> None:
        from lorastudio.chat.endpoint import EndpointEngine, is_endpoint, open_engine
        from lorastudio.models.resolve import wait_for_imports
        from lorastudio.models.threads import share_cores

        side = None
        if self.versus is not None:  # the served side first: a refused endpoint is said before a long load
            side = EndpointEngine(*self.versus)
            side.load()
        if not is_endpoint(self.target):
            wait_for_imports()
            share_cores()  # beside a training worker: see models/threads.py
        engine = open_engine(self.target, self.base_only, self.model, self.key_env)
        engine.load(lambda f, m: self.post_message(LoadProgress(f, m)))
        self.post_message(EngineReady(engine, side))

    def worker_failed(self, worker: Any, message: str) -> None:
        if worker.group == "chat-load":
            self.load_failed = True
        self.query_one("#chat-status", Label).update(Text(message, style="bold red"))
        self.query_one("#chat-progress").display = False
        self.generating = False
        self.query_one("#chat-input", Input).disabled = self.engine is None

    def on_load_progress(self, message: LoadProgress) -> None:
        self.query_one("#chat-progress", ProgressBar).update(progress=message.fraction)
        self.query_one("#chat-status", Label).update(f"loading: {escape(message.text)}")

    def on_engine_ready(self, message: EngineReady) -> None:
        self.engine = message.engine
        self.side_engine = message.side
        self.compare = self.compare or self.side_engine is not None
        recipe = self.engine.recipe
        self.sampling = recipe.chat
        self.system_prompt = recipe.chat.system_prompt or recipe.data.system_prompt
        for name in SETTINGS:
            self.query_one(f"#set-{name}", Input).value = str(getattr(self.sampling, name))
        self.query_one("#set-greedy", Switch).value = self.sampling.greedy
        self.query_one("#set-thinking", Switch).value = self.sampling.enable_thinking
        self.query_one("#thinking-row").display = bool(
            self.engine.encoder and self.engine.encoder.thinking_switch
        )
        self.query_one("#set-system", Input).value = self.system_prompt or ""
        self.query_one("#chat-progress").display = False
        self.query_one("#chat-status", Label).update(
            Text(f"ready · {self.engine.source}" if self.engine.source else "ready")
        )
        if self.engine.source:  # which run and checkpoint `latest` or RUN@latest took (train/run/runref.py)
            self.notify(f"chatting with {self.engine.source}")
        self._update_title()
        box = self.query_one("#chat-input", Input)
        box.disabled = False
        box.focus()

    def _update_title(self) -> None:
        if self.engine is None:
            return
        mode = "tuned (adapter on)" if self.engine.has_adapter and self.engine.use_adapter else "base"
        if self.model_name_of(self.engine):
            mode = f"served {self.model_name_of(self.engine)}"
        if self.compare and self.side_engine is not None:
            mode = f"compare: {mode} | served {self.side_engine.model_name}"
        elif self.compare and self.engine.has_adapter:
            mode = "compare: tuned | base"
        if self.engine.has_adapter and self.engine.adapter_dir.name != "adapter":
            mode += f" · {self.engine.adapter_dir.name}"  # chatting with a checkpoint, not the final adapter
        self.query_one("#chat-title", Label).update(
            f"Chat · {escape(self.engine.recipe.name)} · {escape(mode)}"
        )

    @staticmethod
    def model_name_of(engine: Any) -> str | None:
        """The served model's name for an endpoint engine; None for a local one."""
        return getattr(engine, "model_name", None)

    def _side_by_side(self) -> bool:
        return self.compare and (self.side_engine is not None or self.engine.has_adapter)

    # -- sending ------------------------------------------------------------------------------
    @on(Input.Submitted, "#chat-input")
    def _send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text or self.engine is None or self.generating:
            return
        event.input.value = ""
        self.prompts.append(text)
        self.history_index = len(self.prompts)
        log = self.query_one("#chat-log", VerticalScroll)
        log.mount(ChatMessage("user", "you", text))
        head = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        asked = {"role": "user", "content": text}
        self.turns.append(dict(asked))
        if self._side_by_side():
            if self.side_history is None:  # the sides part here: both go on from the conversation so far
                self.side_history = list(self.history)
            served = self.side_engine is not None
            use = self.engine.use_adapter and self.engine.has_adapter
            tuned = ChatMessage("assistant", ("tuned" if use else "base") if served else "tuned")
            base = ChatMessage("base", f"served {self.side_engine.model_name}" if served else "base")
            log.mount(Horizontal(tuned, base, classes="compare-row"))
            targets = [
                (tuned, use if served else True, False, [*head, *self.history, asked]),
                (base, False, True, [*head, *self.side_history, asked]),
            ]
        else:
            use = self.engine.use_adapter and self.engine.has_adapter
            name = self.model_name_of(self.engine)
            label = f"served {name}" if name else "tuned" if use else "base"
            bubble = ChatMessage("assistant" if use or name else "base", label)
            log.mount(bubble)
            targets = [(bubble, use, False, [*head, *self.history, asked])]
        for bubble, _, _, context in targets:
            self.contexts[bubble] = context
        log.scroll_end(animate=False)
        self.generating = True
        self.stop_event.clear()
        self.generate(targets)

    @work(thread=True, exclusive=True, group="chat-generate", exit_on_error=False)
    def generate(self, targets: list[tuple[ChatMessage, bool, bool, list[dict[str, str]]]]) -> None:
        """Each (bubble, adapter on, base side, conversation) in turn: each side answers its own conversation."""
        from lorastudio.models.threads import share_cores

        share_cores()
        try:
            for bubble, use_adapter, side, messages in targets:
                if self.stop_event.is_set():
                    break
                engine = self.side_engine if side and self.side_engine is not None else self.engine
                reply = engine.generate(
                    messages,
                    self.sampling,
                    on_text=lambda t, b=bubble: self.post_message(Chunk(b, t)),
                    stop=self.stop_event,
                    use_adapter=use_adapter,
                )
                self.post_message(ReplyDone(bubble, reply, side))
        finally:
            self.post_message(GenerationOver())

    def on_chunk(self, message: Chunk) -> None:
        message.target.append(message.text)
        self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    def on_reply_done(self, message: ReplyDone) -> None:
        reply = message.reply
        ttft = f"{reply.first_token_s * 1000:.0f} ms" if reply.first_token_s is not None else "-"
        stats = f"{reply.tokens} tokens · {reply.tokens_per_s:.1f} tok/s · first token {ttft}"
        if reply.stopped:
            stats += " · stopped"
        message.target.finish(stats)
        if message.target in self.contexts:
            self.replies.append(message.target)
            self._select(message.target)
        served = self.side_engine if message.side and self.side_engine is not None else self.engine
        name = self.model_name_of(served)
        model = f"served {name}" if name else "tuned" if reply.adapter else "base"
        turn = {"role": "assistant", "content": reply.text, "model": model}
        self.turns.append({**turn, "compare": True} if message.side else turn)
        # The exchange joins the conversation of the side that answered it, and only when there is an answer:
        # a reply stopped before its first word would leave two user turns in a row.
        history = self.side_history if message.side else self.history
        if reply.text.strip() and history is not None:
            history += self.contexts[message.target][-1:] + [{"role": "assistant", "content": reply.text}]
        self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)  # the stats line is a line more

    def on_generation_over(self, message: GenerationOver) -> None:
        self.generating = False

    # -- keys ---------------------------------------------------------------------------------
    def action_stop_or_back(self) -> None:
        if self.generating:
            self.stop_event.set()
            return
        settings = self.query_one("#chat-settings")
        if settings.has_class("visible"):
            settings.remove_class("visible")
            self.query_one("#chat-input", Input).focus()
            return
        self.app.pop_screen()

    def action_toggle_adapter(self) -> None:
        if self.engine is None:
            if self.load_failed and not self.base_only:  # no adapter to load: the base model still chats
                self.base_only, self.load_failed = True, False
                self.query_one("#chat-status", Label).update("loading the base model…")
                self.query_one("#chat-progress").display = True
                self.load_engine()
            return
        if not self.engine.has_adapter:
            served = self.model_name_of(self.engine)
            said = f"{served} is served as it is: no adapter to switch here" if served else None
            self.notify(said or "this chat has no adapter: it is the base model", severity="warning")
            return
        self.engine.use_adapter = not self.engine.use_adapter
        self._update_title()
        self.notify("tuned model (adapter on)" if self.engine.use_adapter else "base model (adapter off)")

    def action_toggle_compare(self) -> None:
        if self.engine is not None and not self.engine.has_adapter and self.side_engine is None:
            self.notify("compare needs a run with an adapter", severity="warning")
            return
        self.compare = not self.compare
        if not self.compare:
            self.side_history = None  # the conversation goes on as the tuned side had it
        self._update_title()

    def action_new_conversation(self) -> None:
        if self.generating:
            return
        self.turns, self.history, self.side_history = [], [], None
        self.contexts, self.replies = {}, []
        self._select(None)
        self.query_one("#chat-log", VerticalScroll).remove_children()
        self.notify("new conversation")

    def action_save(self) -> None:
        from lorastudio.chat.engine import Transcript
        from lorastudio.chat.targets import run_of_target
        from lorastudio.paths import data_dir

        if not self.turns:
            self.notify("nothing to save yet", severity="warning")
            return
        run = run_of_target(self.target)  # a checkpoint's or an export's chat saves in its run too
        folder = (run if run is not None else data_dir()) / "transcripts"
        jsonl, md = Transcript(self.system_prompt, list(self.turns)).save(folder)
        self.notify(f"saved {jsonl.name} and {md.name} in {folder}")

    def action_settings(self) -> None:
        panel = self.query_one("#chat-settings")
        panel.toggle_class("visible")
        if panel.has_class("visible"):
            self.query_one("#set-temperature", Input).focus()
        else:
            self.query_one("#chat-input", Input).focus()

    def action_history(self, delta: int) -> None:
        box = self.query_one("#chat-input", Input)
        if not box.has_focus or not self.prompts:
            return
        self.history_index = max(0, min(len(self.prompts), self.history_index + delta))
        box.value = self.prompts[self.history_index] if self.history_index < len(self.prompts) else ""
        box.cursor_position = len(box.value)

    # -- feedback into data ----------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # typing "+", "-" or "e" into a box is text, not feedback
        return not (action in ("feedback", "edit_reply", "select_reply") and isinstance(self.focused, Input))

    def _show_feedback(self) -> None:
        if self.feedback is not None:
            self.query_one("#chat-feedback", Label).update(
                self.feedback.summary() + "   [dim]Tab to the replies: + good · - bad · e edit · [ ] pick[/]"
            )

    def _select(self, bubble: ChatMessage | None) -> None:
        if self.selected is not None:
            self.selected.remove_class("-selected")
        self.selected = bubble
        if bubble is not None:
            bubble.add_class("-selected")
            bubble.scroll_visible(animate=False)

    def action_select_reply(self, delta: int) -> None:
        if not self.replies:
            return
        at = self.replies.index(self.selected) if self.selected in self.replies else len(self.replies) - 1
        self._select(self.replies[max(0, min(len(self.replies) - 1, at + delta))])

    def action_feedback(self, verdict: str) -> None:
        bubble = self.selected
        if bubble is None or self.feedback is None:
            self.notify("no finished reply to mark yet", severity="warning")
            return
        context = self.contexts[bubble]
        try:
            said = (self.feedback.mark_good if verdict == "good" else self.feedback.mark_bad)(
                context, bubble.text
            )
        except ValueError as exc:  # a row that is no conversation to train on is refused, not written
            self.notify(str(exc), severity="error")
            return
        bubble.finish(f"{bubble.stats} · marked {verdict}")
        self._show_feedback()
        self.notify(said, timeout=3)

    def action_edit_reply(self) -> None:
        from lorastudio.screens.edit_reply import EditReplyScreen

        bubble = self.selected
        if bubble is None or self.feedback is None:
            self.notify("no finished reply to edit yet", severity="warning")
            return
        context = self.contexts[bubble]
        prompt = next((m["content"] for m in reversed(context) if m["role"] == "user"), "")

        def done(text: str | None) -> None:
            if text is None:
                return
            try:
                said = self.feedback.edited(context, bubble.text, text)
            except ValueError as exc:
                self.notify(str(exc), severity="error")
                return
            bubble.finish(f"{bubble.stats} · edited")
            # below the exchange: side by side, the reply is one column of a row, not a line of the log
            row = bubble.parent if isinstance(bubble.parent, Horizontal) else bubble
            self.query_one("#chat-log", VerticalScroll).mount(
                ChatMessage("assistant", "edited (better answer)", text), after=row
            )
            self._show_feedback()
            self.notify(said, timeout=3)

        self.app.push_screen(EditReplyScreen(prompt, bubble.text), done)

    @on(Input.Changed)
    def _setting_changed(self, event: Input.Changed) -> None:
        if self.sampling is None or not event.input.id or not event.input.id.startswith("set-"):
            return
        name = event.input.id.removeprefix("set-")
        if name == "system":
            self.system_prompt = event.value or None
            return
        self._adjust(name, event.value)

    @on(Switch.Changed, "#set-greedy")
    def _greedy_changed(self, event: Switch.Changed) -> None:
        if self.sampling is not None:
            self._adjust("greedy", event.value)

    @on(Switch.Changed, "#set-thinking")
    def _thinking_changed(self, event: Switch.Changed) -> None:
        if self.sampling is not None:
            self._adjust("enable_thinking", event.value)

    def _adjust(self, name: str, value: Any) -> None:
        """Validate the changed setting as the recipe's ``chat`` section; a refused one keeps the old value."""
        from lorastudio.chat.engine import with_overrides
        from lorastudio.errors import StudioError

        error = self.query_one("#set-error", Label)
        try:
            self.sampling = with_overrides(self.sampling, **{name: value})
        except StudioError as exc:
            error.update(escape(f"{exc} (still {getattr(self.sampling, name)})"))
            error.set_class(True, "visible")
            return
        error.update("")
        error.set_class(False, "visible")
