"""A server's directory under ``DATA/serves/ID``: its typed ``serve.json``, the engine's log, the live process.

``serve.json`` is written whole and renamed into place, so a reader sees the old file or the new one. Which live
process is a server's is proven here (:func:`server_process`): its start time and its command line both match the
record, and its working directory is this very directory; nothing is signalled without that proof.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from lorastudio.errors import StudioError
from lorastudio.paths import data_dir

SERVE_FILE = "serve.json"
LOG_FILE = "engine.log"
"""The engine's stdout and stderr."""
SERVE_FORMAT = 1

Engine = Literal["vllm", "llamacpp", "transformers"]
Status = Literal["starting", "ready", "stopped", "failed"]


class ServeInfo(BaseModel):
    """What ``serve.json`` records about one server."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    format: int = SERVE_FORMAT
    """The file's version."""
    id: str
    """The directory's name; ``studio serve stop ID`` takes it."""
    target: str
    """The target as the user named it (a run, ``RUN@best``, an export folder, a GGUF file)."""
    engine: Engine
    """The serving engine that answers the requests."""
    host: str
    """The address the engine binds."""
    port: int
    """The port the engine binds."""
    url: str
    """The OpenAI-compatible base URL, ``http://HOST:PORT/v1``."""
    models: tuple[str, ...]
    """The model names a request may ask for."""
    api_key: bool = False
    """A request needs ``Authorization: Bearer KEY`` (the key itself is never written down)."""
    pid: int | None = None
    """The engine's process (the leader of its own session)."""
    pid_started: float | None = None
    """That process's start time, so a reused pid is not taken for it."""
    command: tuple[str, ...] = ()
    """The engine's command line as started, part of the proof that a live process is this server."""
    status: Status = "starting"
    """As last written: a server that exits on its own still reads ``ready`` here; :func:`live_status` knows."""
    created: float = 0.0
    """When ``studio serve`` made the directory (seconds since the epoch)."""
    error: str | None = None
    """Why it failed to start, in one line."""


def serves_dir() -> Path:
    return data_dir() / "serves"


def read_info(path: Path) -> ServeInfo:
    """The directory's ``serve.json``; a missing or damaged file is a :class:`StudioError` naming it."""
    file = path / SERVE_FILE
    try:
        return ServeInfo.model_validate_json(file.read_bytes())
    except FileNotFoundError:
        raise StudioError(f"{file}: missing (not a studio server directory)") from None
    except OSError as exc:
        raise StudioError(f"{file}: cannot be read ({exc.strerror or exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise StudioError(f"{file}: {where}: {first['msg']}") from None


def write_info(path: Path, info: ServeInfo) -> None:
    tmp = path / f".{SERVE_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        tmp.write_text(info.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(path / SERVE_FILE)
    finally:
        tmp.unlink(missing_ok=True)


def update_info(path: Path, **fields: Any) -> ServeInfo:
    info = read_info(path).model_copy(update=fields)
    write_info(path, info)
    return info


def server_process(path: Path, info: ServeInfo) -> Any | None:
    """The live process ``serve.json`` records (a ``psutil.Process``), proven to be this server; else None."""
    if not info.pid or info.pid_started is None or not info.command:
        return None
    try:
        import psutil

        proc = psutil.Process(info.pid)
        if abs(proc.create_time() - info.pid_started) >= 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if tuple(proc.cmdline()) != info.command or not os.path.samefile(proc.cwd(), path):
            return None
        return proc
    except Exception:  # gone, not ours to read, a malformed pid: not proven
        return None


def _answers(probe: str) -> int | None:
    """The HTTP status ``probe`` answers with; None when nothing answers."""
    try:
        with urllib.request.urlopen(probe, timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def health_ok(url: str) -> bool:
    """The engine at ``url`` (``http://HOST:PORT/v1``) is up: ``/health`` answers 200 (vLLM, llama-server,
    transformers), or, where there is no ``/health`` (llama-cpp-python's server), ``/v1/models`` answers at all
    (401 too: a key is asked for). Each loads its model before it listens, so an answer means ready."""
    # a wildcard bind is reached on loopback
    base = url.removesuffix("/v1").replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:")
    status = _answers(base + "/health")
    if status == 404:
        return _answers(base + "/v1/models") in (200, 401)
    return status == 200


def live_status(path: Path, info: ServeInfo) -> str:
    """``starting``/``ready`` while the proven process runs (``ready`` once it answers, though the ``studio serve``
    that waited for it was closed first); ``died`` when it no longer runs; else as written."""
    if info.status not in ("starting", "ready"):
        return info.status
    if server_process(path, info) is None:
        return "died"
    if info.status == "starting" and health_ok(info.url):
        return "ready"
    return info.status


def list_servers(root: Path | None = None) -> list[tuple[Path, ServeInfo | None, str]]:
    """(directory, its record or None, status or what is wrong) for every server directory, newest first."""
    root = root or serves_dir()
    found: list[tuple[Path, ServeInfo | None, str]] = []
    for path in sorted(root.iterdir() if root.is_dir() else [], key=lambda p: p.name, reverse=True):
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            info = read_info(path)
        except StudioError as exc:
            found.append((path, None, f"damaged: {exc}"))
            continue
        found.append((path, info, live_status(path, info)))
    found.sort(key=lambda row: row[1].created if row[1] else 0.0, reverse=True)
    return found


def log_reason(path: Path) -> str:
    """The engine's last word in its log: the last unindented line (a traceback's exception, a server's error)."""
    try:
        text = (path / LOG_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "its log cannot be read"
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line[:1].isspace()]
    return lines[-1][:400] if lines else "its log is empty"
