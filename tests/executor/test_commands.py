"""`migrate reconcile` and `migrate delta` on a project whose `[run] executor` is a Dask cluster
(a `LocalCluster` of worker processes, a PostgreSQL ledger, the Riak fake).

A reconciliation builds every chunk's expected side as a task on the cluster's workers, which
read their chunks themselves under the reconciliation's exported PostgreSQL snapshot, and finds
what a local reconciliation finds. A delta runs on the command's host (its batches are one
ordered stream, `migrate.delta`), says so, and leaves the target as a plain build of the source;
the reconciliation after it, on the cluster, is clean.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dask_projects import address, local_cluster, use_dask
from postgres_server import PostgresServer
from riak_fake import RiakFake
from riak_projects import invoke, no_traceback, use_riak
from support import assert_matches_reference, set_run_option, use_capture, visible_patients

from migrate.delta import ON_THIS_HOST

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with local_cluster(2) as client:
        client.get_task_stream()  # the scheduler records the tasks it runs from now on
        yield client


def _tasks_since(client: Any, start: float, name: str) -> int:
    return sum(1 for t in client.get_task_stream(start=start) if str(t["key"]).startswith(name))


def _delete(fake: RiakFake, bucket: str, key: str) -> None:
    url = f"http://127.0.0.1:{fake.port}/types/default/buckets/{bucket}/keys/{key}"
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE")) as answer:
        assert answer.status in (204, 404)


def test_reconcile_builds_on_the_cluster_reading_under_the_shared_snapshot_and_finds_the_same(
    cluster: Any,
    postgres_server: PostgresServer,
    riak_fake: RiakFake,
    tmp_path: Path,
) -> None:
    source_url = postgres_server.create_database()
    on_dask = tmp_path / "dask"
    created = invoke_demo(on_dask, source_url)
    assert created.exit_code == 0, created.output
    set_run_option(on_dask, "chunk_size", 60)
    local = tmp_path / "local"
    shutil.copytree(on_dask, local)
    fake = f"riak://127.0.0.1:{riak_fake.port}"
    use_riak(local, fake, suffix="-local")
    use_riak(on_dask, fake, suffix="-dask")
    use_dask(on_dask, address(cluster), postgres_server.create_database())
    for project in (local, on_dask):
        result = invoke(project, "run", "pds")
        assert result.exit_code == 0, result.output
    assert "this host reads every chunk" not in result.output  # the workers joined the snapshot
    key = sorted(riak_fake.keys("default", "patients-dask"))[7]
    _delete(riak_fake, "patients-dask", key)
    _delete(riak_fake, "patients-local", key)

    started = time.time()
    found = invoke(on_dask, "reconcile", "--dry-run", "--format", "json", "pds")
    built = _tasks_since(cluster, started, "expect_chunk")
    expected = invoke(local, "reconcile", "--dry-run", "--format", "json", "pds")

    no_traceback(found)
    assert found.exit_code == expected.exit_code == 1, found.output
    assert _reported(found.stdout, "-dask") == _reported(expected.stdout, "-local")
    report = json.loads(found.stdout)
    found_keys = [
        (kind, item["key"])
        for doc in report["services"][0]["document_types"]
        for kind, items in doc["differences"].items()
        for item in items
    ]
    assert found_keys == [("missing", key)]
    chunks = sum(1 for _ in _chunk_ids(on_dask))
    assert built == chunks  # every chunk's expected side was built by a worker


def _reported(text: str, suffix: str) -> Any:
    """What a JSON report found, less when it ran and the buckets' suffix."""
    report = json.loads(text.replace(f'{suffix}"', '"'))
    return [
        (
            s["service"],
            s["outcome"],
            [
                (d["document_type"], d["outcome"], d["counts"], d["differences"])
                for d in s["document_types"]
            ],
        )
        for s in report["services"]
    ]


def _chunk_ids(project: Path) -> Iterator[str]:
    from migrate.project import Project

    opened = Project.load(project / "migrate.toml")
    try:
        run = opened.ledger.latest_run("pds")
        assert run is not None
        yield from (c.chunk_id for c in opened.ledger.chunks(run.run_id))
    finally:
        opened.close()


def invoke_demo(project: Path, source_url: str) -> Any:
    from click.testing import CliRunner

    from migrate.cli.main import cli

    return CliRunner().invoke(
        cli, ["demo", str(project), "--patients", "300", "--seed", "5", "--source", source_url]
    )


def test_delta_runs_on_this_host_says_so_and_the_reconcile_after_it_on_the_cluster_is_clean(
    cluster: Any, demo_project: Path, pg_url: str, riak_fake: RiakFake
) -> None:
    use_capture(demo_project)
    use_riak(demo_project, f"riak://127.0.0.1:{riak_fake.port}")
    use_dask(demo_project, address(cluster), pg_url)
    assert invoke(demo_project, "capture", "install", "pds").exit_code == 0
    loaded = invoke(demo_project, "run", "pds")
    assert loaded.exit_code == 0, loaded.output
    with sqlite3.connect(demo_project / "legacy.db") as db:
        for number in visible_patients(db, 3, 50):
            db.execute(
                "UPDATE PATIENTS SET FAMILY_NAME = 'Changed' WHERE NHS_NUMBER = ?", (number,)
            )
    db.close()

    delta = invoke(demo_project, "delta", "pds")

    no_traceback(delta)
    assert delta.exit_code == 0, delta.output
    note = ON_THIS_HOST.format(address(cluster))
    assert " ".join(note.split()) in " ".join(delta.output.split())
    assert_matches_reference(lambda *a: invoke(demo_project, *a), demo_project, "pds")
    started = time.time()
    check = invoke(demo_project, "reconcile", "--dry-run", "pds")
    assert check.exit_code == 0, check.output
    assert _tasks_since(cluster, started, "expect_chunk") > 0  # built on the cluster
