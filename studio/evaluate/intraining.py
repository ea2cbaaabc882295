"""Task scores while a run trains (``train.eval_tasks``): lm-eval tasks on the model the trainer holds.

At each evaluation and at the end, a TrainerCallback scores the recipe's tasks (``train.eval_tasks_limit``
documents each) on the trainer's own model object: put in eval mode, no reload, no gradients, its train mode
restored after. It goes through the runner's ``simple_evaluate`` call (:func:`runner.task_results`) that
``studio eval`` makes, and writes one ``task_scores`` event per round (``task/metric`` named as studio eval's
table names them). The scores are logged through the trainer's ``log`` too (``train.report_to`` trackers
chart them as ``tasks/TASK/METRIC``), and with ``train.best_by: TASK/METRIC`` they are added to the
evaluation's metrics as ``eval_TASK/METRIC``: the trainer's own best-checkpoint tracking (which also keeps
that checkpoint from ``save_total_limit``'s rotation) then picks by the score.

The training stage may not import this stage, so the face that starts the worker (``lorastudio.worker``)
and the faces that create runs call :func:`install_worker` and :func:`install`, which hand the recipe check and the callback maker to
the training stage's hooks (``train/run/recipehooks.py`` ``RECIPE_CHECKS``, ``train/trainer/trainrun.py`` ``CALLBACK_MAKERS``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from lorastudio.errors import RecipeError, StudioError

if TYPE_CHECKING:
    from lorastudio.recipe import Recipe


def task_names(tasks: list[str | dict[str, Any]]) -> list[str]:
    from lorastudio.evaluate.runner import task_name

    return [task_name(t) for t in tasks]


def check_eval_tasks(recipe: Recipe) -> list[str | dict[str, Any]]:
    """The recipe's ``train.eval_tasks`` resolved as ``studio eval`` resolves them; an unknown task, lm-eval
    missing, or a ``train.best_by`` task not among them raises a :class:`RecipeError` naming the field."""
    from lorastudio.evaluate.tasks import resolve_tasks

    train = recipe.train
    if not train.eval_tasks:
        return []
    try:
        tasks = resolve_tasks(tuple(train.eval_tasks))
    except StudioError as exc:
        raise RecipeError(f"train.eval_tasks: {exc}") from None
    if train.best_by != "eval_loss":
        names = task_names(tasks)
        task = train.best_by.partition("/")[0]
        if task not in names:
            raise RecipeError(
                f"train.best_by: {train.best_by} names task {task}, which is not in train.eval_tasks "
                f"({', '.join(names)})"
            )
    return tasks


def match_metric(best_by: str, values: dict[str, float]) -> float | None:
    """``best_by``'s value among a round's scores: the exact name, else the same metric under a filter
    (``studio_arithmetic/exact_match`` is ``studio_arithmetic/exact_match (first_number)``)."""
    if best_by in values:
        return values[best_by]
    return next((v for name, v in values.items() if name.split(" (", 1)[0] == best_by), None)


class TaskScorer:
    """The resolved tasks and how to score them on a loaded model and tokenizer."""

    def __init__(self, recipe: Recipe, tasks: list[str | dict[str, Any]], tokenizer: Any) -> None:
        self.recipe, self.tasks, self.tokenizer = recipe, tasks, tokenizer
        self.limit = recipe.train.eval_tasks_limit
        self.task_manager: Any = None
        """Built at the first round, reused by the others."""

    def score(self, model: Any) -> dict[str, float]:
        """Every task on ``model`` as it is now; its train/eval mode and gradients left as found."""
        import torch

        from lorastudio.evaluate.runner import lm_of, metric_rows, task_manager_for, task_results

        system = self.recipe.chat.system_prompt or self.recipe.data.system_prompt or None
        was_training = model.training
        use_cache = getattr(model.config, "use_cache", None)
        values: dict[str, float] = {}
        if self.task_manager is None:
            self.task_manager = task_manager_for(self.tasks)
        try:
            model.eval()
            model.config.use_cache = True  # generation tasks decode token by token
            with torch.no_grad():
                # the training batch fits beside the optimizer state; lm-eval's `auto` would probe past it
                lm = lm_of(model, self.tokenizer, self.recipe.train.batch_size)
                for task in self.tasks:
                    results = task_results(
                        lm,
                        task,
                        limit=self.limit,
                        num_fewshot=None,
                        apply_chat_template=bool(getattr(self.tokenizer, "chat_template", None)),
                        system=system,
                        log_samples=False,
                        task_manager=self.task_manager,
                    )
                    values.update(
                        {k: v["value"] for k, v in metric_rows(results).items() if v["value"] is not None}
                    )
        finally:
            model.train(was_training)
            if use_cache is not None:
                model.config.use_cache = use_cache
        return values


def task_scores_callback(writer: Any, scorer: TaskScorer, stop: Any, timing: Any = None) -> Any:
    """A TrainerCallback scoring the tasks after each evaluation and at the end (see the module docstring).

    ``timing`` is the events callback, whose interval clock is moved on by each round (tokens/s counts training
    only); ``stop`` is the worker's stop flag: a stopped run skips the final round. A round that fails logs a
    warning and turns the scores off for the rest of the run, unless ``best_by`` needs them."""
    from transformers import TrainerCallback

    from lorastudio.train.run.events import LogEvent, TaskScoresEvent

    best_by = scorer.recipe.train.best_by

    class TaskScoresCallback(TrainerCallback):
        wants_trainer = True
        """The worker sets :attr:`trainer` once the trainer is built."""

        def __init__(self) -> None:
            self.trainer: Any = None
            """The trainer: its ``log`` reaches the ``report_to`` trackers."""
            self.last_step: int | None = None
            self.off = False

        def _round(self, model: Any, step: int, at: str) -> dict[str, float]:
            if self.off or model is None:
                return {}
            started = time.monotonic()
            try:
                values = scorer.score(model)
            except Exception as exc:  # scores are a view on training, never a reason for it to fail
                if best_by != "eval_loss":
                    raise  # the best checkpoint cannot be chosen without them: the run fails, saying why
                self.off = True
                writer.emit(
                    LogEvent(
                        level="warning",
                        message=f"task scores turned off: {type(exc).__name__}: {exc}"[:300],
                    )
                )
                return {}
            seconds = time.monotonic() - started
            self.last_step = step
            writer.emit(TaskScoresEvent(step=step, at=at, values=values, limit=scorer.limit, seconds=seconds))
            if timing is not None:
                timing.last_time += seconds
            if self.trainer is not None and values:
                self.trainer.log({f"tasks/{name}": value for name, value in values.items()})
            return values

        def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
            values = self._round(model, state.global_step, "eval")
            if best_by != "eval_loss" and metrics is not None:
                value = match_metric(best_by, values)
                if value is None:
                    raise StudioError(
                        f"train.best_by: {best_by}: no such score; the tasks gave {', '.join(sorted(values))}"
                    )
                metrics[f"eval_{best_by}"] = value  # the trainer's best-checkpoint choice reads it

        def on_train_end(self, args, state, control, model=None, **kwargs):
            if not stop.event.is_set() and self.last_step != state.global_step:
                self._round(model, state.global_step, "end")

    return TaskScoresCallback()


def callbacks_for(
    recipe: Recipe, tokenizer: Any, writer: Any, stop: Any, timing: Any, where: Any
) -> list[Any]:
    """The worker's task-scores callback (rank 0 alone; none under FSDP, whose sharded weights cannot run on
    one rank, and none without ``train.eval_tasks``)."""
    if not recipe.train.eval_tasks:
        return []
    from lorastudio.train.run.events import LogEvent  # here: the faces call install() as they import

    if not where.is_main:
        return [] if recipe.train.best_by == "eval_loss" else [_rank_placeholder(recipe.train.best_by)]
    if where.distributed and recipe.train.distributed == "fsdp":
        writer.emit(LogEvent(level="warning", message="train.eval_tasks: not scored under FSDP"))
        return []
    tasks = check_eval_tasks(recipe)
    writer.emit(
        LogEvent(
            message=f"task scores: {', '.join(task_names(tasks))}, {recipe.train.eval_tasks_limit} documents each, "
            "at every evaluation",
        )
    )
    return [task_scores_callback(writer, TaskScorer(recipe, tasks, tokenizer), stop, timing)]


def _rank_placeholder(best_by: str) -> Any:
    """On a DDP rank other than 0 (which alone scores): the ``best_by`` key the trainer's best-checkpoint
    check reads, which would raise without it. Only rank 0's choice is used (it saves, rotates and writes)."""
    from transformers import TrainerCallback

    class BestByPlaceholder(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if metrics is not None:
                metrics.setdefault(f"eval_{best_by}", 0.0)

    return BestByPlaceholder()


def install() -> None:
    """Hand the recipe check to ``create_run`` (the faces that create runs call it; idempotent)."""
    from lorastudio.train.run.recipehooks import RECIPE_CHECKS

    if check_eval_tasks not in RECIPE_CHECKS:
        RECIPE_CHECKS.append(check_eval_tasks)


def install_worker() -> None:
    """Hand the callback maker to the training worker (``lorastudio.worker`` calls it; idempotent)."""
    from lorastudio.train.trainer import trainrun as worker

    if callbacks_for not in worker.CALLBACK_MAKERS:
        worker.CALLBACK_MAKERS.append(callbacks_for)
