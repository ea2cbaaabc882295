"""Upload an export folder to the Hugging Face Hub.

The token comes from ``HF_TOKEN`` or ``hf auth login`` through huggingface_hub itself; studio never writes
it anywhere and scrubs it from any error text it shows. Offline, the push fails with one message and
the local export stays where it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from lorastudio import hub
from lorastudio.errors import StudioError


class PushError(StudioError):
    """The upload did not happen; the local export is intact."""


def _first_line(exc: BaseException, token: str | None) -> str:
    text = (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__
    return text.replace(token, "***") if token else text


def push_export(folder: Path, repo_id: str, private: bool = False) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` to it; returns the commit URL."""
    later = f"the export stays at {folder}; push it later with `studio export {folder} --push {repo_id}`"
    offline = hub.settle()  # at once, not after huggingface_hub's retries
    if offline is not None:
        raise PushError(f"--push {repo_id}: nothing uploaded to {hub.endpoint()}: {offline}; {later}")
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise PushError(
            f"--push {repo_id}: no Hugging Face token; set HF_TOKEN or run `hf auth login`; {later}"
        )
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
        info = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type="model",
            commit_message="Upload from studio export",
        )
    except Exception as exc:  # connection errors, 401/403, bad repo ids: one line, token scrubbed
        name = type(exc).__name__
        detail = _first_line(exc, token)
        if "Connect" in name or "Timeout" in name or "connect" in detail.lower() or "Offline" in name:
            endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
            raise PushError(
                f"--push {repo_id}: cannot reach the hub at {endpoint} ({detail}); {later}"
            ) from None
        raise PushError(f"--push {repo_id}: upload failed: {name}: {detail}; {later}") from None
    return str(getattr(info, "commit_url", info))
