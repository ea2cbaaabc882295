"""Whether the Hugging Face Hub can answer, decided once per process before its first hub access.

Where the hub cannot be reached, ``huggingface_hub`` retries each file it asks for five times with
back-off before it falls back to its cache or fails, printing every retry: an air-gapped GPU box
waits minutes for a model it already has, and as long again to be told a missing one is missing.
So before a process first asks the hub for anything, studio tries to open a connection to the
hub's host (``HF_ENDPOINT``), and where none opens at once it runs the process in the hub's
offline mode (``HF_HUB_OFFLINE=1``, which the processes it starts inherit): cached models and
data sets load without a request, missing ones fail at once, and the message says why. Behind
a proxy the host cannot be tried directly, so the hub is left to answer for itself.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 1.5
"""How long a connection to the hub's host may take to open before the hub counts as unreachable."""

DEFAULT_ENDPOINT = "https://huggingface.co"
_PROXIES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")
_TRUE = {"1", "ON", "YES", "TRUE"}  # as huggingface_hub reads its flags

_lock = threading.Lock()
_decided: list[str | None] = []  # empty until decided; then the one reason, or None


def offline_set(names: tuple[str, ...] = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")) -> bool:
    """Whether the hub's offline mode is on in this process's environment (set by the user or by :func:`settle`);
    ``names``: the flags to read, as huggingface_hub reads them."""
    return any(os.environ.get(name, "").strip().upper() in _TRUE for name in names)


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT


def probe(timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a connection to the hub's host opens within ``timeout_s`` (or a proxy stands between);
    otherwise why not, in words."""
    if any(os.environ.get(name) for name in _PROXIES):
        return None
    parts = urlsplit(endpoint())
    host = parts.hostname or ""
    try:
        port = parts.port or (80 if parts.scheme == "http" else 443)
    except ValueError:
        return f"HF_ENDPOINT is not a URL: {endpoint()!r}"
    if not host:
        return f"HF_ENDPOINT is not a URL: {endpoint()!r}"
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                outcome.append(None)
        except socket.gaierror:
            outcome.append(f"{host} does not resolve")
        except OSError as exc:
            outcome.append(f"no connection to {host}:{port} ({exc.strerror or type(exc).__name__})")

    # A resolver that gets no answer can take far longer than the connect timeout; the thread is left to it.
    thread = threading.Thread(target=connect, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    if not outcome:
        return f"no answer from {host} within {timeout_s:g} s"
    return outcome[0]


def settle() -> str | None:
    """Why the hub cannot be reached (None when it may be), deciding it on the first call of the process.

    Where it cannot, the process goes into the hub's offline mode: the environment for what it
    imports and starts later, and the flags of ``huggingface_hub`` and ``datasets`` where they
    were imported already (both read the environment once, at import).
    """
    with _lock:
        if _decided:
            return _decided[0]
        if offline_set():
            reason: str | None = "offline mode is set (HF_HUB_OFFLINE)"
        else:
            found = probe()
            reason = None if found is None else f"the hub cannot be reached: {found}"
            if reason is not None:
                os.environ["HF_HUB_OFFLINE"] = "1"
                _sync_imported_flags()
        _decided.append(reason)
        return reason


def _sync_imported_flags() -> None:
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
    config = sys.modules.get("datasets.config")
    if config is not None:
        config.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
        config.HF_DATASETS_OFFLINE = True  # type: ignore[attr-defined]


def forget() -> None:
    """Decide again on the next :func:`settle` (for tests that change the endpoint)."""
    with _lock:
        _decided.clear()
