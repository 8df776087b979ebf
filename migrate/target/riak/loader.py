"""The write engine: idempotent, sibling-free writes of a batch over the asyncio client.

A first load of documents the ledger has never seen loaded (`first_load`) into a bucket type
without allow_mult is one plain PUT per document: nothing can be stored there but what an earlier,
interrupted try of the same load sent, and a PUT of the same bytes over it changes nothing (no
sibling without allow_mult, nothing lost). Otherwise, and always where allow_mult keeps siblings,
a write must not blindly replace what is stored:

- Create-first: a PUT with `If-None-Match: *` stores a new key and Riak refuses it (412) when the
  key exists. Only then is the object read with HEAD (vclock, checksum metadata, indexes): stored
  with the same checksum and indexes, it costs no write; otherwise it is PUT with the vclock it
  replaces, so an `allow_mult=true` type gets no sibling, and siblings already there (HEAD 300) are
  replaced by a PUT with the 300's vclock.
- Read-first: on allow_mult types, and when most recent documents existed already (a re-run over
  loaded data, which would pay a refused PUT per document), HEAD then PUT only if changed; the
  engine goes back to create-first when misses dominate.

Transient failures are retried by the target's `RetryPolicy` (tenacity); the first terminal
failure, or an open circuit the target's patience does not wait out, cancels the rest of the batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from migrate.document import Document
from migrate.errors import TransientTargetError
from migrate.target.riak.answers import Reply
from migrate.target.riak.breaker import CircuitBreaker, CircuitOpenError
from migrate.target.riak.objects import JSON_TYPE, is_current
from migrate.target.riak.retry import Outage, RetryPolicy
from migrate.target.riak.wire import AsyncRiakHTTP

WINDOW = 8  # documents whose existence decides the mode; short, so a re-run switches quickly
_CREATED = (200, 204)
_CREATE_OR_EXISTS = (200, 204, 412)
_HEAD_OK = (200, 300, 404)


@dataclass(slots=True)
class Planned:
    """One document ready for the wire: its path (for messages), request parts and state."""

    doc: Document
    path: str
    target: bytes  # path and quorum query, percent-encoded
    headers: bytes  # its index header lines and checksum metadata
    read_first: bool = False  # its bucket keeps siblings: never write without reading the vclock
    plain: bool = False  # a first load into a bucket without siblings: one plain PUT
    put_sent: bool = False  # a PUT that may have been applied was sent


class Loader:
    """Writes batches on the event loop of its `AsyncRiakHTTP`; used from that loop only."""

    def __init__(
        self,
        http: AsyncRiakHTTP,
        breaker: CircuitBreaker,
        policy: RetryPolicy,
        outage: Outage,
        *,
        max_in_flight: int,
        write_query: str,
        read_query: str,
    ) -> None:
        self._http = http
        self._breaker = breaker
        self.policy = policy
        self.outage = outage
        self.max_in_flight = max_in_flight
        self._write_query = write_query.encode("ascii")
        self._read_query = read_query.encode("ascii")
        self._window: deque[bool] = deque(maxlen=WINDOW)  # True: the key was already stored
        self._slots: asyncio.Semaphore | None = None
        self.head_first_documents = 0  # documents started in read-first mode (for tests, bench)

    @property
    def reads_first(self) -> bool:
        """True while most of the last documents existed already (a re-run over loaded data)."""
        return sum(self._window) * 2 > len(self._window)

    async def write(self, plans: Sequence[Planned], common: bytes) -> int:
        """Store every planned document; the number written (the rest were unchanged).

        `common`: the header lines every PUT of this batch carries (type, metadata, auth).
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_in_flight)
        slots = self._slots
        results = [False] * len(plans)
        queue = iter(enumerate(plans))

        async def worker() -> None:
            for index, plan in queue:
                async with slots:
                    results[index] = await self._store(plan, common)

        count = min(self.max_in_flight, len(plans))
        tasks = [asyncio.ensure_future(worker()) for _ in range(count)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()  # no-op for finished tasks; stops the rest on failure
            await asyncio.gather(*tasks, return_exceptions=True)
        failures = [e for t in tasks if not t.cancelled() and (e := t.exception()) is not None]
        if failures:
            # an open circuit is the cause of the other failures: report it, not one of them
            raise next((e for e in failures if isinstance(e, CircuitOpenError)), failures[0])
        return sum(results)

    # ---- one document ----------------------------------------------------------------------------

    async def _store(self, plan: Planned, common: bytes) -> bool:
        """Store one document: one try, then the policy's retries; while the circuit is open,
        wait for the node within the target's patience and go on."""
        while True:
            try:
                try:
                    return await self._attempt(plan, common)
                except TransientTargetError as failure:
                    return await self.policy.after_failure(
                        failure, lambda: self._attempt(plan, common)
                    )
            except CircuitOpenError as error:
                await self.outage.wait_async(error, self._http.serving)

    async def _attempt(self, plan: Planned, common: bytes) -> bool:
        """One try; True when a PUT was made (now or by an earlier attempt)."""
        if plan.plain:
            plan.put_sent = True
            await self._put(plan, common, b"", _CREATED)
            return True
        if plan.read_first or self.reads_first:
            # On a bucket with allow_mult a create-only PUT over a tombstone would leave the
            # tombstone as a sibling: only a write carrying the tombstone's vclock replaces it.
            self.head_first_documents += 1
            return await self._read_then_write(plan, common, record=not plan.read_first)
        before, plan.put_sent = plan.put_sent, True
        reply = await self._put(plan, common, b"If-None-Match: *\r\n", _CREATE_OR_EXISTS)
        self._window.append(reply.status == 412)
        if reply.status != 412:
            return True
        plan.put_sent = before  # refused: this PUT changed nothing
        return await self._read_then_write(plan, common, record=False)

    async def _read_then_write(self, plan: Planned, common: bytes, *, record: bool = True) -> bool:
        head = await self._request(
            "HEAD",
            plan.path,
            b"HEAD " + plan.target + self._read_query + b" HTTP/1.1\r\n" + self._http.auth_line,
            _HEAD_OK,
        )
        if record:
            self._window.append(head.status != 404)
        if head.status == 200 and is_current(head, plan.doc):
            return plan.put_sent
        vclock = head.header("x-riak-vclock")
        extra = b"X-Riak-Vclock: " + vclock.encode("ascii") + b"\r\n" if vclock else b""
        plan.put_sent = True
        await self._put(plan, common, extra, _CREATED)
        return True

    async def _put(self, plan: Planned, common: bytes, extra: bytes, ok: tuple[int, ...]) -> Reply:
        body = plan.doc.value
        head = b"".join(
            (
                b"PUT ",
                plan.target,
                self._write_query,
                b" HTTP/1.1\r\n",
                common,
                plan.headers,
                extra,
                b"Content-Length: %d\r\n\r\n" % len(body),
                body,
            )
        )
        return await self._request("PUT", plan.path, head, ok)

    async def _request(self, method: str, path: str, head: bytes, ok: tuple[int, ...]) -> Reply:
        """One request through the circuit breaker: refused while it is open, counted after."""
        self._breaker.check()
        if method == "HEAD":
            head += b"\r\n"
        try:
            reply = await self._http.request(method, path, head, ok=ok)
        except TransientTargetError as exc:
            self._breaker.record_failure(exc, every_host_down=self._http.every_host_down())
            raise
        self._breaker.record_success()
        return reply


def common_headers(meta: Sequence[tuple[str, str]], auth_line: bytes) -> bytes:
    """The header lines every PUT of one write carries."""
    lines = [f"Content-Type: {JSON_TYPE}\r\n", *(f"{n}: {v}\r\n" for n, v in meta)]
    return auth_line + "".join(lines).encode("utf-8")
