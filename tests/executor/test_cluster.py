"""The distributed executor on a real Dask cluster: a `LocalCluster` of worker processes (and, to
restart its scheduler, `dask scheduler` and `dask worker` commands), a PostgreSQL ledger, the Riak
fake here (a three-node Riak cluster in `tests/cli/test_riak_cluster.py`, which shares the
session's real cluster).

What a run on Dask must give is what a local run gives: the same dump, the same ledger record of
every chunk (rows, staged files, documents, rejects, checksums), the same reconciliation. And it
must stay exact when a worker is killed in the middle of a chunk (the chunk runs again on
another worker) and when the scheduler is lost between chunks (the run stops, exit 3, and a
re-run resumes).
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dask_projects import (
    SchedulerProcesses,
    address,
    chunk_records,
    dumps,
    free_port,
    local_cluster,
    reconcile_report,
    transformed_twice,
    use_dask,
    wait_until,
)
from riak_fake import RiakFake
from riak_projects import dump, finish, invoke, no_traceback, start, use_riak

from migrate.ledger import ChunkState, Ledger

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two worker processes, one thread each, for the module's tests."""
    with local_cluster(2) as client:
        yield client


def fake_url(fake: RiakFake) -> str:
    return f"riak://127.0.0.1:{fake.port}"


def test_a_run_on_dask_equals_a_local_run(
    cluster: Any,
    demo_project: Path,
    demo_template: Path,
    pg_url: str,
    riak_fake: RiakFake,
    embedded_dumps: dict[str, bytes],
    tmp_path: Path,
) -> None:
    local = tmp_path / "local"
    shutil.copytree(demo_template, local)
    use_riak(local, fake_url(riak_fake), suffix="-local")
    use_riak(demo_project, fake_url(riak_fake), suffix="-dask")
    use_dask(demo_project, address(cluster), pg_url)

    assert invoke(local, "run").exit_code == 0
    result = invoke(demo_project, "run")

    assert result.exit_code == 0, result.output
    assert "this host reads every chunk" in result.output  # SQLite: read here, built there
    assert dumps(demo_project, "-dask") == embedded_dumps == dumps(local, "-local")
    assert chunk_records(demo_project) == chunk_records(local)
    assert reconcile_report(demo_project) == reconcile_report(local)


def _latest_chunks(state_url: str, service: str) -> list[Any]:
    ledger = Ledger(state_url)
    try:
        run = ledger.latest_run(service)
        return [] if run is None else ledger.chunks(run.run_id)
    finally:
        ledger.close()


def test_a_worker_killed_mid_chunk_has_it_run_again_elsewhere_and_the_run_ends_exact(
    cluster: Any,
    demo_project: Path,
    pg_url: str,
    riak_fake: RiakFake,
    embedded_dumps: dict[str, bytes],
) -> None:
    # Slow writes (two in flight, 20 ms each): a chunk's 200 documents take about two seconds
    # to load, long enough to catch one half-way.
    use_riak(demo_project, fake_url(riak_fake), "max_in_flight = 2")
    use_dask(demo_project, address(cluster), pg_url)
    riak_fake.faults.delay = 0.02
    running = start(demo_project, "run", "pds")
    try:
        writing: list[str] = []

        def a_chunk_is_being_written() -> bool:
            chunks = _latest_chunks(pg_url, "pds")
            writing[:] = [c.chunk_id for c in chunks if c.state is ChunkState.TRANSFORMED]
            return bool(writing)

        wait_until(a_chunk_is_being_written, what="a pds chunk recorded transformed, not loaded")
        chunk = writing[0]
        (worker,) = [
            worker
            for worker, keys in cluster.processing().items()
            if any(f"-{chunk}-" in str(key) for key in keys)
        ]
        os.kill(cluster.run(os.getpid)[worker], signal.SIGKILL)
    finally:
        output = finish(running)
    riak_fake.faults.delay = 0

    assert running.returncode == 0, output
    assert "Traceback" not in output
    assert chunk in transformed_twice(demo_project, "pds")  # killed half-way, then run again
    assert dump(demo_project, "pds") == embedded_dumps["pds"]
    assert all(c.state is ChunkState.LOADED for c in _latest_chunks(pg_url, "pds"))
    check = invoke(demo_project, "reconcile", "--dry-run", "pds")
    assert check.exit_code == 0, check.output


def test_a_scheduler_lost_between_chunks_stops_the_run_and_a_rerun_resumes_exact(
    demo_project: Path,
    pg_url: str,
    riak_fake: RiakFake,
    embedded_dumps: dict[str, bytes],
    tmp_path: Path,
) -> None:
    dask = SchedulerProcesses(tmp_path, workers=2)
    try:
        dask.start()
        use_riak(demo_project, fake_url(riak_fake), "max_in_flight = 2")
        use_dask(demo_project, dask.executor, pg_url)
        riak_fake.faults.delay = 0.01
        running = start(demo_project, "run", "pds")
        try:
            assert running.seen("pds: 2/"), "".join(running.lines)  # type: ignore[attr-defined]
            dask.kill_scheduler()
        finally:
            output = finish(running)
        riak_fake.faults.delay = 0

        assert running.returncode == 3, output
        assert f"lost the Dask scheduler at {dask.executor}" in output
        assert "Traceback" not in output
        loaded = [c for c in _latest_chunks(pg_url, "pds") if c.state is ChunkState.LOADED]
        assert 2 <= len(loaded) < 8  # stopped between chunks: some loaded, some not

        # The scheduler again, on its port, with its workers (which ended with the one lost).
        dask.stop()
        dask.start()
        again = invoke(demo_project, "run", "pds")
        no_traceback(again)
        assert again.exit_code == 0, again.output
        assert "resuming run" in again.output
    finally:
        dask.stop()
    assert dump(demo_project, "pds") == embedded_dumps["pds"]
    assert all(c.state is ChunkState.LOADED for c in _latest_chunks(pg_url, "pds"))


def test_a_scheduler_that_cannot_be_reached_stops_the_run_before_anything_is_recorded(
    demo_project: Path, pg_url: str, riak_fake: RiakFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("migrate.executor.cluster.CONNECT_SECONDS", 1.0)
    use_riak(demo_project, fake_url(riak_fake))
    use_dask(demo_project, f"dask://127.0.0.1:{free_port()}", pg_url)

    result = invoke(demo_project, "run")

    no_traceback(result)
    assert result.exit_code == 3, result.output
    assert "cannot reach the Dask scheduler at dask://127.0.0.1:" in result.output
    assert "nothing was recorded" in result.output
    ledger = Ledger(pg_url)
    try:
        assert ledger.runs() == [] and ledger.lease("pds") is None
    finally:
        ledger.close()


def test_a_scheduler_with_no_worker_says_so(
    demo_project: Path, pg_url: str, riak_fake: RiakFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("migrate.executor.cluster.WORKERS_SECONDS", 1.0)
    use_riak(demo_project, fake_url(riak_fake))
    with local_cluster(0) as empty:
        use_dask(demo_project, address(empty), pg_url)
        result = invoke(demo_project, "run", "pds")

    no_traceback(result)
    assert result.exit_code == 3, result.output
    assert "has no worker" in result.output and "dask worker" in result.output
