"""``studio chat``: the Chat screen, or one reply per prompt (``--prompt``, ``--prompts``), marked as feedback
with ``--mark``, about an image with ``--image``, from a run, a model folder or an OpenAI-compatible endpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lorastudio.cli.args import require_terminal
from lorastudio.cli.console import _progress_printer
from lorastudio.errors import StudioError
from lorastudio.jsonout import dumps


def _chat_image(args: argparse.Namespace, with_overrides: Any) -> int:
    from dataclasses import asdict

    from lorastudio.chat.engine import engine_for
    from lorastudio.chat.imagechat import image_reply
    from lorastudio.data.imagerows import open_image

    # a missing image is named before the run is looked up
    open_image(Path(args.image).expanduser(), "--image")
    chat = engine_for(args.target, base_only=args.base).recipe.chat
    sampling = with_overrides(
        chat,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        greedy=True if args.greedy else None,
    )
    reply = image_reply(args.target, args.image, args.prompt, sampling, args.base, args.system)
    print(dumps(asdict(reply)) if args.json else reply.text)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from lorastudio.chat.endpoint import is_endpoint, open_engine
    from lorastudio.chat.engine import reply_json, with_overrides

    if args.target and args.target.startswith("serve:"):  # a server studio started: its endpoint
        from lorastudio.serve.server import served_target

        args.target, args.model = served_target(args.target, args.model)
    prompts = _read_prompts(args.prompts) if args.prompts else None
    interactive = args.prompt is None and prompts is None
    if interactive and args.mark:
        raise StudioError(
            f"--mark {args.mark}: needs --prompt or --prompts (in the Chat screen, + and - mark a reply)"
        )
    if args.save_to and not (args.mark or interactive):  # nothing would be saved: not silently dropped
        raise StudioError(
            f"--save-to {args.save_to}: keeps the replies marked with --mark good|bad; add --mark "
            "(or leave out --prompt and --prompts to mark replies in the Chat screen)"
        )
    if args.mark or (interactive and args.save_to):
        _feedback_log(args)  # a destination that cannot be written is refused before any reply is made
    if args.image and args.prompt is None:
        raise StudioError(
            "--image: give the question with --prompt TEXT (the Chat screen takes no images yet)"
        )
    if interactive:
        from lorastudio.app import run_app

        require_terminal(
            "chat without --prompt",
            "the Chat screen",
            "without one use --prompt TEXT or --prompts FILE (--mark good|bad saves the replies as feedback)",
        )
        if args.model or args.api_key_env or is_endpoint(args.target):
            open_engine(args.target, args.base, args.model, args.api_key_env)  # a bad flag: refused here
        run_app(
            chat="latest" if args.target is None else args.target,
            chat_base=args.base,
            save_to=args.save_to,
            chat_endpoint=(args.model, args.api_key_env),
        )
        return 0
    if args.image:  # a vision-language model's run: one prompt about one image (studio/chat/imagechat.py)
        return _chat_image(args, with_overrides)
    engine = open_engine(args.target, args.base, args.model, args.api_key_env)
    if engine.source:  # which run and checkpoint `latest`, RUN@latest or RUN@best took
        print(f"chat: {engine.source}", file=sys.stderr)
    engine.load(None if args.json else _progress_printer("loading"))
    sampling = with_overrides(
        engine.recipe.chat,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        min_p=args.min_p,
        max_new_tokens=args.max_new_tokens,
        repetition_penalty=args.repetition_penalty,
        greedy=True if args.greedy else None,
        enable_thinking=False if args.no_thinking else None,
    )
    system = args.system or engine.recipe.chat.system_prompt or engine.recipe.data.system_prompt

    def emit(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    for prompt in prompts if prompts is not None else [args.prompt]:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        reply = engine.generate(messages, sampling, on_text=None if args.json else emit)
        if args.json:
            print(
                dumps({**({"prompt": prompt} if prompts is not None else {}), **reply_json(reply)}),
                flush=True,
            )
        else:
            sys.stdout.write("\n")
            sys.stdout.flush()
        if args.mark:
            print(_save_feedback(args, messages, reply.text), file=sys.stderr)
        if not args.json:
            print(
                f"[{reply.tokens} tokens, {reply.tokens_per_s:.1f} tok/s, first token "
                f"{(reply.first_token_s or 0) * 1000:.0f} ms, {_reply_model(engine, reply.adapter)}, "
                f"{reply.finish_reason}]",
                file=sys.stderr,
            )
    return 0


def _reply_model(engine: Any, adapter: bool) -> str:
    """Which model answered, for the stats line: a served one by its name, else tuned or base."""
    name = getattr(engine, "model_name", None)
    return f"served {name}" if name else "tuned" if adapter else "base"


def _feedback_log(args: argparse.Namespace) -> Any:
    """The feedback file of ``--mark``/``--save-to``, refused (naming it) when it could not be written."""
    from lorastudio.chat.feedback import FeedbackLog, default_path, destination_problem

    path = Path(args.save_to).expanduser() if args.save_to else default_path(args.target)
    problem = destination_problem(path)
    if problem is not None:
        given = f"--save-to {args.save_to}" if args.save_to else f"feedback file {path}"
        raise StudioError(f"{given}: {problem}")
    args._feedback = FeedbackLog(path)
    return args._feedback


def _save_feedback(args: argparse.Namespace, messages: list[dict[str, str]], reply: str) -> str:
    """``studio chat … --mark good|bad [--save-to FILE]``: the reply as feedback rows (see chat/feedback.py)."""
    log = getattr(args, "_feedback", None) or _feedback_log(args)
    said = (log.mark_good if args.mark == "good" else log.mark_bad)(messages, reply)
    return f"{said}; {log.summary()}"


def _read_prompts(path: str) -> list[str]:
    """One prompt per non-blank line of ``path`` (``-`` reads stdin)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StudioError(f"--prompts {path}: cannot read it ({exc})") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise StudioError(f"--prompts {path}: no prompts in it (one per line)")
    return prompts
