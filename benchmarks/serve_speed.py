"""``studio serve`` on the tiny model (CPU, transformers engine): time from the command to the first answered
request, and served tokens/s against ``transformers serve`` started by hand on the same folder (goal >= 0.97)."""

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
ROUNDS = 5


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


def tokens_per_s(url: str, model: str) -> float:
    api = OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=300)
    tokens, seconds = 0, 0.0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        reply = api.chat.completions.create(model=model, messages=QUESTION, max_tokens=100, temperature=0)  # type: ignore[arg-type]
        seconds += time.perf_counter() - start
        assert reply.usage is not None
        tokens += reply.usage.completion_tokens
    return tokens / seconds


def main() -> None:
    # a built tiny model folder may be named (the tests' machine copy), else the cached one is built or used
    tiny = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ensure_tiny_model()
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="serve-bench-")
    studio = str(Path(sys.executable).parent / "studio")
    port = free_port()
    start = time.monotonic()
    subprocess.run([studio, "serve", str(tiny), "--port", str(port)], check=True, capture_output=True)
    url = f"http://127.0.0.1:{port}/v1"
    first_answer(url, tiny.name)
    ready_s = time.monotonic() - start
    served = tokens_per_s(url, tiny.name)
    subprocess.run([studio, "serve", "stop", "all"], check=True, capture_output=True)

    port = free_port()
    by_hand = subprocess.Popen(
        [str(Path(sys.executable).parent / "transformers"), "serve", tiny.name, "--host", "127.0.0.1"]
        + ["--port", str(port), "--device", "auto"],
        cwd=tiny.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        first_answer(url, tiny.name)
        plain = tokens_per_s(url, tiny.name)
    finally:
        by_hand.terminate()
        by_hand.wait()
    print(f"studio serve -> first answered request: {ready_s:.1f} s (CPU, tiny model, transformers engine)")
    print(f"served tokens/s: studio serve {served:.1f}, transformers serve by hand {plain:.1f}")
    print(f"ratio {served / plain:.3f} (goal >= 0.97)")


if __name__ == "__main__":
    main()
