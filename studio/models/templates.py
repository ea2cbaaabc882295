"""Named chat templates (Jinja, as ``tokenizer.apply_chat_template`` takes them).

Each renders a list of role/content turns and honours ``add_generation_prompt``,
which is what the prefix-rendering masker in :mod:`encode` needs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NamedTemplate:
    """A chat template with the end-of-turn string that closes each assistant reply."""

    jinja: str
    end_of_turn: str | None


_LLAMA3 = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

_LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set sys = '<<SYS>>\n' + messages[0]['content'] + '\n<</SYS>>\n\n' %}{% set msgs = messages[1:] %}"
    "{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
    "{% for m in msgs %}"
    "{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + (sys if loop.first else '') + m['content'] | trim + ' [/INST]' }}"
    "{% else %}{{ ' ' + m['content'] | trim + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

_CHATML = (
    "{% for m in messages %}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_ALPACA = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] + '\n\n' }}"
    "{% elif m['role'] == 'user' %}{{ '### Instruction:\n' + m['content'] + '\n\n' }}"
    "{% else %}{{ '### Response:\n' + m['content'] + eos_token + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)

_GUANACO = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] + ' ' }}"
    "{% elif m['role'] == 'user' %}{{ '### Human: ' + m['content'] }}"
    "{% else %}{{ '### Assistant: ' + m['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant: ' }}{% endif %}"
)

_HUMAN_ASSISTANT = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] + '\n' }}"
    "{% elif m['role'] == 'user' %}{{ '###Human: ' + m['content'] + ' ' }}"
    "{% else %}{{ '### Assistant: ' + m['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant: ' }}{% endif %}"
)

TEMPLATES: dict[str, NamedTemplate] = {
    "llama-3.1": NamedTemplate(_LLAMA3, "<|eot_id|>"),
    "llama-3": NamedTemplate(_LLAMA3, "<|eot_id|>"),
    "llama-2": NamedTemplate(_LLAMA2, None),
    "chatml": NamedTemplate(_CHATML, "<|im_end|>"),
    "qwen": NamedTemplate(_CHATML, "<|im_end|>"),
    "alpaca": NamedTemplate(_ALPACA, None),
    "guanaco": NamedTemplate(_GUANACO, None),
    "human-assistant": NamedTemplate(_HUMAN_ASSISTANT, None),
}
"""Templates by name; ``None`` as end of turn means the tokenizer's eos token."""

# Raw-text formats carry their own markers; this is the template that renders them back.
TEMPLATE_FOR_TEXT_FORMAT = {"guanaco": "guanaco", "llama2": "llama-2", "human_assistant": "human-assistant"}
