"""Stage ``evaluate``: scores of base, run and export targets on lm-evaluation-harness tasks, as a job.

``spec`` is the typed evaluation spec (targets, tasks, limit, few-shot, batch size); ``tasks`` finds the
shipped and local task files (lm-eval's own YAML format) and refuses an unknown or malformed one at once;
``runner`` runs lm-eval's ``simple_evaluate`` with its ``HFLM`` wrapping the model the chat engine loads
(chat template applied as the recipe's chat does) and writes ``results.json``, the per-sample JSONL and
studio's table; ``job`` is the evaluation's own process (``python -m lorastudio.evaluate.job DIR``) and its
directory: the spec, typed events through the one event contract, always ending with a status; ``scores``
reads them back for the faces (the table and the deltas that stand out, progress with an ETA, each document's
answers side by side, a run's latest scores, a sweep ranked by them). The shipped tasks live in ``shipped/``
(YAML, JSONL and the pirate task's scorer). Judged generations run in the same job:
``judged`` (the prompts, every target's answers, ``answers.jsonl`` and ``verdicts.jsonl``, the table rows),
``generate`` (batched answers on a loaded engine), ``scorers`` (reference match and GRPO reward functions,
through ``train/trainer/rewards.py``) and ``judge`` (the LLM judge: prompts, verdicts, position swap, Wilson interval,
a loaded target or an OpenAI-compatible endpoint). ``intraining`` scores a run's ``train.eval_tasks`` on the
model it trains, at each evaluation (a TrainerCallback the worker gets through the training stage's hooks).

It never imports the export stage or a face; it loads models only through the chat engine.
"""
