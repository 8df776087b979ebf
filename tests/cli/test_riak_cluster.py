"""A real three-node Riak cluster, the target listing all three hosts: one node stopped in the
middle of a load, and the load carries on through the other two with nothing lost or doubled;
started again, reads through it alone are exact once handoff ends. Quorums from migrate.toml are
honoured, and one the cluster cannot meet stops the load at once with a message naming it. And
a run on a Dask cluster (the distributed executor) loads the three nodes as a local run does
(first: it needs no node stopped, and finds every node as the cluster started).

The cluster is the session's (about 19 s to start; skipped without the Riak test server folder);
each test starts again the node it stopped.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from riak_projects import (
    SERVICES,
    dump,
    dumped_keys,
    finish,
    invoke,
    run_until,
    unsuffixed,
    use_riak,
)
from support import set_run_option

from benchmarks.riak_node import RiakNodes
from migrate.target.riak import RiakTarget

pytestmark = pytest.mark.riak_node


@pytest.fixture
def cluster(riak_cluster: RiakNodes) -> Iterator[RiakNodes]:
    """The session's cluster, every node serving when the test starts and when it ends."""
    if not all(riak_cluster.ping(n) for n in (1, 2, 3)):
        riak_cluster.restart()
    yield riak_cluster
    if not all(riak_cluster.ping(n) for n in (1, 2, 3)):
        riak_cluster.restart()
        riak_cluster.wait_for_handoffs()


def stored_keys(url: str, bucket_type: str, bucket: str) -> list[str]:
    riak = RiakTarget(url)
    try:
        return sorted(riak.query_index(bucket_type, bucket, "$bucket", bucket))
    finally:
        riak.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_a_run_on_a_dask_cluster_loads_the_three_nodes_as_a_local_run_does(
    cluster: RiakNodes,
    demo_project: Path,
    demo_template: Path,
    pg_url: str,
    embedded_dumps: dict[str, bytes],
    tmp_path: Path,
) -> None:
    """Three Dask worker processes, a PostgreSQL ledger, the target listing the three nodes: each
    worker loads its own chunks through the nodes, and the dump, every chunk's ledger record and
    the reconciliation are what a local run into the same cluster gives."""
    from dask_projects import address, chunk_records, dumps, local_cluster, use_dask

    tag = uuid.uuid4().hex[:8]
    local = tmp_path / "local"
    shutil.copytree(demo_template, local)
    use_riak(local, cluster.url, suffix=f"-l{tag}")
    use_riak(demo_project, cluster.url, suffix=f"-d{tag}")
    assert invoke(local, "run").exit_code == 0

    with local_cluster(3) as client:
        use_dask(demo_project, address(client), pg_url)
        result = invoke(demo_project, "run")
        assert result.exit_code == 0, result.output
        check = invoke(demo_project, "reconcile", "--dry-run")
    assert check.exit_code == 0, check.output

    assert dumps(demo_project, f"-d{tag}") == embedded_dumps == dumps(local, f"-l{tag}")
    assert chunk_records(demo_project) == chunk_records(local)


def test_a_node_stopped_mid_load_the_load_carries_on_and_handoff_makes_it_exact(
    cluster: RiakNodes, demo_project: Path, embedded_dumps: dict[str, bytes]
) -> None:
    suffix = f"-c{uuid.uuid4().hex[:8]}"
    use_riak(demo_project, cluster.url, "max_in_flight = 2", suffix=suffix)
    set_run_option(demo_project, "chunk_size", 100)
    running = run_until(demo_project, "pds: 3/", "run")

    cluster.stop_node(2)
    assert running.poll() is None, "".join(running.lines)  # type: ignore[attr-defined]
    output = finish(running)

    assert running.returncode == 0, output
    assert "retrying will not help" not in output and "paused" not in output
    # Every document is there, once, read key by key through the two nodes left. While a node is
    # down, a small ring (16 partitions on 3 nodes) has keys with two of their three replicas on
    # it: a read at r=quorum, answered by two empty fallbacks first, says not found (notfound_ok)
    # and a 2i coverage query can miss them, until handoff; the target asks every replica
    # (r=all) before it calls a key absent.
    target = RiakTarget(cluster.url)
    try:
        for service in SERVICES:
            for line in embedded_dumps[service].splitlines():
                row = json.loads(line)
                stored = target.get(row["bucket_type"], row["bucket"] + suffix, row["key"])
                assert stored is not None, row["key"]  # and no siblings: get() refuses them
                assert json.loads(stored.value) == row["value"]
    finally:
        target.close()

    cluster.restart()
    cluster.wait_for_handoffs()
    config = demo_project / "migrate.toml"
    config.write_text(config.read_text().replace(cluster.url, cluster.node_url(2)))
    for service in SERVICES:  # through the node that was stopped, alone
        lines = dump(demo_project, service)
        assert unsuffixed(lines, suffix) == embedded_dumps[service], service
        for (bucket_type, bucket), keys in dumped_keys(lines).items():
            assert len(keys) == len(set(keys)), f"{bucket}: a key dumped twice"
            assert stored_keys(cluster.node_url(2), bucket_type, bucket) == sorted(keys), bucket
    check = invoke(demo_project, "reconcile", "--dry-run")
    assert check.exit_code == 0, check.output


def test_quorums_are_honoured_and_one_that_cannot_be_met_stops_the_load_at_once(
    cluster: RiakNodes, demo_project: Path
) -> None:
    suffix = f"-q{uuid.uuid4().hex[:8]}"
    use_riak(demo_project, cluster.url, 'pw = "3"', "patience = 120", suffix=suffix)
    cluster.stop_node(2)

    started = time.monotonic()
    refused = invoke(demo_project, "run", "pds")

    assert refused.exit_code == 3, refused.output
    assert time.monotonic() - started < 30  # no retries, no waiting despite the patience
    text = " ".join(refused.output.split())
    assert "PW-value unsatisfied" in text and "pw asks for" in text
    assert "lower [target] pw in migrate.toml" in text and "Traceback" not in text
    # keys with all three primaries up were written until the first refusal came back: at most
    # about a window of 64 in flight, of the service's 1,486 documents
    assert len(stored_keys(cluster.url, "default", "patients" + suffix)) < 2 * 64

    config = demo_project / "migrate.toml"
    # with one node of three down, some keys of a 16-partition ring keep one primary up (two of
    # their replicas were on the stopped node): pw=1 is met everywhere, w and dw by fallbacks
    settings = 'pw = "1"\nw = "all"\ndw = "all"'
    config.write_text(config.read_text().replace('pw = "3"', settings))
    loaded = invoke(demo_project, "run", "pds")
    assert loaded.exit_code == 0, loaded.output
