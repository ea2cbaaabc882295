"""Write an export into a hidden temporary folder beside its target and rename it into place.

A failed export (disk full, a crash, Ctrl+C) leaves nothing behind that looks like a finished export:
the temporary folder is removed, and the target only appears, complete, by one rename.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lorastudio.errors import StudioError


class ExportError(StudioError):
    """An export cannot start or did not finish; the message names the run, file or option at fault."""


def check_target(out: Path, force: bool) -> None:
    """Refuse an existing non-empty output folder unless ``force``; refuse a file in its place."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(
            f"--out {out}: the folder exists and is not empty; choose another --out or pass --force "
            "to replace it"
        )


def describe_os_error(exc: OSError, where: Path) -> str:
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing {where}; the partial export was removed"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {where}: {exc.strerror or exc}"
    return f"writing {where} failed: {exc.strerror or exc}; the partial export was removed"


@contextlib.contextmanager
def staged_dir(out: Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``out``, on any failure it is deleted."""
    check_target(out, force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the finished export is an ordinary folder
    except OSError as exc:
        raise ExportError(f"--out {out}: cannot create the folder: {exc.strerror or exc}") from None
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(describe_os_error(exc, out)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def folder_size(path: Path) -> int:
    """Bytes of every file under ``path`` (or of the file itself)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_size(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
