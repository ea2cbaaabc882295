"""``python -m lorastudio.serve.hfserve MODEL --host H --port P``: transformers' own server, with an API key.

``transformers serve`` checks no key and keeps no figures. This launcher runs the very same server (its
``Serve``), with two additions. When ``STUDIO_SERVE_API_KEY`` is set, the app it builds refuses a request whose
``Authorization`` is not ``Bearer KEY`` with 401, as vLLM and llama.cpp do (``/health`` stays open for the
readiness probe); the key comes through the environment, never the command line, which any user's ``ps`` shows.
And every generation request appends one line to ``requests.jsonl`` in the server directory (its working
directory): status, time to first byte, seconds, tokens; the Serve panel reads its figures from there
(``figures.py``), as it reads vLLM's from its ``/metrics``.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from lorastudio.serve.engines import KEY_ENV

OPEN_PATHS = ("/health",)


def require_key(app: Any, key: str) -> Any:
    """Add to ``app`` (a FastAPI app) the check of ``Authorization: Bearer KEY`` on every path but the open ones."""
    from fastapi.responses import JSONResponse

    expected = f"Bearer {key}".encode()

    @app.middleware("http")
    async def check_key(request: Any, call_next: Any) -> Any:
        given = request.headers.get("authorization", "").encode()
        if request.url.path not in OPEN_PATHS and not hmac.compare_digest(given, expected):
            return JSONResponse(
                {
                    "error": {
                        "message": "invalid API key",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
                status_code=401,
            )
        return await call_next(request)

    return app


GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/responses")
REQUESTS_FILE = "requests.jsonl"


def tokens_in(body: bytes, streamed: bool) -> int:
    """Tokens a reply carried: its ``usage`` when it has one, else one per streamed chunk of text."""
    if not streamed:
        try:
            return int(json.loads(body)["usage"]["completion_tokens"])
        except (ValueError, KeyError, TypeError):
            return 0
    usage = [line for line in body.split(b"\n") if b'"completion_tokens":' in line]
    if usage:
        try:
            return int(json.loads(usage[-1].removeprefix(b"data:").strip())["usage"]["completion_tokens"])
        except (ValueError, KeyError, TypeError):
            pass
    return sum(1 for line in body.split(b"\n") if line.startswith(b"data:") and b'"content":"' in line)


def record_requests(app: Any, out: Path) -> Any:
    """Add to ``app`` one line in ``out`` per generation request, written once its reply has been sent."""

    @app.middleware("http")
    async def record(request: Any, call_next: Any) -> Any:
        if request.url.path not in GENERATION_PATHS:
            return await call_next(request)
        started = time.monotonic()
        response = await call_next(request)
        inner = response.body_iterator
        streamed = "event-stream" in response.headers.get("content-type", "")

        async def body() -> Any:
            first: float | None = None
            seen: list[bytes] = []
            try:
                async for part in inner:
                    if first is None:
                        first = time.monotonic() - started
                    seen.append(part if isinstance(part, bytes) else str(part).encode())
                    yield part
            finally:
                row = {
                    "time": time.time(),
                    "path": request.url.path,
                    "status": response.status_code,
                    "first_s": first,
                    "seconds": time.monotonic() - started,
                    "tokens": tokens_in(b"".join(seen), streamed) if response.status_code < 400 else 0,
                }
                with open(out, "a", encoding="utf-8") as handle:  # one short line: appended whole
                    handle.write(json.dumps(row) + "\n")

        response.body_iterator = body()
        return response

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lorastudio.serve.hfserve")
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    key = os.environ.pop(KEY_ENV, "")
    import transformers.cli.serving.server as server

    build = server.build_server
    out = Path.cwd() / REQUESTS_FILE

    def build_with_extras(*a: Any, **kw: Any) -> Any:
        app = record_requests(build(*a, **kw), out)
        return require_key(app, key) if key else app  # added last, so the key is checked first

    server.build_server = build_with_extras  # Serve.run imports it from the module when it runs
    from transformers.cli.serve import Serve

    Serve(force_model=args.model, host=args.host, port=args.port, device="auto")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
