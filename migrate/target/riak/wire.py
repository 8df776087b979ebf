"""A lean asyncio HTTP/1.1 client for the write path: one event loop thread, keep-alive pools.

Measured (issue 3): http.client on a thread pool costs ~245 us of CPU per request, mostly in its
email-module header parsing, two sends per request and thread hand-offs; an asyncio.Protocol that
sends each request in one write and parses its answer as it arrives costs a fraction of that. Each
connection carries one request at a time (no pipelining, so a lost connection loses at most one
answer). Hosts are used round-robin with the same cool-off as `RiakHTTP`; foreign exceptions
become `migrate.errors` here, chained from a cause that `breaker.failure_kind` can name.

Answers are parsed by httptools (llhttp, the parser uvicorn runs on), not by a parser of our own:
measured on the same bench (`make bench`: client CPU per PUT into the sink, the hand-made parser
kept in `benchmarks/hand_parser.py` as the baseline), it costs no more CPU per PUT (22.5-23.5 us
against 23-25.7 us in one run), and it is the well-kept, fuzzed implementation of HTTP/1.1 framing
(chunked bodies, interim answers, limits) that ours reimplemented. One thing llhttp cannot be told
is that a HEAD's answer has no body (httptools issue #47): that answer ends at its head here, and
the connection's next answer gets a fresh parser.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Collection
from typing import TypeVar

import httptools

from migrate.errors import TargetError, TransientTargetError, register_secret
from migrate.target.riak.answers import NodeUnavailable, Reply, judge, needs_ping
from migrate.target.riak.client import RiakURL, tls_context
from migrate.target.riak.hosts import PROBE_PATH, Host, HostRing
from migrate.target.riak.loop import Pacing

_T = TypeVar("_T")


class MalformedAnswer(Exception):
    """The server's answer is not HTTP/1.1 as this parser reads it."""


class _HeadDone(Exception):
    """Raised in the parser's callback to end a HEAD's answer at its head (see `data_received`)."""


class Dropped(ConnectionResetError):
    """The connection closed before a whole answer came; `early` when not a byte of it came."""

    def __init__(self, *, early: bool) -> None:
        super().__init__("the server closed the connection")
        self.early = early


class Connection(asyncio.Protocol):
    """One keep-alive connection: send a request in one write, parse its answer as it arrives
    (httptools' llhttp parser; its callbacks are the `on_*` methods)."""

    def __init__(self, host_line: bytes) -> None:
        self.host_line = host_line
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.used = False
        self._waiter: asyncio.Future[Reply] | None = None
        self._head_only = False
        self._parser = httptools.HttpResponseParser(self)
        self._got = False  # a byte of the answer came
        self._until_close = False  # the answer's body ends when the connection does
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self.deadline = 0.0  # on the loop's clock: when the answer in wait times out

    # ---- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._got = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _HeadDone):
                raise
            # llhttp cannot be told that a HEAD's answer has no body (httptools issue #47): the
            # answer ended with its head, so the next one gets a parser of its own
            self._parser = httptools.HttpResponseParser(self)
        except httptools.HttpParserError as exc:
            self._fail(MalformedAnswer(f"{type(exc).__name__}: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self._waiter is not None and not self._waiter.done():
            if self._until_close:
                self._finish()  # httptools has no end-of-input call: the close ends the body
            else:
                self._fail(Dropped(early=not self._got))

    # ---- the parser's callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower().decode("latin-1")
        text = value.decode("utf-8", errors="replace")
        headers = self._headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if self._head_only and status >= 200:
            self._finish()
            raise _HeadDone
        framed = "content-length" in self._headers or "transfer-encoding" in self._headers
        self._until_close = not framed and status >= 200 and status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:  # an interim answer (100 Continue)
            self._headers, self._body = {}, []
            return
        self._finish()

    # ---- use -----------------------------------------------------------------------------------

    def send(self, request: bytes, *, head_only: bool, deadline: float) -> asyncio.Future[Reply]:
        """Write a whole request; the future holds its answer or a foreign exception (a
        TimeoutError once the client's sweep finds `deadline` passed). A connection the server
        closed before the request went (a node stopping closes what it has just accepted) fails
        it as dropped before a byte of the answer came."""
        assert self._waiter is None
        self.used = True
        waiter = asyncio.get_running_loop().create_future()
        if self.transport is None:
            self.closed = True
            waiter.set_exception(Dropped(early=True))
            return waiter
        self._waiter = waiter
        self._head_only = head_only
        self._got = False
        self.deadline = deadline
        self.transport.write(request)
        return self._waiter

    @property
    def waiting(self) -> bool:
        """An answer is awaited."""
        return self._waiter is not None

    def time_out(self) -> None:
        """The answer did not come by its deadline: fail it and drop the connection."""
        self._fail(TimeoutError("no answer in time"))
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.closed = True

    @property
    def reusable(self) -> bool:
        return not self.closed and self._waiter is None and self.transport is not None

    # ---- internals -----------------------------------------------------------------------------

    def _finish(self) -> None:
        waiter, self._waiter = self._waiter, None
        reply = Reply(self._parser.get_status_code(), self._headers, b"".join(self._body))
        self._headers, self._body = {}, []
        if self._until_close or not self._parser.should_keep_alive():
            self.close()
        self._until_close = False
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


_Host = Host[Connection]
_Ring = HostRing[Connection]


class AsyncRiakHTTP:
    """Keep-alive connections per host, used from the event loop thread only."""

    def __init__(
        self,
        url: RiakURL,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 2.0,
        cool_off: float = 5.0,
        user: str | None = None,
        password: str | None = None,
        pacing: Pacing | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.cool_off = cool_off
        self.pacing = pacing or Pacing()
        self.protocol: type[Connection] = Connection  # the bench swaps in the hand-made parser
        # Timeouts: one sweep over the connections every tick while an answer is awaited,
        # rather than a timer per request (a tenth of the client's CPU per PUT).
        self._tick = max(0.01, min(0.5, timeout / 5))
        self._sweep: asyncio.TimerHandle | None = None
        self._ring: _Ring = HostRing(url.hosts)
        self._hosts = self._ring.hosts
        self._context = tls_context(url) if url.tls else None
        self._all: set[Connection] = set()
        self.auth_line = b""
        if user is not None:
            register_secret(password)
            token = base64.b64encode(f"{user}:{password or ''}".encode())
            self.auth_line = b"Authorization: Basic " + token + b"\r\n"

    def every_host_down(self) -> bool:
        return self._ring.every_host_down()

    async def request(
        self,
        method: str,
        path: str,
        head: bytes,
        *,
        ok: Collection[int],
    ) -> Reply:
        """Send `head` (the request line and headers after Host, body included); judge the answer.

        `head` must start with the request line and end with the body: the Host header is put
        right after the request line, per host. A keep-alive connection the node closed while idle
        is retried once at once on a fresh one; any other failure is a TransientTargetError.
        """
        pacing = self.pacing
        pacing.in_flight += 1
        try:
            host = self._ring.pick()
            conn = self._idle(host)
            if conn is None:
                host, conn = await self._borrow_any(method, path)
            return await self._exchange(host, conn, method, path, head, ok=ok)
        finally:
            pacing.in_flight -= 1

    async def _exchange(
        self,
        host: _Host,
        conn: Connection,
        method: str,
        path: str,
        head: bytes,
        *,
        ok: Collection[int],
    ) -> Reply:
        line_end = head.index(b"\r\n") + 2
        for attempt in (1, 2):
            if attempt == 2:
                conn = await self._borrow(host, method, path, fresh=True)
            reused = conn.used
            request = b"".join((head[:line_end], conn.host_line, head[line_end:]))
            try:
                reply = await conn.send(
                    request, head_only=method == "HEAD", deadline=self._deadline()
                )
            except Dropped as exc:
                conn.close()
                if reused and exc.early and attempt == 1:
                    continue
                raise self._failed(host, method, path, "the connection was dropped") from exc
            except TimeoutError as exc:
                conn.close()
                reason = f"no answer within {self.timeout:g}s"
                raise self._failed(host, method, path, reason) from exc
            except MalformedAnswer as exc:
                conn.close()
                raise self._failed(host, method, path, f"a malformed answer ({exc})") from exc
            except BaseException:
                conn.close()  # cancelled mid-request: the connection's state is unknown
                raise
            self._give_back(host, conn)
            if reply.status in ok and not needs_ping(reply):
                return reply  # the common case, judged without building a message
            up = not needs_ping(reply) or await self._answers(host, "/ping", (200,))
            where = f"{method} {path} on {host.host}:{host.port}"
            try:
                return judge(reply, ok, where, self.url.display, node_up=up)
            except NodeUnavailable:
                host.mark_down(self.cool_off)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def serving(self) -> bool:
        """True when some host serves again: /ping answers OK and riak_kv answers a read (the
        probe of a load waiting out an outage; hosts that serve are no longer cooled off)."""
        found = False
        for host in self._hosts:
            ping = await self._answers(host, "/ping", (200,))
            if ping and await self._answers(host, PROBE_PATH, (200, 404)):
                host.mark_up()
                found = True
        return found

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        for host in self._hosts:
            host.idle.clear()
        for _ in range(3):
            await asyncio.sleep(0)  # let connection_lost callbacks run before the loop closes

    # ---- internals ---------------------------------------------------------------------------

    async def _borrow_any(self, method: str, path: str) -> tuple[_Host, Connection]:
        """A connection to the next healthy host; a host that cannot be reached is put in
        cool-off and the next one tried, so a dead host beside live ones costs no failure."""
        failures = 0
        while True:
            host = self._ring.pick()
            try:
                return host, await self._borrow(host, method, path, fresh=False)
            except TransientTargetError:
                failures += 1
                if failures >= len(self._hosts) or self.every_host_down():
                    raise

    def _deadline(self) -> float:
        """The deadline of a request sent now, with the sweep that will enforce it scheduled."""
        loop = asyncio.get_running_loop()
        if self._sweep is None:
            self._sweep = loop.call_later(self._tick, self._sweep_connections, loop)
        return loop.time() + self.timeout

    def _sweep_connections(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        now = loop.time()
        awaited = False
        for conn in list(self._all):
            if conn.waiting and conn.deadline <= now:
                conn.time_out()
            awaited = awaited or conn.waiting
        if awaited:
            self._sweep = loop.call_later(self._tick, self._sweep_connections, loop)

    def _idle(self, host: _Host) -> Connection | None:
        """An idle keep-alive connection of `host` that is still open, if any."""
        idle = host.idle
        while idle:
            conn = idle.pop()
            if conn.reusable:
                return conn
            self._all.discard(conn)
        return None

    async def _borrow(self, host: _Host, method: str, path: str, *, fresh: bool) -> Connection:
        if not fresh:
            idle = self._idle(host)
            if idle is not None:
                return idle
        loop = asyncio.get_running_loop()
        name = f"[{host.host}]" if ":" in host.host else host.host
        default = 443 if self.url.tls else 80
        host_line = f"Host: {name}" + ("" if host.port == default else f":{host.port}")
        line = host_line.encode("idna" if not host.host.isascii() else "ascii") + b"\r\n"
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: self.protocol(line),
                    host.host,
                    host.port,
                    ssl=self._context,
                    server_hostname=host.host if self._context is not None else None,
                ),
                self.connect_timeout,
            )
        except ssl.SSLCertVerificationError as exc:
            raise self._untrusted(host, exc) from exc
        except TimeoutError as exc:
            raise self._failed(host, method, path, "connect timed out") from exc
        except OSError as exc:
            reason = f"cannot connect: {exc.strerror or type(exc).__name__}"
            raise self._failed(host, method, path, reason) from exc
        self._all.add(conn)
        return conn

    async def _answers(self, host: _Host, path: str, statuses: Collection[int]) -> bool:
        """Whether `host` answers GET `path` with one of `statuses` from Riak KV itself (OK for
        /ping, text/plain for a 404), on a connection of its own; any failure is a no."""
        try:
            conn = await self._borrow(host, "GET", path, fresh=True)
        except TargetError:
            return False
        request = b"GET %s HTTP/1.1\r\n%s%s\r\n" % (path.encode(), conn.host_line, self.auth_line)
        try:
            reply = await conn.send(request, head_only=False, deadline=self._deadline())
        except (OSError, MalformedAnswer):
            return False
        finally:
            conn.close()
            self._all.discard(conn)
        if reply.status not in statuses or needs_ping(reply):
            return False
        return path != "/ping" or reply.body.strip() == b"OK"

    def _give_back(self, host: _Host, conn: Connection) -> None:
        host.mark_up()
        if conn.reusable:
            host.idle.append(conn)
        else:
            self._all.discard(conn)

    def _failed(self, host: _Host, method: str, path: str, reason: str) -> TargetError:
        host.mark_down(self.cool_off)
        return TransientTargetError(
            f"Riak at {self.url.display} did not answer {method} {path} on "
            f"{host.host}:{host.port}: {reason}",
            hint="check that the node is up and reachable (riak ping); the load resumes on rerun",
        )

    def _untrusted(self, host: _Host, exc: ssl.SSLCertVerificationError) -> TargetError:
        return TargetError(
            f"{self.url.display}: the TLS certificate of {host.host} is not trusted ({exc.reason})",
            hint="pass the CA bundle that signed it as ?ca=/path/ca.pem in the target URL",
        )
