"""The Dask bench measures what it says on a tiny load (figures are not asserted): 1 and 2 Dask
workers beside the local executor, per worker, per Riak node, a reconcile, and the projection to
80 million root documents made from those figures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import scale_out
from benchmarks.harness import Settings
from benchmarks.wrk import wrk_path


@pytest.mark.slow
@pytest.mark.postgres
def test_the_dask_case_measures_its_figures_and_projects_from_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if wrk_path() is None:
        pytest.skip("wrk is not installed (CI installs it)")
    monkeypatch.delenv("RIAK_URL", raising=False)
    monkeypatch.setenv("MIGRATE_TEST_RIAK_DIR", str(tmp_path / "no-riak-here"))  # the fake
    figures = scale_out.run(Settings(quick=True, repeats=1, documents=200))

    one, two, worker, node, check = figures
    assert one.name.endswith("1 Dask worker") and two.name.endswith("2 Dask workers")
    for figure in (one, two, check):
        assert figure.value and figure.baseline and figure.baseline_name.startswith("local")
    assert worker.value == pytest.approx(two.value / 2)
    assert node.value and "over its 1 node(s)" in node.note
    assert "the Riak fake" in one.note
    load = scale_out.ROOTS / (scale_out.LOAD_HOURS * 3600)
    assert f"= {math.ceil(load / worker.value)} Dask worker(s) at" in check.note
    assert f"{max(3, math.ceil(load / node.value))} Riak node(s) at" in check.note
