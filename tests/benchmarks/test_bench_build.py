"""The build benchmark runs end to end on a tiny demo (figures only, never timed assertions)."""

from __future__ import annotations

from benchmarks import build
from benchmarks.harness import Settings


def test_build_case_reports_both_services_with_their_baseline() -> None:
    figures = build.run(Settings(quick=True, repeats=1, documents=300))
    assert [f.name for f in figures] == [
        "build pds documents/s, 1 core",
        "build eps documents/s, 1 core",
    ]
    for figure in figures:
        assert figure.value > 0 and figure.baseline > 0
        assert figure.baseline_name == build.BASELINE
        assert figure.goal is not None
