"""``studio serve`` on CPU (transformers engine): time from the command to the first answered request, and served
tokens/s against ``transformers serve`` started by hand on the same folder with the same arguments (goal >= 0.97).

``python benchmarks/serve_speed.py [MODEL_FOLDER] [--rounds N] [--same-env]``: the tiny model unless a folder is
named (SmolLM2's dequantized folder, say); both figures are printed side by side on one line at the end."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openai import OpenAI

from lorastudio.models.tiny import ensure_tiny_model

QUESTION = [{"role": "user", "content": "What colour is the sky?"}]
ROUNDS = 8
"""Alternated requests per server (``--rounds N``)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def first_answer(url: str, model: str, deadline_s: float = 900) -> None:
    api = OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)
    end = time.monotonic() + deadline_s
    while True:
        try:
            api.chat.completions.create(model=model, messages=QUESTION, max_tokens=1)  # type: ignore[arg-type]
            return
        except Exception:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def timed_reply(api: OpenAI, model: str) -> tuple[int, float]:
    start = time.perf_counter()
    reply = api.chat.completions.create(model=model, messages=QUESTION, max_tokens=100, temperature=0)  # type: ignore[arg-type]
    assert reply.usage is not None
    return reply.usage.completion_tokens, time.perf_counter() - start


def by_hand_env() -> dict[str, str]:
    """The shell's environment, plus studio's quiet settings when ``--same-env`` is given (the served engine
    inherits them from the ``studio`` command: TOKENIZERS_PARALLELISM=false, TRANSFORMERS_VERBOSITY=error...)."""
    env = dict(os.environ)
    if "--same-env" in sys.argv:
        from lorastudio.quiet import quiet_libraries

        quiet_libraries()
        env = dict(os.environ)
    return env


def main() -> None:
    # a built tiny model folder may be named (the tests' machine copy), else the cached one is built or used
    args = sys.argv[1:]
    rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else ROUNDS
    named = [
        arg for i, arg in enumerate(args) if not arg.startswith("--") and args[i - 1 : i] != ["--rounds"]
    ]
    tiny = Path(named[0]).resolve() if named else ensure_tiny_model()
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="serve-bench-")
    studio = str(Path(sys.executable).parent / "studio")
    port = free_port()
    start = time.monotonic()
    subprocess.run([studio, "serve", str(tiny), "--port", str(port)], check=True, capture_output=True)
    served_url = f"http://127.0.0.1:{port}/v1"
    first_answer(served_url, tiny.name)
    ready_s = time.monotonic() - start

    port = free_port()
    by_hand = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "transformers"),
            "serve",
            tiny.name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "auto",
        ],
        cwd=tiny.parent,
        env=by_hand_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        hand_url = f"http://127.0.0.1:{port}/v1"
        first_answer(hand_url, tiny.name)
        # alternated, one request each in turn, so a neighbour's load on this shared machine hits both alike
        apis = {"served": OpenAI(base_url=served_url, api_key="unused", max_retries=0, timeout=300)}
        apis["hand"] = OpenAI(base_url=hand_url, api_key="unused", max_retries=0, timeout=300)
        totals = {name: [0, 0.0] for name in apis}
        for _ in range(rounds):
            for name, api in apis.items():
                tokens, seconds = timed_reply(api, tiny.name)
                totals[name][0] += tokens
                totals[name][1] += seconds
    finally:
        by_hand.terminate()
        by_hand.wait()
        subprocess.run([studio, "serve", "stop", "all"], check=True, capture_output=True)
    served, plain = (totals[name][0] / totals[name][1] for name in ("served", "hand"))
    print(f"model {tiny.name}, CPU, transformers engine, {rounds} alternated requests of 100 tokens each")
    print(f"{'':24}{'studio serve':>14}{'by hand':>10}")
    print(f"{'first answered request':24}{ready_s:>12.1f} s{'':>10}")
    print(f"{'tokens/s':24}{served:>14.1f}{plain:>10.1f}   ratio {served / plain:.3f} (goal >= 0.97)")


if __name__ == "__main__":
    main()
