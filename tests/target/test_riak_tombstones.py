"""Re-loading a deleted key must not leave a tombstone sibling on a bucket type with allow_mult.

`migrate repair` deletes extra keys, and a source row deleted and inserted again makes the same
key come back: on allow_mult types a write without the tombstone's vclock would leave the tombstone
beside the new value (a 300 on every read) until someone resolves it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import xxhash
from riak_fake import RiakFake

from migrate.document import Document
from migrate.target.riak import RiakTarget


def _doc(bucket_type: str, key: str, body: dict[str, int]) -> Document:
    value = json.dumps(body).encode()
    return Document(bucket_type, "people", key, value, (), xxhash.xxh3_128_hexdigest(value))


@pytest.fixture
def target(riak_fake: RiakFake) -> Iterator[RiakTarget]:
    riak = RiakTarget(riak_fake.url.replace("http://", "riak://"), max_in_flight=4)
    yield riak
    riak.close()


@pytest.mark.parametrize("bucket_type", ["siblings", "default"])
def test_a_deleted_key_loaded_again_has_one_value(
    riak_fake: RiakFake, target: RiakTarget, bucket_type: str
) -> None:
    keys = [f"k{n}" for n in range(20)]
    target.write([_doc(bucket_type, k, {"v": 1}) for k in keys], meta={})
    for key in keys[:10]:
        assert target.delete(bucket_type, "people", key)

    stats = target.write([_doc(bucket_type, k, {"v": 2}) for k in keys], meta={})

    assert stats.written == 20
    for key in keys:
        assert riak_fake.siblings(bucket_type, "people", key) == [b'{"v": 2}'], key
        stored = target.get(bucket_type, "people", key)
        assert stored is not None and json.loads(stored.value) == {"v": 2}
