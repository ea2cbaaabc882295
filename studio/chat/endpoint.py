"""Chat against any OpenAI-compatible endpoint (``http://HOST:PORT/v1``): a served run, vLLM, llama.cpp, Ollama.

:class:`EndpointEngine` stands beside the local :class:`~lorastudio.chat.engine.ChatEngine` with the same face
(``load``, ``generate`` streaming into ``on_text``, a :class:`Reply` with its timing), so the CLI, the Chat screen
and its side-by-side compare take either. Requests go through the official ``openai`` client; every failure it
raises (nothing listening, a refused key, a model the endpoint does not serve) becomes one :class:`StudioError`
naming the URL, the flag or the model.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from lorastudio.chat.engine import ChatEngine, Reply, Sampling
from lorastudio.chat.targets import recipe_for_model_path
from lorastudio.errors import StudioError
from lorastudio.progress import Progress

TIMEOUT_S = 120.0
"""How long one request may wait for the endpoint (a big model on a busy server answers slowly)."""


def is_endpoint(target: str | None) -> bool:
    """``target`` is an endpoint's URL, not a run or a path."""
    return bool(target) and str(target).lower().startswith(("http://", "https://"))


def endpoint_key(key_env: str | None) -> str | None:
    """The API key from ``--api-key-env VAR``; refused when the variable is unset or empty."""
    if not key_env:
        return None
    value = os.environ.get(key_env, "").strip()
    if not value:
        raise StudioError(f"--api-key-env {key_env}: the environment variable {key_env} is not set or empty")
    return value


def endpoint_error(
    url: str, exc: BaseException, model: str | None = None, keyed: bool = False
) -> StudioError:
    """One line for what the ``openai`` client raised: what went wrong, at which URL, and what to change."""
    import openai

    if isinstance(exc, StudioError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return StudioError(f"{url}: the endpoint did not answer within {TIMEOUT_S:.0f} s")
    if isinstance(exc, openai.APIConnectionError):
        return StudioError(
            f"{url}: no server answers there (is it running? studio serve list shows studio's)"
        )
    if isinstance(exc, openai.AuthenticationError):
        hint = "check the key in --api-key-env" if keyed else "it needs one: --api-key-env VAR"
        return StudioError(f"{url}: the API key was refused (401); {hint}")
    if isinstance(exc, openai.NotFoundError) and model is not None:
        return StudioError(f"--model {model}: {url} does not serve it (404)")
    if isinstance(exc, openai.APIStatusError):
        return StudioError(f"{url}: the endpoint answered {exc.status_code}: {_message(exc)}")
    return StudioError(f"{url}: {type(exc).__name__}: {exc}")


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        text = inner.get("message") if isinstance(inner, dict) else inner
        if text:
            return str(text).splitlines()[0][:300]
    return str(getattr(exc, "message", exc)).splitlines()[0][:300]


class EndpointEngine:
    """A model behind an OpenAI-compatible endpoint: nothing loads here, each reply is one streamed request."""

    def __init__(self, url: str, model: str | None = None, key_env: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.model_name = model
        self.key_env = key_env
        self.key = endpoint_key(key_env)  # refused before any request
        self.recipe = recipe_for_model_path(model or "endpoint")
        self.adapter_dir = None
        self.use_adapter = False
        self.encoder = None
        self.source: str | None = None
        self.client: Any = None
        self._lock = threading.Lock()

    has_adapter = False
    """The served model is what it is: no adapter to switch off here (serve the base beside it to compare)."""

    def _client(self) -> Any:
        from openai import OpenAI

        return OpenAI(base_url=self.url, api_key=self.key or "none", max_retries=0, timeout=TIMEOUT_S)

    def load(self, progress: Progress | None = None) -> None:
        """Ask the endpoint which models it serves; pick ``--model`` among them (or the only one)."""
        report = progress or (lambda f, m: None)
        report(0.2, f"asking {self.url} for its models")
        self.client = self._client()
        try:
            served = [model.id for model in self.client.models.list()]
        except Exception as exc:
            raise endpoint_error(self.url, exc, keyed=self.key is not None) from None
        if self.model_name is None:
            if len(served) != 1:
                names = ", ".join(served) or "none"
                raise StudioError(f"{self.url} serves {len(served)} models ({names}): name one with --model")
            self.model_name = served[0]
            self.recipe = recipe_for_model_path(self.model_name)
        elif served and self.model_name not in served:
            raise StudioError(
                f"--model {self.model_name}: {self.url} does not serve it (it serves {', '.join(served)})"
            )
        self.source = f"{self.model_name} at {self.url}"
        report(1.0, "ready")

    def request(self, messages: list[dict[str, str]], sampling: Sampling) -> dict[str, Any]:
        """The chat-completions arguments for these settings; temperature 0 (or greedy) asks for greedy."""
        greedy = sampling.greedy or sampling.temperature == 0
        args: dict[str, Any] = {
            "model": self.model_name,
            "messages": messages,
            "max_tokens": sampling.max_new_tokens,
            "temperature": 0.0 if greedy else sampling.temperature,
            "stream": True,
        }
        if not greedy:
            args["top_p"] = sampling.top_p
        return args

    def generate(
        self,
        messages: list[dict[str, str]],
        sampling: Sampling,
        on_text: Callable[[str], None] | None = None,
        stop: threading.Event | None = None,
        use_adapter: bool | None = None,
        **_ignored: Any,
    ) -> Reply:
        """Stream a reply; ``on_text`` gets each piece as the endpoint sends it. ``stop`` closes the stream."""
        if self.client is None:
            raise StudioError("the endpoint is not connected yet")
        stop = stop or threading.Event()
        started = time.monotonic()
        first: float | None = None
        pieces: list[str] = []
        count, usage, reason = 0, None, "stop"
        try:
            stream = self.client.chat.completions.create(**self.request(messages, sampling))
            try:
                for chunk in stream:
                    if stop.is_set():
                        reason = "cancelled"
                        break
                    if getattr(chunk, "usage", None) is not None and chunk.usage.completion_tokens:
                        usage = int(chunk.usage.completion_tokens)
                    for choice in chunk.choices or ():
                        text = choice.delta.content if choice.delta else None
                        if text:
                            if first is None:
                                first = time.monotonic() - started
                            count += 1
                            pieces.append(text)
                            if on_text is not None:
                                on_text(text)
                        if choice.finish_reason:
                            reason = "length" if choice.finish_reason == "length" else "stop"
            finally:
                stream.close()
        except Exception as exc:
            raise endpoint_error(self.url, exc, self.model_name, self.key is not None) from None
        return Reply(
            "".join(pieces),
            usage if usage is not None else count,  # a chunk per token when the endpoint gives no usage
            time.monotonic() - started,
            first,
            stop.is_set(),
            False,
            reason,
        )


def open_engine(
    target: str | None, base_only: bool = False, model: str | None = None, key_env: str | None = None
) -> ChatEngine | EndpointEngine:
    """The engine a chat target means: an endpoint's URL (with ``model`` and ``key_env``), else a local one."""
    from lorastudio.chat.engine import engine_for

    if is_endpoint(target):
        if base_only:
            raise StudioError(f"--base: {target} is an endpoint; serve the base model and chat with that")
        assert target is not None
        return EndpointEngine(target, model, key_env)
    if model is not None or key_env is not None:
        flag = f"--model {model}" if model is not None else f"--api-key-env {key_env}"
        raise StudioError(f"{flag}: only for an endpoint target (http://HOST:PORT/v1)")
    return engine_for(target, base_only=base_only)
