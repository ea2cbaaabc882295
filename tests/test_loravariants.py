"""LoRA variants (DoRA, PiSSA/OLoRA/LoftQ init, LoRA+, modules_to_save, rank/alpha patterns) on the tiny model:
each reaches the model the trainer gets, bad input is refused naming its field before a run directory exists,
and what a run saves merges back onto the original base."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_worker, state_of

from lorastudio import registry
from lorastudio.errors import RecipeError, StudioError
from lorastudio.recipe import Recipe
from lorastudio.train.trainer.backend import Hardware

CPU = Hardware(False, False, "cpu")


def tiny(*overrides: str) -> Recipe:
    return registry.load("tiny-pirate", list(overrides))


def build(recipe: Recipe) -> Any:
    from lorastudio.train.trainer.backend import load_for_training

    model, _ = load_for_training(recipe, "hf", CPU)
    return model


def lora_layer(model: Any, leaf: str = "q_proj") -> Any:
    return next(m for n, m in model.named_modules() if n.endswith(f"layers.0.self_attn.{leaf}"))


def test_dora_puts_a_magnitude_vector_on_every_adapted_layer(tiny_model: Path) -> None:
    model = build(tiny("lora.use_dora=true"))
    assert model.peft_config["default"].use_dora is True
    magnitudes = [n for n, p in model.named_parameters() if "lora_magnitude_vector" in n and p.requires_grad]
    adapted = [n for n, _ in model.named_modules() if n.endswith(".lora_A.default")]
    assert len(magnitudes) == len(adapted) > 0


def test_pissa_init_differs_from_default_and_moves_the_base_weight(tiny_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    default = lora_layer(build(tiny()))
    pissa = lora_layer(build(tiny("lora.init=pissa")))
    original = AutoModelForCausalLM.from_pretrained(tiny_model).model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(default.lora_A["default"].weight, pissa.lora_A["default"].weight)
    assert torch.count_nonzero(default.lora_B["default"].weight) == 0  # default: B starts at zero
    assert torch.count_nonzero(pissa.lora_B["default"].weight) > 0  # pissa: principal components
    moved = pissa.base_layer.weight
    assert not torch.allclose(moved, original)  # the residual, W - scale * B A
    rebuilt = (
        moved + pissa.scaling["default"] * pissa.lora_B["default"].weight @ pissa.lora_A["default"].weight
    )
    assert torch.allclose(rebuilt, original, atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        (["lora.init=gaussian"], "gaussian"),
        (["lora.init=olora"], "olora"),
        (["lora.init=pissa_niter_2"], "pissa_niter_2"),
        (["lora.rank_pattern={q_proj: 4}"], "rank"),
        (["lora.alpha_pattern={v_proj: 64}"], "alpha"),
        (["lora.modules_to_save=[lm_head]"], "save"),
    ],
)
def test_each_option_reaches_the_built_model(tiny_model: Path, overrides: list[str], check: str) -> None:
    model = build(tiny(*overrides))
    config = model.peft_config["default"]
    if check in ("gaussian", "olora", "pissa_niter_2"):
        assert config.init_lora_weights == check
    elif check == "rank":
        assert lora_layer(model, "q_proj").lora_A["default"].weight.shape[0] == 4
        assert lora_layer(model, "k_proj").lora_A["default"].weight.shape[0] == 16
    elif check == "alpha":
        assert lora_layer(model, "v_proj").scaling["default"] == 64 / 16
        assert lora_layer(model, "q_proj").scaling["default"] == 32 / 16
    else:
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert any("lm_head.modules_to_save.default" in n for n in trainable)


def test_lora_plus_gives_the_trainer_two_learning_rates_in_the_ratio(
    tiny_model: Path, tmp_path: Path
) -> None:
    from lorastudio.train.trainer.loravariants import prepare_trainer
    from lorastudio.train.trainer.trainrun import build_trainer

    recipe = tiny("lora.plus_lr_ratio=16", "train.weight_decay=0.01")
    model = build(recipe)
    rows = [{"input_ids": [1, 2, 3, 4], "attention_mask": [1, 1, 1, 1], "labels": [1, 2, 3, 4]}]
    trainer = build_trainer(recipe, model, _tokenizer(), rows, [], tmp_path, CPU, [])
    prepare_trainer(recipe, trainer, tmp_path, is_main=True)
    rates = {group["lr"] for group in trainer.optimizer.param_groups if group["params"]}
    assert rates == {0.003, 0.003 * 16}
    b_ids = {id(p) for n, p in model.named_parameters() if "lora_B" in n}
    for group in trainer.optimizer.param_groups:
        if any(id(p) in b_ids for p in group["params"]):
            assert group["lr"] == 0.003 * 16
    assert type(trainer.optimizer).__name__ == "AdamW"  # train.optimizer's class, as without LoRA+


def _tokenizer() -> Any:
    from lorastudio.models.resolve import load_tokenizer

    return load_tokenizer(tiny().model)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["lora.target_modules=[q_proj, qq_proj]"],
            "lora.target_modules: 'qq_proj' matches no module of tiny",
        ),
        (["lora.modules_to_save=[lm_haed]"], "lora.modules_to_save: 'lm_haed' matches no module of tiny"),
        (["lora.rank_pattern={q_prj: 4}"], "lora.rank_pattern: 'q_prj' matches none of the modules"),
        (["lora.alpha_pattern={embed_tokens: 4}"], "lora.alpha_pattern: 'embed_tokens' matches none"),
        (["lora.rank_pattern={'q_(proj': 4}"], "lora.rank_pattern: 'q_\\(proj' is not a valid regular"),
        (
            ["lora.target_modules=all-linear", "lora.rank_pattern={lm_head: 4}"],
            "lora.rank_pattern: 'lm_head'",
        ),
    ],
)
def test_a_name_that_matches_no_module_is_refused_before_a_run_exists(
    tiny_model: Path, tmp_path: Path, overrides: list[str], message: str
) -> None:
    from lorastudio.train.launch.runs import start_run

    with pytest.raises(RecipeError, match=message.replace("{", r"\{")) as caught:
        start_run(tiny(*overrides), root=tmp_path / "runs", start=False)
    assert "q_proj" in str(caught.value) or "lm_head" in str(caught.value) or "regular" in str(caught.value)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["lora.init=loftq", "model.load_in_4bit=true"], "loftq quantizes the base itself"),
        (["lora.init=pissa", "model.load_in_4bit=true"], "pissa takes the singular vectors"),
        (["lora.init=olora", "train.method=dpo"], "olora changes the base weights"),
        (["lora.init=eva"], "eva is not supported by studio yet"),
        (["lora.init=pissa_niter_0"], "'pissa_niter_0': choose one of default, gaussian, pissa"),
        (["lora.init=Pissa"], "'Pissa': choose one of"),
        (["lora.plus_lr_ratio=0"], "lora.plus_lr_ratio"),
        (
            ["lora.plus_lr_ratio=16", "train.distributed=fsdp", "train.devices=2"],
            "LoRA\\+ builds its own optimizer, which FSDP does not accept",
        ),
        (
            ["lora.init=pissa", "lora.use_rslora=true", "lora.rank_pattern={q_proj: 4}"],
            "peft cannot convert such an adapter",
        ),
    ],
)
def test_combinations_peft_refuses_are_refused_naming_the_field(overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        tiny(*overrides)


def test_dora_on_a_stored_quantization_peft_has_no_layer_for_is_refused() -> None:
    from lorastudio.train.trainer.loravariants import check_modules

    names = ["model.layers.0.self_attn.q_proj"]
    with pytest.raises(StudioError, match="lora.use_dora: tiny is stored gptq-quantized"):
        check_modules(tiny("lora.use_dora=true", "lora.target_modules=[q_proj]"), names, names, "gptq")
    check_modules(tiny("lora.use_dora=true", "lora.target_modules=[q_proj]"), names, names, "bitsandbytes")


def test_dora_and_modules_to_save_add_to_the_memory_estimate(tiny_model: Path) -> None:
    from lorastudio.models.estimate import estimate_memory, find_model_config

    plain = estimate_memory(tiny(), gpu=False)
    dora = estimate_memory(tiny("lora.use_dora=true"), gpu=False)
    saved = estimate_memory(tiny("lora.modules_to_save=[lm_head]"), gpu=False)
    assert plain is not None and dora is not None and saved is not None
    config = find_model_config(tiny())
    assert config is not None
    h, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    kv = config["num_key_value_heads"] * (config.get("head_dim") or h // config["num_attention_heads"])
    outs = h + 2 * kv + h + 2 * config["intermediate_size"] + h  # q, k, v, o, gate, up, down
    assert dora.lora_params - plain.lora_params == layers * outs  # one magnitude per output feature
    assert saved.lora_params - plain.lora_params == vocab * h  # a whole copy of lm_head
    assert saved.total > plain.total


def _saved_run(recipe: Recipe, tmp_path: Path) -> tuple[Path, Any]:
    """A run directory whose adapter is what the worker saves after a few (simulated) steps of ``recipe``."""
    import torch

    from lorastudio.train.launch import runs
    from lorastudio.train.trainer.loravariants import save_initial
    from lorastudio.train.trainer.trainrun import save_adapter

    run_dir = runs.create_run(recipe, root=tmp_path / "runs")
    model = build(recipe)
    if recipe.lora.moves_base_weights:
        save_initial(model, run_dir)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # what training does: every trainable tensor moves a little
        for _, param in model.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * 0.02)
    save_adapter(model, _tokenizer(), run_dir)
    return run_dir, model.eval()


@pytest.mark.parametrize(
    "overrides",
    [["lora.use_dora=true"], ["lora.init=pissa"], ["lora.init=olora"], ["lora.modules_to_save=[lm_head]"]],
)
def test_merged_export_matches_the_model_as_trained(
    tiny_model: Path, tmp_path: Path, overrides: list[str]
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from lorastudio.export.exporter import ExportRequest, export

    run_dir, trained = _saved_run(tiny(*overrides), tmp_path)
    ids = torch.tensor([_tokenizer()("Ahoy, where be the treasure?")["input_ids"]])
    with torch.inference_mode():
        want = trained(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()(input_ids=ids).logits
    assert (want - base).abs().max().item() > 0.05  # the adapter changes the model
    config = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    if "lora.init=pissa" in overrides or "lora.init=olora" in overrides:
        assert config["init_lora_weights"] is True and config["r"] == 32  # converted: plain LoRA, twice r
    merged = export(ExportRequest(str(run_dir), "merged", out=tmp_path / "merged", dtype="float32"))
    with torch.inference_mode():
        got = (
            AutoModelForCausalLM.from_pretrained(merged.out, dtype=torch.float32).eval()(input_ids=ids).logits
        )
    assert (got - want).abs().max().item() < 1e-3


@pytest.mark.slow
def test_a_short_dora_run_learns_and_saves_a_dora_adapter(tiny_model: Path, tmp_path: Path) -> None:
    from lorastudio.train.launch import runs

    recipe = tiny(
        "lora.use_dora=true",
        "train.max_steps=12",
        "train.save_steps=12",
        "train.warmup_steps=0",
        "train.samples=[]",
        "data.eval_fraction=0",
    )
    run_dir = runs.create_run(recipe, root=tmp_path / "runs")
    result = run_worker(run_dir, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    state = state_of(run_dir)
    assert state.status == "done", state.cause
    losses = [value for _, value in state.loss]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    config = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert config["use_dora"] is True


def test_converting_a_pissa_adapter_mid_run_leaves_the_trained_one_as_it_was(
    tiny_model: Path, tmp_path: Path
) -> None:
    import torch

    from lorastudio.train.trainer.loravariants import INITIAL_ADAPTER, save_converted, save_initial

    model = build(tiny("lora.init=pissa"))
    save_initial(model, tmp_path)
    before = {n: (p.requires_grad, p.detach().clone()) for n, p in model.named_parameters()}
    assert save_converted(model, tmp_path / "out", tmp_path)
    after = {n: (p.requires_grad, p.detach()) for n, p in model.named_parameters()}
    assert before.keys() == after.keys() and INITIAL_ADAPTER not in model.peft_config
    assert all(before[n][0] == after[n][0] and torch.equal(before[n][1], after[n][1]) for n in before)
    assert model.active_adapter == "default"


@pytest.mark.slow
def test_a_pissa_run_saves_plain_loras_that_chat_and_export_load(tiny_model: Path, tmp_path: Path) -> None:
    from lorastudio.train.launch import runs
    from lorastudio.train.trainer.adapters import resolve_adapter
    from lorastudio.train.trainer.loravariants import INITIAL_ADAPTER, PLAIN_LORA

    recipe = tiny(
        "lora.init=pissa",
        "train.max_steps=4",
        "train.save_steps=2",
        "train.samples=[]",
        "data.eval_fraction=0",
    )
    run_dir = runs.create_run(recipe, root=tmp_path / "runs")
    result = run_worker(run_dir, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert state_of(run_dir).status == "done"
    assert (run_dir / INITIAL_ADAPTER / "adapter_config.json").exists()
    for which in ("checkpoint-2", "2", "latest", None):
        folder = resolve_adapter(run_dir, which)
        config = json.loads((folder / "adapter_config.json").read_text())
        assert (config["init_lora_weights"], config["r"]) == (True, 32), which
    assert resolve_adapter(run_dir, "checkpoint-2").name == PLAIN_LORA
    kept = json.loads((run_dir / "checkpoints" / "checkpoint-2" / "adapter_config.json").read_text())
    assert (kept["init_lora_weights"], kept["r"]) == ("pissa", 16)  # as trained: what a resume loads

    # resumed from checkpoint-2, the run re-initialises pissa, loads the checkpoint as trained and ends where
    # the uninterrupted run ended
    import shutil

    from safetensors.torch import load_file

    first = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    shutil.rmtree(run_dir / "checkpoints" / "checkpoint-4")
    result = run_worker(run_dir, "--resume", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert state_of(run_dir).status == "done"
    again = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert first.keys() == again.keys()
    assert max((first[k] - again[k]).abs().max().item() for k in first) < 1e-4


@pytest.mark.parametrize(
    ("cuda", "bitsandbytes", "message"),
    [
        (
            False,
            True,
            "lora.init: loftq runs peft's 4-bit quantizer on a CUDA GPU, and this machine has none",
        ),
        (True, False, "lora.init: loftq quantizes with bitsandbytes, which is not installed"),
        (True, True, None),
    ],
)
def test_loftq_needs_a_cuda_gpu_and_bitsandbytes(cuda: bool, bitsandbytes: bool, message: str | None) -> None:
    from lorastudio.train.trainer.loravariants import check_loftq_machine

    if message is None:
        check_loftq_machine(cuda, bitsandbytes)
    else:
        with pytest.raises(RecipeError, match=message):
            check_loftq_machine(cuda, bitsandbytes)


def test_loftq_without_a_gpu_is_refused_before_a_run_exists(tiny_model: Path, tmp_path: Path) -> None:
    import torch

    from lorastudio.train.launch.runs import start_run

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: LoftQ may run here")
    with pytest.raises(RecipeError, match="lora.init: loftq runs peft's 4-bit quantizer on a CUDA GPU"):
        start_run(tiny("lora.init=loftq"), root=tmp_path / "runs", start=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    ("backend", "overrides", "chosen"),
    [
        ("unsloth", [], "unsloth"),
        ("unsloth", ["lora.use_rslora=true"], "unsloth"),
        ("unsloth", ["lora.use_dora=true"], "hf"),
        ("unsloth", ["lora.init=olora"], "hf"),
        ("unsloth", ["lora.plus_lr_ratio=16"], "hf"),
        ("unsloth", ["lora.modules_to_save=[lm_head]"], "hf"),
        ("unsloth", ["lora.rank_pattern={q_proj: 4}"], "hf"),
        ("hf", ["lora.use_dora=true"], "hf"),
    ],
)
def test_variants_train_with_peft_not_unsloth(backend: str, overrides: list[str], chosen: str) -> None:
    from lorastudio.train.trainer.loravariants import backend_for

    assert backend_for(tiny(*overrides), backend) == chosen
