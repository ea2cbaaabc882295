"""What a server has done: requests served, tokens per second, time to first token, errors, its log's tail.

The figures come from where each engine keeps them. transformers' server keeps none, so studio's launcher
(``hfserve``) appends a line per request to ``requests.jsonl`` in the server directory, and they are read from
there (no request to the server). vLLM, and llama.cpp's server started with ``--metrics``, publish Prometheus
counters at ``/metrics``: a light poll of that one page (a second at most) reads them. Errors are the failed
requests plus the engine log's error lines; the panel shows the log's tail as it is.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lorastudio.serve.hfserve import REQUESTS_FILE
from lorastudio.serve.servedir import LOG_FILE, ServeInfo

ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|Traceback|Exception|Error:)\b|\" [45]\d\d ")


@dataclass(frozen=True)
class Figures:
    """A server's request figures; None where its engine does not tell."""

    requests: int | None = None
    """Generation requests answered (failed ones included)."""
    failed: int = 0
    """Requests answered with an HTTP error."""
    tokens_per_s: float | None = None
    """Tokens generated per second of generating, over all requests."""
    first_token_s: float | None = None
    """Mean time to the first token (streamed) or to the whole reply."""
    log_errors: int = 0
    """Error lines in the engine's log."""
    source: str = "none"
    """Where they were read: ``requests.jsonl``, ``/metrics`` or ``none``."""


def log_tail(path: Path, lines: int = 12, max_bytes: int = 64_000) -> list[str]:
    """The last ``lines`` lines of the engine's log (only its last ``max_bytes`` are read)."""
    try:
        with (path / LOG_FILE).open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.replace("\r", "\n").splitlines() if line.strip()][-lines:]


def log_error_count(path: Path, max_bytes: int = 1_000_000) -> int:
    try:
        with (path / LOG_FILE).open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - max_bytes))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if ERROR_LINE.search(line))


def from_requests_file(path: Path) -> Figures | None:
    """Figures from ``requests.jsonl`` (studio's launcher of transformers' server); None without the file."""
    try:
        text = (path / REQUESTS_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash: the others still count
        if isinstance(row, dict):
            rows.append(row)
    good = [r for r in rows if isinstance(r.get("status"), int) and r["status"] < 400]
    tokens = sum(int(r.get("tokens") or 0) for r in good)
    generating = sum(float(r.get("seconds") or 0) - float(r.get("first_s") or 0) for r in good)
    firsts = [float(r["first_s"]) for r in good if isinstance(r.get("first_s"), int | float)]
    return Figures(
        requests=len(rows),
        failed=len(rows) - len(good),
        tokens_per_s=tokens / generating if generating > 0 and tokens else None,
        first_token_s=sum(firsts) / len(firsts) if firsts else None,
        source=REQUESTS_FILE,
    )


METRIC = re.compile(r"^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)\s*$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text: each metric's value summed over its labels (``name`` -> value)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = METRIC.match(line.strip())
        if match is None or line.startswith("#"):
            continue
        try:
            found[match.group(1)] = found.get(match.group(1), 0.0) + float(match.group(3))
        except ValueError:
            continue
    return found


def from_metrics(text: str) -> Figures:
    """vLLM's or llama.cpp's ``/metrics`` page as figures."""
    m = parse_metrics(text)
    if any(name.startswith("vllm:") for name in m):
        done = m.get("vllm:request_success_total")
        ttft_n = m.get("vllm:time_to_first_token_seconds_count", 0.0)
        tokens = m.get("vllm:generation_tokens_total", 0.0)
        decode = m.get("vllm:request_decode_time_seconds_sum", 0.0)
        return Figures(
            requests=int(done) if done is not None else None,
            tokens_per_s=tokens / decode if decode > 0 else None,
            first_token_s=m["vllm:time_to_first_token_seconds_sum"] / ttft_n if ttft_n else None,
            source="/metrics",
        )
    tokens = m.get("llamacpp:tokens_predicted_total", 0.0)  # llama.cpp counts tokens, not requests
    seconds = m.get("llamacpp:tokens_predicted_seconds_total", 0.0)
    return Figures(
        tokens_per_s=tokens / seconds if seconds > 0 else m.get("llamacpp:predicted_tokens_seconds"),
        source="/metrics",
    )


def poll_metrics(url: str, timeout_s: float = 1.0) -> str | None:
    """The server's ``/metrics`` page, or None when it has none or does not answer in time."""
    probe = url.removesuffix("/v1") + "/metrics"
    probe = probe.replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:")
    try:
        with urllib.request.urlopen(probe, timeout=timeout_s) as reply:
            return str(reply.read(2_000_000).decode("utf-8", errors="replace"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def read_figures(path: Path, info: ServeInfo, live: bool) -> Figures:
    """The server's figures: from ``requests.jsonl`` when it has one, else (live only) from ``/metrics``."""
    errors = log_error_count(path)
    figures = from_requests_file(path)
    if figures is None and live and info.engine != "transformers":
        text = poll_metrics(info.url)
        figures = from_metrics(text) if text is not None else None
    figures = figures or Figures()
    return Figures(
        figures.requests,
        figures.failed,
        figures.tokens_per_s,
        figures.first_token_s,
        errors,
        figures.source,
    )


def ssh_line(info: ServeInfo, user_host: str = "user@host") -> str:
    """The tunnel that reaches a server bound on this machine from another one."""
    return f"ssh -L {info.port}:127.0.0.1:{info.port} {user_host}"
