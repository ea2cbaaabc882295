"""Encoded samples per second for short chat samples on CPU (goal >= 5,000/s), and time to first sample on 100k rows."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from lorastudio import registry
from lorastudio.data.prepare import prepare


def main() -> None:
    recipe = registry.load("tiny-pirate")
    prepared = prepare(recipe)
    rows = list(prepared.rows.rows) * 40  # a RowTable is a Sequence: no `*`
    start = time.perf_counter()
    for row in rows:
        prepared.encoder.encode_row(row)
    elapsed = time.perf_counter() - start
    print(f"encode_samples_per_s={len(rows) / elapsed:.0f} ({len(rows)} samples)")
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.jsonl"
        with big.open("w") as handle:
            for i in range(100_000):
                row = prepared.rows.rows[i % len(prepared.rows.rows)]
                handle.write(json.dumps(row) + "\n")
        start = time.perf_counter()
        big_recipe = registry.load("tiny-pirate", [f"data.source={big}"])
        again = prepare(big_recipe)
        again.encoder.encode_row(again.rows.rows[0])
        print(f"first_sample_100k_rows_s={time.perf_counter() - start:.2f}")


if __name__ == "__main__":
    main()
