"""studio export: merged == base + adapter (through peft, independently of our code), GGUF read back by
transformers' own loader, the Modelfile, sizes, push offline and token hygiene, and bad input."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import STUDIO_BIN, run_worker

from lorastudio.errors import StudioError
from lorastudio.export.exporter import ExportRequest, estimate_bytes, export

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What colour is the sky?"},
]


@pytest.fixture(scope="module")
def short_run(tiny_model: Path) -> Path:
    """tiny-pirate for 10 steps, checkpoints at 5 and 10: a real adapter with nonzero B in seconds."""
    from lorastudio import registry
    from lorastudio.train.launch import runs

    run_dir = runs.create_run(registry.load("tiny-pirate", ["train.max_steps=10", "train.save_steps=5"]))
    result = run_worker(run_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


def prompt_ids(tokenizer) -> list[int]:
    return tokenizer.apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]


def logits(model, ids: list[int]):
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


@pytest.fixture(scope="module")
def reference(short_run: Path, tiny_model: Path):
    """Base + adapter through peft, loaded here without any studio code, and the base alone."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = prompt_ids(tokenizer)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    base_logits = logits(base, ids)
    tuned = PeftModel.from_pretrained(base, str(short_run / "adapter")).eval()
    return ids, base_logits, logits(tuned, ids), tokenizer


@pytest.fixture(scope="module")
def merged_fp32(short_run: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("exports") / "merged-fp32"
    return export(ExportRequest(str(short_run), "merged", out=out, dtype="float32"))


def test_merged_matches_base_plus_adapter(merged_fp32, reference) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids, base_logits, tuned_logits, tokenizer = reference
    out = merged_fp32.out
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").exists()
    model = AutoModelForCausalLM.from_pretrained(
        out, dtype=torch.float32
    ).eval()  # plain transformers, no peft
    diff = (logits(model, ids) - tuned_logits).abs().max().item()
    assert diff < 1e-3, diff
    assert (tuned_logits - base_logits).abs().max().item() > 0.05  # the adapter really changes the model
    exported = AutoTokenizer.from_pretrained(out)
    assert prompt_ids(exported) == ids
    assert exported.apply_chat_template(MESSAGES, tokenize=False) == tokenizer.apply_chat_template(
        MESSAGES, tokenize=False
    )
    gen = json.loads((out / "generation_config.json").read_text())
    assert tokenizer.convert_tokens_to_ids("<|eot_id|>") in (
        gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
    )
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["export"]["format"] == "merged" and manifest["base_model"] == "tiny"
    assert "tiny-pirate" in (out / "README.md").read_text() and (out / "recipe.yaml").exists()


def test_merged_default_is_16_bit_and_sizes_match_the_estimate(
    short_run: Path, reference, tmp_path: Path
) -> None:
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    ids, _, tuned_logits, _ = reference
    result = export(ExportRequest(str(short_run), "merged", out=tmp_path / "m16"))
    with safe_open(str(result.out / "model.safetensors"), "pt") as handle:
        names = handle.keys()
        dtypes = {handle.get_tensor(k).dtype for k in names}
    assert dtypes == {torch.float16}
    model = AutoModelForCausalLM.from_pretrained(result.out, dtype=torch.float32).eval()
    assert (logits(model, ids) - tuned_logits).abs().max().item() < 5e-2
    assert (
        result.estimated_bytes
        and abs(result.estimated_bytes - result.measured_bytes) / result.measured_bytes < 0.25
    )


def test_chat_accepts_a_merged_export(merged_fp32, short_run: Path) -> None:
    from lorastudio.chat.engine import Sampling, engine_for

    greedy = Sampling(greedy=True, max_new_tokens=16)
    run_engine = engine_for(str(short_run))
    run_engine.load()
    export_engine = engine_for(str(merged_fp32.out))
    export_engine.load()
    assert not export_engine.has_adapter
    assert export_engine.generate(MESSAGES, greedy).text == run_engine.generate(MESSAGES, greedy).text


def test_adapter_export_holds_adapter_tokenizer_template_and_card(
    short_run: Path, reference, tmp_path: Path
) -> None:
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    from lorastudio.chat.engine import engine_for

    ids, _, tuned_logits, tokenizer = reference
    result = export(ExportRequest(str(short_run), "adapter", out=tmp_path / "adapter"))
    out = result.out
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "README.md",
        "recipe.yaml",
    ):
        assert (out / name).exists(), name
    card = (out / "README.md").read_text()
    assert "studio's offline tiny model" in card and "tiny-pirate" in card and "r=16" in card
    assert AutoTokenizer.from_pretrained(out).chat_template == tokenizer.chat_template
    model = AutoPeftModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    assert (logits(model, ids) - tuned_logits).abs().max().item() < 1e-5
    assert engine_for(str(out)).has_adapter
    assert result.estimated_bytes is not None
    assert abs(result.estimated_bytes - result.measured_bytes) / result.measured_bytes < 0.25


def test_checkpoint_export_uses_that_checkpoint(short_run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    result = export(ExportRequest(str(short_run), "adapter", checkpoint=5, out=tmp_path / "a5"))
    five = load_file(str(result.out / "adapter_model.safetensors"))
    final = load_file(str(short_run / "adapter" / "adapter_model.safetensors"))
    assert five.keys() == final.keys() and any((five[k] - final[k]).abs().max() > 0 for k in five)
    assert "checkpoint 5" in json.loads((result.out / "export.json").read_text())["export"]["source"]


@pytest.fixture(scope="module")
def gguf_f16(short_run: Path, tmp_path_factory: pytest.TempPathFactory):
    return export(
        ExportRequest(str(short_run), "gguf", quant="f16", out=tmp_path_factory.mktemp("g") / "f16")
    )


def test_gguf_f16_reads_back_in_transformers(gguf_f16, merged_fp32, reference) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids, _, _, tokenizer = reference
    name = next(f for f in gguf_f16.files if f.endswith(".gguf"))
    model = AutoModelForCausalLM.from_pretrained(gguf_f16.out, gguf_file=name, dtype=torch.float32).eval()
    merged = AutoModelForCausalLM.from_pretrained(merged_fp32.out, dtype=torch.float32).eval()
    diff = (logits(model, ids) - logits(merged, ids)).abs().max().item()
    assert diff < 5e-2, diff
    back = AutoTokenizer.from_pretrained(gguf_f16.out, gguf_file=name)
    text = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert back.chat_template == tokenizer.chat_template
    assert back.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False) == text
    for sample in (text, "Arr, héllo ☠ matey! 1234 the sky's blue.\n\nDone."):
        assert (
            back(sample, add_special_tokens=False)["input_ids"]
            == tokenizer(sample, add_special_tokens=False)["input_ids"]
        )


def test_gguf_modelfile_and_metadata(gguf_f16) -> None:
    from gguf import GGUFReader

    out = gguf_f16.out
    modelfile = (out / "Modelfile").read_text()
    name = next(f for f in gguf_f16.files if f.endswith(".gguf"))
    assert f"FROM ./{name}" in modelfile
    assert 'PARAMETER stop "<|eot_id|>"' in modelfile and "PARAMETER temperature 0.0" in modelfile
    assert "PARAMETER num_predict 40" in modelfile
    # The tiny template writes the BOS itself: the GGUF has the runtime add it, so the Go template does not.
    assert (
        'TEMPLATE """{{ $first := true }}{{ range .Messages }}{{ if eq .Role "system" }}<|start_header'
        in modelfile
    )
    reader = GGUFReader(out / name)
    fields = reader.fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "llama"
    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "gpt2"
    assert len(fields["tokenizer.ggml.merges"].data) > 100 and "tokenizer.ggml.eot_token_id" in fields
    assert bool(fields["tokenizer.ggml.add_bos_token"].parts[-1][0]) is True
    assert float(fields["general.sampling.temp"].parts[-1][0]) == 0.0  # the recipe's chat is greedy
    card = (out / "README.md").read_text()
    assert "## Chat settings" in card and "- max_new_tokens: 40" in card and "- temperature: 0.0" in card
    assert "output.weight" not in {t.name for t in reader.tensors}  # tied embeddings are not duplicated
    assert abs(gguf_f16.estimated_bytes - gguf_f16.measured_bytes) / gguf_f16.measured_bytes < 0.25


def test_gguf_q8_0_reads_back_close(
    short_run: Path, merged_fp32, gguf_f16, reference, tmp_path: Path
) -> None:
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType, GGUFReader
    from transformers import AutoModelForCausalLM

    ids = reference[0]
    result = export(ExportRequest(str(short_run), "gguf", quant="q8_0", out=tmp_path / "q8"))
    name = next(f for f in result.files if f.endswith(".gguf"))
    reader = GGUFReader(result.out / name)
    kinds = {t.name: t.tensor_type for t in reader.tensors}
    assert kinds["blk.0.attn_q.weight"] == GGMLQuantizationType.Q8_0
    assert kinds["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32
    model = AutoModelForCausalLM.from_pretrained(result.out, gguf_file=name, dtype=torch.float32).eval()
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.parameters())
    merged = AutoModelForCausalLM.from_pretrained(merged_fp32.out, dtype=torch.float32).eval()
    diff = (logits(model, ids) - logits(merged, ids)).abs().max().item()
    assert diff < 0.25, diff  # q8_0 bound; measured 0.01-0.05 on the tiny model
    assert result.measured_bytes < 0.75 * gguf_f16.measured_bytes


# -- bad input --------------------------------------------------------------------------------------
def test_unknown_run_and_missing_checkpoint(short_run: Path, tmp_path: Path) -> None:
    with pytest.raises(StudioError, match="no such run"):
        export(ExportRequest("no-such-run-anywhere", "adapter", out=tmp_path / "x"))
    with pytest.raises(StudioError, match=r"--checkpoint 7: .* no such checkpoint \(it has: 5, 10\)"):
        export(ExportRequest(str(short_run), "adapter", checkpoint=7, out=tmp_path / "x"))
    with pytest.raises(StudioError, match="--quant q4_k_m"):
        export(ExportRequest(str(short_run), "gguf", quant="q4_k_m", out=tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_run_without_adapter_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    from lorastudio import registry
    from lorastudio.train.launch import runs

    run_dir = runs.create_run(registry.load("tiny-pirate"))
    with pytest.raises(StudioError, match="has no adapter yet"):
        export(ExportRequest(str(run_dir), "merged", out=tmp_path / "x"))


def test_non_empty_out_is_refused_unless_forced(short_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(StudioError, match="exists and is not empty"):
        export(ExportRequest(str(short_run), "adapter", out=out))
    assert (out / "keep.txt").read_text() == "mine"
    result = export(ExportRequest(str(short_run), "adapter", out=out, force=True))
    assert not (out / "keep.txt").exists() and (result.out / "adapter_config.json").exists()


def test_unsupported_architecture_gets_a_clear_message(tmp_path: Path, tiny_model: Path) -> None:
    from transformers import GPT2Config

    base = tmp_path / "gpt2-base"
    GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100).save_pretrained(base)
    run_dir = tmp_path / "runs" / "gpt2-run"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"format": 1, "name": "gpt2-run", "recipe": "g"}))
    (run_dir / "recipe.yaml").write_text(f"name: g\nmodel:\n  name: {base}\ndata:\n  source: x.jsonl\n")
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(
        StudioError, match=r"'gpt2' models are not supported; GGUF export covers Llama, Mistral"
    ):
        export(ExportRequest(str(run_dir), "gguf", out=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_disk_full_mid_write_leaves_nothing(short_run: Path, tmp_path: Path, monkeypatch) -> None:
    import gguf

    real = gguf.GGUFWriter.write_tensors_to_file

    def fail_half_way(self, *args, **kwargs):
        self.fout[0].write(b"\0" * 4096)  # some bytes really reach the file first
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", fail_half_way)
    parent = tmp_path / "exports"
    with pytest.raises(StudioError, match="disk full"):
        export(ExportRequest(str(short_run), "gguf", out=parent / "g"))
    assert not parent.exists() or list(parent.iterdir()) == []  # no target, no hidden partial folder
    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", real)


def test_unwritable_out_dir(short_run: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(StudioError, match="cannot create the folder"):
            export(ExportRequest(str(short_run), "adapter", out=locked / "a"))
    finally:
        locked.chmod(0o700)


# -- CLI and push -----------------------------------------------------------------------------------
def test_cli_export_json_and_errors(short_run: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [STUDIO_BIN, "export", str(short_run), "--format", "adapter", "--out", str(tmp_path / "a"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["format"] == "adapter" and data["measured_bytes"] > 0 and Path(data["out"]).is_dir()
    missing = subprocess.run(
        [STUDIO_BIN, "export", "nope", "--format", "merged"], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no such run" in missing.stderr and "Traceback" not in missing.stderr


def test_push_offline_keeps_the_export(short_run: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            STUDIO_BIN,
            "export",
            str(short_run),
            "--format",
            "adapter",
            "--out",
            str(tmp_path / "a"),
            "--push",
            "me/pirate",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "offline" in out.stderr and "the export stays at" in out.stderr
    assert (tmp_path / "a" / "adapter_config.json").exists()


def test_push_unreachable_hub_never_writes_the_token(short_run: Path, tmp_path: Path) -> None:
    secret = "hf_studioTestSecretToken0123456789"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "HF_TOKEN": secret,
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_ETAG_TIMEOUT": "2",
        "HF_HUB_DOWNLOAD_TIMEOUT": "2",
    }
    out = subprocess.run(
        [
            STUDIO_BIN,
            "export",
            str(short_run),
            "--format",
            "adapter",
            "--out",
            str(tmp_path / "a"),
            "--push",
            "me/pirate",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert out.returncode == 2, out.stderr
    assert (
        "nothing uploaded to http://127.0.0.1:9: the hub cannot be reached: no connection to 127.0.0.1:9"
        in out.stderr
    )
    assert secret not in out.stdout + out.stderr
    for folder in (short_run, tmp_path):
        for path in folder.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    again = subprocess.run(
        [STUDIO_BIN, "export", str(tmp_path / "a"), "--push", "me/pirate"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert (
        again.returncode == 2 and "the hub cannot be reached" in again.stderr and secret not in again.stderr
    )


def test_estimate_only(short_run: Path) -> None:
    size = estimate_bytes(ExportRequest(str(short_run), "gguf", quant="q8_0"))
    f16 = estimate_bytes(ExportRequest(str(short_run), "gguf", quant="f16"))
    assert size and f16 and size < f16


# -- SmolLM2 (real model, slow) -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2_base(smollm2_dir: Path) -> Path:
    """SmolLM2-135M-Instruct as a plain transformers folder (the shared, dequantized GGUF)."""
    return smollm2_dir


@pytest.fixture(scope="module")
def smollm2_run(smollm2_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory whose adapter is a random-init LoRA (nonzero B) on SmolLM2: no training needed."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = tmp_path_factory.mktemp("runs") / "smollm2-random-lora"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(
        json.dumps({"format": 1, "name": run_dir.name, "recipe": "smollm2-lora"})
    )
    (run_dir / "recipe.yaml").write_text(
        f"name: smollm2-lora\nmodel:\n  name: {smollm2_base}\n"
        "data:\n  source: x.jsonl\n  format: messages\nlora:\n  r: 8\n  alpha: 16\n"
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(smollm2_base, dtype=torch.float32)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # keep the random update small, as a trained one is
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.05)
    peft_model.save_pretrained(run_dir / "adapter")
    AutoTokenizer.from_pretrained(smollm2_base).save_pretrained(run_dir / "adapter")
    return run_dir


@pytest.mark.slow
def test_smollm2_merged_and_gguf_match_base_plus_adapter(
    smollm2_run: Path, smollm2_base: Path, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_base)
    ids = prompt_ids(tokenizer)
    base = AutoModelForCausalLM.from_pretrained(smollm2_base, dtype=torch.float32).eval()
    base_logits = logits(base, ids)
    tuned_logits = logits(PeftModel.from_pretrained(base, str(smollm2_run / "adapter")).eval(), ids)
    assert (tuned_logits - base_logits).abs().max().item() > 0.05

    merged = export(ExportRequest(str(smollm2_run), "merged", out=tmp_path / "merged", dtype="float32"))
    merged_model = AutoModelForCausalLM.from_pretrained(merged.out, dtype=torch.float32).eval()
    merged_logits = logits(merged_model, ids)
    assert (merged_logits - tuned_logits).abs().max().item() < 1e-3

    gguf = export(ExportRequest(str(smollm2_run), "gguf", quant="f16", out=tmp_path / "gguf"))
    name = next(f for f in gguf.files if f.endswith(".gguf"))
    back = AutoModelForCausalLM.from_pretrained(gguf.out, gguf_file=name, dtype=torch.float32).eval()
    assert (logits(back, ids) - merged_logits).abs().max().item() < 5e-2
    assert 'PARAMETER stop "<|im_end|>"' in (gguf.out / "Modelfile").read_text()


def test_chat_with_a_gguf_export(gguf_f16, merged_fp32, tmp_path: Path) -> None:
    from lorastudio.chat.engine import Sampling, engine_for

    name = next(f for f in gguf_f16.files if f.endswith(".gguf"))
    engine = engine_for(str(gguf_f16.out / name))
    assert (
        engine_for(str(gguf_f16.out)).recipe.model.name == engine.recipe.model.name
    )  # the folder names its .gguf
    engine.load()
    assert not engine.has_adapter
    merged = engine_for(str(merged_fp32.out))
    merged.load()
    greedy = Sampling(greedy=True, max_new_tokens=16)
    # f16 weights: greedy decoding of the tiny model follows the merged fp32 model token for token
    assert engine.generate(MESSAGES, greedy).text == merged.generate(MESSAGES, greedy).text
    with pytest.raises(StudioError, match="no such GGUF file"):
        engine_for(str(tmp_path / "missing.gguf"))
