"""The preference and RL methods' trainers: TRL's DPO, KTO, ORPO, CPO (SimPO), GRPO and reward models (its
RewardTrainer, see ``rewardmodel.py``), fed studio's ids.

Every trainer gets the rows ``studio/data/preference.py`` encoded, so what the Preview shows is what trains:
DPO and KTO through a ``_prepare_dataset`` that keeps them as they are (TRL's collators read ``prompt_ids`` /
``chosen_ids`` / ``rejected_ids`` and ``completion_ids``), ORPO and CPO through a ``tokenize_row`` that
returns them in those trainers' shape. GRPO renders the prompt itself; studio gives it the rendered text and
tokenizes it as the encoder does (no special tokens added), which a test checks against the encoder's ids.

With a LoRA model no reference copy of the model is loaded: with ``ref_model=None`` TRL adds a frozen copy of
the starting adapter (named ``ref``) on the same base weights and computes the reference log-probs through it.
A fresh adapter starts at zero, so its reference is the base; ``model.adapter`` (a finished run's adapter,
trained further) makes that run the reference, as SFT -> DPO wants.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lorastudio.errors import RecipeError
from lorastudio.recipe import DpoSection, GrpoSection, KtoSection, OrpoSection, Recipe, RewardSection
from lorastudio.train.run.events import MethodMetricsEvent
from lorastudio.train.trainer.backend import Hardware

STANDARD_LOG_KEYS = frozenset(
    {
        "loss",
        "learning_rate",
        "grad_norm",
        "epoch",
        "num_tokens",
        "step_time",
        "total_flos",
        "train_loss",
        "train_runtime",
        "train_samples_per_second",
        "train_steps_per_second",
        "num_input_tokens_seen",
        "train_tokens_per_second",
    }
)
"""Trainer log keys the SFT metrics event already carries (or that are run totals); every other number a
method's trainer logs goes into its ``method_metrics`` event."""


def resolve_start_adapter(target: str) -> Path:
    """``model.adapter``: a run (``NAME``, ``latest``, ``NAME@best``, ``NAME@checkpoint-N``) or an adapter folder."""
    return start_adapter(target)[0]


def start_adapter(target: str) -> tuple[Path, str]:
    """(adapter folder, which run and adapter that is, in words) for ``model.adapter`` / ``--from``; a run is
    named as ``runref.resolve_run`` reads it (``rewardmodel.adapter_of``, which reward models' references share)."""
    from lorastudio.train.trainer.rewardmodel import adapter_of

    return adapter_of(target)


def load_method_model(recipe: Recipe, backend: str, hw: Hardware, progress: Any = None) -> tuple[Any, Any]:
    """(peft model, tokenizer): a fresh LoRA as for SFT, or ``model.adapter``'s adapter, trainable; a reward
    model gets a score head instead of the language-model head (always through transformers and peft)."""
    from lorastudio.train.trainer.backend import load_for_training

    if recipe.train.method == "reward":
        from lorastudio.train.trainer.rewardmodel import load_reward_model

        return load_reward_model(recipe, hw, progress)
    if not recipe.model.adapter:
        return load_for_training(recipe, backend, hw, progress)
    from peft import PeftModel

    from lorastudio.models.resolve import load_tokenizer, resolve_model_path
    from lorastudio.train.trainer.backend import load_base_model

    adapter = resolve_start_adapter(recipe.model.adapter)
    path = resolve_model_path(recipe.model, progress)
    tokenizer = load_tokenizer(recipe.model)
    base = load_base_model(recipe, path, hw, tokenizer)
    return PeftModel.from_pretrained(base, str(adapter), is_trainable=True), tokenizer


def common_args(recipe: Recipe, run_dir: Path, hw: Hardware, has_eval: bool) -> dict[str, Any]:
    """The TrainingArguments every method shares with SFT (the same names, the same meanings)."""
    from lorastudio.train.trainer.backend import resolve_gradient_checkpointing, resolve_precision

    precision = resolve_precision(recipe, hw)
    t = recipe.train
    return dict(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        learning_rate=t.learning_rate,
        max_steps=t.max_steps or -1,
        num_train_epochs=t.epochs,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.scheduler,
        optim=t.optimizer,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.logging_steps,
        logging_nan_inf_filter=False,  # its filter logs a NaN step as a finite mean (0.0 once all are NaN)
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=(t.eval_steps or t.save_steps) if has_eval else None,
        metric_for_best_model=t.best_by if has_eval else None,  # a task score: evaluate/intraining.py
        greater_is_better=t.best_higher if has_eval else None,
        report_to=[],
        disable_tqdm=True,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        gradient_checkpointing=resolve_gradient_checkpointing(recipe, hw),
        dataloader_num_workers=0,
        save_only_model=False,
        include_num_input_tokens_seen=True,
        remove_unused_columns=False,
    )


def _dataset(rows: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    return Dataset.from_list(rows) if rows else None


def _orpo_row(feature: dict[str, Any]) -> dict[str, list[int]]:
    """ORPO's and CPO's tokenized row, from studio's ids (their labels mask the prompt, as ours do)."""
    prompt = list(feature["prompt_ids"])
    out: dict[str, list[int]] = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for side in ("chosen", "rejected"):
        reply = list(feature[f"{side}_ids"])
        out[f"{side}_input_ids"] = prompt + reply
        out[f"{side}_attention_mask"] = [1] * (len(prompt) + len(reply))
        out[f"{side}_labels"] = [-100] * len(prompt) + reply
    return out


def _with_texts(rows: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
    """ORPO and CPO read text columns before tokenizing (to extract prompts); give them the decoded ids."""
    return [
        {
            **r,
            "prompt": tokenizer.decode(r["prompt_ids"]),
            "chosen": tokenizer.decode(r["chosen_ids"]),
            "rejected": tokenizer.decode(r["rejected_ids"]),
        }
        for r in rows
    ]


def build_method_trainer(
    recipe: Recipe,
    model: Any,
    tokenizer: Any,
    data: Any,
    run_dir: Path,
    hw: Hardware,
    callbacks: list[Any],
    samples: Callable[[list[dict[str, Any]]], None] | None = None,
    tracking: Any = None,
    stop: threading.Event | None = None,
) -> Any:
    """The TRL trainer for ``train.method`` on studio's encoded rows (``data``: a ``MethodData``);
    ``tracking`` (trackers.plan) adds the experiment trackers of ``train.report_to``, as for SFT. ``stop`` (the
    worker's stop flag) ends a GRPO reward that is still scoring (rewards.RewardsStopped)."""
    from transformers.trainer_callback import PrinterCallback

    method = recipe.train.method
    section = recipe.method_section()
    has_eval = bool(data.eval)
    args = common_args(recipe, run_dir, hw, has_eval)
    if tracking:
        args.update(report_to=tracking.report_to, **tracking.args)
    if method == "dpo" and isinstance(section, DpoSection) and section.loss_type != "simpo":
        trainer = _dpo(recipe, section, model, tokenizer, data, args, callbacks)
    elif method in ("dpo", "orpo"):
        trainer = _orpo_or_cpo(section, model, tokenizer, data, args, callbacks, recipe)
    elif method == "kto" and isinstance(section, KtoSection):
        trainer = _kto(section, model, tokenizer, data, args, callbacks)
    elif method == "grpo" and isinstance(section, GrpoSection):
        trainer = _grpo(recipe, section, model, tokenizer, data, args, callbacks, samples, stop)
    elif method == "reward" and isinstance(section, RewardSection):
        from lorastudio.train.trainer.rewardmodel import build_reward_trainer

        trainer = build_reward_trainer(section, model, tokenizer, data, args, callbacks)
    else:  # pragma: no cover - the recipe schema allows nothing else
        raise RecipeError(f"train.method: {method} has no trainer")
    trainer.remove_callback(PrinterCallback)
    return trainer


def _dpo(
    recipe: Recipe,
    section: DpoSection,
    model: Any,
    tokenizer: Any,
    data: Any,
    args: dict[str, Any],
    callbacks: list[Any],
) -> Any:
    from trl import DPOConfig, DPOTrainer

    class StudioDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            return dataset  # already prompt_ids / chosen_ids / rejected_ids, truncated as the Preview shows

    losses: list[str] = [section.loss_type]
    weights = [1.0]
    if section.rpo_alpha:
        losses, weights = [*losses, "sft"], [*weights, section.rpo_alpha]
    config = DPOConfig(
        **args,
        beta=section.beta,
        loss_type=losses,
        loss_weights=weights,
        label_smoothing=section.label_smoothing,
        max_length=None,
        precompute_ref_log_probs=False,
    )
    return StudioDPOTrainer(
        model=model,
        ref_model=None,
        args=config,
        train_dataset=_dataset(data.train),
        eval_dataset=_dataset(data.eval),
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def _orpo_or_cpo(
    section: Any,
    model: Any,
    tokenizer: Any,
    data: Any,
    args: dict[str, Any],
    callbacks: list[Any],
    recipe: Recipe,
) -> Any:
    if isinstance(section, OrpoSection):
        from trl.experimental.orpo import ORPOConfig as Config
        from trl.experimental.orpo import ORPOTrainer as Trainer

        extra: dict[str, Any] = {"beta": section.beta}
    else:  # dpo with loss_type simpo: reference-free, through CPO (cpo_alpha 0 leaves SimPO's loss alone)
        from trl.experimental.cpo import CPOConfig as Config
        from trl.experimental.cpo import CPOTrainer as Trainer

        assert isinstance(section, DpoSection)
        extra = {
            "beta": section.beta,
            "loss_type": "simpo",
            "simpo_gamma": section.simpo_gamma,
            "cpo_alpha": section.rpo_alpha or 0.0,  # CPO's own NLL term on the chosen reply
            "label_smoothing": section.label_smoothing,
        }

    class StudioPairTrainer(Trainer):
        def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, list[int]]:
            return _orpo_row(feature)  # studio's ids, not a second tokenization

    config = Config(**args, **extra, max_length=recipe.model.max_seq_length)
    return StudioPairTrainer(
        model=model,
        args=config,
        train_dataset=_dataset(_with_texts(data.train, tokenizer)),
        eval_dataset=_dataset(_with_texts(data.eval, tokenizer)),
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def _kto(
    section: KtoSection, model: Any, tokenizer: Any, data: Any, args: dict[str, Any], callbacks: list[Any]
) -> Any:
    from trl import KTOConfig, KTOTrainer

    class StudioKTOTrainer(KTOTrainer):
        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            if (
                self.calculate_KL
            ):  # TRL's own estimate: each batch's completions rotated by one against its prompts

                def rotate(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
                    batch["KL_completion_ids"] = [batch["completion_ids"][-1]] + batch["completion_ids"][:-1]
                    return batch

                dataset = dataset.map(rotate, batched=True, batch_size=args.per_device_train_batch_size)
            return dataset

    config = KTOConfig(
        **args,
        beta=section.beta,
        loss_type=section.loss_type,
        desirable_weight=section.desirable_weight,
        undesirable_weight=section.undesirable_weight,
        max_length=None,
        precompute_ref_log_probs=False,
    )
    return StudioKTOTrainer(
        model=model,
        ref_model=None,
        args=config,
        train_dataset=_dataset(data.train),
        eval_dataset=_dataset(data.eval),
        processing_class=tokenizer,
        callbacks=callbacks,
    )


_PROBE = "studioquestionprobe"
"""A user turn's stand-in when finding where a template puts the user's words."""


class Questions:
    """The user's last words in a prompt GRPO was given rendered (``<|start_header_id|>user…`` and all), for
    the Monitor's completions panel: where the template puts a user turn is found once, by rendering a
    stand-in after a system turn and after an assistant turn (what the two renders share before it is the user
    turn's header), and what follows the stand-in (the turn's end and the generation prompt)."""

    def __init__(self, render: Callable[[list[dict[str, str]]], str]) -> None:
        self._found: dict[str, str | None] = {}
        self.header = self.footer = ""
        try:
            alone = render([{"role": "user", "content": _PROBE}])
            after = render(
                [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": _PROBE},
                ]
            )
        except Exception:  # a template that refuses these turns: the panel shows the rendered prompt's end
            return
        if alone.count(_PROBE) != 1 or after.count(_PROBE) != 1:
            return
        before_a, self.footer = alone.split(_PROBE)
        before_b = after.split(_PROBE)[0]
        shared = 0
        while shared < min(len(before_a), len(before_b)) and before_a[-1 - shared] == before_b[-1 - shared]:
            shared += 1
        self.header = before_a[len(before_a) - shared :]

    def of(self, rendered: str) -> str | None:
        """The last user turn's text, or None when the prompt is not this template's rendering."""
        if rendered not in self._found:
            self._found[rendered] = self._find(rendered)
        return self._found[rendered]

    def _find(self, rendered: str) -> str | None:
        if not self.header or not rendered.endswith(self.footer):
            return None
        body = rendered[: len(rendered) - len(self.footer)] if self.footer else rendered
        at = body.rfind(self.header)
        text = body[at + len(self.header) :].strip() if at >= 0 else ""
        return text or None


def whole_text(text: str) -> str:
    """A decoded completion without the replacement characters a cut through a multi-byte character leaves
    at its end (``max_completion_length`` stops between the bytes of an emoji or a CJK character)."""
    return text.rstrip("\ufffd")


def _grpo(
    recipe: Recipe,
    section: GrpoSection,
    model: Any,
    tokenizer: Any,
    data: Any,
    args: dict[str, Any],
    callbacks: list[Any],
    samples: Callable[[list[dict[str, Any]]], None] | None,
    stop: threading.Event | None = None,
) -> Any:
    from trl import GRPOConfig, GRPOTrainer

    from lorastudio.train.trainer.rewards import build_rewards

    funcs, weights = build_rewards(section.rewards, section.reward_timeout, stop)
    keep = section.log_completions
    questions = Questions(lambda turns: data.encoder.base.render(turns, add_generation_prompt=True))

    class StudioGRPOTrainer(GRPOTrainer):
        def _tokenize_prompts(self, prompts: list[Any]) -> Any:
            if prompts and isinstance(prompts[0], str):  # rendered by studio: tokenized as the encoder does
                return self.processing_class(text=prompts, add_special_tokens=False)["input_ids"], None, {}
            return super()._tokenize_prompts(prompts)

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if samples is not None and keep and self._logs["prompt"] and "loss" in logs:
                rewards = self._logs["rewards"]
                recent = []
                for i in range(max(0, len(self._logs["prompt"]) - keep), len(self._logs["prompt"])):
                    prompt = str(self._logs["prompt"][i])
                    recent.append(
                        {
                            "prompt": prompt[-300:],
                            "question": (questions.of(prompt) or "")[:300],  # the panel shows this
                            "completion": whole_text(str(self._logs["completion"][i]))[:400],
                            "rewards": {name: _num(values[i]) for name, values in rewards.items()},
                        }
                    )
                samples(recent)
            super().log(logs, start_time)

    train_rows = [{k: v for k, v in r.items() if k != "prompt_ids"} for r in data.train]
    config = GRPOConfig(
        **{
            **args,
            "eval_strategy": "no",
            "eval_steps": None,
            "metric_for_best_model": None,
            "greater_is_better": None,
        },
        num_generations=section.num_generations,
        max_completion_length=section.max_completion_length,
        temperature=section.temperature,
        top_p=section.top_p,
        beta=section.beta,
        loss_type=section.loss_type,
        scale_rewards=section.scale_rewards,
        reward_weights=weights,
        log_completions=False,
        generation_batch_size=None,
    )
    return StudioGRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=config,
        train_dataset=_dataset(train_rows),
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else round(number, 4)


def method_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """The numbers a method's trainer logged beyond SFT's (``rewards/chosen``, ``reward``, ``kl``, ...)."""
    out = {}
    for key, value in logs.items():
        if key in STANDARD_LOG_KEYS or key.startswith("eval_") or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[key] = round(float(value), 6)
    return out


def make_method_callback(writer: Any) -> Any:
    """Writes each log's method figures as a ``method_metrics`` event (SFT's callback writes the rest)."""
    from transformers import TrainerCallback

    class MethodMetricsCallback(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
        ) -> None:
            logs = logs or {}
            if "loss" not in logs:
                return
            values = method_metrics(logs)
            if values:
                writer.emit(MethodMetricsEvent(step=state.global_step, values=values))

    return MethodMetricsCallback()
