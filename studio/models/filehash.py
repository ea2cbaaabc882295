"""sha256 of a model file, read in chunks with progress (GGUF identities, offline downloads)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

CHUNK = 8 << 20


def sha256_file(path: Path, progress: Callable[[float], None] | None = None) -> str:
    """The file's sha256 hex digest; ``progress`` gets the fraction read after each chunk."""
    size = max(path.stat().st_size, 1)
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done / size)
    return digest.hexdigest()
