"""Fixtures for the target tests: a fake Riak node on loopback, fresh for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from riak_fake import SIBLINGS_TYPE_PROPS, RiakFake


@pytest.fixture
def riak_fake() -> Iterator[RiakFake]:
    """A running fake Riak node with the `default` type and a `siblings` type (allow_mult=true)."""
    fake = RiakFake(seed=1)
    fake.create_bucket_type("siblings", **SIBLINGS_TYPE_PROPS)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
