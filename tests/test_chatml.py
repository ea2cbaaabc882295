"""What SmolLM2's real tokenizer and ChatML template prove about masking, padding and the Preview."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import screen_of

from lorastudio.data.encode import IGNORE_INDEX, Encoder
from lorastudio.data.tokenview import pieces
from lorastudio.recipe import Recipe

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CONVERSATIONS = [
    [
        {"role": "user", "content": "Where does a fish live?"},
        {"role": "assistant", "content": "Arr, a fish be livin' in the briny deep, matey!"},
    ],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Ahoy."},
        {"role": "user", "content": "What is 2+2?\nBe quick."},
        {"role": "assistant", "content": "Four, me hearty.\n\nArr!"},
    ],
    [
        {"role": "user", "content": "  spaced  "},
        {"role": "assistant", "content": " leading space and émoji 🏴‍☠️"},
    ],
]


@pytest.fixture(scope="module")
def smol_tokenizer(smollm2_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


def smol_recipe(fmt: str = "messages", **train: Any) -> Recipe:
    return Recipe.model_validate(
        {
            "name": "t",
            "model": {"name": "smollm2-135m-instruct", "max_seq_length": 512},
            "data": {"source": "x.jsonl", "format": fmt},
            "train": train,
        }
    )


def with_generation_markers(template: str) -> str:
    """SmolLM2's template with ``{% generation %}`` around each assistant reply and its <|im_end|>."""
    plain = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    assert plain in template, "SmolLM2's template changed"
    marked = (
        "{% if message['role'] == 'assistant' %}{{'<|im_start|>assistant\n'}}{% generation %}"
        "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}{% else %}"
        + plain
        + "{% endif %}"
    )
    return template.replace(plain, marked)


def test_tokenizer_is_smollm2_chatml(smol_tokenizer: Any) -> None:
    assert (
        smol_tokenizer.pad_token == smol_tokenizer.eos_token == "<|im_end|>" and len(smol_tokenizer) == 49152
    )
    assert "<|im_start|>" in smol_tokenizer.chat_template and DEFAULT_SYSTEM in smol_tokenizer.chat_template


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_masking_equals_transformers_assistant_mask(smol_tokenizer: Any, index: int) -> None:
    conversation = CONVERSATIONS[index]
    encoder = Encoder(smol_tokenizer, smol_recipe(), "messages")
    ours = encoder.encode_row({"messages": conversation})
    theirs = smol_tokenizer.apply_chat_template(
        conversation,
        chat_template=with_generation_markers(smol_tokenizer.chat_template),
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    assert ours.input_ids == list(theirs["input_ids"])
    assert [label != IGNORE_INDEX for label in ours.labels] == [bool(m) for m in theirs["assistant_masks"]]
    assert sum(theirs["assistant_masks"]) > 0


@pytest.mark.slow  # loads SmolLM2's weights and builds a trainer
def test_padding_never_masks_trained_im_end(smol_tokenizer: Any, smollm2_dir: Path, tmp_path: Path) -> None:
    """pad == <|im_end|>: the collated batch still takes loss on every reply's <|im_end|>."""
    from transformers import AutoModelForCausalLM

    from lorastudio.train.trainer.backend import Hardware
    from lorastudio.train.trainer.trainrun import build_trainer

    recipe = smol_recipe("dolly", max_steps=1, batch_size=3)
    encoder = Encoder(smol_tokenizer, recipe, "dolly")
    rows = [
        {"instruction": "Hi", "context": "", "response": "Arr!"},
        {
            "instruction": "Tell me a long story about the sea",
            "context": "",
            "response": "Arr, once upon a tide, matey.",
        },
        {"instruction": "Why?", "context": "", "response": "Aye."},
    ]
    samples = [encoder.encode_row(r) for r in rows]
    features = [{"input_ids": s.input_ids, "labels": s.labels} for s in samples]
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    trainer = build_trainer(
        recipe, model, smol_tokenizer, features, [], tmp_path, Hardware(False, False, "cpu"), []
    )
    batch = trainer.data_collator(features)
    im_end = smol_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert smol_tokenizer.pad_token_id == im_end
    width = batch["input_ids"].shape[1]
    for row, sample in enumerate(samples):
        n = len(sample.input_ids)
        labels = batch["labels"][row].tolist()
        assert labels[:n] == sample.labels  # nothing of the sample changes, its <|im_end|> labels included
        assert labels[n:] == [IGNORE_INDEX] * (width - n)  # padding (also <|im_end|> ids) takes no loss
        trained_ends = [i for i in range(n) if labels[i] == im_end]
        assert len(trained_ends) == 1 and batch["input_ids"][row, trained_ends[0]] == im_end
    assert (batch["input_ids"] == im_end).sum() > len(samples)  # the pad positions really hold <|im_end|>


def test_preview_shows_injected_system_prompt_masked(smol_tokenizer: Any) -> None:
    encoder = Encoder(smol_tokenizer, smol_recipe("dolly"), "dolly")
    sample = encoder.encode_row(
        {"instruction": "Where does a fish live?", "context": "", "response": "Arr, in the sea!"}
    )
    shown = pieces(smol_tokenizer, sample)
    text = "".join(p.text for p in shown)
    assert DEFAULT_SYSTEM in text  # the template put it there; the row had no system prompt
    start = text.index(DEFAULT_SYSTEM)
    end = start + len(DEFAULT_SYSTEM)
    at = 0
    covered = []
    for piece in shown:
        if at < end and at + len(piece.text) > start:
            covered.append(piece)
        at += len(piece.text)
    assert covered and not any(p.trained for p in covered)
    assert "".join(p.text for p in shown if p.trained) == "Arr, in the sea!<|im_end|>"


async def test_preview_screen_of_smollm2_pirate_masks_the_system_prompt(smollm2_dir: Path) -> None:
    from lorastudio import registry
    from lorastudio.app import StudioApp
    from lorastudio.screens.preview import PreviewScreen
    from lorastudio.widgets.token_view import TokenView

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(PreviewScreen(registry.load("smollm2-pirate")))
        screen = screen_of(app, PreviewScreen)
        for _ in range(600):
            if screen.loaded and screen.query_one(TokenView).items:
                break
            await pilot.pause(0.1)
        items = screen.query_one(TokenView).items
        text = "".join(p.text for p in items)
        assert text.startswith("<|im_start|>system\n" + DEFAULT_SYSTEM)
        masked = "".join(p.text for p in items if not p.trained)
        assert DEFAULT_SYSTEM in masked and screen.prepared.encoder.template_name == "tokenizer"
        trained = "".join(p.text for p in items if p.trained)
        from lorastudio.demo.piratedata import is_pirate

        assert trained.endswith("<|im_end|>") and is_pirate(trained)
