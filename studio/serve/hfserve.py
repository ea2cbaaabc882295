"""``python -m lorastudio.serve.hfserve MODEL --host H --port P``: transformers' own server, with an API key.

``transformers serve`` checks no key. This launcher runs the very same server (its ``Serve``), with one addition
when ``STUDIO_SERVE_API_KEY`` is set: the app it builds refuses a request whose ``Authorization`` is not
``Bearer KEY`` with 401, as vLLM and llama.cpp do (``/health`` stays open for the readiness probe). The key comes
through the environment, never the command line, which any user's ``ps`` shows.
"""

from __future__ import annotations

import argparse
import hmac
import os
import sys
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lorastudio.serve.hfserve")
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    key = os.environ.pop(KEY_ENV, "")
    if key:
        import transformers.cli.serving.server as server

        build = server.build_server

        def build_with_key(*a: Any, **kw: Any) -> Any:
            return require_key(build(*a, **kw), key)

        server.build_server = build_with_key  # Serve.run imports it from the module when it runs
    from transformers.cli.serve import Serve

    Serve(force_model=args.model, host=args.host, port=args.port, device="auto")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
