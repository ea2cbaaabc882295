"""The training worker: ``python -m lorastudio.worker RUN_DIR [--resume]``.

It runs in its own session (started by :func:`runs.start_worker`), owns the run
directory, and reports only through ``events.jsonl``. SIGTERM or SIGINT saves the
adapter at the current step and ends with status ``stopped``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from lorastudio.errors import StudioError
from lorastudio.quiet import quiet_libraries
from lorastudio.settings import read_settings
from lorastudio.train.run.eventlog import EVENTS_FILE, EventWriter
from lorastudio.train.run.events import (
    CheckpointEvent,
    CompletionsEvent,
    EvalEvent,
    LogEvent,
    MetricsEvent,
    StatusEvent,
)
from lorastudio.train.run.rundir import RECIPE_FILE, latest_checkpoint, load_run_recipe, update_meta
from lorastudio.train.run.summaries import SummarizingWriter
from lorastudio.train.trainer import distributed as dist
from lorastudio.train.trainer.backend import OOM_HINTS, oom_cause
from lorastudio.train.trainer.logcapture import capture_warnings

TELEMETRY_INTERVAL_S = 1.5

CALLBACK_MAKERS: list[Any] = []
"""More TrainerCallbacks, each maker called as ``maker(recipe, tokenizer, writer, stop, timing, where)``: the
task scores of ``train.eval_tasks`` (a higher stage's, installed by ``lorastudio.worker``: see
``evaluate/intraining.py``)."""


class StopNow(BaseException):  # noqa: N818 - not an error: a second stop request
    """Raised by a second SIGTERM/SIGINT wherever the main thread is: the run ends ``stopped`` without saving."""


class StopFlag:
    """Set by SIGTERM/SIGINT; the trainer callback turns it into ``should_training_stop`` (and a reward still
    scoring is ended, see rewards.RewardHost). A second signal, when the first has not ended the run, raises
    :class:`StopNow` in the main thread: a stop must work whatever the run is stuck in."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None
        self.saving = False
        """Set while the adapter is written: a second stop then waits for it (a half-written adapter is lost)."""

    def install(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            if self.event.is_set() and not self.saving:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a third one ends the process outright
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                raise StopNow(signal.Signals(signum).name)
            self.signal_name = signal.Signals(signum).name
            self.event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal going away is not a reason to stop


def _telemetry_loop(writer: EventWriter, done: threading.Event, several: bool = False) -> None:
    from lorastudio.train.trainer.telemetry import Nvml, telemetry_event

    nvml = Nvml()
    while not done.wait(TELEMETRY_INTERVAL_S):
        with contextlib.suppress(Exception):  # telemetry must never take training down
            # every local GPU; "this run" memory counts all of the run's processes
            writer.emit(telemetry_event(nvml, dist.run_pids() if several else None))


def make_callback(writer: EventWriter, stop: StopFlag, max_steps_hint: int):
    from transformers import TrainerCallback

    class EventsCallback(TrainerCallback):
        """Turns trainer logs into ``metrics`` events and the stop flag into a clean stop."""

        def __init__(self) -> None:
            self.start = time.monotonic()
            self.last_time = self.start
            self.last_tokens = 0
            self.first_step_time: float | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = self.last_time = time.monotonic()
            self.last_tokens = state.num_input_tokens_seen or 0
            writer.emit(
                StatusEvent(
                    status="training",
                    max_steps=state.max_steps or max_steps_hint,
                    step=state.global_step,
                    world_size=args.world_size,
                )
            )

        def on_step_end(self, args, state, control, **kwargs):
            if dist.any_rank(stop.event.is_set()):  # collective: every rank stops after the same step
                stop.event.set()
                control.should_training_stop = True
                control.should_save = True  # a checkpoint at the stop step, so `studio resume` loses nothing
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "eval_loss" in logs:
                writer.emit(
                    EvalEvent(
                        step=state.global_step,
                        epoch=round(state.epoch or 0, 4),
                        eval_loss=logs["eval_loss"],
                        eval_runtime_s=logs.get("eval_runtime"),
                    )
                )
                self.last_time = time.monotonic()  # eval time is not training time: keep it out of tokens/s
                return
            if "loss" not in logs:
                return
            now = time.monotonic()
            tokens = state.num_input_tokens_seen or 0
            dt = now - self.last_time
            tps = (tokens - self.last_tokens) / dt if dt > 0 and tokens > self.last_tokens else None
            self.last_time, self.last_tokens = now, tokens
            elapsed = now - self.start
            done_steps = max(state.global_step, 1)
            eta = (
                elapsed / done_steps * max(state.max_steps - state.global_step, 0)
                if state.max_steps
                else None
            )
            writer.emit(
                MetricsEvent(
                    step=state.global_step,
                    max_steps=state.max_steps,
                    epoch=round(state.epoch or 0, 4),
                    loss=logs.get("loss"),
                    learning_rate=logs.get("learning_rate"),
                    grad_norm=logs.get("grad_norm"),
                    tokens_per_s=round(tps, 1) if tps else None,
                    tokens_seen=tokens,
                    eta_s=round(eta, 1) if eta is not None else None,
                    elapsed_s=round(elapsed, 2),
                )
            )
            loss = logs.get("loss")
            if isinstance(loss, (int, float)) and not math.isfinite(loss):  # the weights are NaN from here on
                raise StudioError(
                    f"the training loss is {loss} at step {state.global_step}: the weights are no longer "
                    "numbers, so nothing more is learnt and no adapter is saved (lower train.learning_rate or "
                    "raise train.warmup_steps)"
                )

        def on_save(self, args, state, control, **kwargs):
            best = state.best_model_checkpoint  # tracked by the trainer when eval data exists
            by = args.metric_for_best_model
            by = None if by in (None, "eval_loss", "loss") else by  # else train.best_by's task score
            writer.emit(
                CheckpointEvent(
                    step=state.global_step,
                    best_checkpoint=f"checkpoints/{Path(best).name}" if best else None,
                    best_eval_loss=state.best_metric if best and by is None else None,
                    best_by=by if best else None,
                    best_score=state.best_metric if best and by is not None else None,
                )
            )

    return EventsCallback()


def _samples_callbacks(recipe, tokenizer, writer: EventWriter, stop: StopFlag, timing, where) -> list:
    """The sample-replies callback (rank 0 alone; none under FSDP, whose sharded weights cannot generate on one
    rank, and none when ``train.samples`` is off)."""
    if not where.is_main or (where.distributed and recipe.train.distributed == "fsdp"):
        return []
    from lorastudio.train.trainer.samples import build_sampler, samples_callback

    try:
        sampler = build_sampler(recipe, tokenizer)
    except Exception as exc:  # samples are a view on training, never a reason for it to fail
        writer.emit(
            LogEvent(level="warning", message=f"no sample replies: {type(exc).__name__}: {exc}"[:300])
        )
        return []
    if sampler is None:
        return []
    writer.emit(
        LogEvent(
            message=f"sample replies: {len(sampler.prompts)} prompts, "
            f"up to {sampler.max_new_tokens} tokens each, at every evaluation",
        )
    )
    return [samples_callback(writer, sampler, stop, timing)]


def _more_callbacks(recipe, tokenizer, writer: EventWriter, stop: StopFlag, timing, where) -> list:
    return [c for make in CALLBACK_MAKERS for c in make(recipe, tokenizer, writer, stop, timing, where)]


def _give_trainer(trainer) -> None:
    """Callbacks that log through the trainer (so ``report_to`` trackers hear them) get it here."""
    for callback in trainer.callback_handler.callbacks:
        if getattr(callback, "wants_trainer", False):
            callback.trainer = trainer


def build_trainer(
    recipe, model, tokenizer, train_rows, eval_rows, run_dir: Path, hw, callbacks, tracking=None
):
    """An SFTTrainer fed our own pre-tokenized samples (with our labels); ``tracking`` (trackers.plan) adds the
    experiment trackers of ``train.report_to``."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from lorastudio.train.trainer.methods import common_args

    args = common_args(recipe, run_dir, hw, has_eval=bool(len(eval_rows)))
    if tracking:
        args.update(report_to=tracking.report_to, **tracking.args)
    config = SFTConfig(
        **args,
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,
        packing=False,  # we pack ourselves (see encode.pack), so labels never cross samples
        # packed rows carry seq_lengths: the collator restarts position ids at each document and passes no
        # attention mask, so the model attends within each document only (see encode.packed)
        padding_free=recipe.train.packing,
    )
    # Arrow datasets from the prepared-data cache stay memory-mapped; plain lists still work.
    train_ds = Dataset.from_list(train_rows) if isinstance(train_rows, list) else train_rows
    eval_ds = (
        (Dataset.from_list(eval_rows) if isinstance(eval_rows, list) else eval_rows)
        if len(eval_rows)
        else None
    )
    from transformers.trainer_callback import PrinterCallback

    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # our events replace its stdout dicts
    from lorastudio.train.trainer.fulltune import install_embedding_lr

    install_embedding_lr(trainer, recipe)
    return trainer


def encode_for_training(recipe, tokenizer, waiting=None):
    """Arrow datasets from the prepared-data cache (encoded now when absent), and the detected format;
    ``waiting`` hears about a wait for another process encoding the same entry."""
    from lorastudio.data.prepared.cache import prepare_data

    data = prepare_data(recipe, tokenizer=tokenizer, waiting=waiting)
    return data.train, data.eval if data.eval is not None else [], data.format


def _method_trainer(recipe, backend, hw, where, writer, stop, run_dir: Path, tracking=None):
    """(trainer, tokenizer) for train.method dpo/kto/orpo/grpo: studio's encoded rows into TRL's trainer."""
    from lorastudio.data.prepared.methodcache import prepare_method_data
    from lorastudio.models.resolve import throttled
    from lorastudio.train.trainer.methods import build_method_trainer, load_method_model, make_method_callback

    if backend == "unsloth" and recipe.train.method in ("dpo", "orpo", "kto"):
        from unsloth import PatchDPOTrainer  # unsloth's patched path for TRL's preference trainers

        PatchDPOTrainer()
    if recipe.train.method == "grpo" and recipe.grpo is not None:
        from lorastudio.train.trainer.rewards import check_rewards

        # a broken reward file fails the run now, before the model loads
        check_rewards(recipe.grpo.rewards, recipe.grpo.reward_timeout)
    with dist.main_first(where):
        model, tokenizer = load_method_model(
            recipe,
            backend,
            hw,
            progress=throttled(lambda f, m: writer.emit(LogEvent(message=f"model: {m}")), 2.0),
        )
    writer.emit(StatusEvent(status="loading data", source=recipe.data.source))
    with dist.main_first(where):
        data = prepare_method_data(recipe, tokenizer)
    skipped = ", ".join(f"{n} {why}" for why, n in data.stats.skipped.most_common())
    writer.emit(
        LogEvent(
            message=f"{len(data.train)} {recipe.train.method} training rows ({data.encoder.format})"
            f", {len(data.eval)} eval rows"
            + (f"; skipped: {skipped}" if skipped else "")
            + (" (prepared-data cache)" if data.cached else ""),
        )
    )
    callbacks = [make_callback(writer, stop, recipe.train.max_steps or 0), make_method_callback(writer)]
    callbacks += _samples_callbacks(recipe, tokenizer, writer, stop, callbacks[0], where)
    callbacks += _more_callbacks(recipe, tokenizer, writer, stop, callbacks[0], where)
    if not hw.cuda and not where.distributed:
        from lorastudio.train.trainer.queue import cpu_share_callback

        callbacks.append(cpu_share_callback())

    def samples(recent):
        writer.emit(CompletionsEvent(samples=tuple(recent)))

    trainer = build_method_trainer(
        recipe,
        model,
        tokenizer,
        data,
        run_dir,
        hw,
        callbacks,
        samples=samples,
        tracking=tracking,
        stop=stop.event,
    )
    return trainer, tokenizer


def save_adapter(model, tokenizer, run_dir: Path) -> Path:
    target = run_dir / "adapter"
    peft_config = getattr(model, "peft_config", None)
    from lorastudio.train.trainer.loravariants import save_converted

    if save_converted(model, target, run_dir):  # pissa/olora/loftq: a plain LoRA of the original base
        pass
    elif isinstance(peft_config, dict) and len(peft_config) > 1:
        # DPO/KTO keep their frozen reference as a second adapter (TRL's `ref`); the run's adapter is the
        # trained one alone, or every export and upload would carry a copy of the reference too
        model.save_pretrained(target, selected_adapters=[model.active_adapter])
    else:
        model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    (target / "recipe.yaml").write_text((run_dir / RECIPE_FILE).read_text())
    return target


def _save_full(trainer, tokenizer, run_dir: Path, where) -> Path:
    """A full or freeze run's model into ``model/``; under FSDP every rank takes part in gathering it."""
    from lorastudio.train.trainer.adapters import MODEL_DIR

    target = run_dir / MODEL_DIR
    if trainer.is_fsdp_enabled:
        trainer.save_model(str(target))
    elif where.is_main:
        trainer.model.save_pretrained(target, safe_serialization=True)
    if where.is_main:
        tokenizer.save_pretrained(target)
        (target / "recipe.yaml").write_text((run_dir / RECIPE_FILE).read_text())
    return target


def run(run_dir: Path, resume: bool = False) -> int:
    quiet_libraries()
    where = dist.placement()  # rank 0 alone writes the run directory; see train/trainer/distributed.py
    writer = SummarizingWriter(run_dir / EVENTS_FILE) if where.is_main else dist.NullWriter()
    if where.is_main:
        capture_warnings(writer)
    stop = StopFlag()
    stop.install()
    if where.is_main and read_settings().supervisor_pid is None:  # else run.json keeps the supervisor's
        update_meta(run_dir, pid=os.getpid(), pid_started=_own_start_time())
    writer.emit(StatusEvent(status="starting", pid=os.getpid(), resume=resume, world_size=where.world_size))
    telemetry_done = threading.Event()
    if where.is_main:
        threading.Thread(
            target=_telemetry_loop, args=(writer, telemetry_done, where.distributed), daemon=True
        ).start()
    try:
        recipe = load_run_recipe(run_dir)
        from lorastudio.train.trainer import trackers

        trackers.check_available(recipe)  # uninstalled since the run was created: fail now, naming the extra
        tracking = trackers.plan(recipe, run_dir)
        trackers.apply(tracking)
        if where.is_main and tracking.where:
            update_meta(run_dir, trackers=tracking.where)
        from lorastudio.train.trainer.backend import choose_backend, detect_hardware

        dist.init_process_group(where)
        hw = detect_hardware()
        # One GPU, one run. A multi-device run does not queue (its ranks would each wait on a lock); left for later.
        if not where.distributed:
            from lorastudio.train.trainer.queue import take_device

            device_lock = take_device(
                hw.cuda, stop.event, lambda status: writer.emit(StatusEvent(status=status))
            )  # held until this process ends
            if device_lock is False:
                writer.emit(StatusEvent(status="stopped", cause="stopped while queued; it never started"))
                return 0
        backend = choose_backend(hw, devices=where.world_size)
        from lorastudio.train.trainer.loravariants import backend_for

        if backend_for(recipe, backend) != backend:
            backend = backend_for(recipe, backend)
            writer.emit(
                LogEvent(message="the lora section's variants train with transformers + peft, not unsloth")
            )
        if recipe.train.method in ("sft", "pretrain"):
            from lorastudio.train.trainer.trlneeds import sft_blocker

            if (
                blocked := sft_blocker()
            ) is not None:  # said before minutes of loading, not at the first step
                raise StudioError(blocked)
        writer.emit(
            StatusEvent(
                status="loading model", backend=backend, device=hw.device_name, model=recipe.model.name
            )
        )
        from lorastudio.models.resolve import throttled
        from lorastudio.train.trainer.backend import load_for_training
        from lorastudio.train.trainer.vlmtrain import is_vision_recipe, start_vision

        if (
            not recipe.train.supervised
        ):  # dpo, kto, orpo, grpo: their own data and trainer (train/trainer/methods.py)
            trainer, tokenizer = _method_trainer(recipe, backend, hw, where, writer, stop, run_dir, tracking)
        elif is_vision_recipe(recipe):
            # a vision-language model: its processor and collator (train/trainer/vlmtrain.py)
            callbacks = [make_callback(writer, stop, recipe.train.max_steps or 0)]
            trainer, tokenizer = start_vision(recipe, hw, where, writer, callbacks, run_dir, tracking)
        else:
            with dist.main_first(
                where
            ):  # one process downloads or builds the model, the others find it cached
                model, tokenizer = load_for_training(
                    recipe,
                    backend,
                    hw,
                    progress=throttled(lambda f, m: writer.emit(LogEvent(message=f"model: {m}")), 2.0),
                )
            writer.emit(StatusEvent(status="loading data", source=recipe.data.source))
            with dist.main_first(where):
                train_rows, eval_rows, fmt = encode_for_training(
                    recipe,
                    tokenizer,
                    throttled(lambda f, m: writer.emit(LogEvent(message=f"data: {m}")), 2.0),
                )
            writer.emit(
                LogEvent(message=f"{len(train_rows)} training samples ({fmt}), {len(eval_rows)} eval samples")
            )
            max_steps_hint = recipe.train.max_steps or 0
            callbacks = [make_callback(writer, stop, max_steps_hint)]
            callbacks += _samples_callbacks(recipe, tokenizer, writer, stop, callbacks[0], where)
            callbacks += _more_callbacks(recipe, tokenizer, writer, stop, callbacks[0], where)
            if not hw.cuda and not where.distributed:  # distributed CPU ranks already run one thread each
                from lorastudio.train.trainer.queue import cpu_share_callback

                callbacks.append(cpu_share_callback())  # two CPU runs share the cores instead of thrashing
            trainer = build_trainer(
                recipe, model, tokenizer, train_rows, eval_rows, run_dir, hw, callbacks, tracking
            )
        from lorastudio.train.trainer.loravariants import prepare_trainer

        prepare_trainer(recipe, trainer, run_dir, where.is_main)  # LoRA+'s optimizer, pissa's first adapter
        _give_trainer(trainer)
        checkpoint = latest_checkpoint(run_dir) if resume else None
        if resume and checkpoint is None:
            writer.emit(LogEvent(message="no checkpoint found; starting from step 0"))
        if checkpoint is not None:
            writer.emit(LogEvent(message=f"resuming from {checkpoint.name}"))
        if not dist.any_rank(stop.event.is_set()):
            from lorastudio.train.trainer.rewards import RewardsStopped

            try:
                trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            except RewardsStopped:  # mid-step, before the update: the weights are those of the last step
                stop.event.set()
        else:
            stop.event.set()
        stop.saving = True
        writer.emit(StatusEvent(status="saving", step=trainer.state.global_step))
        if recipe.train.tuning != "lora":  # full or freeze: the whole model, in model/
            adapter = _save_full(trainer, tokenizer, run_dir, where)
        elif trainer.is_fsdp_enabled:
            adapter = dist.save_sharded_adapter(trainer, tokenizer, run_dir, where, save_adapter)
        elif where.is_main:
            adapter = save_adapter(trainer.model, tokenizer, run_dir)
        else:
            adapter = run_dir / "adapter"
        # Every rank leaves the process group together: a rank with nothing to save that tore down its end
        # while rank 0 was still saving was seen killed by SIGABRT on a loaded machine.
        dist.barrier()
        if stop.event.is_set():
            writer.emit(
                StatusEvent(
                    status="stopped",
                    step=trainer.state.global_step,
                    adapter=str(adapter),
                    cause=f"stopped by {stop.signal_name or 'a stop request'}; "
                    f"{adapter.name} saved at step {trainer.state.global_step}",
                )
            )
        else:
            writer.emit(StatusEvent(status="done", step=trainer.state.global_step, adapter=str(adapter)))
        return 0
    except StudioError as exc:
        writer.emit(StatusEvent(status="failed", cause=str(exc)))
        return 1
    except StopNow as exc:
        writer.emit(
            StatusEvent(
                status="stopped",
                cause=f"stopped at once by a second {exc}, without saving; "
                "`studio resume` starts from the last checkpoint",
            )
        )
        return 0
    except BaseException as exc:  # the run must end with a status whatever happened
        tail = "".join(traceback.format_exception(exc)[-6:])
        if where.distributed and (dist.is_comm_error(exc) or not where.is_main):
            # a peer died or went silent: the launcher's supervisor names the process that failed first
            writer.emit(LogEvent(message=f"{type(exc).__name__}: {exc}"[:500], rank_error=True))
            print(f"studio rank {where.rank} failed: {type(exc).__name__}: {exc}"[:1000], file=sys.stderr)
            print(tail, file=sys.stderr)
            return 1
        if "out of memory" in str(exc).lower():
            writer.emit(
                StatusEvent(
                    status="failed", cause=oom_cause(str(exc)), hints=tuple(OOM_HINTS), traceback=tail
                )
            )
        else:
            writer.emit(StatusEvent(status="failed", cause=f"{type(exc).__name__}: {exc}", traceback=tail))
        print(tail, file=sys.stderr)
        return 1
    finally:
        telemetry_done.set()
        writer.close()
        dist.leave_process_group()


def _own_start_time() -> float | None:
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lorastudio.worker")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    return run(args.run_dir.resolve(), args.resume)


if __name__ == "__main__":
    sys.exit(main())
