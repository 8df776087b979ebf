"""Answers that only look permanent, told apart from real refusals: the real node's recorded
answers judged one by one, then RiakTarget against the fake playing a node that stops, starts, or
is short of primary replicas (the same tests against a real node are in tests/cli)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from recordings import Exchange, recording
from riak_fake import RiakFake

from migrate.document import Document
from migrate.errors import EXIT_RUNTIME, TargetError, TransientTargetError
from migrate.target.riak import RiakHTTP, RiakTarget, parse_url
from migrate.target.riak.answers import NodeUnavailable, QuorumError, Reply, judge, needs_ping
from migrate.target.riak.breaker import CircuitOpenError

URL = "riak://riak:8098"
META = {"migrate-run": "run-1", "migrate-chunk": "0"}


def answer(name: str, title: str) -> Reply:
    """The recorded answer of the exchange titled `title` in recording `name`."""
    for item in recording(name):
        if isinstance(item, Exchange) and item.title == f"# {title}":
            headers = {n.lower(): v for n, v in item.response_headers}
            return Reply(item.status, headers, item.response_body)
    raise AssertionError(f"no exchange {title!r} in {name}")


def docs(count: int, *, bucket: str = "b", bucket_type: str = "default") -> list[Document]:
    out = []
    for n in range(count):
        value = json.dumps({"n": n}).encode()
        out.append(Document(bucket_type, bucket, f"k{n}", value, (), f"{n:032x}"))
    return out


# ---- the recorded answers, judged --------------------------------------------------------------

STOPPING = "09-stopping-starting.txt"


@pytest.mark.parametrize(
    "title",
    [
        "while it stops: an object, the web server's 404 page",
        "while it stops: a write, the web server's 404 page",
        "while it stops: /ping itself, the web server's 404 page",
    ],
)
def test_a_stopping_nodes_404_is_transient_when_ping_fails(title: str) -> None:
    reply = answer(STOPPING, title)
    assert needs_ping(reply)
    with pytest.raises(NodeUnavailable) as caught:
        judge(reply, (200, 204, 404), "GET /x on riak:8098", URL, node_up=False)
    assert caught.value.transient and "stopping" in caught.value.message
    assert "retrying will not help" not in caught.value.render()


def test_the_same_page_from_a_node_that_is_up_is_a_refusal() -> None:
    reply = answer(STOPPING, "a node that is up answers a path Riak does not serve with its web "
                   "server's own page")  # fmt: skip
    assert needs_ping(reply)
    with pytest.raises(TargetError) as caught:
        judge(reply, (200, 404), "GET /nosuch on riak:8098", URL, node_up=True)
    assert not caught.value.transient and "no such path" in caught.value.message


@pytest.mark.parametrize(
    "title", ["but a read is not served yet", "nor a write", "nor an index query"]
)
def test_a_starting_node_is_transient(title: str) -> None:
    reply = answer(STOPPING, title)
    assert not needs_ping(reply)
    with pytest.raises(NodeUnavailable) as caught:
        judge(reply, (200, 204, 404), "GET /x on riak:8098", URL)
    assert "starting" in caught.value.kind


def test_riak_kv_refusals_stay_refusals() -> None:
    unknown = answer("07-node.txt", "a bucket type that does not exist")
    assert not needs_ping(unknown)  # text/plain: Riak KV's own 404
    with pytest.raises(TargetError, match="Unknown bucket type") as caught:
        judge(unknown, (204,), "PUT /types/nosuchtype/... on riak:8098", URL)
    assert not caught.value.transient
    missing = answer("02-missing.txt", "GET a key that does not exist")
    assert judge(missing, (200, 404), "GET", URL) is missing
    bad_index = answer("03-2i.txt", "a PUT with a non-integer value on an _int index")
    with pytest.raises(TargetError) as caught:
        judge(bad_index, (204,), "PUT", URL)
    assert not caught.value.transient and "1980-02-29" not in caught.value.render()


@pytest.mark.parametrize(
    ("title", "setting"),
    [("pw=3 (all primaries) with a primary down", "pw"), ("pr=3 likewise on a read", "pr")],
)
def test_an_unmet_quorum_is_a_clear_terminal_error(title: str, setting: str) -> None:
    with pytest.raises(QuorumError) as caught:
        judge(answer("10-quorum.txt", title), (200, 204), "PUT /x on riak:8098", URL)
    error = caught.value
    assert not error.transient and error.exit_code == EXIT_RUNTIME
    assert f"only 2 of the 3 primary replicas that {setting} asks for" in error.message
    assert f"lower [target] {setting}" in (error.hint or "")


def test_an_impossible_quorum_names_the_settings() -> None:
    reply = answer("05-conditional.txt", "an impossible quorum on a one-node cluster")
    with pytest.raises(QuorumError) as caught:
        judge(reply, (204,), "PUT", URL)
    assert "n_val" in (caught.value.hint or "")


# ---- against the fake ----------------------------------------------------------------------------


@pytest.fixture
def fakes() -> Iterator[tuple[RiakFake, RiakFake]]:
    first, second = RiakFake(seed=11).start(), RiakFake(seed=12).start()
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def hosts(*fakes: RiakFake) -> str:
    return "riak://" + ",".join(f"127.0.0.1:{f.port}" for f in fakes)


def later(seconds: float, action: object) -> threading.Timer:
    timer = threading.Timer(seconds, action)  # type: ignore[arg-type]
    timer.start()
    return timer


@pytest.mark.parametrize("state", ["stopping", "starting"])
def test_a_lone_node_stopping_or_starting_pauses_the_load_at_once(
    riak_fake: RiakFake, state: str
) -> None:
    riak_fake.state = state
    riak = RiakTarget(hosts(riak_fake), max_in_flight=8)
    started = time.monotonic()
    try:
        with pytest.raises(CircuitOpenError) as caught:
            riak.write(docs(200), meta=META)
    finally:
        riak.close()
    assert time.monotonic() - started < 3
    text = caught.value.render()
    assert "does not serve on any host" in text and f"a node {state}" in text
    assert "re-run the same command" in text and "patience" in text
    assert "retrying will not help" not in text
    # the requests in flight when the first answer came, and the pings that judged them
    assert sum(riak_fake.requests.values()) <= 2 * 8


def test_a_stopping_host_is_cooled_off_and_the_load_carries_on(
    fakes: tuple[RiakFake, RiakFake],
) -> None:
    stopping, up = fakes
    stopping.state = "stopping"
    riak = RiakTarget(hosts(stopping, up), max_in_flight=8, backoff_initial=0.01)
    batch = docs(300)
    try:
        stats = riak.write(batch, meta=META)
        assert stats.written == len(batch)
        assert not riak._breaker.is_open
        assert riak.get("default", "b", "k7") is not None
    finally:
        riak.close()
    assert up.keys("default", "b") == sorted(d.key for d in batch)
    assert stopping.requests["PUT"] <= 8 + 8  # its first answers, then it was skipped


def test_within_its_patience_the_target_waits_for_the_node_and_carries_on(
    riak_fake: RiakFake,
) -> None:
    riak_fake.state = "stopping"
    riak = RiakTarget(hosts(riak_fake), max_in_flight=8, patience=20)
    batch = docs(100)
    timers = [
        later(0.8, lambda: setattr(riak_fake, "state", "starting")),
        later(1.6, lambda: setattr(riak_fake, "state", "up")),
    ]
    started = time.monotonic()
    try:
        stats = riak.write(batch, meta=META)
        waited = time.monotonic() - started
        assert stats.written == len(batch)
        assert riak.outage.waited >= 1
        assert 1.5 <= waited < 10
        riak_fake.state = "stopping"
        later(0.5, lambda: setattr(riak_fake, "state", "up"))
        assert riak.get("default", "b", "k3") is not None  # reads wait too
    finally:
        riak.close()
        for timer in timers:
            timer.cancel()
    for doc in batch:
        assert riak_fake.siblings("default", "b", doc.key) == [doc.value]


def test_once_its_patience_is_spent_the_target_says_how_long_it_waited(
    riak_fake: RiakFake,
) -> None:
    riak_fake.state = "stopping"
    riak = RiakTarget(hosts(riak_fake), max_in_flight=4, patience=1.5)
    started = time.monotonic()
    try:
        with pytest.raises(CircuitOpenError) as caught:
            riak.write(docs(20), meta=META)
    finally:
        riak.close()
    assert 1.5 <= time.monotonic() - started < 6
    assert "did not serve again within [target] patience = 1.5s" in caught.value.message
    # probed about once a second (a ping each), not hammered
    assert riak_fake.requests["GET"] <= 4 * 3


def test_an_unmet_quorum_stops_the_load_at_the_first_answer(riak_fake: RiakFake) -> None:
    riak_fake.primaries_up = 2
    riak = RiakTarget(hosts(riak_fake), max_in_flight=4, pw="3", patience=30)
    started = time.monotonic()
    try:
        with pytest.raises(QuorumError) as caught:
            riak.write(docs(100), meta=META)
    finally:
        riak.close()
    assert time.monotonic() - started < 3  # no waiting, no backoff
    assert riak_fake.requests["PUT"] <= 4  # what was in flight; nothing retried
    assert riak_fake.writes == 0
    assert "pw asks for" in caught.value.message and "lower [target] pw" in (
        caught.value.hint or ""
    )


def test_a_write_with_a_quorum_the_node_meets_goes_through(riak_fake: RiakFake) -> None:
    riak_fake.primaries_up = 2
    riak = RiakTarget(hosts(riak_fake), max_in_flight=4, pw="quorum", r="quorum")
    try:
        assert riak.write(docs(10), meta=META).written == 10
        assert riak.get("default", "b", "k1") is not None
    finally:
        riak.close()


def test_the_clients_404_page_of_a_node_that_is_up_is_terminal(riak_fake: RiakFake) -> None:
    client = RiakHTTP(parse_url(hosts(riak_fake)))
    try:
        with pytest.raises(TargetError, match="no such path") as caught:
            client.request("GET", "/nosuch")
        assert not isinstance(caught.value, TransientTargetError)
    finally:
        client.close()


def test_retries_are_counted_and_then_given_up(riak_fake: RiakFake) -> None:
    riak = RiakTarget(
        hosts(riak_fake), max_in_flight=1, max_attempts=3, backoff_initial=0.01,
        failure_threshold=100,
    )  # fmt: skip
    try:
        riak.write(docs(1, bucket="b"), meta=META)  # the bucket's properties are known now
        riak_fake.reset()
        riak_fake.faults.error_rate = 1.0
        with pytest.raises(TransientTargetError, match="gave up after 3 attempts"):
            riak.write(docs(1), meta=META)
        assert riak_fake.requests["PUT"] == 3
        with pytest.raises(TransientTargetError, match="gave up after 3 attempts"):
            riak.get("default", "b", "k0")
        assert riak_fake.requests["GET"] == 3
    finally:
        riak.close()
