"""LoRA variants from the recipe's ``lora`` section: the peft config, the checks against the model, LoRA+.

Everything is peft's own implementation (DoRA, PiSSA/OLoRA/LoftQ initialisation, LoRA+'s optimizer); this
module only maps the recipe onto it and refuses what peft cannot do before a run directory exists:

- :func:`check_adapter` names the ``lora`` field whose module name or pattern matches no module of the model
  (read from ``config.json`` and built on the meta device: no weights are loaded), and DoRA on a base stored
  pre-quantized with a method peft has no DoRA layer for.
- pissa, olora and loftq move part of each base weight into the adapter at init. The adapter as it started is
  saved in the run (:data:`INITIAL_ADAPTER`) and the final one is saved converted (peft's
  ``path_initial_model_for_weight_conversion``) to a plain LoRA of twice the rank, so chat and export load it
  onto the original base like any other. Each checkpoint gets a converted copy too (:data:`PLAIN_LORA`), which
  is what :func:`plain_adapter` hands chat and export.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from lorastudio.errors import RecipeError
from lorastudio.recipe import Recipe

INITIAL_ADAPTER = "initial-adapter"
"""Run sub-folder holding a pissa/olora/loftq adapter as initialised, before any step."""

PLAIN_LORA = "plain-lora"
"""Sub-folder of such a run's checkpoint with its adapter converted to a plain LoRA (what chat and export load;
the checkpoint's own adapter stays as trained, for resuming)."""

NO_DORA = ("gptq", "awq", "aqlm", "eetq", "te", "megatron_core")
"""Pre-quantized formats whose peft LoRA layer refuses ``use_dora`` (bitsandbytes, hqq and torchao have one)."""


def peft_kwargs(recipe: Recipe) -> dict[str, Any]:
    """The ``LoraConfig`` arguments of the recipe's ``lora`` section."""
    lora = recipe.lora
    kwargs: dict[str, Any] = dict(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        bias=lora.bias,
        use_rslora=lora.use_rslora,
        use_dora=lora.use_dora,
        init_lora_weights=True if lora.init == "default" else lora.init,
        modules_to_save=list(lora.modules_to_save) or None,
        rank_pattern=dict(lora.rank_pattern),
        alpha_pattern=dict(lora.alpha_pattern),
        task_type="CAUSAL_LM",
    )
    if lora.init == "loftq":
        from peft import LoftQConfig

        kwargs["loftq_config"] = LoftQConfig(loftq_bits=4)
    return kwargs


def uses_variants(recipe: Recipe) -> bool:
    """Whether the recipe asks for anything beyond plain LoRA/rsLoRA (the unsloth path offers none of it)."""
    lora = recipe.lora
    return bool(
        lora.use_dora
        or lora.init != "default"
        or lora.plus_lr_ratio is not None
        or lora.modules_to_save
        or lora.rank_pattern
        or lora.alpha_pattern
    )


def backend_for(recipe: Recipe, backend: str) -> str:
    """``hf`` in place of ``unsloth`` when the recipe uses a variant: unsloth builds plain LoRA/rsLoRA only."""
    return "hf" if backend == "unsloth" and uses_variants(recipe) else backend


def _config_folder(recipe: Recipe) -> Path | None:
    from lorastudio.models.estimate import find_model_config_path

    path = find_model_config_path(recipe)
    return path.parent if path is not None else None


def model_module_names(recipe: Recipe) -> tuple[list[str], list[str], str | None] | None:
    """(every module name, the linear ones, the stored quantization method) of the recipe's model, built on
    the meta device from its ``config.json``; None when no config is on disk (a hub model not downloaded yet)."""
    folder = _config_folder(recipe)
    if folder is None:
        return None
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=recipe.model.trust_remote_code)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=recipe.model.trust_remote_code)
    except Exception:  # an architecture this transformers cannot build: the load itself will say so
        return None
    quant = getattr(config, "quantization_config", None)
    method = (
        quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", None)
    ) or None
    names = [n for n, _ in model.named_modules() if n]
    linear = [n for n, m in model.named_modules() if n and isinstance(m, torch.nn.Linear)]
    return names, linear, str(method) if method else None


def _leaf_names(names: list[str]) -> list[str]:
    return sorted({n.rsplit(".", 1)[-1] for n in names})


def _matches(key: str, names: list[str]) -> bool:
    """peft's rule for ``target_modules`` / ``modules_to_save`` entries: the whole name or its last parts."""
    return any(n == key or n.endswith(f".{key}") for n in names)


def _pattern_matches(pattern: str, names: list[str]) -> bool:
    """peft's rule for ``rank_pattern`` / ``alpha_pattern`` keys (a regular expression ending a module name)."""
    return any(re.match(rf"(.*\.)?({pattern})$", n) for n in names)


def check_modules(recipe: Recipe, names: list[str], linear: list[str], quant_method: str | None) -> None:
    """Refuse, naming the field, a module name or pattern that matches nothing, and DoRA on a stored
    quantization peft cannot combine it with."""
    lora, model = recipe.lora, recipe.model.name
    if isinstance(lora.target_modules, list):
        for key in lora.target_modules:
            if not _matches(key, names):
                raise RecipeError(
                    f"lora.target_modules: {key!r} matches no module of {model} "
                    f"(its linear layers: {', '.join(_leaf_names(linear))})"
                )
    for key in lora.modules_to_save:
        if not _matches(key, names):
            raise RecipeError(
                f"lora.modules_to_save: {key!r} matches no module of {model} "
                f"(e.g. lm_head, embed_tokens; its modules end in {', '.join(_leaf_names(names)[:12])}, ...)"
            )
    adapted = (
        [n for n in linear if not n.endswith("lm_head")]  # peft's all-linear leaves the output layer out
        if lora.target_modules == "all-linear"
        else [n for n in names if any(n == k or n.endswith(f".{k}") for k in lora.target_modules)]
    )
    for field, pattern in (("rank_pattern", lora.rank_pattern), ("alpha_pattern", lora.alpha_pattern)):
        for key in pattern:
            try:
                re.compile(key)
            except re.error as exc:
                raise RecipeError(f"lora.{field}: {key!r} is not a valid regular expression: {exc}") from None
            if not _pattern_matches(key, adapted):
                raise RecipeError(
                    f"lora.{field}: {key!r} matches none of the modules lora.target_modules adapts "
                    f"({', '.join(_leaf_names(adapted))})"
                )
    if lora.use_dora and quant_method in NO_DORA:
        raise RecipeError(
            f"lora.use_dora: {model} is stored {quant_method}-quantized, which peft has no DoRA layer for; "
            "use an unquantized base (model.load_in_4bit: true still works with DoRA) or set use_dora: false"
        )


def check_adapter(recipe: Recipe) -> None:
    """The model-dependent checks of :func:`check_modules`, when the model's config is on disk. A run that
    continues ``model.adapter`` trains that adapter as it was made, so its own config rules and nothing is
    checked."""
    if recipe.model.adapter is not None:
        return
    if recipe.lora.init == "loftq":
        check_loftq_machine()
    found = model_module_names(recipe)
    if found is not None:
        check_modules(recipe, *found)


def check_loftq_machine(cuda: bool | None = None, bitsandbytes: bool | None = None) -> None:
    """peft's LoftQ quantizes each weight with bitsandbytes on a CUDA (or XPU) device, whatever the base is on."""
    import importlib.util

    if cuda is None:
        import torch

        cuda = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    if bitsandbytes is None:
        bitsandbytes = importlib.util.find_spec("bitsandbytes") is not None
    if not cuda:
        raise RecipeError(
            "lora.init: loftq runs peft's 4-bit quantizer on a CUDA GPU, and this machine has none; "
            "use lora.init: olora or pissa"
        )
    if not bitsandbytes:
        raise RecipeError(
            "lora.init: loftq quantizes with bitsandbytes, which is not installed (pip install 'lorastudio[gpu]')"
        )


def loraplus_optimizer(recipe: Recipe, model: Any, args: Any) -> Any:
    """peft's LoRA+ optimizer for ``model``: the optimizer ``train.optimizer`` names, with the B matrices'
    learning rate ``lora.plus_lr_ratio`` times the A matrices'."""
    from peft.optimizers import create_loraplus_optimizer
    from transformers import Trainer

    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    optimizer_kwargs = {k: v for k, v in optimizer_kwargs.items() if k != "lr"}
    assert recipe.lora.plus_lr_ratio is not None
    return create_loraplus_optimizer(
        model,
        optimizer_cls,
        lr=recipe.train.learning_rate,
        loraplus_lr_ratio=recipe.lora.plus_lr_ratio,
        weight_decay=recipe.train.weight_decay,
        **optimizer_kwargs,
    )


def prepare_trainer(recipe: Recipe, trainer: Any, run_dir: Path, is_main: bool) -> None:
    """Before training: LoRA+'s optimizer in place of the trainer's own, and a moving init's starting adapter
    saved (kept from the first start when the run resumes: the init is the same, the file must be too)."""
    model = trainer.model
    if recipe.lora.plus_lr_ratio is not None:
        trainer.optimizer = loraplus_optimizer(recipe, model, trainer.args)
    if recipe.lora.moves_base_weights and recipe.model.adapter is None and is_main:
        save_initial(model, run_dir)
        trainer.add_callback(_plain_checkpoints(run_dir))


def save_initial(model: Any, run_dir: Path) -> Path:
    """The adapter as initialised, with ``init_lora_weights`` true as peft's conversion wants it."""
    target = run_dir / INITIAL_ADAPTER
    if (target / "adapter_config.json").exists():
        return target
    name = model.active_adapter
    config = model.peft_config[name]
    moved, config.init_lora_weights = config.init_lora_weights, True
    try:
        partial = run_dir / f".{INITIAL_ADAPTER}.tmp"
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial, selected_adapters=[name])
        partial.rename(target)  # whole or absent: a resume never converts against half a file
    finally:
        config.init_lora_weights = moved
    return target


def save_converted(model: Any, target: Path, run_dir: Path) -> bool:
    """Save ``model``'s active adapter into ``target`` as a plain LoRA of the original base when the run has a
    starting adapter (pissa/olora/loftq); False (nothing written) when it has none."""
    initial = run_dir / INITIAL_ADAPTER
    if not (initial / "adapter_config.json").exists():
        return False
    import warnings

    name = model.active_adapter
    with warnings.catch_warnings():  # peft warns that pissa "should not be used with other adapters": the
        warnings.simplefilter("ignore")  # other one is the initial adapter it loads itself to subtract
        model.save_pretrained(
            target, selected_adapters=[name], path_initial_model_for_weight_conversion=str(initial)
        )
    if INITIAL_ADAPTER in model.peft_config:  # peft loaded it beside the trained one to subtract it
        model.delete_adapter(INITIAL_ADAPTER)
    return True


def _plain_checkpoints(run_dir: Path) -> Any:
    """A callback writing each checkpoint's converted copy as soon as the trainer has saved it."""
    from transformers import TrainerCallback

    class PlainCheckpoints(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if model is not None and folder.is_dir():
                partial = folder / f".{PLAIN_LORA}.tmp"
                shutil.rmtree(partial, ignore_errors=True)
                if save_converted(model, partial, run_dir):
                    # the same checkpoint may be saved twice (the last step, a stop): the newer copy wins
                    shutil.rmtree(folder / PLAIN_LORA, ignore_errors=True)
                    partial.rename(folder / PLAIN_LORA)

    return PlainCheckpoints()


def plain_adapter(folder: Path) -> Path:
    """The folder chat and export load for a checkpoint: its converted copy where the run has one."""
    plain = folder / PLAIN_LORA
    return plain if (plain / "adapter_config.json").exists() else folder
