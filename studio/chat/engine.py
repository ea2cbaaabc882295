"""The chat engine: load base (+ adapter) once, stream replies token by token.

It loads its own copy of the model: never ``generate()`` on a model object that a
training process uses (with 4-bit weights that corrupts LoRA gradients).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lorastudio.chat.targets import export_target, gguf_target, is_export_target
from lorastudio.chat.targets import recipe_for_model_path as recipe_for_model_path
from lorastudio.errors import StudioError
from lorastudio.progress import Progress
from lorastudio.recipe import ChatSection, Recipe

Sampling = ChatSection
"""Sampling settings are the recipe's ``chat`` section itself, so the panel, ``--temperature`` and the recipe
file are judged by one model: a value the recipe would refuse is refused everywhere."""


def with_overrides(sampling: ChatSection, **changes: Any) -> ChatSection:
    """``sampling`` with the given fields changed (None leaves one as it is), validated as the recipe's.

    A refused value raises a :class:`StudioError` naming the field, e.g. ``chat.top_p: Input should be ...``.
    """
    from pydantic import ValidationError

    update = {k: v for k, v in changes.items() if v is not None}
    try:
        return ChatSection.model_validate({**sampling.model_dump(), **update})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise StudioError(f"chat.{field}: {err['msg']}") from None


def generate_kwargs(sampling: ChatSection) -> dict[str, Any]:
    """The ``generate()`` arguments for these settings; temperature 0 means greedy, as the recipe says."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": sampling.max_new_tokens,
        "repetition_penalty": sampling.repetition_penalty,
    }
    if sampling.greedy or sampling.temperature == 0:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(
            do_sample=True,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k or None,
        )
        if sampling.min_p:
            kwargs["min_p"] = sampling.min_p
    return kwargs


class IncrementalDecoder:
    """Decodes generated ids one token at a time, holding back only an incomplete UTF-8 character.

    Only a short window is re-decoded per token (the ids since the last emitted piece plus the
    token before it, for tokenizers whose spacing depends on the neighbour), so cost stays flat.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # start of the context window
        self.read = 0  # ids before this have been emitted

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix : self.read])
        now = self._decode(self.ids[self.prefix :])
        if now.endswith("\ufffd"):
            return ""  # a multi-byte character is split across tokens: wait for the rest
        if not now.startswith(before):
            # the window re-spaced earlier text: take the difference of the full text instead
            before, now = self._decode(self.ids[: self.read]), self._decode(self.ids)
        elif len(now) == len(before):
            return ""  # nothing visible yet
        self.prefix, self.read = self.read, len(self.ids)
        return now[len(before) :]


@dataclass
class Reply:
    """A finished (or stopped) reply with its timing."""

    text: str
    tokens: int
    seconds: float
    first_token_s: float | None
    stopped: bool
    adapter: bool
    finish_reason: str = "stop"
    """``stop`` (end-of-turn or eos), ``length`` (the token limit) or ``cancelled``."""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Transcript:
    """The conversation so far, saved as JSONL and Markdown."""

    system_prompt: str | None
    turns: list[dict[str, Any]] = field(default_factory=list)

    def save(self, folder: Path, stem: str | None = None) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        stem = stem or time.strftime("chat-%Y%m%d-%H%M%S")
        jsonl, md = folder / f"{stem}.jsonl", folder / f"{stem}.md"
        with jsonl.open("w", encoding="utf-8") as handle:
            if self.system_prompt:
                handle.write(json.dumps({"role": "system", "content": self.system_prompt}) + "\n")
            for turn in self.turns:
                handle.write(json.dumps(turn) + "\n")
        lines = ["# studio chat transcript", ""]
        if self.system_prompt:
            lines += [f"**system**: {self.system_prompt}", ""]
        for turn in self.turns:
            label = turn["role"] if turn["role"] == "user" else f"assistant ({turn.get('model', 'tuned')})"
            lines += [f"**{label}**: {turn['content']}", ""]
        md.write_text("\n".join(lines), encoding="utf-8")
        return jsonl, md


class ChatEngine:
    """One loaded model (base, plus the run's adapter when there is one)."""

    def __init__(self, recipe: Recipe, adapter_dir: Path | None = None) -> None:
        self.recipe = recipe
        self.adapter_dir = adapter_dir
        self.model: Any = None
        self.tokenizer: Any = None
        self.encoder: Any = None
        self.use_adapter = adapter_dir is not None
        self._lock = threading.Lock()
        self.threads: int | None = None
        """Torch threads for generating (set on CPU beside live training workers; see chat/admission.py)."""
        self.on_gpu = False
        self.source: str | None = None
        """Which run and adapter a run reference took (``run NAME (the newest run), checkpoint-40``), said
        where the chat opens; None for a model, export or GGUF target."""

    @property
    def has_adapter(self) -> bool:
        return self.adapter_dir is not None

    def load(self, progress: Progress | None = None) -> None:
        from lorastudio.data.encode import Encoder
        from lorastudio.models.resolve import hub_error, load_tokenizer, resolve_model_path
        from lorastudio.train.trainer.backend import detect_hardware, load_base_model

        report = progress or (lambda f, m: None)
        if self.adapter_dir is not None and self.recipe.train.method == "reward":
            raise StudioError(
                f"{self.adapter_dir}: a reward model (train.method: reward) scores replies, it does not write "
                "them; chat with the run it scored for, or with the base model (studio chat --base)"
            )
        from lorastudio.models.vlm import is_vision_config

        if is_vision_config(
            resolve_model_path(self.recipe.model, progress)
        ):  # chat/imagechat.py answers those
            raise StudioError(
                f"{self.recipe.model.name!r} is a vision-language model: chat with it on the command line with "
                "`studio chat RUN --image PATH --prompt TEXT` (the Chat screen takes no images yet)"
            )
        report(0.05, "loading tokenizer")
        tokenizer = load_tokenizer(self.recipe.model, progress)
        report(0.3, f"loading {self.recipe.model.name}")
        hw = detect_hardware()
        from lorastudio.chat.admission import chat_threads, check_admission

        check_admission(self.recipe, hw.cuda)  # refused with both figures when it would not fit beside a run
        self.threads = None if hw.cuda else chat_threads()
        self.on_gpu = hw.cuda
        path = resolve_model_path(self.recipe.model)
        try:
            model = load_base_model(self.recipe, path, hw, tokenizer)
        except StudioError:
            raise
        except Exception as exc:
            if "out of memory" in str(exc).lower():
                raise StudioError(
                    f"out of memory while loading {self.recipe.model.name}; try model.load_in_4bit: true"
                ) from None
            raise hub_error(self.recipe.model.name, exc) from None
        if self.adapter_dir is not None:
            report(0.8, "loading adapter")
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(self.adapter_dir))
        model.eval()
        fmt = self.recipe.data.format if self.recipe.data.format != "auto" else "messages"
        self.encoder = Encoder(tokenizer, self.recipe, fmt)
        self.model, self.tokenizer = model, tokenizer
        report(1.0, "ready")

    def prompt_ids(self, messages: list[dict[str, str]], enable_thinking: bool | None = None) -> list[int]:
        """The conversation rendered for the reply to come; ``enable_thinking`` goes to a template that takes it."""
        if self.encoder._compiled is None:  # plain-text recipes have no template: continue the text
            text = "\n".join(m["content"] for m in messages if m["role"] != "system")
        else:
            switch = enable_thinking if self.encoder.thinking_switch else None
            text = self.encoder.render(messages, add_generation_prompt=True, enable_thinking=switch)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def stop_token_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        eot = self.encoder.end_of_turn if self.encoder else None
        if eot:
            tid = self.tokenizer.convert_tokens_to_ids(eot)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.add(tid)
        return [i for i in ids if i is not None]

    def generate(
        self,
        messages: list[dict[str, str]],
        sampling: Sampling,
        on_text: Callable[[str], None] | None = None,
        stop: threading.Event | None = None,
        use_adapter: bool | None = None,
        **generate_overrides: Any,
    ) -> Reply:
        """Stream a reply; ``on_text`` gets each new piece of text as soon as its token is generated."""
        import contextlib

        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        if self.model is None:
            raise StudioError("the model is not loaded yet")
        adapter_on = self.use_adapter if use_adapter is None else use_adapter
        stop = stop or threading.Event()
        flag = stop  # a name the nested stopping criterion sees as an Event, not Optional
        decoder = IncrementalDecoder(self.tokenizer)
        started = time.monotonic()
        timing: dict[str, Any] = {"first": None, "count": 0, "prompt_seen": False, "ended": False}
        pieces: list[str] = []
        stop_ids = set(self.stop_token_ids())

        class _Streamer(BaseStreamer):
            def put(self, value: Any) -> None:
                if not timing["prompt_seen"]:
                    timing["prompt_seen"] = True  # generate() first hands over the prompt
                    return
                for token in value.reshape(-1).tolist():
                    if timing["first"] is None:
                        timing["first"] = time.monotonic() - started
                    if token in stop_ids:
                        timing["ended"] = True
                        continue
                    timing["count"] += 1
                    text = decoder.push(token)
                    if text:
                        pieces.append(text)
                        if on_text is not None:
                            on_text(text)

            def end(self) -> None:
                pass

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full(
                    (input_ids.shape[0],), flag.is_set(), dtype=torch.bool, device=input_ids.device
                )

        ids = torch.tensor([self.prompt_ids(messages, sampling.enable_thinking)], device=self.model.device)
        context = contextlib.nullcontext()
        if self.has_adapter and not adapter_on:
            context = self.model.disable_adapter()
        from lorastudio.chat.admission import cpu_share

        share = contextlib.nullcontext() if self.on_gpu else cpu_share()
        with self._lock, context, torch.inference_mode(), share as threads:
            if threads is not None:
                self.threads = threads
            self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                streamer=_Streamer(),
                stopping_criteria=StoppingCriteriaList([_Stop()]),
                eos_token_id=list(stop_ids),
                pad_token_id=self.tokenizer.pad_token_id,
                **{**generate_kwargs(sampling), **generate_overrides},
            )
        reason = "stop" if timing["ended"] else "cancelled" if stop.is_set() else "length"
        return Reply(
            "".join(pieces),
            timing["count"],
            time.monotonic() - started,
            timing["first"],
            stop.is_set(),
            adapter_on and self.has_adapter,
            reason,
        )


def engine_for(target: str | None, base_only: bool = False) -> ChatEngine:
    """A run reference (its recipe and adapter; see ``train/run/runref.py``: ``RUN@best``, ``RUN@latest``,
    ``RUN@checkpoint-N`` and a checkpoint folder's path pick a checkpoint), a model folder, an export folder, a
    .gguf file, or None for the latest run. A run's engine says in ``source`` which run and adapter it took."""
    from lorastudio.train.launch.runs import load_run_recipe
    from lorastudio.train.run.runref import describe, resolve_run
    from lorastudio.train.trainer.adapters import is_full_model, resolve_adapter

    candidate = Path(target).expanduser() if target else None
    try:
        if candidate is not None and (candidate.suffix.lower() == ".gguf" or is_export_target(candidate)):
            recipe, adapter = (
                gguf_target(candidate)
                if candidate.suffix.lower() == ".gguf"
                else export_target(candidate, base_only)
            )
            return ChatEngine(recipe, adapter)
        if (
            candidate is not None
            and candidate.is_dir()
            and (candidate / "config.json").exists()
            and not _in_run(
                candidate
            )  # a full run's model/ or checkpoint: loaded with its run's recipe below
        ):
            return ChatEngine(recipe_for_model_path(str(candidate.resolve())))
    except OSError:  # a name too long for the file system: not a folder, so maybe a run's name
        pass
    ref = resolve_run("latest" if target is None else target, checkpoint=True)  # "" is refused, not latest
    recipe = load_run_recipe(ref.path)
    weights = None if base_only else resolve_adapter(ref.path, ref.which)
    if weights is not None and is_full_model(weights):  # a full or freeze run: its trained model, no base
        engine = ChatEngine(trained_model_recipe(recipe, weights))
    else:
        engine = ChatEngine(recipe, weights)
    engine.source = describe(ref, weights)
    return engine


def _in_run(folder: Path) -> bool:
    """``RUN/model`` or ``RUN/checkpoints/checkpoint-N``: a folder of a run's own."""
    from lorastudio.train.run.rundir import RUN_FILE
    from lorastudio.train.trainer.adapters import run_of_checkpoint

    return (folder.parent / RUN_FILE).is_file() or run_of_checkpoint(folder) is not None


def trained_model_recipe(recipe: Recipe, folder: Path) -> Recipe:
    """The run's recipe loading the model a full or freeze run trained (``model/`` or a checkpoint) in place of
    its base; chat template and sampling stay the run's."""
    model = recipe.model.model_copy(
        update={"name": str(folder.resolve()), "revision": None, "gguf_file": None, "adapter": None}
    )
    return recipe.model_copy(update={"model": model})


def reply_json(reply: Reply) -> dict[str, Any]:
    data = asdict(reply)
    data["tokens_per_s"] = round(reply.tokens_per_s, 2)
    return data
