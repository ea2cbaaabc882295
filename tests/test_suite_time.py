"""benchmarks/suite_time.py: the suite's figures read from a JUnit report, as pytest and pytest-xdist write it."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    from suite_time import read_report, report
finally:
    sys.path.pop(0)

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="4" time="200.5">
<testcase classname="tests.test_slurm" name="test_requeued_job" time="147.25"/>
<testcase classname="tests.test_slurm" name="test_time_limit" time="40.0"><failure message="x">x</failure></testcase>
<testcase classname="tests.test_chat" name="test_cli_chat_prompt[greedy]" time="12.5"/>
<testcase classname="tests.test_chat.TestEngine" name="test_reply" time="0.75"><skipped message="s"/></testcase>
</testsuite></testsuites>
"""


def test_cases_files_outcomes_and_the_slowest_first(tmp_path: Path) -> None:
    xml = tmp_path / "suite.xml"
    xml.write_text(JUNIT)
    cases, wall = read_report(xml)
    assert wall == 200.5
    assert [(c.file, c.name, c.seconds, c.outcome) for c in cases] == [
        ("tests/test_slurm.py", "test_requeued_job", 147.25, "passed"),
        ("tests/test_slurm.py", "test_time_limit", 40.0, "failed"),
        ("tests/test_chat.py", "test_cli_chat_prompt[greedy]", 12.5, "passed"),
        ("tests/test_chat.py", "test_reply", 0.75, "skipped"),
    ]
    text = report(cases, 100.0, top=2).splitlines()
    assert text[0] == "wall time: 100 s (1.7 min)"
    assert (
        text[1] == "tests: 4 (1 failed, 2 passed, 1 skipped); sum of their times 200 s, 2.00x the wall time"
    )
    slowest = text[text.index("the 2 slowest tests (setup + call + teardown):") + 1 :][:2]
    assert slowest == [
        "   147.2 s  tests/test_slurm.py::test_requeued_job  passed",
        "    40.0 s  tests/test_slurm.py::test_time_limit  failed",
    ]
    files = text[text.index("the 2 slowest files:") + 1 :]
    assert files == ["   187.2 s  tests/test_slurm.py", "    13.2 s  tests/test_chat.py"]


def test_heavy_files_go_first_each_in_its_own_order() -> None:
    """./test's xdist workers take whole files in this order: training-heavy files first, stable otherwise."""
    from dataclasses import dataclass

    from conftest import heavy_files_first

    @dataclass
    class Item:
        nodeid: str
        slow: bool = False

        def get_closest_marker(self, name: str) -> object | None:
            return object() if self.slow and name == "slow" else None

    items = [
        Item("tests/test_a.py::one"),
        Item("tests/test_b.py::one", slow=True),
        Item("tests/test_a.py::two"),
        Item("tests/test_c.py::one", slow=True),
        Item("tests/test_c.py::two", slow=True),
        Item("tests/test_gpu_truth.py::dry"),
        Item("tests/test_b.py::two"),
    ]
    ordered = [i.nodeid for i in heavy_files_first(items)]  # type: ignore[arg-type]
    assert ordered == [
        "tests/test_gpu_truth.py::dry",
        "tests/test_c.py::one",
        "tests/test_c.py::two",
        "tests/test_b.py::one",
        "tests/test_b.py::two",
        "tests/test_a.py::one",
        "tests/test_a.py::two",
    ]
