"""Which adapter of a run to load: the final one, a checkpoint, or the best checkpoint by eval loss.

Chat targets name them as ``RUN@best``, ``RUN@latest`` (the newest complete checkpoint, for a run still
training), ``RUN@checkpoint-40`` (or ``RUN@40``), ``RUN@final``, or
by the checkpoint folder's own path (``runs/NAME/checkpoints/checkpoint-40``).
"""

from __future__ import annotations

from pathlib import Path

from lorastudio.errors import RunError
from lorastudio.train.run.runstate import load_state

ADAPTER_CONFIG = "adapter_config.json"
MODEL_CONFIG = "config.json"
MODEL_DIR = "model"
"""Where a ``train.tuning: full`` or ``freeze`` run saves its trained model (a LoRA run's is ``adapter``)."""


def holds_weights(folder: Path) -> bool:
    """An adapter folder, or a whole model's (a full or freeze run's ``model/`` and checkpoints)."""
    return (folder / ADAPTER_CONFIG).exists() or (folder / MODEL_CONFIG).exists()


def is_full_model(folder: Path) -> bool:
    """A whole trained model (loaded as a model of its own, no base), not an adapter."""
    return not (folder / ADAPTER_CONFIG).exists() and (folder / MODEL_CONFIG).exists()


def final_weights(run_dir: Path) -> Path | None:
    """The run's final adapter, or its final model for a full or freeze run; None before it is saved."""
    for folder in (run_dir / "adapter", run_dir / MODEL_DIR):
        if holds_weights(folder):
            return folder
    return None


def split_target(target: str) -> tuple[str, str | None]:
    """``NAME@WHICH`` -> (NAME, WHICH); a target with no ``@`` (or a path that exists as written) has none."""
    if "@" not in target or Path(target).expanduser().exists():
        return target, None
    name, which = target.rsplit("@", 1)
    return name, which or None


def run_of_checkpoint(path: Path) -> Path | None:
    """The run directory holding a ``checkpoints/checkpoint-N`` folder, or None when ``path`` is not one."""
    from lorastudio.train.run.rundir import RUN_FILE

    if holds_weights(path) and path.parent.name == "checkpoints" and (path.parent.parent / RUN_FILE).exists():
        return path.parent.parent
    return None


def best_checkpoint(run_dir: Path) -> tuple[str, float] | None:
    """(folder relative to the run, eval loss or its ``train.best_by`` score) of the run's best checkpoint,
    from its events."""
    state = load_state(run_dir, curves=False)
    figure = state.best_eval_loss if state.best_eval_loss is not None else state.best_score
    if state.best_checkpoint is None or figure is None:
        return None
    return state.best_checkpoint, float(figure)


def resolve_adapter(run_dir: Path, which: str | None = None) -> Path:
    """The adapter folder ``which`` names (None or ``final``: the run's final adapter); for a full or freeze
    run the model folder (its ``model/``, or a checkpoint, which holds the whole model)."""
    if which in (None, "final", "adapter", MODEL_DIR):
        final = final_weights(run_dir)
        if final is None:
            raise RunError(
                f"run {run_dir.name} has no adapter yet (it is saved when training ends or stops); "
                "chat with the base model instead (studio chat --base, or Ctrl+T in Chat)"
            )
        return final
    if which == "best":
        best = best_checkpoint(run_dir)
        if best is None:
            raise RunError(
                f"run {run_dir.name} has no best checkpoint (it had no eval data, or has not "
                f"evaluated yet); use {run_dir.name}@final"
            )
        folder = run_dir / best[0]
    elif which == "latest":
        latest = latest_complete_checkpoint(run_dir)
        if latest is None:
            raise RunError(
                f"run {run_dir.name} has saved no checkpoint yet (train.save_steps); wait for the first"
            )
        folder = latest
    else:
        folder = (
            run_dir / "checkpoints" / (which if which.startswith("checkpoint-") else f"checkpoint-{which}")
        )
    if not holds_weights(folder):
        kept = sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*"))
        raise RunError(
            f"run {run_dir.name} has no adapter in {folder.relative_to(run_dir)} "
            f"(kept: {', '.join(kept) or 'none'})"
        )
    from lorastudio.train.trainer.loravariants import plain_adapter

    return plain_adapter(folder)  # a pissa/olora/loftq checkpoint: its copy converted for the original base


TRAINER_STATE = "trainer_state.json"
"""The trainer writes it last into a checkpoint folder: a folder without it is still being written."""


def latest_complete_checkpoint(run_dir: Path) -> Path | None:
    """The newest ``checkpoints/checkpoint-N`` whose adapter and trainer state are both written."""
    import re

    folder = run_dir / "checkpoints"
    found = [
        (int(m.group(1)), p)
        for p in (folder.iterdir() if folder.is_dir() else [])
        if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))
        and holds_weights(p)
        and (p / TRAINER_STATE).exists()
    ]
    return max(found)[1] if found else None
