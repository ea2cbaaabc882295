"""Reward models: ``train.method: reward`` trains one, ``grpo.rewards: [{model: RUN}]`` scores with it.

A reward model is the base loaded with a one-number score head (``AutoModelForSequenceClassification``,
``num_labels=1``) and a LoRA adapter (peft ``SEQ_CLS``, the fresh ``score`` head trained whole through
``modules_to_save``), trained by TRL's ``RewardTrainer`` on the same encoded pairs as dpo
(``studio/data/preference.py``): each side is the prompt's ids followed by that reply's ids, so the score is
read at the reply's last trained token (its end-of-turn), and the chosen reply is taught to outscore the
rejected one (``-log sigmoid(chosen - rejected)``).

As a GRPO reward the model runs in the reward host process (``rewards.py``), on the CPU with a capped number
of threads, scoring a call's completions in batches: each is the prompt as the GRPO run rendered it, the reply
and the end-of-turn text the reward model's template closes a reply with (what it was trained to score).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.errors import RecipeError, RunError, StudioError
from lorastudio.recipe import Recipe, RewardSection
from lorastudio.train.trainer.backend import Hardware

SCORE_HEAD = "score"
"""The score layer's name in transformers' ``*ForSequenceClassification`` models (kept whole in the adapter)."""
SCORE_BATCH = 16
"""Completions scored in one forward pass by a reward model."""
_PROBE = "studiorewardprobe"
"""A reply's stand-in when finding the text a template closes a reply with."""


def load_reward_model(recipe: Recipe, hw: Hardware, progress: Any = None) -> tuple[Any, Any]:
    """(peft score model, tokenizer) for training: a fresh LoRA with a fresh score head, or the adapter of the
    reward run ``model.adapter`` names, trainable."""
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    from lorastudio.models.resolve import load_tokenizer, resolve_model_path
    from lorastudio.train.trainer.backend import resolve_gradient_checkpointing

    adapter = _start_adapter(recipe.model.adapter) if recipe.model.adapter else None
    path = resolve_model_path(recipe.model, progress)
    tokenizer = load_tokenizer(recipe.model)
    set_seed(recipe.train.seed)  # the score head's random start follows the recipe's seed, as LoRA's does
    base = _score_base(recipe, path, hw, tokenizer)
    if recipe.model.load_in_4bit:
        base = prepare_model_for_kbit_training(
            base, use_gradient_checkpointing=resolve_gradient_checkpointing(recipe, hw)
        )
    if adapter is not None:
        return PeftModel.from_pretrained(base, str(adapter), is_trainable=True), tokenizer
    config = LoraConfig(
        r=recipe.lora.r,
        lora_alpha=recipe.lora.alpha,
        lora_dropout=recipe.lora.dropout,
        target_modules=recipe.lora.target_modules,
        bias=recipe.lora.bias,
        use_rslora=recipe.lora.use_rslora,
        task_type="SEQ_CLS",
        modules_to_save=[SCORE_HEAD],
    )
    set_seed(recipe.train.seed)
    return get_peft_model(base, config), tokenizer


def _score_base(recipe: Recipe, path: str, hw: Hardware, tokenizer: Any) -> Any:
    """The base model with a one-number score head, its pad token set (the head reads the last non-pad token)."""
    from transformers import AutoModelForSequenceClassification
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    from lorastudio.train.trainer.backend import load_base_model

    with suppress_seqcls_warning():  # "score.weight newly initialized" is the point
        model = load_base_model(
            recipe, path, hw, tokenizer, auto_class=AutoModelForSequenceClassification, num_labels=1
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.config.get_text_config().pad_token_id = pad
    return model


def _start_adapter(target: str) -> Path:
    """``model.adapter`` of a reward run: another reward model's adapter (kept training); any other is refused."""
    adapter = adapter_of(target)[0]
    if _task_type(adapter) != "SEQ_CLS":
        raise RecipeError(
            f"model.adapter: {target} is not a reward model's adapter; train.method: reward starts a score head "
            "from the base model, or keeps training a reward run's adapter"
        )
    return adapter


def adapter_of(target: str) -> tuple[Path, str]:
    """(adapter folder, what it is in words) of a run reference (``NAME``, ``latest``, ``NAME@best``,
    ``NAME@checkpoint-N``) or an adapter folder: ``model.adapter`` / ``--from`` (``methods.start_adapter``) and a
    GRPO reward's ``model:`` both read it here."""
    from lorastudio.train.run.runref import describe, resolve_run
    from lorastudio.train.trainer.adapters import ADAPTER_CONFIG, resolve_adapter

    path = Path(target).expanduser()
    try:
        is_adapter = (path / ADAPTER_CONFIG).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        is_adapter = False
    try:
        ref = resolve_run(target, checkpoint=True)
    except RunError:
        if is_adapter:
            return path.resolve(), f"adapter folder {path.resolve()}"
        raise
    if is_adapter and not ref.exact:
        return path.resolve(), f"adapter folder {path.resolve()}"
    adapter = resolve_adapter(ref.path, ref.which).resolve()
    if not (adapter / ADAPTER_CONFIG).is_file():  # a full or freeze run's model: no adapter to start from
        raise RunError(
            f"model.adapter: run {ref.name} trained the whole model (train.tuning full or freeze), so it has no "
            f"adapter; set model.name: {adapter} to start from the model it trained"
        )
    return adapter, describe(ref, adapter)


def _task_type(adapter: Path) -> str | None:
    try:
        return json.loads((adapter / "adapter_config.json").read_text()).get("task_type")
    except (OSError, ValueError, AttributeError):
        return None


def build_reward_trainer(
    section: RewardSection,
    model: Any,
    tokenizer: Any,
    data: Any,
    args: dict[str, Any],
    callbacks: list[Any],
) -> Any:
    """TRL's RewardTrainer on studio's encoded pairs: each side is the prompt's ids then that reply's ids."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    def sides(rows: list[dict[str, Any]]) -> Any:
        if not rows:
            return None
        return Dataset.from_list([reward_row(r) for r in rows])

    config = RewardConfig(
        **args,
        center_rewards_coefficient=section.center_rewards_coefficient,
        max_length=None,  # cut already, as the Preview shows (RewardTrainer would drop longer rows unseen)
    )
    return RewardTrainer(
        model=model,
        args=config,
        train_dataset=sides(data.train),
        eval_dataset=sides(data.eval),
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def reward_row(row: dict[str, Any]) -> dict[str, list[int]]:
    """A dpo pair's ids as RewardTrainer reads them: the whole sequence of each side."""
    prompt = list(row["prompt_ids"])
    return {
        "chosen_ids": prompt + list(row["chosen_ids"]),
        "rejected_ids": prompt + list(row["rejected_ids"]),
    }


# -- scoring with a trained reward model ---------------------------------------------------------------------
@dataclass(frozen=True)
class RewardModelRef:
    """A reward run's adapter, found from a ``grpo.rewards`` ``model:`` reference."""

    adapter: Path
    recipe: Recipe
    described: str


def find_reward_model(target: str, field: str = "grpo.rewards") -> RewardModelRef:
    """The adapter and recipe of the reward run ``target`` names; a run that is not a reward run, or none, is a
    :class:`RewardModelError` naming the field and the reference."""
    from lorastudio.registry import load_snapshot
    from lorastudio.train.run.rundir import RECIPE_FILE
    from lorastudio.train.trainer.adapters import run_of_checkpoint

    try:
        adapter, described = adapter_of(target)
    except (RunError, RecipeError) as exc:
        raise RewardModelError(f"{field}: {exc}") from None
    run_dir = run_of_checkpoint(adapter)
    snapshot = adapter / "recipe.yaml"
    if not snapshot.is_file() and run_dir is not None:
        snapshot = run_dir / RECIPE_FILE
    try:
        recipe = load_snapshot(snapshot)
    except (OSError, StudioError, ValueError) as exc:
        raise RewardModelError(f"{field}: {target}: cannot read its recipe ({snapshot}): {exc}") from None
    if recipe.train.method != "reward" or _task_type(adapter) != "SEQ_CLS":
        raise RewardModelError(
            f"{field}: {target} is a train.method: {recipe.train.method} run, not a reward model; "
            "name a run trained with train.method: reward"
        )
    return RewardModelRef(adapter, recipe, described)


class RewardModelError(StudioError):
    """A ``model:`` reward that names no reward run."""


class RewardModelScorer:
    """A reward run's model, loaded on first use on the CPU, scoring (prompt, completion) pairs in batches."""

    def __init__(self, found: RewardModelRef, threads: int | None = None) -> None:
        self.found = found
        self.threads = threads
        self._model: Any = None
        self._tokenizer: Any = None
        self._close = ""

    def load(self) -> None:
        import torch
        from peft import PeftModel

        from lorastudio.data.encode import make_encoder
        from lorastudio.models.resolve import load_tokenizer, resolve_model_path
        from lorastudio.models.threads import tui_threads

        torch.set_num_threads(self.threads or tui_threads())  # beside the training process, never over it
        recipe = self.found.recipe
        tokenizer = load_tokenizer(recipe.model)
        cpu = Hardware(cuda=False, bf16=False, device_name="cpu")
        unquantized = recipe.model_copy(
            update={"model": recipe.model.model_copy(update={"load_in_4bit": False})}
        )
        base = _score_base(unquantized, resolve_model_path(recipe.model), cpu, tokenizer)
        model = PeftModel.from_pretrained(base, str(self.found.adapter))
        model.eval()
        encoder = make_encoder(
            tokenizer,
            recipe.model_copy(update={"data": recipe.data.model_copy(update={"format": "messages"})}),
            ["messages"],
            [],
            str(self.found.adapter),
        )
        self._close = reply_close(encoder)
        self._render = lambda turns: encoder.render(turns, add_generation_prompt=True)
        self._model, self._tokenizer = model, tokenizer

    def texts(self, prompts: list[Any], completions: list[str]) -> list[str]:
        """What the reward model scores: the rendered prompt, the reply, the template's end of a reply."""
        out = []
        for prompt, completion in zip(prompts, completions, strict=True):
            rendered = prompt if isinstance(prompt, str) else self._render(list(prompt))
            out.append(rendered + completion + self._close)
        return out

    def __call__(self, prompts: list[Any], completions: list[str]) -> list[float]:
        import torch

        if self._model is None:
            self.load()
        texts = self.texts(prompts, completions)
        limit = self.found.recipe.model.max_seq_length
        ids = [self._tokenizer(t, add_special_tokens=False)["input_ids"][:limit] for t in texts]
        pad = self._model.config.get_text_config().pad_token_id
        scores: list[float] = [0.0] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # like lengths together: little padding
        with torch.inference_mode():
            for start in range(0, len(order), SCORE_BATCH):
                batch = order[start : start + SCORE_BATCH]
                width = max(len(ids[i]) for i in batch)
                input_ids = torch.tensor([ids[i] + [pad] * (width - len(ids[i])) for i in batch])
                mask = torch.tensor([[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in batch])
                logits = self._model(input_ids=input_ids, attention_mask=mask).logits[:, 0]
                for i, value in zip(batch, logits.tolist(), strict=True):
                    scores[i] = float(value)
        return scores


def reply_close(encoder: Any) -> str:
    """The text a template puts after a reply's words within the reply's trained span (``<|im_end|>``,
    ``<|eot_id|>``, ...): found by rendering a stand-in reply."""
    turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": _PROBE}]
    text, spans = encoder.assistant_spans(turns)
    if not spans:
        return ""
    start, end = spans[-1]
    reply = text[start:end]
    return reply.split(_PROBE, 1)[1] if _PROBE in reply else ""


def check_reward_models(recipe: Recipe) -> None:
    """Refuse, before a run directory exists, a GRPO recipe whose ``model:`` reward names no reward run, and a
    reward recipe whose ``model.adapter`` is not a reward model's."""
    if recipe.train.method == "reward" and recipe.model.adapter:
        _start_adapter(recipe.model.adapter)
    if recipe.train.method != "grpo" or recipe.grpo is None:
        return
    for index, spec in enumerate(recipe.grpo.rewards):
        for where, model in _models(spec, f"grpo.rewards.{index}"):
            try:
                find_reward_model(model, where)
            except RewardModelError as exc:
                raise RecipeError(str(exc)) from None


def _models(spec: Any, field: str) -> list[tuple[str, str]]:
    out = [(f"{field}.model", spec.model)] if spec.model is not None else []
    for i, part in enumerate(spec.all or []):
        out += _models(part, f"{field}.all.{i}")
    return out
