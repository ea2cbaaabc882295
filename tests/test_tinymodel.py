"""The offline tiny base model: builds deterministically, reloads, renders its chat template, answers plainly."""

from __future__ import annotations

import json
from pathlib import Path

from lorastudio.demo import tinydata
from lorastudio.models.tiny import CONFIG, MARKER, is_built


def test_tiny_model_builds_and_reloads(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    assert is_built(tiny_model)
    info = json.loads((tiny_model / MARKER).read_text())
    assert info["final_loss"] < 0.6
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.hidden_size == CONFIG["hidden_size"]
    for module in model.modules():
        if module.__class__.__name__ == "Linear" and module is not model.lm_head:
            assert module.in_features % 32 == 0
            assert module.out_features % 32 == 0


def test_chat_template_renders_a_conversation(tiny_tokenizer) -> None:
    text = tiny_tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi?"},
            {"role": "assistant", "content": "Hello."},
        ],
        tokenize=False,
    )
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
    )
    prompt = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi?"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_base_model_answers_held_out_questions_plainly(tiny_model: Path, tiny_tokenizer) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    replies = []
    for question in tinydata.held_out_questions()[:10]:
        ids = tiny_tokenizer.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        out = model.generate(**ids, max_new_tokens=20, do_sample=False)
        replies.append(tiny_tokenizer.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True))
    assert not any(tinydata.PIRATE_RE.search(r) for r in replies)
    # plain style: a sentence that restates the subject and ends with a full stop
    assert sum(r.strip().endswith(".") for r in replies) >= 8


def test_held_out_questions_are_not_in_training_data() -> None:
    held = set(tinydata.held_out_questions())
    assert held
    assert not held & {r["instruction"] for r in tinydata.pirate_rows()}
    assert not held & {c[0]["content"] for c in tinydata.pretrain_conversations()}
