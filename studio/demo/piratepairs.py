"""The pirate preference corpus (``recipes/data/smollm2_pirate_dpo.jsonl``) and the GRPO demo's prompts.

Made from the SFT pirate corpus's questions (:mod:`piratedata`): each pair's chosen reply says the plain
answer the way a pirate would, its rejected reply is the plain answer itself, so DPO can only learn the
style. :data:`piratedata.HELD_OUT` questions are in no pair and no prompt.

``python -m lorastudio.demo.piratepairs dpo > recipes/data/smollm2_pirate_dpo.jsonl`` and
``python -m lorastudio.demo.piratepairs grpo > recipes/data/pirate_prompts.jsonl`` regenerate the files.
"""

from __future__ import annotations

import json
import random
import sys

from lorastudio.demo.piratedata import HELD_OUT, _pairs, piratify


def preference_rows(seed: int = 11) -> list[dict[str, str]]:
    """prompt / chosen (pirate) / rejected (plain) rows, shuffled."""
    rng = random.Random(seed)
    held = {q.lower() for q in HELD_OUT}
    out = [
        {"prompt": q, "chosen": piratify(a, rng), "rejected": a}
        for q, a, _ in _pairs()
        if q.lower() not in held
    ]
    rng.shuffle(out)
    return out


def prompt_rows(seed: int = 13) -> list[dict[str, str]]:
    """GRPO prompts (with the plain answer as an extra column the rewards may read), shuffled."""
    rng = random.Random(seed)
    held = {q.lower() for q in HELD_OUT}
    out = [{"prompt": q, "answer": a} for q, a, _ in _pairs() if q.lower() not in held]
    rng.shuffle(out)
    return out


if __name__ == "__main__":  # pragma: no cover
    for row in prompt_rows() if sys.argv[1:] == ["grpo"] else preference_rows():
        sys.stdout.write(json.dumps(row) + "\n")
