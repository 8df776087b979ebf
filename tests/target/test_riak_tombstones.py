"""Deletes, tombstones and siblings, on the fake and (with RIAK_URL) on a real node.

`migrate repair` deletes extra keys, and the cutover's delta deletes a document and may write it
again: on allow_mult types a write without the tombstone's vclock would leave the tombstone beside
the new value (a 300 on every read) until someone resolves it, and on the others a stale document
must not come back. A DELETE carries the vclock just read, so its tombstone replaces exactly what
was read (siblings included)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import xxhash
from riak_nodes import Node

from migrate.document import Document
from migrate.errors import TargetError
from migrate.target.riak import RiakHTTP, RiakTarget, parse_url

JSON = [("Content-Type", "application/json")]


@pytest.fixture
def target(node: Node) -> Iterator[RiakTarget]:
    riak = RiakTarget(node.url, max_in_flight=4)
    yield riak
    riak.close()


def _doc(bucket_type: str, bucket: str, key: str, body: dict[str, int]) -> Document:
    value = json.dumps(body).encode()
    return Document(bucket_type, bucket, key, value, (), xxhash.xxh3_128_hexdigest(value))


def values(node: Node, bucket_type: str, key: str) -> list[bytes]:
    """Every value stored under a key, sorted, a tombstone sibling as b"": one value, several
    (siblings), or none (absent, or deleted)."""
    if node.fake is not None:
        return sorted(node.fake.siblings(bucket_type, node.bucket, key))
    client = RiakHTTP(parse_url(node.url))
    path = f"/types/{bucket_type}/buckets/{node.bucket}/keys/{key}"
    accept = [("Accept", "multipart/mixed, */*;q=0.5")]
    try:
        reply = client.request("GET", path, headers=accept, ok=(200, 300, 404))
    finally:
        client.close()
    if reply.status == 404:
        return []
    if reply.status == 200:
        return [reply.body]
    boundary = (reply.header("content-type") or "").split("boundary=")[1].encode()
    found = []
    for part in reply.body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, body = part.strip(b"\r\n").partition(b"\r\n\r\n")
        found.append(b"" if b"x-riak-deleted: true" in head.lower() else body)
    return sorted(found)


@pytest.mark.parametrize("bucket_type", ["siblings", "default"])
def test_a_deleted_key_loaded_again_has_one_value(
    node: Node, target: RiakTarget, bucket_type: str
) -> None:
    keys = [f"k{n}" for n in range(20)]
    target.write([_doc(bucket_type, node.bucket, k, {"v": 1}) for k in keys], meta={})
    for key in keys[:10]:
        assert target.delete(bucket_type, node.bucket, key)

    stats = target.write([_doc(bucket_type, node.bucket, k, {"v": 2}) for k in keys], meta={})

    assert stats.written == 20
    for key in keys:
        assert values(node, bucket_type, key) == [b'{"v": 2}'], key
        stored = target.get(bucket_type, node.bucket, key)
        assert stored is not None and json.loads(stored.value) == {"v": 2}


@pytest.mark.parametrize("bucket_type", ["siblings", "default"])
def test_deleting_twice_and_deleting_what_never_was(
    node: Node, target: RiakTarget, bucket_type: str
) -> None:
    target.write([_doc(bucket_type, node.bucket, "gone", {"v": 1})], meta={})
    assert target.delete(bucket_type, node.bucket, "gone") is True
    assert target.get(bucket_type, node.bucket, "gone") is None
    assert target.delete(bucket_type, node.bucket, "gone") is False  # only a tombstone left
    assert target.delete(bucket_type, node.bucket, "never") is False
    assert values(node, bucket_type, "gone") == []


def test_a_delete_replaces_every_sibling(node: Node, target: RiakTarget) -> None:
    client = RiakHTTP(parse_url(node.url))
    path = f"/types/siblings/buckets/{node.bucket}/keys/s1"
    try:
        for body in (b'{"v":1}', b'{"v":2}'):  # two blind writes: two siblings
            client.request("PUT", path, headers=JSON, body=body, ok=(204,))
    finally:
        client.close()
    assert len(values(node, "siblings", "s1")) == 2
    with pytest.raises(TargetError, match="2 siblings"):
        target.get("siblings", node.bucket, "s1")

    assert target.delete("siblings", node.bucket, "s1") is True

    assert values(node, "siblings", "s1") == []
    assert target.get("siblings", node.bucket, "s1") is None
    target.write([_doc("siblings", node.bucket, "s1", {"v": 3})], meta={})
    assert values(node, "siblings", "s1") == [b'{"v": 3}']


def test_a_delete_with_a_stale_vclock_keeps_the_write_it_did_not_see(node: Node) -> None:
    """What the target's delete relies on (HEAD, then DELETE with that vclock), with an update
    in between: on allow_mult the update survives beside the tombstone; nothing is lost."""
    client = RiakHTTP(parse_url(node.url))
    path = f"/types/siblings/buckets/{node.bucket}/keys/t3"
    try:
        client.request("PUT", path, headers=JSON, body=b'{"v":1}', ok=(204,))
        seen = client.request("HEAD", path).header("x-riak-vclock") or ""
        update = [*JSON, ("X-Riak-Vclock", seen)]
        client.request("PUT", path, headers=update, body=b'{"v":2}', ok=(204,))
        client.request("DELETE", path, headers=[("X-Riak-Vclock", seen)], ok=(204,))
    finally:
        client.close()
    assert values(node, "siblings", "t3") == [b"", b'{"v":2}']  # the tombstone, the update
