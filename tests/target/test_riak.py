"""RiakTarget against the fake Riak node and, when RIAK_URL is set, against a real node too.

With RIAK_URL (e.g. http://127.0.0.1:8098; CI starts a node and sets it) the tests that take `node`
run against that node as well, which needs a bucket type `siblings` with allow_mult=true (`riak
admin bucket-type create siblings '{"props":{"allow_mult":true}}'` then `activate`); fault-
injection, TLS and auth tests need the fake's controls and run against the fake only.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import pickle
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from riak_fake import RiakFake
from riak_nodes import Node

from migrate.document import Document, IndexValue
from migrate.errors import ConfigError, TargetError, TransientTargetError
from migrate.target.riak import RiakHTTP, RiakTarget, parse_url
from migrate.target.riak import store as riak_store
from migrate.target.riak.batch import PlannedDocuments

META = {"migrate-run": "run-1", "migrate-chunk": "7"}


@pytest.fixture
def target(node: Node) -> Iterator[RiakTarget]:
    riak = RiakTarget(node.url, max_in_flight=8, timeout=5.0)
    yield riak
    riak.close()


def doc(
    key: str,
    value: object,
    *,
    bucket: str,
    bucket_type: str = "default",
    indexes: dict[str, tuple[IndexValue, ...]] | None = None,
) -> Document:
    raw = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    return Document(
        bucket_type,
        bucket,
        key,
        raw,
        tuple(sorted((indexes or {}).items())),
        xxhash.xxh3_128_hexdigest(raw),
    )


AWKWARD_KEYS = ["a/b", "with space", "100%", "%2F", "Siân Øvrebø", "q?x#y&z=1", "101/10000004 Siân"]


def test_awkward_keys_and_bucket_names_round_trip(node: Node, target: RiakTarget) -> None:
    bucket = node.bucket + "/ward 7 é"
    docs = [doc(k, {"k": k}, bucket=bucket) for k in AWKWARD_KEYS]
    assert target.write(docs, meta=META).written == len(docs)
    for d in docs:
        stored = target.get("default", bucket, d.key)
        assert stored is not None and stored.value == d.value
    assert sorted(target.query_index("default", bucket, "$bucket", bucket)) == sorted(AWKWARD_KEYS)
    if node.fake is not None:  # the server decoded each path to exactly these names
        assert node.fake.keys("default", bucket) == sorted(AWKWARD_KEYS)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20))
def test_any_key_round_trips(riak_fake: RiakFake, key: str) -> None:
    riak = RiakTarget(riak_fake.url, max_in_flight=2)
    try:
        riak.write([doc(key, [1], bucket="any")], meta={})
        assert riak_fake.siblings("default", "any", key) == [b"[1]"]
        stored = riak.get("default", "any", key)
        assert stored is not None and stored.key == key
    finally:
        riak.close()


def test_indexes_with_several_values_and_meta_round_trip(node: Node, target: RiakTarget) -> None:
    indexes: dict[str, tuple[IndexValue, ...]] = {
        "born_int": (19800229,),
        "family_bin": ("Øvrebø",),
        "postcode_bin": ("LS1 4HR", "LS6 2AB"),
    }
    d = doc("p1", {"name": "Siân"}, bucket=node.bucket, indexes=indexes)
    other = doc("p2", {"name": "Bo"}, bucket=node.bucket, indexes={"postcode_bin": ("LS6 2AB",)})
    target.write([d, other], meta=META)
    stored = target.get("default", node.bucket, "p1")
    assert stored is not None
    assert stored.indexes == {k: list(v) for k, v in indexes.items()}
    assert stored.meta["migrate-run"] == "run-1" and stored.meta["migrate-chunk"] == "7"
    assert stored.meta["migrate-checksum"] == d.checksum
    assert sorted(target.query_index("default", node.bucket, "postcode_bin", "LS6 2AB")) == [
        "p1",
        "p2",
    ]
    assert target.query_index("default", node.bucket, "postcode_bin", "LS1 4HR") == ["p1"]
    assert target.query_index("default", node.bucket, "family_bin", "Øvrebø") == ["p1"]
    assert target.query_index("default", node.bucket, "born_int", 19800101, 19801231) == ["p1"]
    assert target.query_index("default", node.bucket, "born_int", 19800301, 19801231) == []


def test_query_index_follows_continuations(
    node: Node, target: RiakTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(riak_store, "PAGE_SIZE", 4)
    docs = [
        doc(f"k{n:02}", n, bucket=node.bucket, indexes={"n_int": (n, n + 100)}) for n in range(23)
    ]
    target.write(docs, meta=META)
    keys = target.query_index("default", node.bucket, "n_int", 3, 117)
    # sorted by term (3..22, then 100..117 of k00..k17), each key once, at its first term
    assert keys == [f"k{n:02}" for n in [*range(3, 23), 0, 1, 2]]
    gets_before = node.fake.requests["GET"] if node.fake else 0
    assert [s.key for s in target.iter_bucket("default", node.bucket)] == [d.key for d in docs]
    if node.fake is not None:
        assert node.fake.requests["GET"] - gets_before == 23 + 6  # 6 index pages, 23 objects


@pytest.mark.parametrize("bucket_type", ["default", "siblings"])
def test_rewriting_unchanged_documents_costs_no_put(
    node: Node, target: RiakTarget, bucket_type: str
) -> None:
    docs = [doc(f"k{n}", {"n": n}, bucket=node.bucket, bucket_type=bucket_type) for n in range(20)]
    first = target.write(docs, meta=META)
    assert (first.written, first.unchanged) == (20, 0)
    puts = node.puts()
    again = target.write(docs, meta={"migrate-run": "run-2"})
    assert (again.written, again.unchanged) == (0, 20)
    assert node.puts() == puts
    changed = [
        *docs[:19],
        doc("k19", {"n": "changed"}, bucket=node.bucket, bucket_type=bucket_type),
    ]
    third = target.write(changed, meta=META)
    assert (third.written, third.unchanged) == (1, 19)
    stored = target.get(bucket_type, node.bucket, "k19")  # raises on siblings
    assert stored is not None and json.loads(stored.value) == {"n": "changed"}


def test_changed_indexes_alone_are_rewritten(node: Node, target: RiakTarget) -> None:
    before = doc("p", {"a": 1}, bucket=node.bucket, indexes={"gp_bin": ("A1",)})
    after = doc("p", {"a": 1}, bucket=node.bucket, indexes={"gp_bin": ("A2",)})
    target.write([before], meta=META)
    assert target.write([after], meta=META).written == 1
    assert target.query_index("default", node.bucket, "gp_bin", "A1") == []
    assert target.query_index("default", node.bucket, "gp_bin", "A2") == ["p"]


def test_existing_siblings_are_resolved_by_the_write(node: Node, target: RiakTarget) -> None:
    client = RiakHTTP(parse_url(node.url))
    path = f"/types/siblings/buckets/{node.bucket}/keys/s1"
    for body in (b'{"v":1}', b'{"v":2}'):  # two blind writes: two siblings
        headers = [("Content-Type", "application/json")]
        client.request("PUT", path, headers=headers, body=body, ok=(204,))
    client.close()
    with pytest.raises(TargetError, match="siblings"):
        target.get("siblings", node.bucket, "s1")
    d = doc("s1", {"v": 3}, bucket=node.bucket, bucket_type="siblings")
    assert target.write([d], meta=META).written == 1
    stored = target.get("siblings", node.bucket, "s1")
    assert stored is not None and stored.value == d.value
    if node.fake is not None:
        assert node.fake.siblings("siblings", node.bucket, "s1") == [d.value]


def test_delete(node: Node, target: RiakTarget) -> None:
    target.write([doc("gone", 1, bucket=node.bucket)], meta=META)
    assert target.delete("default", node.bucket, "gone") is True
    assert target.get("default", node.bucket, "gone") is None
    assert target.delete("default", node.bucket, "gone") is False
    target.write([doc("gone", 2, bucket=node.bucket)], meta=META)  # after a tombstone
    stored = target.get("default", node.bucket, "gone")
    assert stored is not None and stored.value == b"2"


def test_bad_index_value_is_refused_before_any_request(node: Node, target: RiakTarget) -> None:
    bad = doc("p", {}, bucket=node.bucket, indexes={"town_bin": ("Leeds, West Yorkshire",)})
    with pytest.raises(TargetError, match="town_bin") as caught:
        target.write([doc("ok", {}, bucket=node.bucket), bad], meta=META)
    assert "Leeds" not in str(caught.value)
    if node.fake is not None:
        assert sum(node.fake.requests.values()) == 0


def test_client_errors_are_not_retried(node: Node) -> None:
    riak = RiakTarget(node.url, w="5")  # more than n_val: Riak answers 400
    try:
        with pytest.raises(TargetError, match="400") as caught:
            riak.write([doc("p", {}, bucket=node.bucket)], meta=META)
        assert not isinstance(caught.value, TransientTargetError)
        assert node.fake is None or node.fake.requests["PUT"] == 1  # one request, not retried
    finally:
        riak.close()


def test_node_calls(node: Node, target: RiakTarget) -> None:
    assert target.ping() is True
    assert "node_puts" in target.stats()
    assert target.bucket_props("siblings")["allow_mult"] is True
    props = target.bucket_props("default", node.bucket)
    assert props["allow_mult"] is False and props["name"] == node.bucket
    with pytest.raises(TargetError, match="Unknown bucket type: nosuchtype"):
        target.get("nosuchtype", "b", "k")


def test_write_under_faults_ends_exact(riak_fake: RiakFake) -> None:
    riak_fake.faults.error_rate = 0.10
    riak_fake.faults.drop_rate = 0.04
    riak_fake.faults.stall_rate = 0.02
    riak_fake.faults.stall_seconds = 1.0
    riak = RiakTarget(
        riak_fake.url, timeout=0.25, max_attempts=12, backoff_initial=0.01, backoff_max=0.05
    )
    docs = [doc(f"k{n}", {"n": n}, bucket="b", bucket_type="siblings") for n in range(200)]
    try:
        stats = riak.write(docs, meta=META)
        assert stats.written == 200
        assert all(riak_fake.injected[kind] > 0 for kind in ("error", "drop", "stall"))
        for d in docs:
            assert riak_fake.siblings("siblings", "b", d.key) == [d.value]
        assert riak.write(docs, meta=META).written == 0
    finally:
        riak.close()


def test_unreachable_target_fails_within_seconds() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    riak = RiakTarget(f"riak://127.0.0.1:{port}")
    started = time.monotonic()
    try:
        with pytest.raises(TargetError, match=f"riak://127.0.0.1:{port}"):
            riak.write([doc(f"k{n}", n, bucket="b") for n in range(100)], meta=META)
    finally:
        riak.close()
    assert time.monotonic() - started < 5


def test_a_down_host_is_skipped(riak_fake: RiakFake) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    riak = RiakTarget(f"riak://127.0.0.1:{dead},127.0.0.1:{riak_fake.port}", backoff_initial=0.01)
    try:
        docs = [doc(f"k{n}", n, bucket="b") for n in range(50)]
        assert riak.write(docs, meta=META).written == 50
        assert riak_fake.keys("default", "b") == sorted(d.key for d in docs)
    finally:
        riak.close()


def test_basic_auth_comes_from_the_environment(riak_fake: RiakFake) -> None:
    riak_fake.auth = ("migrator", "s3cret-pw")
    anonymous = RiakTarget(riak_fake.url)
    with pytest.raises(TargetError, match="401") as caught:
        anonymous.get("default", "b", "k")
    anonymous.close()
    assert "RIAK_USER" in str(caught.value)
    env = {"RIAK_USER": "migrator", "RIAK_PASSWORD": "s3cret-pw"}
    riak = RiakTarget(riak_fake.url, environ=env)
    try:
        riak.write([doc("k", 1, bucket="b")], meta=META)
        assert riak.get("default", "b", "k") is not None
        assert "s3cret" not in riak.display_url
    finally:
        riak.close()


def test_url_parsing() -> None:
    parsed = parse_url("riak://h1:8098,h2,[::1]:9000")
    assert parsed.hosts == (("h1", 8098), ("h2", 8098), ("::1", 9000)) and not parsed.tls
    assert parsed.display == "riak://h1:8098,h2:8098,[::1]:9000"
    tls = parse_url("riaks://h:8443?ca=/etc/ca.pem")
    assert tls.tls and tls.ca_file == "/etc/ca.pem"
    for bad in ("riak://u:pw@h:8098", "riak://h:99999", "riak://h/x", "pbc://h", "riak://h?ca=x"):
        with pytest.raises(ConfigError) as caught:
            parse_url(bad)
        assert "pw@" not in str(caught.value)


# ---- TLS ---------------------------------------------------------------------------------------


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    client: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    else:
        purpose = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        if not client:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pair(
    folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{stem}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_tls_with_a_private_ca_and_a_client_certificate(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, None, ca=True)
    issuer = (ca.subject, ca_key)
    server_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    _write_pair(tmp_path, "ca", ca, ca_key)
    _write_pair(tmp_path, "server", _cert("127.0.0.1", server_key, issuer), server_key)
    _write_pair(tmp_path, "client", _cert("loader", client_key, issuer, client=True), client_key)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    server_context.load_verify_locations(tmp_path / "ca.pem")
    server_context.verify_mode = ssl.CERT_REQUIRED
    fake = RiakFake(ssl_context=server_context).start()
    base = f"riaks://127.0.0.1:{fake.port}"
    try:
        riak = RiakTarget(
            f"{base}?ca={tmp_path}/ca.pem&cert={tmp_path}/client.pem&key={tmp_path}/client.key"
        )
        riak.write([doc("k/1", {"tls": True}, bucket="b")], meta=META)
        stored = riak.get("default", "b", "k/1")
        assert stored is not None and stored.value == b'{"tls":true}'
        riak.close()
        untrusted = RiakTarget(base)  # the system CAs do not know our CA: refused, not retried
        with pytest.raises(TargetError, match="not trusted") as caught:
            untrusted.get("default", "b", "k/1")
        assert not isinstance(caught.value, TransientTargetError)
        untrusted.close()
    finally:
        fake.stop()


def test_documents_planned_in_a_worker_are_stored_as_the_documents_themselves(
    node: Node, target: RiakTarget
) -> None:
    """The preparer's batch (pickled as a worker sends it) sends the requests the documents
    themselves would: the same objects, indexes and metadata."""
    indexes: dict[str, tuple[IndexValue, ...]] = {
        "born_int": (19800229,),
        "postcode_bin": ("LS1 4HR", "LS6 2AB"),
    }
    planned_bucket, plain_bucket = node.bucket + "/planned", node.bucket + "/plain"

    def batch(bucket: str) -> list[Document]:
        return [doc(k, {"k": k}, bucket=bucket, indexes=indexes) for k in AWKWARD_KEYS]

    prepare = target.preparer()
    assert prepare is not None
    sent = pickle.loads(pickle.dumps(prepare(batch(planned_bucket))))
    assert isinstance(sent, PlannedDocuments) and list(sent) == batch(planned_bucket)
    assert sent == prepare(batch(planned_bucket)) and sent != prepare(batch(plain_bucket))
    assert target.write(sent, meta=META).written == len(AWKWARD_KEYS)
    assert target.write(batch(plain_bucket), meta=META).written == len(AWKWARD_KEYS)
    for key in AWKWARD_KEYS:
        planned = target.get("default", planned_bucket, key)
        plain = target.get("default", plain_bucket, key)
        assert planned is not None and plain is not None
        assert (planned.value, planned.indexes, planned.meta) == (
            plain.value,
            plain.indexes,
            plain.meta,
        )
    assert sorted(target.query_index("default", planned_bucket, "postcode_bin", "LS6 2AB")) == (
        sorted(AWKWARD_KEYS)
    )
    again = pickle.loads(pickle.dumps(prepare(batch(planned_bucket))))
    assert target.write(again, meta=META).unchanged == len(AWKWARD_KEYS)  # plans are per write


def test_a_document_riak_refuses_is_left_for_the_write_to_report(
    node: Node, target: RiakTarget
) -> None:
    bad = doc("p", {}, bucket=node.bucket, indexes={"town_bin": ("Leeds, West Yorkshire",)})
    documents = [doc("ok", {}, bucket=node.bucket), bad]
    prepare = target.preparer()
    assert prepare is not None
    assert prepare(documents) is documents
    with pytest.raises(TargetError, match="town_bin"):
        target.write(prepare(documents), meta=META)
    assert target.get("default", node.bucket, "ok") is None


# ---- first loads: plain PUTs, proven equal to the conditional writes ---------------------------


def _stored(target: RiakTarget, docs: list[Document]) -> list[tuple[object, ...]]:
    out = []
    for d in docs:
        stored = target.get(d.bucket_type, d.bucket, d.key)  # raises on siblings
        assert stored is not None
        meta = {k: v for k, v in stored.meta.items() if k != "migrate-chunk"}
        out.append((d.key, stored.value, stored.indexes, meta))
    return out


@pytest.mark.parametrize("bucket_type", ["default", "siblings"])
def test_a_first_load_stores_what_a_conditional_write_stores(
    node: Node, target: RiakTarget, bucket_type: str
) -> None:
    indexes: dict[str, tuple[IndexValue, ...]] = {
        "born_int": (19800229,),
        "postcode_bin": ("LS1 4HR", "LS6 2AB"),
    }

    def batch(bucket: str) -> list[Document]:
        return [
            doc(k, {"k": k}, bucket=bucket, bucket_type=bucket_type, indexes=indexes)
            for k in AWKWARD_KEYS
        ]

    first, conditional = node.bucket + "/first", node.bucket + "/conditional"
    requests = dict(node.fake.requests) if node.fake else {}
    assert target.write(batch(first), meta=META, first_load=True).written == len(AWKWARD_KEYS)
    if node.fake is not None:  # plain PUTs where allow_mult is false; read-first where true
        sent = {k: node.fake.requests[k] - requests.get(k, 0) for k in ("PUT", "HEAD")}
        plain = bucket_type == "default"
        assert sent == {"PUT": len(AWKWARD_KEYS), "HEAD": 0 if plain else len(AWKWARD_KEYS)}
        assert node.fake.requests["conditional PUT"] == requests.get("conditional PUT", 0)
    assert target.write(batch(conditional), meta=META).written == len(AWKWARD_KEYS)
    assert _stored(target, batch(first)) == _stored(target, batch(conditional))
    for bucket in (first, conditional):
        found = target.query_index(bucket_type, bucket, "postcode_bin", "LS6 2AB")
        assert sorted(found) == sorted(AWKWARD_KEYS)

    # A first load cut short and sent again writes the same bytes: no sibling, the same state.
    again = target.write(batch(first), meta=META, first_load=True)
    assert again.written + again.unchanged == len(AWKWARD_KEYS)
    assert _stored(target, batch(first)) == _stored(target, batch(conditional))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12),
            st.integers(min_value=-(2**40), max_value=2**40),
            st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ]{0,8}[A-Za-z0-9]", fullmatch=True),
                     max_size=3),
        ),
        min_size=1,
        max_size=15,
        unique_by=lambda row: row[0],
    )
)  # fmt: skip
def test_first_loads_and_conditional_writes_store_the_same(
    riak_fake: RiakFake, rows: list[tuple[str, int, list[str]]]
) -> None:
    riak = RiakTarget(riak_fake.url, max_in_flight=4)
    bucket = uuid.uuid4().hex
    try:

        def batch(name: str) -> list[Document]:
            return [
                doc(key, {"n": n}, bucket=name,
                    indexes={"n_int": (n,), "tags_bin": tuple(tags)})
                for key, n, tags in rows
            ]  # fmt: skip

        riak.write(batch(bucket + "-first"), meta=META, first_load=True)
        riak.write(batch(bucket + "-conditional"), meta=META)
        assert _stored(riak, batch(bucket + "-first")) == _stored(
            riak, batch(bucket + "-conditional")
        )
    finally:
        riak.close()
