"""Start a server detached (its own session, like a training run's worker) and stop one proven to be it.

Everything that can be refused is refused before a directory exists or a process starts: an engine not installed,
a target with no adapter, a port in use, a non-loopback host without a key. The engine then runs in its own
session with its output in ``engine.log``; :func:`start_server` waits until it answers ``/health``, or reports the
log's tail when it exits first (the directory stays, ``failed``, nothing left running).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lorastudio.errors import StudioError
from lorastudio.serve.engines import (
    ServeTarget,
    choose_engine,
    combine_targets,
    engine_command,
    resolve_target,
)
from lorastudio.serve.servedir import (
    LOG_FILE,
    ServeInfo,
    health_ok,
    list_servers,
    log_reason,
    read_info,
    server_process,
    serves_dir,
    update_info,
    write_info,
)

DEFAULT_PORT = 8000
START_TIMEOUT_S = 600.0
"""How long ``studio serve`` waits for the engine's first ``/health``: a big model loads for minutes."""


@dataclass(frozen=True)
class Started:
    path: Path
    info: ServeInfo
    generated_key: str | None
    """The API key studio made up (shown once, written nowhere); None when the user's variable gave it, or none."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key(host: str, key_env: str | None) -> tuple[str | None, bool]:
    """(the key, whether studio generated it): from ``--api-key-env NAME``, made up for a non-loopback host."""
    if key_env:
        value = os.environ.get(key_env, "")
        if not value.strip():
            raise StudioError(
                f"--api-key-env {key_env}: the environment variable {key_env} is not set or empty"
            )
        return value.strip(), False
    if is_loopback(host):
        return None, False
    return secrets.token_urlsafe(24), True


def check_port(host: str, port: int) -> None:
    """Refuse a port another process listens on (bound as the engines bind it: SO_REUSEADDR, so a closing
    connection in TIME_WAIT does not count)."""
    if not 1 <= port <= 65535:
        raise StudioError(f"--port {port}: choose a port from 1 to 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == 98:  # EADDRINUSE
                raise StudioError(
                    f"--port {port}: port {port} on {host} is in use; pick another with --port"
                ) from None
            raise StudioError(f"--host {host} --port {port}: cannot bind ({exc.strerror or exc})") from None


def _new_dir(name: str) -> Path:
    root = serves_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, n = root / stem, 1
        while True:
            try:
                path.mkdir()
                return path
            except FileExistsError:
                n += 1
                path = root / f"{stem}-{n}"
    except OSError as exc:
        raise StudioError(f"cannot create a server directory under {root}: {exc.strerror or exc}") from None


def _model_folder(path: Path, target: ServeTarget, progress: Callable[[str], None]) -> str:
    """The folder transformers' server loads, linked or merged into the server directory under the model's name."""
    folder = path / target.name
    if target.adapter is None:
        assert target.base is not None
        base = Path(target.base)
        if not base.is_dir():
            return target.base  # a hub id: the server fetches it
        folder.symlink_to(base.resolve(), target_is_directory=True)
        return target.name
    from lorastudio.export.exporter import ExportRequest, export

    assert target.run_dir is not None
    progress(f"merging the adapter into {folder} (studio export's merged format)")
    export(ExportRequest(run=str(target.run_dir), format="merged", checkpoint=target.checkpoint, out=folder))
    return target.name


def start_server(
    target: str | list[str],
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    engine: str = "auto",
    key_env: str | None = None,
    progress: Callable[[str], None] | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> Started:
    """Serve ``target`` detached; returns once it answers, or raises with why (nothing left running).

    Several targets are runs' adapters served together on their one base (:func:`combine_targets`)."""
    say = progress or (lambda message: None)
    key, generated = api_key(host, key_env)
    targets = [target] if isinstance(target, str) else list(target)
    resolved = [resolve_target(one) for one in targets]
    what = resolved[0] if len(resolved) == 1 else combine_targets(targets, resolved)
    target = " ".join(targets)
    chosen = choose_engine(engine, what)
    check_port(host, port)
    path = _new_dir(what.name)
    url_host = f"[{host}]" if ":" in host else host
    info = ServeInfo(
        id=path.name,
        target=target,
        engine=chosen,
        host=host,
        port=port,
        url=f"http://{url_host}:{port}/v1",
        models=(),
        api_key=key is not None,
        created=time.time(),
    )
    write_info(path, info)
    try:
        model = _model_folder(path, what, say) if chosen == "transformers" else what.name
    except Exception as exc:  # the merge: a base that does not load, a full disk; no engine was started
        update_info(path, status="failed", error=f"preparing the model: {exc}")
        if isinstance(exc, StudioError):
            raise
        raise StudioError(
            f"{target}: preparing the model for the transformers server failed: {exc}"
        ) from None
    cmd, key_var, models = engine_command(chosen, what, model, host, port)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if key is not None:
        env[key_var] = key
    say(f"starting {chosen} on {info.url}")
    with (path / LOG_FILE).open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=path,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    from lorastudio.train.run.rundir import create_time

    info = update_info(
        path, pid=proc.pid, pid_started=create_time(proc.pid), command=tuple(cmd), models=models
    )
    try:
        _wait_until_ready(proc, path, info, timeout_s)
    except KeyboardInterrupt:  # Ctrl+C while it loads cancels it: nothing left running
        _end(proc.pid)
        proc.wait()
        update_info(path, status="failed", error="interrupted before it answered; stopped")
        raise
    info = update_info(path, status="ready")
    return Started(path, info, key if generated else None)


def _wait_until_ready(proc: subprocess.Popen[bytes], path: Path, info: ServeInfo, timeout_s: float) -> None:
    chosen = info.engine
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            error = f"the {chosen} server exited (code {proc.returncode}) before answering"
            update_info(path, status="failed", error=error)
            raise StudioError(f"{error}: {log_reason(path)} (its log: {path / LOG_FILE})")
        if health_ok(info.url):
            break
        if time.monotonic() > deadline:
            _end(proc.pid)
            proc.wait()
            error = f"the {chosen} server did not answer within {timeout_s:.0f} s; stopped"
            update_info(path, status="failed", error=error)
            raise StudioError(f"{error}: {log_reason(path)} (its log: {path / LOG_FILE})")
        time.sleep(0.5)


def _end(pid: int, grace_s: float = 15.0) -> None:
    """SIGTERM the server's session (the engine and any worker it started), SIGKILL what outlives the grace."""
    import psutil

    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM) if group == pid else os.kill(pid, signal.SIGTERM)
    try:
        psutil.Process(pid).wait(grace_s)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL) if group == pid else os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
            psutil.Process(pid).wait(5)


def find_server(name: str) -> Path:
    """A server directory by its id (or the start of one, when only one matches)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or name.startswith("."):
        raise StudioError(f"{name}: not a server id (studio serve list shows them)")
    exact = serves_dir() / name
    if exact.is_dir():
        return exact
    matches = [path for path, _, _ in list_servers() if path.name.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise StudioError(f"{name}: no such server (studio serve list shows them)")
    raise StudioError(
        f"{name}: names {len(matches)} servers ({', '.join(p.name for p in matches)}); give more of the id"
    )


SERVED_PREFIX = "serve:"
"""A chat target ``serve:ID`` names a server studio started (``studio serve list`` shows the ids)."""


def served_target(target: str, model: str | None = None) -> tuple[str, str | None]:
    """(URL, model name) of ``serve:ID``: a running server's endpoint and its first model (unless ``model``)."""
    from lorastudio.serve.servedir import live_status

    path = find_server(target.removeprefix(SERVED_PREFIX))
    info = read_info(path)
    status = live_status(path, info)
    if status not in ("starting", "ready"):
        raise StudioError(f"{target}: the server is {status}; start it again with studio serve {info.target}")
    return info.url, model or (info.models[0] if info.models else None)


def stop_server(path: Path) -> tuple[ServeInfo, bool]:
    """(the record, whether a live server was stopped). Only a process proven to be this server is signalled."""
    info = read_info(path)
    proc = server_process(path, info)
    if proc is None:
        if info.status in ("starting", "ready"):
            info = update_info(path, status="stopped", error="it had exited before studio serve stop")
        return info, False
    _end(proc.pid)
    return update_info(path, status="stopped"), True


def stop_all() -> list[tuple[Path, ServeInfo, bool]]:
    stopped = []
    for path, info, status in list_servers():
        if info is not None and status in ("starting", "ready"):
            stopped.append((path, *stop_server(path)))
    return stopped
