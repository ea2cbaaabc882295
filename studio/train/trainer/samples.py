"""Sample replies while a run trains: the recipe's ``train.samples`` prompts, answered by the model it trains.

The worker answers them at the first step (the base, or the adapter a resumed run starts from), after every
evaluation and at the end, in one left-padded ``generate`` call per round with the recipe's chat settings and
the samples' own (small) ``max_new_tokens``, and writes each round as a ``sample`` event. Training waits for
the round; its time is in the event (``seconds``) and the tokens/s figure leaves it out. Sampling never takes
a run down: a round that fails logs a warning and turns sampling off for the rest of the run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lorastudio.recipe import ChatSection, Recipe
from lorastudio.train.run.events import LogEvent, SampleEvent

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class SamplePrompt:
    """One prompt: the text shown (the user's turn) and the conversation the model is given."""

    text: str
    messages: tuple[tuple[str, str], ...]
    """(role, content) turns before the reply; a plain-text recipe continues the last content instead."""
    reference: str = ""
    """The data's own reply to it (a held-out row's first assistant turn, a pair's chosen reply), shown under
    the model's; "" for the recipe's own prompts."""

    def conversation(self) -> Conversation:
        return [{"role": role, "content": content} for role, content in self.messages]


def _system(recipe: Recipe) -> str | None:
    return recipe.chat.system_prompt or recipe.data.system_prompt


def prompt_of(recipe: Recipe, text: str) -> SamplePrompt:
    system = _system(recipe)
    turns = ((("system", system),) if system else ()) + (("user", text),)
    return SamplePrompt(text, turns)


def held_out_prompts(recipe: Recipe, count: int, prepared: Any = None) -> list[SamplePrompt]:
    """The first ``count`` usable prompts of the recipe's eval rows (its eval split, or the rows its seeded
    hold-out keeps back), or of its first rows when it has none. The same every run of the recipe."""
    from lorastudio.data.datasource import load_rows, train_eval_split
    from lorastudio.data.formats import SkipRow
    from lorastudio.data.prepare import prepare

    if count <= 0:
        return []
    prepared = prepared if prepared is not None else prepare(recipe)
    rows = prepared.rows.rows
    if recipe.data.eval_split:
        rows = load_rows(recipe.data, split=recipe.data.eval_split).rows
        order: Sequence[int] = range(len(rows))
    else:
        _, held = train_eval_split(list(range(len(rows))), recipe.data.eval_fraction, recipe.train.seed)
        order = held or range(len(rows))
    out: list[SamplePrompt] = []
    for index in order:
        try:
            example = prepared.encoder.example_of(rows[index])
        except (SkipRow, ValueError, KeyError, TypeError):
            continue
        prompt = _prompt_from_example(example)
        if prompt is not None:
            out.append(prompt)
        if len(out) == count:
            break
    return out


def _prompt_from_example(example: Any) -> SamplePrompt | None:
    if example.text is not None:  # plain text: continue its opening words
        words = example.text.split()
        return SamplePrompt(" ".join(words[:16]), (("user", " ".join(words[:16])),)) if words else None
    turns = list(example.turns)
    first_reply = next((i for i, t in enumerate(turns) if t["role"] == "assistant"), len(turns))
    before = turns[:first_reply]
    users = [t["content"] for t in before if t["role"] == "user"]
    if not users:
        return None
    reference = str(turns[first_reply]["content"] or "") if first_reply < len(turns) else ""
    return SamplePrompt(users[-1], tuple((t["role"], t["content"]) for t in before), reference)


def generate_kwargs(chat: ChatSection, max_new_tokens: int) -> dict[str, Any]:
    """``generate`` settings from the recipe's chat section (greedy when it says so or at temperature 0)."""
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "repetition_penalty": chat.repetition_penalty}
    if chat.greedy or chat.temperature == 0:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(
            do_sample=True, temperature=chat.temperature, top_p=chat.top_p, top_k=chat.top_k or None
        )
        if chat.min_p:
            kwargs["min_p"] = chat.min_p
    return kwargs


class Sampler:
    """The run's sample prompts, tokenized once, and how to answer them with a model."""

    def __init__(self, recipe: Recipe, tokenizer: Any, encoder: Any, prompts: Sequence[SamplePrompt]) -> None:
        self.recipe = recipe
        self.tokenizer = tokenizer
        self.prompts = list(prompts)
        self.max_new_tokens = recipe.train.samples.max_new_tokens
        self.kwargs = generate_kwargs(recipe.chat, self.max_new_tokens)
        self.ids = [self._ids(encoder, p) for p in self.prompts]
        stops = {tokenizer.eos_token_id}
        eot = getattr(encoder, "end_of_turn", None)
        if eot:
            tid = tokenizer.convert_tokens_to_ids(eot)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id:
                stops.add(tid)
        self.stop_ids = sorted(i for i in stops if i is not None)

    def _ids(self, encoder: Any, prompt: SamplePrompt) -> list[int]:
        messages = prompt.conversation()
        if getattr(encoder, "_compiled", None) is None:  # no chat template: continue the text
            text = "\n".join(m["content"] for m in messages if m["role"] != "system")
        else:
            text = encoder.render(messages, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def answer(self, model: Any, step: int, at: str) -> SampleEvent:
        """One round, all prompts in one batch; training RNG, train/eval mode and threads left as found."""
        import torch

        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else self.stop_ids[0]
        width = max(len(p) for p in self.ids)
        device = next(model.parameters()).device
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in self.ids], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in self.ids], device=device)
        was_training = model.training
        started = time.monotonic()
        devices = [device.index or 0] if device.type == "cuda" else []
        threads = torch.get_num_threads()
        try:
            if device.type == "cpu":
                # one-token steps are too small to share between threads; on a busy machine each op of a
                # multi-threaded decode waits for all its threads to be scheduled (rounds ran far slower)
                torch.set_num_threads(1)
            model.eval()
            with torch.random.fork_rng(devices=devices), torch.inference_mode():
                torch.manual_seed(self.recipe.train.seed)  # sampled replies are comparable round to round
                out = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    eos_token_id=self.stop_ids,
                    pad_token_id=pad,
                    use_cache=True,
                    **self.kwargs,
                )
        finally:
            model.train(was_training)
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        seconds = time.monotonic() - started
        replies, finish = [], []
        stops = set(self.stop_ids)
        for row in out[:, width:].tolist():
            end = next((i for i, token in enumerate(row) if token in stops), None)
            kept = row if end is None else row[:end]
            replies.append(tok.decode(kept, skip_special_tokens=True).strip())
            finish.append("length" if end is None else "stop")
        return SampleEvent(
            step=step,
            at=at,
            prompts=tuple(p.text for p in self.prompts),
            replies=tuple(replies),
            references=tuple(p.reference for p in self.prompts)
            if any(p.reference for p in self.prompts)
            else (),
            finish=tuple(finish),
            seconds=seconds,
            max_new_tokens=self.max_new_tokens,
        )


def build_sampler(recipe: Recipe, tokenizer: Any) -> Sampler | None:
    """The run's sampler, or None when ``train.samples`` asks for nothing (or no prompt could be found)."""
    from lorastudio.data.prepare import prepare

    settings = recipe.train.samples
    if not settings.enabled or recipe.train.method == "reward":  # a reward model scores; it does not reply
        return None
    if not recipe.train.supervised:
        return _method_sampler(recipe, tokenizer)
    prepared = prepare(recipe, tokenizer=tokenizer)
    prompts = [prompt_of(recipe, text) for text in settings.prompts]
    prompts += held_out_prompts(recipe, settings.held_out, prepared)
    if not prompts:
        return None
    return Sampler(recipe, tokenizer, prepared.encoder, prompts)


def _method_sampler(recipe: Recipe, tokenizer: Any) -> Sampler | None:
    """DPO, KTO, ORPO and GRPO: the same rounds, the held-out prompts taken from the method's own rows (each
    row's prompt turns, through the method encoder that renders them for training)."""
    from lorastudio.data.datasource import train_eval_split
    from lorastudio.data.formats import SkipRow
    from lorastudio.data.preference import method_encoder

    settings = recipe.train.samples
    encoder, rows = method_encoder(recipe, tokenizer)
    prompts = [prompt_of(recipe, text) for text in settings.prompts]
    if settings.held_out > 0:
        fraction = (
            recipe.data.eval_fraction if recipe.train.method != "grpo" else 0.0
        )  # as the trainer splits
        _, held = train_eval_split(list(range(len(rows.rows))), fraction, recipe.train.seed)
        found = 0
        for index in held or range(len(rows.rows)):
            try:
                example = encoder.example_of(rows.rows[index])
            except (SkipRow, ValueError, KeyError, TypeError):
                continue
            turns = example.prompt
            users = [t["content"] for t in turns if t["role"] == "user"]
            if users:
                turns_kept = tuple((t["role"], t["content"]) for t in turns)
                prompts.append(SamplePrompt(users[-1], turns_kept, method_reference(recipe, example)))
                found += 1
            if found == settings.held_out:
                break
    return Sampler(recipe, tokenizer, encoder.base, prompts) if prompts else None


REFERENCE_COLUMNS = ("answer", "solution", "reference", "output", "completion")
"""A GRPO row's columns read as its reference answer when no ``match`` reward names one."""


def method_reference(recipe: Recipe, example: Any) -> str:
    """A method row's own answer: a pair's chosen reply, a desirable KTO reply, or a GRPO row's answer column
    (the one a ``match`` reward compares with, else the first of :data:`REFERENCE_COLUMNS` it has)."""
    from lorastudio.data.preference import Pair, PromptRow, Unpaired

    if isinstance(example, Pair):
        return example.chosen
    if isinstance(example, Unpaired):
        return example.completion if example.label else ""
    if not isinstance(example, PromptRow):
        return ""
    matched = [r.match for r in (recipe.grpo.rewards if recipe.grpo else []) if r.match]
    for column in (*matched, *REFERENCE_COLUMNS):
        value = example.extra.get(column)
        if value is not None and str(value).strip():
            return str(value)
    return ""


def samples_callback(writer: Any, sampler: Sampler, stop: Any, timing: Any = None) -> Any:
    """A TrainerCallback answering the prompts at the first step, after each evaluation and at the end.

    ``timing`` is the events callback: its interval clock is moved on by each round's time, so tokens/s
    counts training only. ``stop`` is the worker's stop flag: a stopped run skips the final round.
    """
    from transformers import TrainerCallback

    class SamplesCallback(TrainerCallback):
        def __init__(self) -> None:
            self.last_step: int | None = None
            self.off = False

        def _round(self, model: Any, step: int, at: str) -> None:
            if self.off or model is None:
                return
            try:
                event = sampler.answer(model, step, at)
            except Exception as exc:  # a failing sample must never take training down
                self.off = True
                writer.emit(
                    LogEvent(
                        level="warning",
                        message=f"sample replies turned off: {type(exc).__name__}: {exc}"[:300],
                    )
                )
                return
            self.last_step = step
            writer.emit(dataclasses.replace(event, t=round(time.time(), 3)))
            if timing is not None:
                timing.last_time += event.seconds

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self._round(model, state.global_step, "start")

        def on_evaluate(self, args, state, control, model=None, **kwargs):
            self._round(model, state.global_step, "eval")

        def on_train_end(self, args, state, control, model=None, **kwargs):
            if not stop.event.is_set() and self.last_step != state.global_step:
                self._round(model, state.global_step, "end")

    return SamplesCallback()
