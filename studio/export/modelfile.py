"""An Ollama Modelfile beside the GGUF: FROM, the chat template in Ollama's Go template syntax, stop, sampling."""

from __future__ import annotations

from typing import Any

# The Go templates range over .Messages: Ollama puts the SYSTEM prompt in as the first message.
_GO_TEMPLATES = {
    "llama-3": (
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
        "{{ .Content }}<|eot_id|>\n{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "chatml": (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
        "{{ end }}<|im_start|>assistant\n"
    ),
    "alpaca": (
        '{{- range .Messages }}{{ if eq .Role "system" }}{{ .Content }}\n\n'
        '{{ else if eq .Role "user" }}### Instruction:\n{{ .Content }}\n\n'
        "{{ else }}### Response:\n{{ .Content }}{EOS}\n\n{{ end }}{{ end }}### Response:\n"
    ),
    "guanaco": (
        '{{- range .Messages }}{{ if eq .Role "system" }}{{ .Content }} '
        '{{ else if eq .Role "user" }}### Human: {{ .Content }}'
        "{{ else }}### Assistant: {{ .Content }}{EOS}{{ end }}{{ end }}### Assistant: "
    ),
    "human-assistant": (
        '{{- range .Messages }}{{ if eq .Role "system" }}{{ .Content }}\n'
        '{{ else if eq .Role "user" }}###Human: {{ .Content }} '
        "{{ else }}### Assistant: {{ .Content }}{EOS}{{ end }}{{ end }}### Assistant: "
    ),
    "llama-2": (
        '{{- range $i, $m := .Messages }}{{ if eq $m.Role "user" }}{BOS}[INST] {{ $m.Content }} [/INST]'
        '{{ else if eq $m.Role "assistant" }} {{ $m.Content }} {EOS}'
        "{{ else }}{BOS}[INST] <<SYS>>\n{{ $m.Content }}\n<</SYS>>\n\n[/INST]{{ end }}{{ end }}"
    ),
}
_ALIASES = {"llama-3.1": "llama-3", "qwen": "chatml"}


def go_template_name(template_name: str, jinja: str | None) -> str | None:
    """The Go template for a named template, or one recognised from a tokenizer's own template's markers."""
    name = _ALIASES.get(template_name, template_name)
    if name in _GO_TEMPLATES:
        return name
    if jinja:
        if "<|start_header_id|>" in jinja and "<|eot_id|>" in jinja:
            return "llama-3"
        if "<|im_start|>" in jinja and "<|im_end|>" in jinja:
            return "chatml"
    return None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def modelfile_text(
    gguf_name: str,
    template_name: str,
    jinja: str | None,
    tokenizer: Any,
    end_of_turn: str | None,
    chat: Any,
    system_prompt: str | None,
    bos_in_template: bool,
) -> str:
    lines = [
        "# Ollama Modelfile written by studio. Run: ollama create NAME -f Modelfile && ollama run NAME",
        f"FROM ./{gguf_name}",
        "",
    ]
    name = go_template_name(template_name, jinja)
    if name is None:
        lines += [
            f"# studio has no Ollama template for chat template {template_name!r}; Ollama falls back to the",
            "# chat template stored in the GGUF metadata (tokenizer.chat_template).",
            "",
        ]
    else:
        body = (
            _GO_TEMPLATES[name]
            .replace("{EOS}", tokenizer.eos_token or "")
            .replace("{BOS}", tokenizer.bos_token or "")
        )
        if bos_in_template and name != "llama-2" and tokenizer.bos_token:
            body = tokenizer.bos_token + body  # the tokenizer does not add it, the trained template wrote it
        lines += [f'TEMPLATE """{body}"""', ""]
    stops = [s for s in dict.fromkeys([end_of_turn, tokenizer.eos_token]) if s]
    lines += [f"PARAMETER stop {_quote(s)}" for s in stops]
    lines.append(f"PARAMETER temperature {0.0 if chat.greedy else chat.temperature}")
    lines.append(f"PARAMETER top_p {chat.top_p}")
    if chat.top_k:
        lines.append(f"PARAMETER top_k {chat.top_k}")
    if chat.min_p:
        lines.append(f"PARAMETER min_p {chat.min_p}")
    if chat.repetition_penalty != 1.0:
        lines.append(f"PARAMETER repeat_penalty {chat.repetition_penalty}")
    lines.append(f"PARAMETER num_predict {chat.max_new_tokens}")
    if system_prompt:
        lines += ["", f'SYSTEM """{system_prompt}"""']
    return "\n".join(lines) + "\n"
