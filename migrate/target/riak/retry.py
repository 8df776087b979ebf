"""Retries and outages: one policy for every request of a Riak target, reads and writes alike.

A transient failure (a timeout, a dropped connection, a 5xx, a host stopping or starting) is
retried by tenacity: exponential backoff with jitter, at most `max_attempts` tries in all. The
write path sends a great many requests that almost all succeed at once, so it makes its first try
outside tenacity and hands only a failed document to it (`RetryPolicy.after_failure`): the same
policy and the same count of attempts, without tenacity's per-call bookkeeping on every PUT.

Beyond one request's retries, the circuit breaker pauses the whole target when the node keeps
failing or no host serves (`breaker`). With a patience (`[target] patience`, in seconds) the
target then waits by itself (`Outage`): it asks each host every second whether it serves again
(GET /ping answers OK, and riak_kv answers a read), lets the requests through once one does, and
gives up with the breaker's message, saying how long it waited, once the patience is spent.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from migrate.errors import TransientTargetError
from migrate.target.riak.breaker import CircuitBreaker, CircuitOpenError

PROBE_INTERVAL = 1.0  # seconds between two probes of a target waiting for a node
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a request is tried again after a transient failure."""

    max_attempts: int
    backoff_initial: float
    backoff_max: float

    def _options(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.max_attempts),
            "wait": wait_exponential_jitter(
                multiplier=self.backoff_initial, max=self.backoff_max, jitter=self.backoff_initial
            ),
            "retry": retry_if_exception_type(TransientTargetError),
            "reraise": True,
        }

    def call(self, call: Callable[[], _T]) -> _T:
        """`call()`, retried; the last failure, saying how many attempts were made."""
        try:
            return Retrying(**self._options())(call)
        except TransientTargetError as exc:
            raise self._gave_up(exc) from exc

    async def after_failure(
        self, failure: TransientTargetError, attempt: Callable[[], Awaitable[_T]]
    ) -> _T:
        """The retries of a request whose first try (made by the caller) failed with `failure`:
        tenacity counts that try as the first of `max_attempts` and waits before the next."""
        replay: list[TransientTargetError] = [failure]

        async def again() -> _T:
            if replay:
                raise replay.pop()
            return await attempt()

        try:
            return await AsyncRetrying(**self._options())(again)
        except TransientTargetError as exc:
            raise self._gave_up(exc) from exc

    def _gave_up(self, exc: TransientTargetError) -> TransientTargetError:
        if self.max_attempts == 1:
            return exc
        return TransientTargetError(
            f"{exc.message} (gave up after {self.max_attempts} attempts)", hint=exc.hint
        )


class Outage:
    """Waiting for a node to serve again, within the target's patience (0: never wait)."""

    def __init__(self, breaker: CircuitBreaker, patience: float) -> None:
        self.breaker = breaker
        self.patience = patience
        self.waited = 0  # outages waited out (for tests and the bench)
        self._lock = threading.Lock()
        self._prober: asyncio.Task[bool] | None = None

    def wait(self, error: CircuitOpenError, serving: Callable[[], bool]) -> None:
        """Return once a host serves again (the circuit then lets requests through); raise the
        breaker's error once the patience is spent. Any thread; one of them probes at a time."""
        with self._lock:
            while (left := self._left()) > 0:
                if serving():
                    self._back()
                    return
                time.sleep(min(PROBE_INTERVAL, left))
        raise self._spent(error)

    async def wait_async(
        self, error: CircuitOpenError, serving: Callable[[], Awaitable[bool]]
    ) -> None:
        """`wait` for the tasks of the event loop: one probes, the others wait for its verdict."""
        if self._prober is None or self._prober.done():
            self._prober = asyncio.ensure_future(self._probe(serving))
        if not await asyncio.shield(self._prober):
            raise self._spent(error)

    async def _probe(self, serving: Callable[[], Awaitable[bool]]) -> bool:
        while (left := self._left()) > 0:
            if await serving():
                self._back()
                return True
            await asyncio.sleep(min(PROBE_INTERVAL, left))
        return False

    def _left(self) -> float:
        if self.patience <= 0:
            return 0.0
        since = self.breaker.outage_since
        now = time.monotonic()
        return (now if since is None else since) + self.patience - now

    def _back(self) -> None:
        self.waited += 1
        self.breaker.trial()

    def _spent(self, error: CircuitOpenError) -> CircuitOpenError:
        if self.patience <= 0:
            return error
        return CircuitOpenError(
            f"{error.message}; it did not serve again within [target] patience = "
            f"{self.patience:g}s",
            hint=error.hint,
        )
