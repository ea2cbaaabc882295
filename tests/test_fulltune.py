"""Full and freeze tuning, continued pretraining and the embeddings' own learning rate (issue 41, part 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_worker, screen_of, state_of, wait_until

from lorastudio import registry
from lorastudio.errors import RecipeError


def _load(name: str, *overrides: str):
    return registry.load(name, list(overrides))


# -- bad input -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("recipe", "overrides", "names"),
    [
        ("tiny-pirate", ["train.tuning=freeze"], "train.tuning: freeze needs train.freeze_trainable_layers"),
        (
            "tiny-pirate",
            ["train.freeze_trainable_layers=2"],
            "train.freeze_trainable_layers is for train.tuning",
        ),
        (
            "tiny-pirate",
            ["train.freeze_trainable_modules=[mlp]"],
            "train.freeze_trainable_modules is for train.tuning",
        ),
        (
            "tiny-pirate",
            ["train.tuning=freeze", "train.freeze_trainable_layers=0"],
            "freeze_trainable_layers",
        ),
        ("tiny-pirate", ["train.tuning=full", "model.load_in_4bit=true"], "model.load_in_4bit: false"),
        ("tiny-pirate", ["train.tuning=sideways"], "train.tuning"),
        ("tiny-pirate", ["train.tuning=full", "model.adapter=some-run"], "model.adapter"),
        ("tiny-pirate", ["train.tuning=full", "train.method=kto"], "train.method kto trains a LoRA adapter"),
        ("tiny-pretrain", ["train.packing=false"], "train.packing: False, but train.method: pretrain"),
        (
            "tiny-pretrain",
            ["train.train_on=responses"],
            "train.train_on: 'responses', but train.method: pretrain",
        ),
        ("tiny-pretrain", ["train.embedding_learning_rate=0"], "train.embedding_learning_rate"),
    ],
)
def test_bad_tuning_settings_are_refused_naming_the_field(
    recipe: str, overrides: list[str], names: str
) -> None:
    with pytest.raises(RecipeError) as err:
        _load(recipe, *overrides)
    assert names in str(err.value)


def test_pretrain_turns_packing_and_all_tokens_on() -> None:
    recipe = _load("tiny-pretrain")
    assert (recipe.train.method, recipe.train.packing, recipe.train.train_on) == ("pretrain", True, "all")
    assert recipe.train.supervised and recipe.method_section() is None
    assert recipe.method == "Full+PRETRAIN"
    lora = _load("tiny-pirate", "train.method=pretrain", "train.train_on=all", "data.format=text")
    assert (lora.train.packing, lora.train.train_on, lora.method) == (True, "all", "LoRA+PRETRAIN")


# -- freeze: which weights train -------------------------------------------------------------------------------
def _trainable(tiny_model: Path, *overrides: str) -> set[str]:
    from lorastudio.train.trainer.backend import detect_hardware, load_full_for_training

    recipe = _load("tiny-pirate", "train.tuning=freeze", *overrides)
    model, _ = load_full_for_training(recipe, str(tiny_model), detect_hardware())
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_freeze_last_layers_trains_only_them(tiny_model: Path) -> None:
    names = _trainable(tiny_model, "train.freeze_trainable_layers=1")
    assert names and all(n.startswith("model.layers.3.") for n in names)
    assert {n.split(".")[3] for n in names} == {
        "self_attn",
        "mlp",
        "input_layernorm",
        "post_attention_layernorm",
    }


def test_freeze_named_modules_in_the_last_layers(tiny_model: Path) -> None:
    names = _trainable(
        tiny_model, "train.freeze_trainable_layers=2", "train.freeze_trainable_modules=[mlp,lm_head]"
    )
    layers = {n.split(".")[2] for n in names if n.startswith("model.layers.")}
    assert layers == {"2", "3"}
    assert all(".mlp." in n for n in names if n.startswith("model.layers."))
    # the tiny model ties lm_head to the embeddings: named, it trains them (one tensor, two names)
    assert "model.embed_tokens.weight" in names


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["train.freeze_trainable_layers=9"],
            "train.freeze_trainable_layers: 9, but tiny has 4 layers; give 1 to 4",
        ),
        (
            ["train.freeze_trainable_modules=[mlp,attention]"],
            "train.freeze_trainable_modules: 'attention' is not a module of tiny",
        ),
        (["train.freeze_trainable_modules=[foo,bar]"], "'foo', 'bar' are not modules of tiny"),
    ],
)
def test_freeze_refuses_what_the_model_lacks(tiny_model: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError) as err:
        _trainable(tiny_model, *overrides)
    assert message in str(err.value)
    if "modules" in message:  # says what the layers do have
        assert "(its layers have down_proj, gate_proj, input_layernorm, k_proj, mlp," in str(err.value)


# -- packing for continued pretraining --------------------------------------------------------------------------
def test_md_and_txt_corpus_folder_reads_paragraphs_as_documents(tmp_path: Path) -> None:
    from lorastudio.data.datasource import load_local

    (tmp_path / "a.md").write_text("# Title\n\nFirst paragraph.\n\nSecond\nparagraph.\n")
    (tmp_path / "b.txt").write_text("Third.\n")
    rows = load_local(tmp_path)
    assert [r["text"] for r in rows.rows] == ["# Title", "First paragraph.", "Second\nparagraph.", "Third."]


def test_readme_beside_data_files_is_not_data(tmp_path: Path) -> None:
    from lorastudio.data.datasource import load_local

    (tmp_path / "README.md").write_text("# A data set\n")
    (tmp_path / "train.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    assert [r["text"] for r in load_local(tmp_path).rows] == ["hello"]


def _pretrain_trainer(tiny_model: Path, tmp_path: Path, *overrides: str):
    from lorastudio.train.trainer.backend import detect_hardware, load_for_training
    from lorastudio.train.trainer.trainrun import build_trainer, encode_for_training

    recipe = _load("tiny-pretrain", *overrides)
    hw = detect_hardware()
    model, tokenizer = load_for_training(recipe, "hf", hw)
    train, evals, _ = encode_for_training(recipe, tokenizer)
    return build_trainer(recipe, model, tokenizer, train, evals, tmp_path, hw, []), train


def test_pretrain_batches_restart_positions_and_attention_at_each_document(
    tiny_model: Path, tmp_path: Path
) -> None:
    import torch

    trainer, train = _pretrain_trainer(tiny_model, tmp_path)
    rows = [train[0], train[1]]
    assert all(len(r["seq_lengths"]) > 1 for r in rows)  # several documents in each packed sequence
    batch = trainer.data_collator(rows)
    positions, labels = batch["position_ids"][0].tolist(), batch["labels"][0].tolist()
    lengths = [n for r in rows for n in r["seq_lengths"]]
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    assert [i for i, p in enumerate(positions) if p == 0] == starts
    assert all(labels[s] == -100 for s in starts)  # no document is predicted from the one before it
    assert "attention_mask" not in batch  # so the model separates the documents by their positions
    # the model sees each document alone: its logits in the pack are those of the document by itself
    model = trainer.model.eval()
    ids = batch["input_ids"]
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=batch["position_ids"]).logits[0]
        second = slice(starts[1], starts[2])
        alone = model(input_ids=ids[:, second]).logits[0]
    assert torch.allclose(packed[second], alone, atol=1e-4)


def test_embedding_learning_rate_has_its_own_group(tiny_model: Path, tmp_path: Path) -> None:
    trainer, _ = _pretrain_trainer(tiny_model, tmp_path)
    optimizer = trainer.create_optimizer()
    embed = trainer.model.get_input_embeddings().weight
    groups = [g for g in optimizer.param_groups if any(p is embed for p in g["params"])]
    assert len(groups) == 1 and groups[0]["lr"] == 0.0002
    others = [g for g in optimizer.param_groups if g is not groups[0]]
    assert others and all(g["lr"] == 0.001 for g in others)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(trainer.model.parameters()))


def test_embedding_learning_rate_with_lora_trains_the_embeddings_in_full(
    tiny_model: Path, tmp_path: Path
) -> None:
    trainer, _ = _pretrain_trainer(tiny_model, tmp_path, "train.tuning=lora")
    trained = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert any("embed_tokens.modules_to_save" in n for n in trained)
    optimizer = trainer.create_optimizer()
    lrs = sorted({g["lr"] for g in optimizer.param_groups})
    assert lrs == [0.0002, 0.001]


# -- the memory estimate -----------------------------------------------------------------------------------------
def test_estimate_counts_gradients_and_optimizer_of_the_trainable_part(tiny_model: Path) -> None:
    from lorastudio.models.estimate import estimate_memory

    lora = estimate_memory(_load("tiny-pirate"), gpu=True)
    full = estimate_memory(_load("tiny-pirate", "train.tuning=full"), gpu=True)
    freeze = estimate_memory(
        _load("tiny-pirate", "train.tuning=freeze", "train.freeze_trainable_layers=1"), gpu=True
    )
    mlp = estimate_memory(
        _load("tiny-pirate", "train.tuning=freeze", "train.freeze_trainable_modules=[mlp]"), gpu=True
    )
    eight = estimate_memory(_load("tiny-pirate", "train.tuning=full", "train.optimizer=adamw_8bit"), gpu=True)
    assert lora and full and freeze and mlp and eight and full.source == "config.json"
    assert (
        full.lora_params == full.params and "gradients" in full.breakdown() and "LoRA" not in full.breakdown()
    )
    assert full.lora == full.params * 2 and full.optimizer == full.params * 4  # bf16 grads, two bf16 moments
    h, inter = 128, 384
    assert mlp.lora_params == 4 * 3 * h * inter  # the tiny model's 4 layers' gated MLPs
    assert 0 < freeze.lora_params < full.params / 4
    assert eight.optimizer == full.params * 2
    assert freeze.total < full.total  # (LoRA r=16 on the tiny model outweighs one of its layers)


def test_a_full_run_that_will_not_fit_is_refused_naming_both_figures(tiny_model: Path) -> None:
    from lorastudio.models.estimate import check_fits

    recipe = _load("tiny-pirate", "train.tuning=full")
    with pytest.raises(RecipeError) as err:
        check_fits(recipe, True, 0.01 * 1024**3)
    assert "train.tuning: full needs about" in str(err.value) and "has 0.0 GB free" in str(err.value)
    assert "gradients" in str(err.value)
    check_fits(recipe, True, 80 * 1024**3)  # fits: nothing said
    check_fits(_load("tiny-pirate"), True, 1.0)  # LoRA: judged by the Launch sheet, as before


def test_create_run_refuses_a_full_run_too_big_for_this_machine(tiny_model: Path, tmp_path: Path) -> None:
    from lorastudio.train.launch import runs

    recipe = _load("tiny-pirate", "train.tuning=full", "train.batch_size=1000000")  # terabytes of logits
    with pytest.raises(RecipeError) as err:
        runs.create_run(recipe, root=tmp_path)
    assert "train.tuning: full needs about" in str(err.value) and "GB free" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # no run directory without a status


def test_create_run_refuses_freeze_modules_the_model_lacks(tiny_model: Path, tmp_path: Path) -> None:
    from lorastudio.train.launch import runs

    recipe = _load("tiny-pirate", "train.tuning=freeze", "train.freeze_trainable_modules=[attn]")
    with pytest.raises(RecipeError) as err:
        runs.create_run(recipe, root=tmp_path)
    assert "train.freeze_trainable_modules: 'attn' is not a module of tiny" in str(err.value)
    assert list(tmp_path.iterdir()) == []


# -- a full run end to end ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_run(tiny_model: Path) -> Path:
    from lorastudio.train.launch import runs

    recipe = _load(
        "tiny-pirate",
        "train.tuning=full",
        "train.learning_rate=0.0005",
        "train.max_steps=12",
        "train.save_steps=6",
        "train.samples=[]",
    )
    run_dir = runs.create_run(recipe)
    result = run_worker(run_dir, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


@pytest.mark.slow
def test_full_run_saves_the_model_and_loss_falls(full_run: Path) -> None:
    from lorastudio.train.trainer.adapters import resolve_adapter

    state = state_of(full_run)
    assert state.status == "done"
    model = full_run / "model"
    assert (model / "config.json").is_file() and (model / "model.safetensors").is_file()
    assert not (full_run / "adapter").exists()
    losses = [loss for _, loss in state.loss]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert resolve_adapter(full_run) == model
    checkpoint = resolve_adapter(full_run, "checkpoint-6")
    assert (checkpoint / "model.safetensors").is_file() and resolve_adapter(
        full_run, "latest"
    ).name == "checkpoint-12"


@pytest.mark.slow
def test_full_run_chats_with_its_trained_weights(full_run: Path) -> None:
    import torch

    from lorastudio.chat.engine import engine_for

    engine = engine_for(str(full_run))
    assert engine.recipe.model.name == str((full_run / "model").resolve()) and not engine.has_adapter
    assert engine.source is not None and "its final model" in engine.source
    engine.load()
    trained = engine.model.get_input_embeddings().weight
    base = engine_for(str(full_run), base_only=True)
    base.load()
    assert not torch.equal(trained, base.model.get_input_embeddings().weight)
    reply = engine.generate([{"role": "user", "content": "hello"}], engine.recipe.chat)
    assert reply.tokens > 0
    by_path = engine_for(str(full_run / "checkpoints" / "checkpoint-6"))  # the Runs picker's path
    assert by_path.recipe.name == engine.recipe.name and "checkpoint-6" in by_path.recipe.model.name


@pytest.mark.slow
def test_full_run_exports_the_model_itself(full_run: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from lorastudio.export.exporter import ExportRequest, export
    from lorastudio.export.staging import ExportError

    with pytest.raises(ExportError) as err:
        export(ExportRequest(str(full_run), format="adapter", out=tmp_path / "a"))
    assert "trained the whole model" in str(err.value) and not (tmp_path / "a").exists()
    merged = export(ExportRequest(str(full_run), format="merged", out=tmp_path / "m", dtype="float32"))
    saved = load_file(str(merged.out / "model.safetensors"))
    trained = load_file(str(full_run / "model" / "model.safetensors"))
    assert all(torch.equal(saved[k], trained[k]) for k in trained)
    gguf = export(ExportRequest(str(full_run), format="gguf", quant="f16", out=tmp_path / "g"))
    assert any(name.endswith(".gguf") for name in gguf.files)


@pytest.mark.slow
def test_freeze_run_changes_only_the_trained_layers(tiny_model: Path) -> None:
    from safetensors.torch import load_file

    from lorastudio.train.launch import runs

    recipe = _load(
        "tiny-pirate",
        "train.tuning=freeze",
        "train.freeze_trainable_layers=1",
        "train.freeze_trainable_modules=[mlp]",
        "train.max_steps=3",
        "train.samples=[]",
    )
    run_dir = runs.create_run(recipe)
    result = run_worker(run_dir, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    after = load_file(str(run_dir / "model" / "model.safetensors"))
    before = load_file(str(tiny_model / "model.safetensors"))
    changed = {k for k in after if not (after[k] == before[k]).all()}
    assert changed and all(k.startswith("model.layers.3.mlp.") for k in changed)


@pytest.mark.slow
def test_full_run_resumes_from_a_checkpoint_of_the_whole_model(full_run: Path) -> None:
    import shutil

    # the run as a crash after checkpoint-6 leaves it: no later checkpoint, no final model
    copy = full_run.parent / (full_run.name + "-crashed")
    shutil.copytree(full_run, copy)
    shutil.rmtree(copy / "checkpoints" / "checkpoint-12")
    shutil.rmtree(copy / "model")
    result = run_worker(copy, "--resume", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    state = state_of(copy)
    assert state.status == "done" and state.step == 12
    assert "resuming from checkpoint-6" in (copy / "events.jsonl").read_text()
    assert (copy / "model" / "model.safetensors").is_file()


# -- the Preview shows packed sequences ------------------------------------------------------------------------
def test_packed_preview_is_what_training_packs(tiny_model: Path, tiny_tokenizer: Any) -> None:
    from lorastudio.data.datasource import load_rows
    from lorastudio.data.encode import Encoder, packed_preview
    from lorastudio.data.prepared.cache import prepare_data

    recipe = _load("tiny-pretrain")
    rows = load_rows(recipe.data).rows
    encoder = Encoder(tiny_tokenizer, recipe, "text")
    first, starts, used = packed_preview(encoder, rows, 0, recipe.model.max_seq_length)
    trained = prepare_data(recipe, tokenizer=tiny_tokenizer).train[0]
    assert first.input_ids == trained["input_ids"] and first.labels == trained["labels"]
    assert used == len(trained["seq_lengths"]) == len(starts) > 1
    assert starts == [sum(trained["seq_lengths"][:i]) for i in range(used)]
    second, _, _ = packed_preview(encoder, rows, used, recipe.model.max_seq_length)
    assert second.input_ids == prepare_data(recipe, tokenizer=tiny_tokenizer).train[1]["input_ids"]


async def test_preview_marks_the_documents_of_a_packed_sequence(tiny_model: Path) -> None:
    from lorastudio.app import StudioApp
    from lorastudio.screens.preview import PreviewScreen
    from lorastudio.widgets.token_view import TokenView

    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(PreviewScreen(_load("tiny-pretrain")))
        screen = screen_of(app, PreviewScreen)
        await wait_until(pilot, lambda: screen.loaded and screen.query_one(TokenView).items)
        header = str(screen.query_one("#sample-header").render())
        assert "packed sequence from sample 1/14 · 4 documents (samples 1-4)" in header
        view = screen.query_one(TokenView)
        shown = str(view.render())
        assert "── document 2 (positions restart at 0) ──" in shown and "document 5" not in shown
        # train_on: all: every token trains but each document's first (never predicted across a border)
        assert [i for i, p in enumerate(view.items) if not p.trained] == view.documents
        await pilot.press("n")
        assert "packed sequence from sample 5/14" in str(screen.query_one("#sample-header").render())


@pytest.mark.slow
def test_shipped_smollm2_full_recipe_trains_the_whole_model(smollm2_dir: Path) -> None:
    from lorastudio.train.launch import runs

    run_dir = runs.create_run(_load("smollm2-pirate-full"))
    result = run_worker(run_dir, timeout=3600)
    assert result.returncode == 0, result.stdout + result.stderr
    state = state_of(run_dir)
    losses = [loss for _, loss in state.loss]
    assert state.status == "done" and len(losses) == 8 and losses[-1] < losses[0]
    assert (run_dir / "model" / "model.safetensors").is_file() and not (run_dir / "adapter").exists()


@pytest.mark.slow
def test_shipped_tiny_pretrain_recipe_trains_on_its_corpus(tiny_model: Path) -> None:
    from safetensors.torch import load_file

    from lorastudio.train.launch import runs

    run_dir = runs.create_run(_load("tiny-pretrain"))
    result = run_worker(run_dir, timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    state = state_of(run_dir)
    losses = [loss for _, loss in state.loss]
    assert state.status == "done" and len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    after = load_file(str(run_dir / "model" / "model.safetensors"))
    before = load_file(str(tiny_model / "model.safetensors"))
    assert all(
        not (after[k] == before[k]).all() for k in after if "layernorm" not in k and k != "model.norm.weight"
    )
