"""`migrate run` through the CLI into a Riak node: the fake on loopback (with faults), and a real
node for the first two tests when RIAK_URL is set.

The reference is the same demo run into the embedded target: `migrate dump` of every service must
be byte for byte what the embedded target gives. On a real node the demo's fixed bucket names are
made unique per test (a suffix in the copied mappings), and the suffix is taken out of the dump
before comparing.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import xxhash
from riak_fake import SIBLINGS_TYPE_PROPS, RiakFake
from riak_projects import (
    SERVICES,
    dump,
    dumped_keys,
    invoke,
    loaded_counts,
    no_traceback,
    use_riak,
)
from support import Invoke, set_run_option

from migrate.project import Project
from migrate.target.chunks import CHUNK_INDEX, chunk_prefix_range
from migrate.target.riak import RiakTarget

REAL_NODE = os.environ.get("RIAK_URL")


@dataclass
class Node:
    """Where a test loads: the fake (with its counters) or a real node (buckets made unique)."""

    url: str
    fake: RiakFake | None
    suffix: str = ""

    def stored_keys(self, bucket_type: str, bucket: str) -> list[str]:
        """Every key the node holds in a bucket (a key listing: tests only)."""
        if self.fake is not None:
            return self.fake.keys(bucket_type, bucket)
        riak = RiakTarget(self.url)
        try:
            return sorted(riak.query_index(bucket_type, bucket, "$bucket", bucket))
        finally:
            riak.close()


@pytest.fixture
def riak_fake() -> Iterator[RiakFake]:
    """A running fake node with the `default` type and a `siblings` type (allow_mult=true)."""
    fake = RiakFake(seed=3)
    fake.create_bucket_type("siblings", **SIBLINGS_TYPE_PROPS)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(
    params=[
        "fake",
        pytest.param("real", marks=pytest.mark.skipif(not REAL_NODE, reason="RIAK_URL is not set")),
    ]
)
def node(request: pytest.FixtureRequest) -> Node:
    if request.param == "real":
        assert REAL_NODE is not None
        return Node(REAL_NODE, None, suffix=f"-t{uuid.uuid4().hex[:10]}")
    fake: RiakFake = request.getfixturevalue("riak_fake")
    return Node(fake_url(fake), fake)


def fake_url(fake: RiakFake) -> str:
    return f"riak://127.0.0.1:{fake.port}"


# refused PUTs a re-run may send before it reads first: the documents in flight before the first
# answers (max_in_flight, 64 by default) and a window's worth more
RERUN_PROBES = 64 + 8


# ---- the whole demo -------------------------------------------------------------------------


def test_the_demo_into_riak_dumps_exactly_what_the_embedded_target_holds(
    node: Node, demo_project: Path, embedded_dumps: dict[str, bytes]
) -> None:
    use_riak(demo_project, node.url, suffix=node.suffix)
    result = invoke(demo_project, "run")
    assert result.exit_code == 0, result.output

    for service in SERVICES:
        lines = dump(demo_project, service)
        assert lines.replace(f'{node.suffix}"'.encode(), b'"') == embedded_dumps[service], service
        for (bucket_type, bucket), keys in dumped_keys(lines).items():
            assert len(keys) == len(set(keys)), f"{bucket}: a key dumped twice"
            # every stored key is a dumped one: nothing extra, nothing missing
            assert node.stored_keys(bucket_type, bucket) == sorted(keys), bucket
    if node.fake is not None:
        total = sum(len(embedded_dumps[s].splitlines()) for s in SERVICES)
        assert node.fake.requests["PUT"] == total  # each document written once, no more


def test_a_rerun_and_a_fresh_rerun_write_nothing(node: Node, demo_project: Path) -> None:
    use_riak(demo_project, node.url, suffix=node.suffix)
    services = ["ods", "pds"]  # three document types; the whole demo is loaded above
    first = invoke(demo_project, "run", *services)
    assert first.exit_code == 0, first.output
    writes = node.fake.writes if node.fake is not None else None
    put_requests = node.fake.requests["PUT"] if node.fake is not None else 0
    dumps = {service: dump(demo_project, service) for service in services}

    again = invoke(demo_project, "run", *services)
    assert again.exit_code == 0, again.output
    fresh = invoke(demo_project, "run", "--fresh", *services)
    assert fresh.exit_code == 0, fresh.output

    for service in services:
        documents, written = loaded_counts(demo_project, service)
        assert documents == len(dumps[service].splitlines()) and written == 0, service
        assert dump(demo_project, service) == dumps[service]
    if node.fake is not None:
        documents = sum(len(d.splitlines()) for d in dumps.values())
        # A first load sends create-only PUTs (If-None-Match: *), so a re-run's first documents
        # are refused PUTs (412: requests, but no write); once most answers say "exists", the
        # target reads first (HEAD) and sends no PUT at all for an unchanged document.
        assert node.fake.writes == writes
        refused = node.fake.requests["PUT"] - put_requests
        assert refused <= 2 * RERUN_PROBES, refused
        assert refused < documents // 4
        # the first load sent no HEAD; the fresh re-run read every document once
        assert node.fake.requests["HEAD"] >= documents


def test_allow_mult_bucket_type_gets_no_sibling_on_rerun_or_update(
    riak_fake: RiakFake, demo_project: Path
) -> None:
    use_riak(demo_project, fake_url(riak_fake), 'bucket_type = "siblings"')
    services = ["pds"]  # its mapping names no bucket type: [target] bucket_type applies
    first = invoke(demo_project, "run", *services)
    assert first.exit_code == 0, first.output
    before = {service: dump(demo_project, service) for service in services}
    writes = riak_fake.writes

    with sqlite3.connect(demo_project / "legacy.db") as db:
        db.execute(
            "UPDATE PATIENTS SET FAMILY_NAME = FAMILY_NAME || 'x' WHERE NHS_NUMBER IN "
            "(SELECT NHS_NUMBER FROM PATIENTS ORDER BY NHS_NUMBER LIMIT 25)"
        )
    db.close()
    fresh = invoke(demo_project, "run", "--fresh", *services)
    assert fresh.exit_code == 0, fresh.output

    changed = 0
    for service in services:
        after = dump(demo_project, service)
        old, new = before[service].splitlines(), after.splitlines()
        assert len(old) == len(new)
        changed += sum(1 for a, b in zip(old, new, strict=True) if a != b)
        for line in new:
            row = json.loads(line)
            assert row["bucket_type"] == "siblings"
            values = riak_fake.siblings("siblings", row["bucket"], row["key"])
            assert len(values) == 1, f"{row['bucket']}: a key has {len(values)} siblings"
            assert json.loads(values[0]) == row["value"]
    assert changed > 0  # the update reached the target: these were PUTs with the vclock
    assert riak_fake.writes - writes == changed  # stored writes; refused 412 PUTs store nothing


# ---- faults ---------------------------------------------------------------------------------


def test_a_load_under_faults_ends_exact(
    riak_fake: RiakFake, demo_project: Path, embedded_dumps: dict[str, bytes]
) -> None:
    # a short timeout keeps the test quick; the stalls outlast it, as with the brief's 2 s
    use_riak(demo_project, fake_url(riak_fake), timeout=0.5)
    # fewer, larger chunks: each chunk waits for its slowest document's retries. Keys follow the
    # primary key, so the dump's (chunk, key) order is the same as with the embedded run's chunks.
    set_run_option(demo_project, "chunk_size", 750)
    riak_fake.faults.error_rate = 0.10
    riak_fake.faults.drop_rate = 0.05
    riak_fake.faults.stall_rate = 0.02
    riak_fake.faults.stall_seconds = 1.0

    result = invoke(demo_project, "run", "pds")

    assert result.exit_code == 0, result.output
    assert all(riak_fake.injected[kind] > 0 for kind in ("error", "drop", "stall"))
    riak_fake.faults.error_rate = riak_fake.faults.drop_rate = riak_fake.faults.stall_rate = 0.0
    assert dump(demo_project, "pds") == embedded_dumps["pds"]
    for (bucket_type, bucket), keys in dumped_keys(embedded_dumps["pds"]).items():
        assert riak_fake.keys(bucket_type, bucket) == sorted(keys)
        for key in keys:
            assert len(riak_fake.siblings(bucket_type, bucket, key)) == 1


def test_an_unreachable_target_exits_3_within_seconds(demo_project: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    use_riak(demo_project, f"riak://127.0.0.1:{port}")

    started = time.monotonic()
    result = invoke(demo_project, "run", "pds")
    elapsed = time.monotonic() - started

    assert result.exit_code == 3, result.output
    assert elapsed < 15
    assert f"riak://127.0.0.1:{port}" in result.output
    assert "unreachable" in result.output
    no_traceback(result)


def test_the_circuit_pauses_a_failing_load_and_a_rerun_resumes_it(
    riak_fake: RiakFake,
    demo_project: Path,
    migrate_cli: Invoke,
    embedded_dumps: dict[str, bytes],
) -> None:
    use_riak(demo_project, fake_url(riak_fake))
    riak_fake.faults.error_rate = 1.0

    paused = migrate_cli("run", "pds")

    assert paused.exit_code == 3, paused.output
    assert fake_url(riak_fake) in paused.output
    assert "20 requests in a row" in paused.output and "paused" in paused.output
    assert "re-run the same command" in paused.output
    no_traceback(paused)
    assert sum(riak_fake.requests.values()) <= 20 + 64  # the threshold, plus what was in flight
    status = migrate_cli("status", "--format", "json")
    assert status.exit_code == 0, status.output
    pds = next(s for s in json.loads(status.output) if s["service"] == "pds")
    assert pds["run_status"] != "complete"
    assert pds["chunks"]["loaded"] < pds["chunks"]["total"]

    riak_fake.faults.error_rate = 0.0
    resumed = migrate_cli("run", "pds")

    assert resumed.exit_code == 0, resumed.output
    assert dump(demo_project, "pds") == embedded_dumps["pds"]


# ---- the chunk index ------------------------------------------------------------------------


def test_the_chunk_index_finds_each_chunks_keys_and_checksums(
    riak_fake: RiakFake, demo_project: Path
) -> None:
    use_riak(demo_project, fake_url(riak_fake))
    services = ["ods", "pds"]  # ods has two document types, in two buckets
    result = invoke(demo_project, "run", *services)
    assert result.exit_code == 0, result.output

    project = Project.load(demo_project / "migrate.toml")
    try:
        target = project.target
        for service in services:
            mapping = project.mapping(project.config.service(service))
            buckets = {doc.name: (doc.bucket_type, doc.bucket) for doc in mapping.documents}
            run = project.ledger.latest_run(service)
            assert run is not None
            found: dict[tuple[str, str], list[str]] = {}
            for chunk in project.ledger.chunks(run.run_id):
                bucket_type, bucket = buckets[chunk.doc_type]
                start, end = f"{chunk.index:08d}:", f"{chunk.index:08d}:~"
                terms = list(target.index_terms(bucket_type, bucket, CHUNK_INDEX, start, end))
                assert chunk.documents is not None and chunk.documents > 0
                assert len(terms) == chunk.documents, chunk.chunk_id
                for term, key in terms:
                    stored = target.get(bucket_type, bucket, key)
                    assert stored is not None
                    assert term == f"{chunk.index:08d}:{xxhash.xxh3_128_hexdigest(stored.value)}"
                    found.setdefault((bucket_type, bucket), []).append(key)
            assert set(found) == set(buckets.values())
            for (bucket_type, bucket), keys in found.items():
                assert sorted(keys) == riak_fake.keys(bucket_type, bucket)
                every = list(
                    target.index_terms(bucket_type, bucket, CHUNK_INDEX, *chunk_prefix_range())
                )
                assert len(every) == len(keys)
    finally:
        project.close()
