"""The write loop's pacing: while a write keeps its window half full, the loop lets answers gather
before it waits for them, for about a quarter window at the recent rate, at most `pace`; never when
the window is short or the server answers at once. (What it saves is measured by the bench, not
here: `client CPU per PUT` against the node.)"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from riak_fake import RiakFake

from migrate.document import Document
from migrate.target.riak import RiakTarget
from migrate.target.riak.loop import PacedSelector, Pacing


def test_no_pause_for_a_short_window_an_unknown_rate_or_no_pace() -> None:
    pacing = Pacing(0.01)
    pacing.window = 64
    pacing.rate = 1000.0
    pacing.in_flight = 31
    assert pacing.pause() == 0.0  # less than half the window in flight: the node may starve
    pacing.in_flight = 32
    assert pacing.pause() == pytest.approx(0.01)  # 16 answers at 1,000/s: 16 ms, capped
    pacing.rate = 8000.0
    assert pacing.pause() == pytest.approx(0.002)  # a quarter window at 8,000/s
    pacing.rate = 0.0
    assert pacing.pause() == 0.0
    pacing.rate, pacing.pace = 1000.0, 0.0
    assert pacing.pause() == 0.0


def test_the_rate_follows_the_wake_ups() -> None:
    pacing = Pacing()
    for _ in range(40):
        pacing.woke(10, 0.01)  # 1,000 events a second
    assert pacing.rate == pytest.approx(1000.0, rel=0.01)
    pacing.woke(0, 0.0)  # no time passed: no sample
    assert pacing.rate == pytest.approx(1000.0, rel=0.01)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def test_a_wait_is_paused_and_a_poll_is_not(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    pacing = Pacing(0.05)
    pacing.window, pacing.in_flight, pacing.rate = 8, 8, 10.0  # pause: min(0.05, 2 / 10)
    selector = PacedSelector(pacing)
    try:
        selector.register(left, 1)  # EVENT_READ
        right.send(b"x")
        started = time.monotonic()
        assert len(selector.select(0)) == 1  # a poll: at once
        assert time.monotonic() - started < 0.04
        pacing.rate = 10.0
        started = time.monotonic()
        assert len(selector.select(None)) == 1  # a wait: paused first, since its last wake-up
        assert time.monotonic() - started >= 0.045
        pacing.in_flight = 1  # the window is short now: no pause
        started = time.monotonic()
        assert len(selector.select(None)) == 1
        assert time.monotonic() - started < 0.04
    finally:
        selector.close()


def test_a_paced_write_stores_every_document_exactly(riak_fake: RiakFake) -> None:
    riak_fake.faults.delay = 0.002  # a server that answers slowly enough to be paced
    riak = RiakTarget(riak_fake.url, max_in_flight=8)
    bucket = uuid.uuid4().hex
    docs = [
        Document("default", bucket, f"k{n}", b'{"n":%d}' % n, (), f"{n:032x}") for n in range(300)
    ]
    try:
        assert riak.write(docs, meta={}, first_load=True).written == 300
        assert riak._async.pacing.in_flight == 0  # every request counted out again
    finally:
        riak.close()
    assert riak_fake.keys("default", bucket) == sorted(d.key for d in docs)
