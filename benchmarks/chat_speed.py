"""Streamed tokens/s through the chat engine vs plain generate() on the tiny model (goal >= 0.95), and TTFT."""

from __future__ import annotations

import time

import torch

from lorastudio.chat.engine import ChatEngine, Sampling, recipe_for_model_path
from lorastudio.models.tiny import ensure_tiny_model


def main() -> None:
    engine = ChatEngine(recipe_for_model_path(str(ensure_tiny_model())))
    engine.load()
    messages = [{"role": "user", "content": "What colour is the sky?"}]
    sampling = Sampling(greedy=True, max_new_tokens=200)
    ids = torch.tensor([engine.prompt_ids(messages)])
    plain_rates, stream_rates, ttfts = [], [], []
    assert engine.generate(messages, sampling, min_new_tokens=200).tokens == 200  # same work on both sides
    for _ in range(5):
        start = time.perf_counter()
        with torch.inference_mode():
            out = engine.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=200,
                min_new_tokens=200,
                eos_token_id=engine.stop_token_ids(),
                pad_token_id=0,
            )
        plain_rates.append((out.shape[1] - ids.shape[1]) / (time.perf_counter() - start))
        reply = engine.generate(
            messages, Sampling(greedy=True, max_new_tokens=200), on_text=lambda t: None, min_new_tokens=200
        )
        stream_rates.append(reply.tokens_per_s)
        ttfts.append(reply.first_token_s or 0)
    plain, streamed = sorted(plain_rates)[2], sorted(stream_rates)[2]
    print(
        f"plain_generate_tok_s={plain:.0f} streamed_tok_s={streamed:.0f} ratio={streamed / plain:.3f} "
        f"ttft_ms={sorted(ttfts)[2] * 1000:.1f}"
    )
    del sampling


if __name__ == "__main__":
    main()
