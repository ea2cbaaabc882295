"""An Ollama Modelfile beside the GGUF: FROM, the chat template in Ollama's Go template syntax, SYSTEM, stop,
sampling.

The Go template is not written by hand per family: it is learned from the chat template the run trained with
(sentinel renders, as the fast encoder learns its pieces), then checked by rendering a set of conversations both
ways, as Ollama would (its SYSTEM line put first where a conversation has no system message; the BOS token the
runtime adds itself), and comparing them character for character. A template whose rendering cannot be
expressed that way (one that rewrites history, say) is refused with what is missing; no Modelfile is written
rather than one that prompts the model unlike its training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from lorastudio.errors import StudioError

Message = dict[str, str]
Render = Callable[[list[Message], bool], str]
"""Renders a conversation as the run's chat template does: ``render(messages, add_generation_prompt)``."""

_S, _U1, _A1, _U2 = "QZsysQZ", "QZuoneQZ", "QZaoneQZ", "QZutwoQZ"
_SYSTEM, _USER, _ASSISTANT = "system", "user", "assistant"


class TemplateNotExpressible(StudioError):
    """The chat template renders conversations in a way Ollama's Go template cannot reproduce exactly."""


@dataclass(frozen=True)
class Pieces:
    """A chat template as Ollama's Go template can say it: literal text around each message's content."""

    lead: str
    """Text before the first message (a BOS the runtime does not add itself, say)."""
    user_pre: str
    user_post: str
    assistant_pre: str
    assistant_post: str
    generation: str
    """The generation prompt after the last message."""
    system_pre: str = ""
    system_post: str = ""
    folded: bool = False
    """The system prompt goes inside the first user turn (Llama-2, Gemma) instead of a turn of its own."""
    first_bos: str = ""
    """A BOS the runtime adds itself, dropped from the first message's prefix (else it would be there twice)."""


@dataclass(frozen=True)
class OllamaTemplate:
    """What the Modelfile says about prompts: the Go template, the SYSTEM line, and caveats as comments."""

    template: str
    system: str | None
    notes: list[str] = field(default_factory=list)


def tokenizer_render(tokenizer: Any, jinja: str | None = None) -> Render:
    """``render`` through the tokenizer's own template (or ``jinja``), as training and the Chat render."""

    def render(messages: list[Message], generation: bool) -> str:
        text: str = tokenizer.apply_chat_template(
            messages, chat_template=jinja, tokenize=False, add_generation_prompt=generation
        )
        return text

    return render


def runtime_bos(tokenizer: Any, render: Render) -> str:
    """The BOS text the runtime must add itself: the tokenizer's BOS where a trained render starts with it."""
    bos = tokenizer.bos_token or ""
    return bos if bos and render([{"role": _USER, "content": "a"}], True).startswith(bos) else ""


# -- the Go template and its Python twin ------------------------------------------------------------
def _lit(text: str) -> str:
    """Literal text in a Go template inside a Modelfile's triple quotes."""
    if not text:
        return ""
    if "{{" in text or "}}" in text or '"""' in text or text.endswith('"'):
        # A Go string literal; JSON's escapes are Go's too.
        return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"
    return text


def _prefix(pieces: Pieces, text: str) -> str:
    """A message's prefix, without the runtime's BOS when it is the conversation's first message."""
    if pieces.first_bos and text.startswith(pieces.first_bos):
        return (
            "{{ if $first }}" + _lit(text[len(pieces.first_bos) :]) + "{{ else }}" + _lit(text) + "{{ end }}"
        )
    return _lit(text)


def go_template(pieces: Pieces) -> str:
    """The Go template (Ollama's ``.Messages`` form) that renders conversations as ``pieces`` say."""
    out = [_lit(pieces.lead), "{{ $first := true }}{{ range .Messages }}"]
    if pieces.folded:
        out.append('{{ if eq .Role "user" }}' + _prefix(pieces, pieces.user_pre))
        out.append(
            "{{ if and $first $.System }}"
            + _lit(pieces.system_pre)
            + "{{ $.System }}"
            + _lit(pieces.system_post)
            + "{{ end }}"
        )
        out.append("{{ .Content }}" + _lit(pieces.user_post))
    else:
        out.append(
            '{{ if eq .Role "system" }}'
            + _prefix(pieces, pieces.system_pre)
            + "{{ .Content }}"
            + _lit(pieces.system_post)
        )
        out.append('{{ else if eq .Role "user" }}' + _prefix(pieces, pieces.user_pre))
        out.append("{{ .Content }}" + _lit(pieces.user_post))
    out.append(
        '{{ else if eq .Role "assistant" }}'
        + _prefix(pieces, pieces.assistant_pre)
        + "{{ .Content }}"
        + _lit(pieces.assistant_post)
        + "{{ end }}"
    )
    out.append(
        '{{ if ne .Role "system" }}{{ $first = false }}{{ end }}' if pieces.folded else "{{ $first = false }}"
    )
    out.append("{{ end }}" + _lit(pieces.generation))
    return "".join(out)


def collate(messages: list[Message]) -> list[Message]:
    """Ollama's own step before its template: consecutive messages of one role are merged."""
    merged: list[Message] = []
    for m in messages:
        if merged and merged[-1]["role"] == m["role"] and m["role"] != "tool":
            merged[-1] = {"role": m["role"], "content": merged[-1]["content"] + "\n\n" + m["content"]}
        else:
            merged.append(dict(m))
    return merged


def ollama_render(pieces: Pieces, messages: list[Message], system: str | None) -> str:
    """What Ollama sends the model for ``messages`` (the Go template's Python twin, BOS of the runtime excluded):
    the SYSTEM line goes first where the conversation has no system message, as Ollama's chat handler does."""
    if system and (not messages or messages[0]["role"] != _SYSTEM):
        messages = [{"role": _SYSTEM, "content": system}, *messages]
    messages = collate(messages)
    joined_system = "\n\n".join(m["content"] for m in messages if m["role"] == _SYSTEM)
    out = [pieces.lead]
    first = True

    def prefix(text: str) -> str:
        return (
            text[len(pieces.first_bos) :]
            if first and pieces.first_bos and text.startswith(pieces.first_bos)
            else text
        )

    for m in messages:
        role, content = m["role"], m["content"]
        if role == _SYSTEM and not pieces.folded:
            out += [prefix(pieces.system_pre), content, pieces.system_post]
        elif role == _USER:
            out.append(prefix(pieces.user_pre))
            if pieces.folded and first and joined_system:
                out += [pieces.system_pre, joined_system, pieces.system_post]
            out += [content, pieces.user_post]
        elif role == _ASSISTANT:
            out += [prefix(pieces.assistant_pre), content, pieces.assistant_post]
        if not (pieces.folded and role == _SYSTEM):
            first = False
    out.append(pieces.generation)
    return "".join(out)


# -- learning the pieces from the chat template ---------------------------------------------------------
def _split(text: str, sentinels: list[str], what: str) -> list[str]:
    """``text`` cut at each sentinel, in order; each must appear exactly once."""
    parts: list[str] = []
    rest = text
    for s in sentinels:
        if text.count(s) != 1:
            raise TemplateNotExpressible(f"the template does not render each message once ({what})")
        before, _, rest = rest.partition(s)
        parts.append(before)
    return [*parts, rest]


def _strip_prefix(text: str, prefix: str, what: str) -> str:
    if not text.startswith(prefix):
        raise TemplateNotExpressible(f"the template renders {what} differently from turn to turn")
    return text[len(prefix) :]


def _strip_suffix(text: str, suffix: str, what: str) -> str:
    if not text.endswith(suffix):
        raise TemplateNotExpressible(f"the template renders {what} differently from turn to turn")
    return text[: len(text) - len(suffix)] if suffix else text


def _turns(*roles_contents: tuple[str, str]) -> list[Message]:
    return [{"role": r, "content": c} for r, c in roles_contents]


def learn_pieces(render: Render, runtime_bos: str = "") -> tuple[Pieces, str | None]:
    """The pieces of ``render``'s template and its default system prompt (what it renders when the
    conversation has none), learned from sentinel renders. ``runtime_bos`` is the BOS text the runtime adds."""
    u1, a1, u2 = (_USER, _U1), (_ASSISTANT, _A1), (_USER, _U2)
    _, _, e2 = _split(render(_turns(u1, a1), False), [_U1, _A1], "a user turn and a reply")
    g0, g1, g2, g3 = _split(render(_turns(u1, a1, u2), False), [_U1, _A1, _U2], "two user turns")
    n0, _, _, n3 = _split(render(_turns(u1, a1, u2), True), [_U1, _A1, _U2], "the generation prompt")
    f0, f1, _, _, _ = _split(
        render(_turns((_SYSTEM, _S), u1, a1, u2), True), [_S, _U1, _A1, _U2], "a system turn"
    )
    assistant_post, user_post = e2, g3
    user_pre = _strip_prefix(g2, assistant_post, "a user turn")
    assistant_pre = _strip_prefix(g1, user_post, "a reply")
    generation = _strip_prefix(n3, user_post, "the generation prompt")
    first_bos = runtime_bos if runtime_bos and g0.startswith(runtime_bos) else ""
    base = Pieces(
        lead="",
        user_pre=user_pre,
        user_post=user_post,
        assistant_pre=assistant_pre,
        assistant_post=assistant_post,
        generation=generation,
        first_bos=first_bos,
    )
    if g0.endswith(user_pre) and f0.startswith(g0):
        # The system prompt inside the first user turn: lead + user_pre + system_pre + S + system_post + U1.
        lead = g0[: len(g0) - len(user_pre)]
        return _bos_in_lead(
            replace(base, lead=lead, system_pre=f0[len(g0) :], system_post=f1, folded=True)
        ), None
    system_post = _strip_suffix(f1, user_pre, "a system turn")
    first0 = _strip_suffix(n0, user_pre, "the first user turn")
    if first0.startswith(f0) and first0.endswith(system_post) and len(first0) > len(f0) + len(system_post):
        # A default system prompt: the template opens with a system turn of its own when there is none.
        default = first0[len(f0) : len(first0) - len(system_post)]
        return _bos_in_lead(replace(base, system_pre=f0, system_post=system_post)), default
    system_pre = _strip_prefix(f0, first0, "the conversation's start")
    return _bos_in_lead(replace(base, lead=first0, system_pre=system_pre, system_post=system_post)), None


def _bos_in_lead(pieces: Pieces) -> Pieces:
    """A runtime BOS at the head of ``lead`` is dropped there once and for all (no first-message variants)."""
    bos = pieces.first_bos
    if bos and pieces.lead.startswith(bos):
        return replace(pieces, lead=pieces.lead[len(bos) :], first_bos="")
    return pieces


CHECKED_CONVERSATIONS: list[list[Message]] = [
    _turns((_USER, "Where be the treasure?")),
    _turns((_SYSTEM, "Talk like a pirate."), (_USER, "Hello there")),
    _turns((_USER, "What is 2+2?"), (_ASSISTANT, "Four, matey."), (_USER, "And 3+3?")),
    _turns(
        (_SYSTEM, "Be brief.\nAnswer in one line."),
        (_USER, "Name a colour."),
        (_ASSISTANT, "Blue."),
        (_USER, 'Another, with {{ braces }} and "quotes"?'),
    ),
    _turns(
        (_USER, "one"), (_ASSISTANT, "two"), (_USER, "three"), (_ASSISTANT, "four"), (_USER, "five: é ☠ 漢字")
    ),
]
"""The conversations a Modelfile's template must render exactly as the chat template does (no message has
white space at its ends: see :func:`ollama_template`'s trim note)."""


def check_pieces(pieces: Pieces, render: Render, system: str | None, runtime_bos: str) -> None:
    """Raise :class:`TemplateNotExpressible` unless every checked conversation renders the same both ways."""
    for turns in CHECKED_CONVERSATIONS:
        asked = (
            turns
            if not system or turns[0]["role"] == _SYSTEM
            else [{"role": _SYSTEM, "content": system}, *turns]
        )
        want = render(asked, True)
        got = runtime_bos + ollama_render(pieces, turns, system)
        if got != want:
            at = len(os.path.commonprefix([got, want]))  # noqa: RUF071 (characters, not path parts)
            raise TemplateNotExpressible(
                f"a conversation of {len(turns)} messages renders differently at character {at}: "
                f"the template expects {want[at : at + 40]!r}, Ollama's would give {got[at : at + 40]!r}"
            )


def ollama_template(render: Render, system_prompt: str | None, runtime_bos: str = "") -> OllamaTemplate:
    """The Modelfile's TEMPLATE and SYSTEM for the chat template behind ``render``, checked; raises
    :class:`TemplateNotExpressible` naming what Ollama's template cannot say."""
    pieces, default = learn_pieces(render, runtime_bos)
    system = system_prompt or default
    check_pieces(pieces, render, system, runtime_bos)
    notes = []
    padded = render(_turns((_USER, f"  {_U1}\n")), True)
    if f"  {_U1}\n" not in padded:
        notes.append(
            "The chat template trims white space at the ends of each message; Ollama's template cannot, so send "
            "messages without it."
        )
    return OllamaTemplate(go_template(pieces), system, notes)


# -- the Modelfile ---------------------------------------------------------------------------------------
def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _triple(text: str) -> str:
    if '"""' in text:
        raise TemplateNotExpressible('the system prompt holds """, which a Modelfile cannot quote')
    return f'"""{text}"""'


def modelfile_text(gguf_name: str, prompts: OllamaTemplate, stops: list[str], chat: Any) -> str:
    """The Modelfile: the checked template and system prompt, the stop strings and the chat's sampling."""
    lines = [
        "# Ollama Modelfile written by studio. Run: ollama create NAME -f Modelfile && ollama run NAME",
        "# TEMPLATE renders prompts exactly as the run's chat template did in training and in studio's Chat.",
        *(f"# {note}" for note in prompts.notes),
        f"FROM ./{gguf_name}",
        "",
        f"TEMPLATE {_triple(prompts.template)}",
    ]
    if prompts.system:
        lines.append(f"SYSTEM {_triple(prompts.system)}")
    lines.append("")
    lines += [f"PARAMETER stop {_quote(s)}" for s in dict.fromkeys(stops) if s]
    lines += [f"PARAMETER {name} {value}" for name, value in sampling_parameters(chat)]
    return "\n".join(lines) + "\n"


def sampling_parameters(chat: Any) -> list[tuple[str, Any]]:
    """The chat section's sampling as Ollama's PARAMETER names (the card and the GGUF say the same)."""
    params: list[tuple[str, Any]] = [
        ("temperature", 0.0 if chat.greedy else chat.temperature),
        ("top_p", chat.top_p),
    ]
    if chat.top_k:
        params.append(("top_k", chat.top_k))
    if chat.min_p:
        params.append(("min_p", chat.min_p))
    if chat.repetition_penalty != 1.0:
        params.append(("repeat_penalty", chat.repetition_penalty))
    params.append(("num_predict", chat.max_new_tokens))
    return params
