"""Chunks loaded by many workers at once stay exact: key collisions across chunks loaded at the
same moment (each registered under the run's register lock, keys another chunk withdrew while
this one was writing deleted again), and every chunk's record what its register counts.

Sixty pairs of rows render one key each (`c001` + `z/z` and `c001/z` + `z` both render
`c001/z/z`), with a row that collides with nothing between them, in chunks of two rows: the two
rows of a pair land in neighbouring chunks, which two Dask workers load at the same time. Writes
to the Riak fake are slowed, so one chunk's register often comes while another is writing. The
result must be what one loader, in chunk order, gives: the same documents, the same rejects
(each naming the other row of its pair), the same ledger record of every chunk.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dask_projects import address, local_cluster, use_dask
from riak_fake import RiakFake
from riak_projects import invoke

from migrate.ledger import Ledger
from migrate.mapping.canonical import aggregate

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PAIRS = 60


def _project(folder: Path, riak_url: str, bucket: str) -> Path:
    folder.mkdir()
    (folder / "mappings").mkdir()
    with sqlite3.connect(folder / "legacy.db") as db:
        db.execute(
            "CREATE TABLE SITES (SITE VARCHAR2(10) NOT NULL, CODE VARCHAR2(10) NOT NULL, "
            "NAME VARCHAR2(20), PRIMARY KEY (SITE, CODE))"
        )
        rows = []
        for k in range(PAIRS):
            site = f"c{k:03d}"
            rows += [(site, "z/z", "one"), (site + "+", "z", "alone"), (site + "/z", "z", "two")]
        db.executemany("INSERT INTO SITES VALUES (?, ?, ?)", rows)
    db.close()
    (folder / "mappings" / "sites.yaml").write_text(
        f"service: sites\ndocuments:\n  site:\n    table: SITES\n    bucket: {bucket}\n"
        '    key: "{SITE}/{CODE}"\n    fields:\n      name: NAME\n'
    )
    (folder / "migrate.toml").write_text(
        '[source]\nurl = "sqlite:///legacy.db"\n'
        f'[target]\nurl = "{riak_url}"\nmax_in_flight = 1\n'
        '[state]\nurl = "sqlite:///.migrate/state.db"\n'
        f"[run]\nchunk_size = 2\nmax_rejects = {2 * PAIRS}\nworkers = 1\n"
        '[services.sites]\nmapping = "mappings/sites.yaml"\n'
    )
    return folder


def _dumped(project: Path) -> list[tuple[str, Any]]:
    result = invoke(project, "dump", "sites")
    assert result.exit_code == 0, result.output
    return [(row["key"], row["value"]) for row in map(json.loads, result.stdout.splitlines())]


def _rejects(project: Path) -> list[tuple[Any, ...]]:
    (path,) = (project / ".migrate" / "work" / "sites").glob("*/rejects.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted((r["chunk_id"], r["key"], json.dumps(r["source_key"]), r["reason"]) for r in rows)


def _chunks(ledger: Ledger) -> list[tuple[Any, ...]]:
    run = ledger.latest_run("sites")
    assert run is not None
    found = []
    for chunk in ledger.chunks(run.run_id):
        tally = ledger.tally(run.run_id, chunk.chunk_id)
        assert (chunk.documents, chunk.rejects, chunk.doc_checksum) == (
            len(tally.checksums),
            tally.rejects,
            aggregate(tally.checksums),
        ), chunk.chunk_id  # the record is what its register counts
        found.append((chunk.chunk_id, chunk.state, chunk.documents, chunk.rejects))
    return found


@pytest.fixture
def slow_fake(riak_fake: RiakFake) -> Iterator[RiakFake]:
    riak_fake.faults.delay = 0.01
    yield riak_fake
    riak_fake.faults.delay = 0


def test_collisions_across_chunks_loaded_at_once_end_as_with_one_loader(
    slow_fake: RiakFake, pg_url: str, tmp_path: Path
) -> None:
    url = f"riak://127.0.0.1:{slow_fake.port}"
    alone = _project(tmp_path / "alone", url, "sites-alone")
    many = _project(tmp_path / "many", url, "sites-many")
    assert invoke(alone, "run").exit_code == 0  # the rejected rows are within max_rejects
    with local_cluster(2) as cluster:
        use_dask(many, address(cluster), pg_url)
        result = invoke(many, "run")
    assert result.exit_code == 0, result.output

    assert _dumped(many) == _dumped(alone)
    assert [key for key, _value in _dumped(many)] == [f"c{k:03d}+/z" for k in range(PAIRS)]
    assert _rejects(many) == _rejects(alone)
    assert len(_rejects(many)) == 2 * PAIRS
    assert all(
        r[3].startswith("key collision: 2 rows render this document key") for r in _rejects(many)
    )
    assert len(slow_fake.keys("default", "sites-many")) == PAIRS  # no row of a pair is stored
    one = Ledger(f"sqlite:///{alone / '.migrate' / 'state.db'}")
    shared = Ledger(pg_url)
    try:
        assert _chunks(shared) == _chunks(one)
    finally:
        one.close()
        shared.close()
