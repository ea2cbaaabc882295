"""The offline tiny base model: a byte-level BPE tokenizer and a small Llama,
built and briefly pretrained on this machine, deterministically, with no hub.

Linear widths are multiples of 32 so bitsandbytes 4-bit works on it on CPU.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from lorastudio.demo import tinydata
from lorastudio.models.cachelock import folder_lock
from lorastudio.models.templates import TEMPLATES
from lorastudio.paths import tiny_model_dir
from lorastudio.progress import Progress

BUILD_VERSION = 3
"""Bump when the corpus, tokenizer or architecture changes: caches are rebuilt."""

SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|pad|>",
]
CONFIG = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}
PRETRAIN_STEPS = 450
PRETRAIN_BATCH = 32
PRETRAIN_LR = 3e-3
SEED = 1234
MARKER = "studio-tiny.json"


def is_built(path: Path | None = None) -> bool:
    marker = (path or tiny_model_dir()) / MARKER
    try:
        return json.loads(marker.read_text()).get("version") == BUILD_VERSION
    except (OSError, ValueError):
        return False


def ensure_tiny_model(progress: Progress | None = None, path: Path | None = None) -> Path:
    """Return the tiny model folder, building it first if the cache lacks it (about 30 s on 2 cores)."""
    target = path or tiny_model_dir()
    if is_built(target):
        return target
    with folder_lock(target, "building the tiny model", progress):
        if not is_built(target):  # another process may have built it while we waited
            build(target, progress)
    return target


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)


def build_tokenizer():  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = []
    train, held = tinydata.split_pairs()
    for q, a in train + held:
        texts += [q, a, tinydata.pirate(a)]
    texts += ["You are a helpful assistant.", "Hello! How can I help you today?"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=640,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|pad|>",
        model_max_length=CONFIG["max_position_embeddings"],
    )
    fast.chat_template = TEMPLATES["llama-3"].jinja
    return fast


def build(target: Path, progress: Progress | None = None) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    started = time.monotonic()
    _report(progress, 0.0, "training the BPE tokenizer")
    torch.manual_seed(SEED)
    tokenizer = build_tokenizer()
    convs = tinydata.pretrain_conversations()
    encoded = [tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"] for c in convs]
    _report(progress, 0.05, "building the model")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **CONFIG,
    )
    model = LlamaForCausalLM(config)
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        optim, max_lr=PRETRAIN_LR, total_steps=PRETRAIN_STEPS, pct_start=0.1
    )
    gen = torch.Generator().manual_seed(SEED)
    pad = tokenizer.pad_token_id
    for step in range(PRETRAIN_STEPS):
        idx = torch.randint(len(encoded), (PRETRAIN_BATCH,), generator=gen).tolist()
        batch = [encoded[i] for i in idx]
        width = max(len(b) for b in batch)
        ids = torch.full((len(batch), width), pad)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        if step % 10 == 0 or step == PRETRAIN_STEPS - 1:
            _report(
                progress,
                0.05 + 0.9 * (step + 1) / PRETRAIN_STEPS,
                f"pretraining step {step + 1}/{PRETRAIN_STEPS}  loss {loss.item():.3f}",
            )
    _report(progress, 0.97, "saving")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.eval()
    model.generation_config.pad_token_id = pad
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / MARKER).write_text(
        json.dumps(
            {
                "version": BUILD_VERSION,
                "seconds": round(time.monotonic() - started, 1),
                "final_loss": round(loss.item(), 4),
                "parameters": sum(p.numel() for p in model.parameters()),
            }
        )
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    _report(progress, 1.0, f"built in {time.monotonic() - started:.1f} s")
    return target
