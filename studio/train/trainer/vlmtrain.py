"""Supervised fine-tuning of a vision-language model: TRL's SFTTrainer with the model's processor.

The rows are encoded by the vision branch of the encode path (studio/data/imagerows.py: ids, labels that train only
the replies, the image files); the collator pads them and runs the processor's image processor on the batch's
images, so pixel values are made as the batch is, never stored. LoRA goes on the language model unless
``model.finetune_vision`` (studio/models/vlm.py). Same events, run directory and adapter as text SFT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorastudio.data.encode import IGNORE_INDEX
from lorastudio.errors import StudioError
from lorastudio.recipe import Recipe
from lorastudio.train.run.events import LogEvent, StatusEvent
from lorastudio.train.trainer.backend import Hardware


def is_vision_recipe(recipe: Recipe) -> bool:
    """Whether the recipe's model is a vision-language model on disk (its config has a vision config)."""
    from lorastudio.models.resolve import resolve_model_path
    from lorastudio.models.vlm import is_vision_config

    return is_vision_config(resolve_model_path(recipe.model))


def load_vlm_for_training(recipe: Recipe, hw: Hardware, progress: Any = None) -> tuple[Any, Any]:
    """(peft model, processor)."""
    import torch
    from peft import get_peft_model
    from transformers import set_seed

    from lorastudio.models.resolve import hub_error, resolve_model_path
    from lorastudio.models.vlm import load_processor, load_vlm, lora_config
    from lorastudio.train.trainer.backend import _local_gpu, compute_dtype, resolve_gradient_checkpointing

    if recipe.model.load_in_4bit:
        raise StudioError(
            "model.load_in_4bit: QLoRA on a vision-language model is not supported yet; use LoRA"
        )
    path = resolve_model_path(recipe.model, progress)
    try:
        processor = load_processor(path, recipe.model.trust_remote_code)
        model = load_vlm(
            path,
            dtype=compute_dtype(recipe, hw) if hw.cuda else torch.float32,
            device_map={"": _local_gpu()} if hw.cuda else None,
            trust_remote_code=recipe.model.trust_remote_code,
        )
    except OSError as exc:
        raise hub_error(recipe.model.name, exc) from None
    if resolve_gradient_checkpointing(recipe, hw):
        model.enable_input_require_grads()
    set_seed(recipe.train.seed)  # the LoRA initialisation follows the recipe's seed
    return get_peft_model(model, lora_config(recipe)), processor


class VisionCollator:
    """Pads ids and labels, and turns each sample's image files into the model's pixel inputs."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.pad_id = processor.tokenizer.pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        from lorastudio.data.imagerows import open_image

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            ids[row, :n] = torch.tensor(feature["input_ids"])
            labels[row, :n] = torch.tensor(feature["labels"])
            mask[row, :n] = 1
        batch: dict[str, Any] = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        images = [[open_image(Path(p), p) for p in f["images"]] for f in features]
        if any(images):
            pixels = self.processor.image_processor(images=images, return_tensors="pt")
            batch.update({k: v for k, v in pixels.items() if k not in ("rows", "cols")})
        return batch


def vision_rows(recipe: Recipe, processor: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """(train rows, eval rows, format): each row the sample's ids, labels and image files. Rows are encoded by
    their index in the data file, so a missing image is named by the row a person finds in it."""
    from lorastudio.data.datasource import held_out, load_rows
    from lorastudio.data.imagerows import encode_vision_rows, make_vision_encoder

    loaded = load_rows(recipe.data)
    encoder = make_vision_encoder(processor, recipe, loaded.columns, loaded.rows[:20], loaded.origin)
    samples = encode_vision_rows(
        encoder, loaded.rows
    )  # refuses a missing image, and a set with no usable row
    if recipe.data.eval_split is not None:
        evals = encode_vision_rows(encoder, load_rows(recipe.data, recipe.data.eval_split).rows)
        train = samples
    else:
        held = set(held_out(len(samples), recipe.data.eval_fraction, recipe.train.seed))
        train = [s for i, s in enumerate(samples) if i not in held]
        evals = [s for i, s in enumerate(samples) if i in held]

    def as_rows(part: list) -> list[dict[str, Any]]:
        return [{"input_ids": s.input_ids, "labels": s.labels, "images": list(s.images)} for s in part]

    return as_rows(train), as_rows(evals), encoder.format


def build_vision_trainer(
    recipe: Recipe,
    model: Any,
    processor: Any,
    train_rows: list,
    eval_rows: list,
    run_dir: Path,
    hw,
    callbacks,
    tracking=None,
) -> Any:
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from lorastudio.train.trainer.methods import common_args

    args = common_args(recipe, run_dir, hw, has_eval=bool(eval_rows))
    if tracking:
        args.update(report_to=tracking.report_to, **tracking.args)
    config = SFTConfig(**args, dataset_kwargs={"skip_prepare_dataset": True}, max_length=None, packing=False)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=processor,
        data_collator=VisionCollator(processor),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # our events replace its stdout dicts
    return trainer


def start_vision(
    recipe: Recipe, hw: Hardware, where: Any, writer: Any, callbacks: list, run_dir: Path, tracking=None
):
    """(trainer, processor) for the worker: the model, the encoded rows and the trainer, reported as events."""
    from lorastudio.models.resolve import throttled
    from lorastudio.train.trainer import distributed as dist

    if where.distributed:
        raise StudioError(
            "train.devices: a vision-language model trains on one device for now; set train.devices: 1"
        )
    model, processor = load_vlm_for_training(
        recipe, hw, throttled(lambda f, m: writer.emit(LogEvent(message=f"model: {m}")), 2.0)
    )
    writer.emit(StatusEvent(status="loading data", source=recipe.data.source))
    with dist.main_first(where):
        train_rows, eval_rows, fmt = vision_rows(recipe, processor)
    images = sum(len(r["images"]) for r in train_rows)
    writer.emit(
        LogEvent(
            message=f"{len(train_rows)} training samples ({fmt}, {images} images), {len(eval_rows)} eval samples",
        )
    )
    if recipe.train.samples.enabled:
        writer.emit(LogEvent(message="no sample replies: a vision run does not sample replies yet"))
    if not hw.cuda:
        from lorastudio.train.trainer.queue import cpu_share_callback

        callbacks = [*callbacks, cpu_share_callback()]
    trainer = build_vision_trainer(
        recipe, model, processor, train_rows, eval_rows, run_dir, hw, callbacks, tracking
    )
    return trainer, processor
