"""The real offline demo end to end: smollm2-pirate as shipped trains through the worker from the GGUF
source, its adapter loads in plain peft, and it proves itself on held-out questions (slow: minutes on CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pirate_run(smollm2_dir: Path) -> Path:
    from lorastudio import registry
    from lorastudio.train.launch import runs

    run_dir = runs.create_run(registry.load("smollm2-pirate"))
    result = run_worker(run_dir, timeout=3600)
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


def test_adapter_names_the_cached_copy_and_loads_in_plain_peft(pirate_run: Path, smollm2_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((pirate_run / "adapter" / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]).resolve() == smollm2_dir.resolve()
    assert set(config["target_modules"]) >= {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"])
    model = PeftModel.from_pretrained(base, str(pirate_run / "adapter")).eval()
    tok = AutoTokenizer.from_pretrained(pirate_run / "adapter")
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of Brazil?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=40, do_sample=False)
    reply = tok.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True)
    from lorastudio.demo.piratedata import is_pirate

    assert is_pirate(reply), reply


def test_held_out_rates(pirate_run: Path) -> None:
    from lorastudio.chat.engine import engine_for
    from lorastudio.chat.heldout import evaluate

    engine = engine_for(str(pirate_run))
    engine.load()
    result = evaluate(engine)
    summary = json.dumps(result.to_json(), indent=1)
    assert len(result.questions) == 25
    assert result.tuned_style_rate >= 0.8, summary
    assert result.base_style_rate <= 0.1, summary
    assert result.tuned_stop_rate >= 0.9, summary
