"""A large local data file converted to Arrow in a helper process while its caller loads the tokenizer.

``datasets`` converts a JSON-lines or Parquet file into its Arrow cache the first time it is loaded,
and loading a tokenizer (transformers' imports) takes about as long. Both hold the GIL, so two
threads would take turns (they were slower together than one after the other); two processes use
two cores. The helper makes the very call ``load_rows`` makes (``sources.build_arrow``), so
``load_rows`` then finds the conversion in the cache, or waits on the builder's lock for the rest of
it. A helper that fails or is stopped costs nothing but its time: ``load_rows`` converts the file
itself and says what is wrong with it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lorastudio.data.datasource import build_arrow, builder_files, too_deep_for_arrow
from lorastudio.recipe import DataSection

WARM_BYTES = 32 << 20
"""Files smaller than this are converted in less time than a helper takes to import ``datasets``."""


class Warming:
    """A running helper; :meth:`close` once the rows are loaded (or the load failed)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def close(self) -> None:
        """Stop the helper if it still runs (the rows are loaded by then, or no longer wanted) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def start(data: DataSection, at_least: int | None = None) -> Warming | None:
    """A helper converting the recipe's local data files, or None where there is nothing worth converting
    ahead (a hub data set, a saved one, CSV, files under ``at_least`` bytes, default ``WARM_BYTES``)."""
    files = builder_files(data)
    if files is None:
        return None
    try:
        size = sum(f.stat().st_size for f in files)
    except OSError:
        return None
    if size < (WARM_BYTES if at_least is None else at_least):
        return None
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "lorastudio.data.arrowwarm", *map(str, files)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None
    return Warming(process)


def _main(argv: list[str]) -> None:
    files = [Path(a) for a in argv]
    if files and not too_deep_for_arrow(files):
        build_arrow(files)


if __name__ == "__main__":
    _main(sys.argv[1:])
