"""The test suite's wall time and its slowest tests and files, from a pytest JUnit XML report.

    python benchmarks/suite_time.py                       # runs the whole suite (as ./test does), then reports
    python benchmarks/suite_time.py -- tests/test_slurm.py -n 2    # any pytest arguments after ``--``
    python benchmarks/suite_time.py --read report.xml     # reports on a JUnit file written earlier

A JUnit report is used rather than ``--durations`` because it keeps each test's whole cost (setup, call and
teardown together: a session fixture that trains counts against the first test that asks for it) and its
file, and pytest-xdist merges its workers' reports into it. Under xdist the tests' times add up to more than
the wall time: the ``sum of tests / wall`` figure is how much the workers overlapped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent


class Case(NamedTuple):
    """One test's line in the report."""

    file: str
    """The test's file, as pytest names it (``tests/test_slurm.py``)."""
    name: str
    """The test's name, parameters included."""
    seconds: float
    """Setup, call and teardown together."""
    outcome: str
    """passed, failed, error or skipped."""


def read_report(path: Path) -> tuple[list[Case], float | None]:
    """Every test case in a JUnit report, and the run's own time when the report records it."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    cases: list[Case] = []
    total: float | None = None
    for suite in suites:
        if suite.get("time"):
            total = (total or 0.0) + float(suite.get("time", "0"))
        for case in suite.iter("testcase"):
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = {"failure": "failed"}.get(child.tag, child.tag)
            module = case.get("classname", "").split(".")
            # classname is ``tests.test_slurm`` (or ``tests.test_x.TestClass``): the file is the test_ part
            parts = [p for p in module if p]
            stem = next((i for i, p in enumerate(parts) if p.startswith("test_")), len(parts) - 1)
            file = "/".join(parts[: stem + 1]) + ".py"
            cases.append(Case(file, case.get("name", "?"), float(case.get("time", "0") or 0), outcome))
    return cases, total


def report(cases: list[Case], wall: float | None, top: int = 25) -> str:
    """The figures as text: wall time, counts, the slowest tests and the slowest files."""
    spent = sum(c.seconds for c in cases)
    counts: dict[str, int] = defaultdict(int)
    for case in cases:
        counts[case.outcome] += 1
    lines = []
    if wall is not None:
        lines.append(f"wall time: {wall:.0f} s ({wall / 60:.1f} min)")
    lines.append(
        f"tests: {len(cases)} ("
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        + f"); sum of their times {spent:.0f} s"
        + (f", {spent / wall:.2f}x the wall time" if wall else "")
    )
    lines.append(f"\nthe {top} slowest tests (setup + call + teardown):")
    for case in sorted(cases, key=lambda c: c.seconds, reverse=True)[:top]:
        lines.append(f"{case.seconds:8.1f} s  {case.file}::{case.name}  {case.outcome}")
    files: dict[str, float] = defaultdict(float)
    for case in cases:
        files[case.file] += case.seconds
    lines.append(f"\nthe {min(top, len(files))} slowest files:")
    for file, seconds in sorted(files.items(), key=lambda kv: kv[1], reverse=True)[:top]:
        lines.append(f"{seconds:8.1f} s  {file}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--read", type=Path, help="a JUnit XML report to read instead of running pytest")
    parser.add_argument("--top", type=int, default=25, help="how many tests and files to list (25)")
    parser.add_argument("--keep", type=Path, help="where to keep the JUnit report of the run")
    parser.add_argument("pytest_args", nargs="*", help="after --: pytest's arguments (default: the suite)")
    args = parser.parse_args(argv)
    if args.read:
        cases, wall = read_report(args.read)
        print(report(cases, wall, args.top))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        xml = args.keep or Path(tmp) / "suite.xml"
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={xml}",
                *args.pytest_args,
            ],
            cwd=ROOT,
        )
        wall = time.monotonic() - started
        if not xml.exists():
            print(f"pytest wrote no report (exit {done.returncode})", file=sys.stderr)
            return done.returncode or 1
        cases, _ = read_report(xml)
    print(report(cases, wall, args.top))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
