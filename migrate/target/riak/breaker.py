"""A circuit breaker over every request of a Riak target.

Retries make a flaky node harmless, but against a node that is down they only multiply the load's
failures by `max_attempts` and bury the cause under a retry storm. The breaker counts transient
failures across all requests and threads; once `threshold` of them come in a row (or no host is
reachable at all) it opens: every request of the target is refused at once, the write in progress
stops, and the operator gets one message saying what failed and how to resume. A success anywhere
resets the count.
"""

from __future__ import annotations

import errno
import http.client
import socket
import threading
import time

from migrate.errors import TargetError, TransientTargetError
from migrate.target.riak.answers import NodeUnavailable

DEFAULT_THRESHOLD = 20
_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH}
_DROPPED = (
    http.client.RemoteDisconnected,
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
)


class CircuitOpenError(TargetError):
    """The target kept failing, so the load paused instead of burning through retries.

    Terminal on purpose: retrying it would be the very retry storm the breaker prevents.
    """


def failure_kind(exc: BaseException) -> str:
    """A short name for what went wrong, told by the exception's kind or cause, never by its
    message."""
    if isinstance(exc, NodeUnavailable):
        return exc.kind
    cause = exc.__cause__
    if cause is None:
        return "an error answer (5xx)"  # the client raises a 5xx without a foreign cause
    if isinstance(cause, socket.gaierror):
        return "host name not found"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, TimeoutError):
        return "timeout"
    if isinstance(cause, _DROPPED):
        return "dropped connection"
    if isinstance(cause, http.client.HTTPException):
        return "malformed HTTP answer"
    if isinstance(cause, OSError) and cause.errno in _UNREACHABLE_ERRNOS:
        return "host unreachable"
    return type(cause).__name__


def is_unreachable(exc: BaseException) -> bool:
    """True when the failure says the host does not serve now: nothing listens there (refused,
    unroutable, unknown name), or the node is stopping or starting."""
    if isinstance(exc, NodeUnavailable):
        return True
    cause = exc.__cause__
    if isinstance(cause, socket.gaierror | ConnectionRefusedError):
        return True
    return isinstance(cause, OSError) and cause.errno in _UNREACHABLE_ERRNOS


class CircuitBreaker:
    """Thread-safe consecutive-failure counter with an open state shared by all requests.

    An open circuit refuses every request until `trial()` half-opens it (the target does so at the
    start of each new operation): then one success closes it and one failure opens it again, so a
    node still down costs a single request, not another `threshold`.
    """

    def __init__(self, display_url: str, *, threshold: int = DEFAULT_THRESHOLD) -> None:
        if threshold < 1:
            raise ValueError("the failure threshold must be at least 1")
        self.display_url = display_url
        self.threshold = threshold
        self._lock = threading.Lock()
        self._failures = 0
        self._error: CircuitOpenError | None = None
        self._outage_since: float | None = None  # monotonic: first opened since the last success

    @property
    def outage_since(self) -> float | None:
        """When the circuit first opened since the last success (a target waits for the node
        for its patience from then), or None."""
        return self._outage_since

    @property
    def is_open(self) -> bool:
        return self._error is not None

    @property
    def failures(self) -> int:
        """Transient failures in a row since the last success."""
        return self._failures

    def check(self) -> None:
        """Refuse a request while the circuit is open."""
        error = self._error
        if error is not None:
            raise CircuitOpenError(error.message, hint=error.hint)

    def record_success(self) -> None:
        if self._failures == 0 and self._error is None and self._outage_since is None:
            return  # closed already: every request's success, without taking the lock
        with self._lock:
            self._failures = 0
            self._error = None
            self._outage_since = None

    def record_failure(self, exc: TransientTargetError, *, every_host_down: bool = False) -> None:
        """Count a transient failure; raise CircuitOpenError (from `exc`) when the circuit opens.

        `every_host_down`: the caller's client has every host in cool-off, so an unreachable
        failure means the whole node is unreachable and waiting for the threshold is pointless.
        """
        unreachable = every_host_down and is_unreachable(exc)
        with self._lock:
            self._failures += 1
            if self._error is None and (self._failures >= self.threshold or unreachable):
                self._error = self._open_error(exc, unreachable=unreachable)
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
            error = self._error
        if error is not None:
            raise CircuitOpenError(error.message, hint=error.hint) from exc

    def trial(self) -> None:
        """Half-open an open circuit: let requests through, but the next failure reopens it."""
        with self._lock:
            if self._error is not None:
                self._error = None
                self._failures = max(self._failures, self.threshold - 1)

    def _open_error(self, exc: TransientTargetError, *, unreachable: bool) -> CircuitOpenError:
        kind = failure_kind(exc)
        if unreachable:
            what = f"Riak at {self.display_url} is unreachable on every host ({kind})"
            if isinstance(exc, NodeUnavailable):
                what = f"Riak at {self.display_url} does not serve on any host ({kind})"
        else:
            what = (
                f"Riak at {self.display_url} failed {self._failures} requests in a row "
                f"(the last: {kind})"
            )
        return CircuitOpenError(
            f"{what}; the load is paused and no more requests are sent. Every chunk the ledger "
            "marks loaded is safe in Riak; the chunk in progress is loaded again on resume",
            hint=(
                "check the node: GET /ping should answer OK and GET /stats shows its health "
                "(riak admin status); once it serves, re-run the same command to resume (or set "
                "[target] patience in migrate.toml, and the load waits that long by itself)"
            ),
        )
