"""The node a target test writes to: the fake always, and a real node too when RIAK_URL is set
(CI starts one), each test in a bucket of its own."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest
from riak_fake import RiakFake

REAL_NODE = os.environ.get("RIAK_URL")


@dataclass
class Node:
    url: str
    fake: RiakFake | None
    bucket: str

    def puts(self) -> int | None:
        """PUTs that stored something (refused create-only PUTs are requests, not writes)."""
        return None if self.fake is None else self.fake.writes


@pytest.fixture(
    params=[
        "fake",
        pytest.param("real", marks=pytest.mark.skipif(not REAL_NODE, reason="RIAK_URL is not set")),
    ]
)
def node(request: pytest.FixtureRequest) -> Node:
    bucket = f"people-{uuid.uuid4().hex[:8]}"
    if request.param == "real":
        assert REAL_NODE is not None
        return Node(REAL_NODE, None, bucket)
    fake: RiakFake = request.getfixturevalue("riak_fake")
    return Node(fake.url, fake, bucket)
