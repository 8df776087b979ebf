"""The delta bench measures what it says: a burst applied by delta, the lag until nothing is
pending, an idle delta, each beside its baseline, by triggers and by watermark (run small:
figures are not asserted)."""

from __future__ import annotations

import pytest

from benchmarks.delta import run
from benchmarks.harness import Settings


@pytest.mark.slow
def test_the_delta_case_measures_three_figures_in_each_mode() -> None:
    figures = run(Settings(quick=True, repeats=1, documents=400))
    names = [f.name for f in figures]
    assert names[0] == "delta changed documents/s vs bulk documents/s"
    assert names[1].startswith("lag after a burst of 400 changes")
    assert names[2] == "idle delta, whole process"
    assert names[3:] == ["watermark: " + n for n in names[:3]]
    for rates, lag, idle in (figures[:3], figures[3:]):
        assert rates.value and rates.baseline and rates.ratio
        assert " 0 documents" not in rates.note
        assert lag.value is not None and lag.value > 0
        assert idle.value and idle.baseline
    assert "rebuilding" in figures[0].note
