"""The smollm2-pirate corpus: shipped as generated, varied, in pirate style, and blind to the held-out questions."""

from __future__ import annotations

import json

from lorastudio.demo import piratedata
from lorastudio.paths import package_recipes_dir


def test_shipped_file_is_the_generated_corpus() -> None:
    shipped = [json.loads(line) for line in (package_recipes_dir() / "data" / "smollm2_pirate.jsonl").open()]
    assert shipped == piratedata.rows()
    assert len(shipped) >= 300
    assert set(shipped[0]) == {"instruction", "context", "response", "category"}
    assert len({r["instruction"] for r in shipped}) == len(shipped)  # every question different
    assert all(piratedata.is_pirate(r["response"]) for r in shipped)
    assert len({r["response"].split()[0] for r in shipped}) >= 5  # openers vary


def test_held_out_questions_are_not_trained_and_plain_text_is_not_pirate() -> None:
    trained = {r["instruction"].lower() for r in piratedata.rows()}
    assert len(piratedata.HELD_OUT) == 25
    assert not trained & {q.lower() for q in piratedata.HELD_OUT}
    assert not piratedata.is_pirate("The capital of Brazil is Brasilia. Yes, you are right, yesterday.")
    assert piratedata.is_pirate("Arr, the capital be Brasilia!")
    assert piratedata.is_pirate("Ahoy there")
