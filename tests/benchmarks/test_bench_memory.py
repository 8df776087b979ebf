"""The memory benchmark runs end to end on tiny demos, and its RSS probe measures each run alone."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks import memory
from benchmarks.end_to_end import BenchError
from benchmarks.harness import Settings

ALLOCATE = "import sys; block = b'x' * (int(sys.argv[1]) << 20)"  # written, so resident


def test_memory_case_compares_a_tenfold_demo_with_its_baseline() -> None:
    (figure,) = memory.run(Settings(quick=True, repeats=1, documents=60))
    assert figure.name == "peak RSS, pds of 600 patients"
    assert figure.baseline_name == "pds of 60 patients"
    assert figure.value is not None and figure.value > 10
    assert figure.baseline is not None and figure.baseline > 10
    assert figure.goal is not None and figure.goal.text == "<= 1.2x"
    assert "the issue's sizes are 100,000 vs 10x" in figure.note


def test_peak_rss_is_per_run_not_the_largest_child_so_far(tmp_path: Path) -> None:
    _, big = memory.peak_rss([sys.executable, "-c", ALLOCATE, "300"], tmp_path)
    _, small = memory.peak_rss([sys.executable, "-c", ALLOCATE, "20"], tmp_path)
    assert big > 300 > small > 20


def test_a_failing_run_is_reported(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="exited with 3"):
        memory.peak_rss([sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path)


def test_peak_rss_does_not_count_the_calling_process(tmp_path: Path) -> None:
    """Measured from a grown process (as after the reconcile case), a small run stays small."""
    ballast = b"x" * (400 << 20)  # written, so resident in this process
    _, small = memory.peak_rss([sys.executable, "-c", ALLOCATE, "20"], tmp_path)
    assert len(ballast) and 20 < small < 200
