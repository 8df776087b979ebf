"""The circuit breaker: a target that keeps failing pauses the load with one clear message instead
of burning through retries. Unit tests of the counter, then RiakTarget against the fake node."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from riak_fake import RiakFake

from migrate.config import load_config
from migrate.document import Document
from migrate.errors import EXIT_RUNTIME, ConfigError, TargetError, TransientTargetError
from migrate.target import open_target
from migrate.target.riak import RiakTarget
from migrate.target.riak.breaker import (
    CircuitBreaker,
    CircuitOpenError,
    failure_kind,
    is_unreachable,
)

URL = "riak://riak1.example:8098"
META = {"migrate-run": "run-1", "migrate-chunk": "0"}


def transient(cause: BaseException | None = None) -> TransientTargetError:
    """A transient error as the client raises it: chained from the foreign exception, if any."""
    try:
        try:
            if cause is not None:
                raise cause
            raise TransientTargetError("answered 503")
        except TransientTargetError:
            raise
        except BaseException as exc:
            raise TransientTargetError("did not answer") from exc
    except TransientTargetError as exc:
        return exc


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def docs(count: int, *, bucket: str = "b") -> list[Document]:
    out = []
    for n in range(count):
        value = json.dumps({"n": n, "secret": f"value-{n}"}).encode()
        out.append(Document("default", bucket, f"k{n}", value, (), f"{n:032x}"))
    return out


# ---- the counter ------------------------------------------------------------------------------


def test_opens_after_threshold_failures_in_a_row_and_successes_reset() -> None:
    breaker = CircuitBreaker(URL, threshold=3)
    breaker.record_failure(transient())
    breaker.record_failure(transient())
    breaker.record_success()
    breaker.record_failure(transient())
    breaker.record_failure(transient())
    assert not breaker.is_open and breaker.failures == 2
    with pytest.raises(CircuitOpenError) as caught:
        breaker.record_failure(transient())
    assert breaker.is_open
    error = caught.value
    assert error.exit_code == EXIT_RUNTIME and not error.transient
    assert isinstance(error.__cause__, TransientTargetError)
    text = error.render()
    assert URL in text and "3 requests in a row" in text and "5xx" in text
    assert "paused" in text and "ledger marks loaded is safe" in text
    assert "/ping" in text and "/stats" in text and "re-run the same command" in text
    with pytest.raises(CircuitOpenError, match="paused"):
        breaker.check()


@given(st.lists(st.booleans(), max_size=60), st.integers(min_value=1, max_value=6))
def test_open_exactly_when_a_run_of_threshold_failures_happened(
    outcomes: list[bool], threshold: int
) -> None:
    """True is a failure. The circuit is open iff some `threshold` failures came in a row."""
    breaker = CircuitBreaker(URL, threshold=threshold)
    run = longest = 0
    for failed in outcomes:
        if breaker.is_open:
            break
        if failed:
            run += 1
            longest = max(longest, run)
            if run >= threshold:
                with pytest.raises(CircuitOpenError):
                    breaker.record_failure(transient())
            else:
                breaker.record_failure(transient())
        else:
            run = 0
            breaker.record_success()
    assert breaker.is_open == (longest >= threshold)


def test_counts_failures_from_many_threads_without_losing_any() -> None:
    breaker = CircuitBreaker(URL, threshold=10_000)
    error = transient()

    def fail() -> None:
        for _ in range(1000):
            breaker.record_failure(error)

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.failures == 8000 and not breaker.is_open


def test_a_trial_lets_requests_through_but_one_more_failure_reopens() -> None:
    breaker = CircuitBreaker(URL, threshold=4)
    for _ in range(3):
        breaker.record_failure(transient())
    with pytest.raises(CircuitOpenError):
        breaker.record_failure(transient())
    breaker.trial()
    breaker.check()  # no longer refused
    with pytest.raises(CircuitOpenError):
        breaker.record_failure(transient())
    breaker.trial()
    breaker.record_success()
    assert not breaker.is_open and breaker.failures == 0


def test_an_unreachable_node_opens_at_once_only_when_every_host_is_down() -> None:
    breaker = CircuitBreaker(URL, threshold=20)
    refused = transient(ConnectionRefusedError(111, "Connection refused"))
    breaker.record_failure(refused, every_host_down=False)
    assert not breaker.is_open
    breaker.record_failure(transient(TimeoutError("timed out")), every_host_down=True)
    assert not breaker.is_open  # a timeout may be a stall, not an absent node
    with pytest.raises(CircuitOpenError, match="unreachable on every host"):
        breaker.record_failure(refused, every_host_down=True)


@pytest.mark.parametrize(
    ("cause", "kind", "unreachable"),
    [
        (None, "an error answer (5xx)", False),
        (ConnectionRefusedError(111, "refused"), "connection refused", True),
        (socket.gaierror(-2, "Name or service not known"), "host name not found", True),
        (OSError(113, "No route to host"), "host unreachable", True),
        (TimeoutError("timed out"), "timeout", False),
        (http.client.RemoteDisconnected("closed"), "dropped connection", False),
        (ConnectionResetError(104, "reset"), "dropped connection", False),
        (http.client.BadStatusLine("x"), "malformed HTTP answer", False),
    ],
)
def test_failure_kinds_come_from_the_cause(
    cause: BaseException | None, kind: str, unreachable: bool
) -> None:
    error = transient(cause)
    assert failure_kind(error) == kind
    assert is_unreachable(error) is unreachable


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(URL, threshold=0)
    with pytest.raises(ConfigError, match="failure_threshold"):
        RiakTarget(URL, failure_threshold=0)


# ---- RiakTarget against the fake --------------------------------------------------------------


def test_a_failing_node_opens_the_circuit_after_a_bounded_number_of_requests(
    riak_fake: RiakFake,
) -> None:
    riak_fake.faults.error_rate = 1.0
    riak = RiakTarget(riak_fake.url, max_in_flight=8, max_attempts=5, backoff_initial=0.01)
    batch = docs(400)
    started = time.monotonic()
    try:
        with pytest.raises(CircuitOpenError) as caught:
            riak.write(batch, meta=META)
    finally:
        riak.close()
    assert time.monotonic() - started < 5
    sent = sum(riak_fake.requests.values())
    # the 20 that opened it, plus at most one per other thread already past the check
    assert 20 <= sent <= 20 + 8, riak_fake.requests
    assert sent < riak.max_attempts * len(batch)
    text = caught.value.render()
    assert riak_fake.url.split("://")[1] in text and "20 requests in a row" in text
    assert "5xx" in text and "paused" in text and "value-" not in text
    # a first load sends create-only PUTs; every one was refused, so nothing was stored
    assert riak_fake.writes == 0 and riak_fake.keys("default", "b") == []


def test_a_ten_percent_error_rate_never_opens_it_and_the_write_is_exact(
    riak_fake: RiakFake,
) -> None:
    riak_fake.faults.error_rate = 0.10
    riak = RiakTarget(riak_fake.url, max_in_flight=16, max_attempts=8, backoff_initial=0.005)
    batch = docs(600)
    try:
        stats = riak.write(batch, meta=META)
        assert stats.written == len(batch)
        assert riak_fake.injected["error"] > 50  # the faults did happen, and were survived
        assert not riak._breaker.is_open
    finally:
        riak.close()
    for doc in batch:
        assert riak_fake.siblings("default", "b", doc.key) == [doc.value]


def test_after_a_pause_a_new_write_tries_once_then_resumes_when_the_node_is_back(
    riak_fake: RiakFake,
) -> None:
    riak_fake.faults.error_rate = 1.0
    riak = RiakTarget(riak_fake.url, max_in_flight=4, backoff_initial=0.01, failure_threshold=5)
    batch = docs(50)
    try:
        with pytest.raises(CircuitOpenError, match="5 requests in a row"):
            riak.write(batch, meta=META)
        before = sum(riak_fake.requests.values())
        with pytest.raises(CircuitOpenError):
            riak.write(batch, meta=META)
        # half-open: the still-failing node costs the requests already in flight, not 5 more each
        assert sum(riak_fake.requests.values()) - before <= 4
        riak_fake.faults.error_rate = 0.0
        assert riak.write(batch, meta=META).written == len(batch)
        assert riak.get("default", "b", "k7") is not None
    finally:
        riak.close()
    assert riak_fake.keys("default", "b") == sorted(d.key for d in batch)


def test_an_unreachable_node_pauses_at_the_first_refusal() -> None:
    port = closed_port()
    riak = RiakTarget(f"riak://127.0.0.1:{port}", max_in_flight=8)
    started = time.monotonic()
    try:
        with pytest.raises(CircuitOpenError) as caught:
            riak.write(docs(200), meta=META)
    finally:
        riak.close()
    assert time.monotonic() - started < 3
    text = caught.value.render()
    assert f"riak://127.0.0.1:{port}" in text and "unreachable on every host" in text
    assert "connection refused" in text and "re-run the same command" in text


def test_a_dead_host_beside_a_live_one_does_not_open_it(riak_fake: RiakFake) -> None:
    dead = closed_port()
    riak = RiakTarget(
        f"riak://127.0.0.1:{dead},127.0.0.1:{riak_fake.port}",
        backoff_initial=0.01,
        failure_threshold=3,
    )
    try:
        assert riak.write(docs(100), meta=META).written == 100
        assert not riak._breaker.is_open
    finally:
        riak.close()


def test_every_host_dead_opens_it(riak_fake: RiakFake) -> None:
    first, second = closed_port(), closed_port()
    riak = RiakTarget(f"riak://127.0.0.1:{first},127.0.0.1:{second}", max_in_flight=2)
    try:
        with pytest.raises(TargetError, match="unreachable on every host"):
            riak.write(docs(50), meta=META)
    finally:
        riak.close()


def test_failure_threshold_comes_from_migrate_toml(tmp_path: Path) -> None:
    config = tmp_path / "migrate.toml"
    body = (
        '[source]\nurl = "sqlite:///legacy.db"\n[state]\nurl = "sqlite:///state.db"\n'
        '[target]\nurl = "riak://127.0.0.1:8098"\n'
    )
    config.write_text(body)
    assert load_config(config).target.failure_threshold == 20
    config.write_text(body + "failure_threshold = 3\n")
    loaded = load_config(config)
    assert loaded.target.failure_threshold == 3
    target = open_target(loaded.target, base_dir=tmp_path)
    try:
        assert isinstance(target, RiakTarget) and target._breaker.threshold == 3
    finally:
        target.close()
    config.write_text(body + "failure_threshold = 0\n")
    with pytest.raises(ConfigError, match="failure_threshold") as caught:
        load_config(config)
    assert "migrate.toml:7" in caught.value.render()
