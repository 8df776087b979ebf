"""Reconcile on the Riak fake, through the library: the chunk index read in many small pages and
ahead of the builds, objects changed behind the tool's back named exactly, the build pool and the
inline build agreeing, and the actual side's reader on its own."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from riak_fake import RiakFake

from migrate.document import Document
from migrate.errors import TransientTargetError
from migrate.mapping.canonical import checksum
from migrate.pipeline import run_services
from migrate.project import Project
from migrate.reconcile import Kind, Options, ServiceResult, in_sample, reconcile_service
from migrate.reconcile.actual import CONFLICT, Prefetcher, chunk_checksums, read_chunk
from migrate.reconcile.compare import diff_keys
from migrate.target.chunks import CHUNK_INDEX, chunk_term
from migrate.target.local import LocalTarget
from migrate.target.riak import RiakTarget
from migrate.target.riak import store as riak_store
from migrate.target.riak.objects import object_path

LOCAL_URL = 'url = "local:///.migrate/target.db"'
BUCKET = ("default", "patients")


@pytest.fixture
def project(demo_project: Path, riak_fake: RiakFake) -> Iterator[Project]:
    """The demo's pds loaded into the fake."""
    config = demo_project / "migrate.toml"
    text = config.read_text()
    config.write_text(text.replace(LOCAL_URL, f'url = "riak://127.0.0.1:{riak_fake.port}"'))
    loaded = Project.load(config)
    try:
        run_services(loaded, ["pds"], workers=1)
        yield loaded
    finally:
        loaded.close()


def reconcile(project: Project, **options: object) -> ServiceResult:
    service = project.config.service("pds")
    return reconcile_service(project, service, Options(dry_run=True, **options))  # type: ignore[arg-type]


def found(result: ServiceResult) -> dict[str, set[tuple[str, str, str]]]:
    """{kind: {(key, chunk id, reason)}} of every difference."""
    out: dict[str, set[tuple[str, str, str]]] = {k.value: set() for k in Kind}
    for doc in result.doc_types:
        for d in doc.differences:
            out[d.kind.value].add((d.key, d.chunk_id, d.reason))
    return out


def put(fake: RiakFake, key: str, body: bytes, terms: list[str]) -> None:
    """Write an object behind the tool's back, indexed under `terms` of the chunk index."""
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        conn.request(
            "PUT",
            object_path(*BUCKET, key),
            body,
            {"Content-Type": "application/json", f"X-Riak-Index-{CHUNK_INDEX}": ", ".join(terms)},
        )
        assert conn.getresponse().status == 204
    finally:
        conn.close()


def delete(fake: RiakFake, key: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        conn.request("DELETE", f"/types/default/buckets/patients/keys/{quote(key, safe='')}")
        assert conn.getresponse().status == 204
    finally:
        conn.close()


def node_gets(project: Project) -> int:
    target = project.target
    assert isinstance(target, RiakTarget)
    return int(target.stats()["node_gets"])


def chunk_keys(project: Project, index: int) -> dict[str, str]:
    return chunk_checksums(project.target, *BUCKET, index)


def test_many_small_pages_and_tampered_objects_are_named_exactly(
    project: Project, riak_fake: RiakFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(riak_store, "PAGE_SIZE", 7)  # a 200-document chunk takes 29 pages
    clean = reconcile(project, workers=1)
    assert clean.equal and clean.counts()["expected"] > 1000
    requests, bodies = riak_fake.requests["GET"], node_gets(project)
    again = reconcile(project, workers=1)
    assert again.equal
    # every chunk in pages of 7 (a full last page is followed by an empty one), then one query
    # for chunks beyond the plan, and not one body read
    pages = sum(c.actual // 7 + 1 for c in again.doc_types[0].chunks) + 1
    assert riak_fake.requests["GET"] - requests == pages + 1  # + node_gets' own /stats
    assert node_gets(project) == bodies

    one, two, three = (sorted(chunk_keys(project, i).items()) for i in (1, 2, 3))
    gone = one[0][0]
    delete(riak_fake, gone)
    wrong_term = one[1][0]  # right body, its index entry names another checksum
    body = project.target.get(*BUCKET, wrong_term)
    assert body is not None
    put(riak_fake, wrong_term, body.value, [chunk_term(1, "0" * 32)])
    twice = two[0][0]  # indexed twice in its chunk: the right checksum and a stale one
    body = project.target.get(*BUCKET, twice)
    assert body is not None
    put(riak_fake, twice, body.value, [chunk_term(2, two[0][1]), chunk_term(2, "f" * 32)])
    moved = three[0][0]  # right body, indexed beyond the plan: its own chunk reports it
    body = project.target.get(*BUCKET, moved)
    assert body is not None
    put(riak_fake, moved, body.value, [chunk_term(999, checksum(body.value))])
    put(riak_fake, "9999999999", b'{"v":1}', [chunk_term(2, checksum(b'{"v":1}'))])
    put(riak_fake, "9999999998", b'{"v":2}', [chunk_term(998, checksum(b'{"v":2}'))])
    silent = three[1][0]  # a body changed with its index entry left as it was: only --deep sees
    put(riak_fake, silent, b'{"tampered":true}', [chunk_term(3, three[1][1])])

    result = reconcile(project, workers=1)
    chunk = "patient:{:05d}".format
    assert found(result) == {
        "missing": {(gone, chunk(1), "")},
        "extra": {("9999999999", chunk(2), ""), ("9999999998", chunk(998), "")},
        "changed": {
            (wrong_term, chunk(1), "checksum"),
            (twice, chunk(2), "checksum"),
            (moved, chunk(3), "index"),
        },
    }
    # --deep reads every listed body too: it tells a wrong index entry from a wrong body
    deep = reconcile(project, workers=1, deep=True)
    assert found(deep) == {
        **found(result),
        "changed": {
            (wrong_term, chunk(1), "index"),
            (twice, chunk(2), "index"),
            (moved, chunk(3), "index"),
            (silent, chunk(3), "value"),
        },
    }
    # the build pool sends back checksums, not documents, and finds the same
    assert found(reconcile(project, workers=2)) == found(result)


def test_show_values_gives_the_expected_and_stored_bodies(
    project: Project, riak_fake: RiakFake
) -> None:
    key, digest = sorted(chunk_keys(project, 0).items())[0]
    put(riak_fake, key, b'{"tampered":true}', [chunk_term(0, "0" * 32)])
    result = reconcile(project, workers=2, show_values=True)
    (difference,) = result.doc_types[0].differences
    assert (difference.key, difference.kind) == (key, Kind.CHANGED)
    assert difference.actual_value == '{"tampered":true}'
    assert difference.expected_value is not None
    assert checksum(difference.expected_value.encode()) == digest


def test_sample_limits_both_sides(project: Project, riak_fake: RiakFake) -> None:
    keys = sorted(chunk_keys(project, 1))
    for key in keys[:40]:
        delete(riak_fake, key)
    full = {k for k, _, _ in found(reconcile(project, workers=1))["missing"]}
    sampled = reconcile(project, workers=1, sample=25.0)
    assert {k for k, _, _ in found(sampled)["missing"]} == {k for k in full if in_sample(k, 25.0)}
    assert full == set(keys[:40])


def test_prefetcher_reads_each_chunk_in_order_with_its_sample(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "target.db")
    try:
        for index in range(6):
            docs = [
                Document(
                    "default",
                    "people",
                    f"c{index}-{n}",
                    b"{}",
                    ((CHUNK_INDEX, (chunk_term(index, f"{index:02d}{n:030d}"),)),),
                    "",
                )
                for n in range(5)
            ]
            target.write(docs, meta={})
        with Prefetcher(
            target, "default", "people", range(6), sample=None, threads=2, ahead=2
        ) as reader:
            for index in range(6):
                chunk = reader.take(index)
                assert chunk.checksums == {
                    f"c{index}-{n}": f"{index:02d}{n:030d}" for n in range(5)
                }
                assert chunk.digest is not None
            with pytest.raises(KeyError):
                reader.take(0)  # each chunk is handed out once
        sampled = read_chunk(target, "default", "people", 3, 50.0)
        assert set(sampled.checksums) < set(
            read_chunk(target, "default", "people", 3, None).checksums
        )
    finally:
        target.close()


def test_a_malformed_or_doubled_term_is_judged_key_by_key(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path / "target.db")
    try:
        terms = {
            "k1": ("00000004:not-hex",),
            "k2": (chunk_term(4, "a" * 32), chunk_term(4, "b" * 32)),
        }
        target.write(
            [Document("default", "b", k, b"{}", ((CHUNK_INDEX, t),), "") for k, t in terms.items()],
            meta={},
        )
        chunk = read_chunk(target, "default", "b", 4, None)
        assert chunk.checksums == {"k1": "not-hex", "k2": CONFLICT}
        assert chunk.digest is None  # no aggregate can vouch for it
    finally:
        target.close()


def test_diff_keys_probes_only_unlisted_keys_and_all_at_once() -> None:
    asked: list[list[str]] = []

    def probe(keys: object) -> dict[str, str | None]:
        listed = sorted(keys)  # type: ignore[call-overload]
        asked.append(listed)
        return {"b": "B", "c": None, "d": "x"}

    expected = {"a": "A", "b": "B", "c": "C", "d": "D"}
    differences = diff_keys("t:00001", expected, {"a": "A", "e": "E"}, probe)
    assert asked == [["b", "c", "d"]]
    assert [(d.key, d.kind.value, d.reason) for d in differences] == [
        ("b", "changed", "index"),
        ("c", "missing", ""),
        ("d", "changed", "value"),
        ("e", "extra", ""),
    ]
    assert diff_keys("t:00001", {"a": "A"}, {"a": "A"}, probe) == []
    assert len(asked) == 1  # nothing unlisted: no probe at all


def test_a_failing_node_surfaces_from_the_reader_threads(riak_fake: RiakFake) -> None:
    target = RiakTarget(riak_fake.url.replace("http://", "riak://"), max_attempts=1)
    try:
        riak_fake.faults.error_rate = 1.0
        reader = Prefetcher(target, *BUCKET, [0, 1], sample=None, threads=2, ahead=2)
        with reader, pytest.raises(TransientTargetError):
            reader.take(0)
    finally:
        target.close()
