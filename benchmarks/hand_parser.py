"""The write path's own HTTP/1.1 answer parser, as it was before httptools replaced it: kept as
the baseline of the bench's `client CPU per PUT, hand-made parser` figure, which is how the choice
in `migrate.target.riak.wire` was made (and can be made again)."""

from __future__ import annotations

import asyncio

from migrate.target.riak.answers import Reply
from migrate.target.riak.wire import Connection, Dropped, MalformedAnswer

MAX_HEAD_BYTES = 64 * 1024
_NO_BODY = frozenset((204, 304))


class HandConnection(Connection):
    """`wire.Connection` with the hand-made parser in place of httptools."""

    def __init__(self, host_line: bytes) -> None:
        super().__init__(host_line)
        self._buffer = bytearray()
        self._status = 0
        self._headers: dict[str, str] = {}
        self._length = -1  # body bytes still expected; -1: until close, -2: chunked
        self._received = bytearray()  # the body so far
        self._keep_alive = True
        self._in_body = False

    # ---- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._buffer += data
        try:
            self._parse()
        except (MalformedAnswer, ValueError) as exc:
            self._fail(exc if isinstance(exc, MalformedAnswer) else MalformedAnswer(str(exc)))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self._waiter is not None and not self._waiter.done():
            if self._in_body and self._length == -1:
                self._finish()  # a body delimited by the connection's close
            else:
                early = not self._buffer and not self._in_body
                self._fail(Dropped(early=early))

    # ---- use -----------------------------------------------------------------------------------

    def send(self, request: bytes, *, head_only: bool, deadline: float) -> asyncio.Future[Reply]:
        """Write a whole request; the future holds its answer or a foreign exception."""
        assert self.transport is not None and self._waiter is None
        loop = asyncio.get_running_loop()
        self.used = True
        self._waiter = loop.create_future()
        self._head_only = head_only
        self._in_body = False
        self._buffer.clear()
        self.deadline = deadline
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.closed = True

    @property
    def reusable(self) -> bool:
        return not self.closed and self._waiter is None and self.transport is not None

    # ---- parsing -------------------------------------------------------------------------------

    def _parse(self) -> None:
        while not self._in_body:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise MalformedAnswer("the answer's head is too long")
                return
            head = bytes(self._buffer[:end])
            del self._buffer[: end + 4]
            self._start(head)
        if self._length >= 0:
            if len(self._buffer) >= self._length:
                self._received += self._buffer[: self._length]
                del self._buffer[: self._length]
                self._finish()
        elif self._length == -2:
            self._chunks()
        else:
            self._received += self._buffer
            self._buffer.clear()

    def _start(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        if not version.startswith(b"HTTP/1."):
            raise MalformedAnswer("the answer is not HTTP/1.x")
        status = int(rest[:3])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise MalformedAnswer("an answer header has no ':'")
            key = name.strip().lower().decode("latin-1")
            text = value.strip().decode("utf-8", errors="replace")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if 100 <= status < 200:
            return  # an interim answer (100 Continue): the real one follows
        self._status, self._headers = status, headers
        connection = headers.get("connection", "").lower()
        self._keep_alive = "close" not in connection and (
            version == b"HTTP/1.1" or "keep-alive" in connection
        )
        self._received = bytearray()
        self._in_body = True
        if self._head_only or status in _NO_BODY:
            self._length = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._length = -2
        elif "content-length" in headers:
            self._length = int(headers["content-length"].split(",")[0])
            if self._length < 0:
                raise MalformedAnswer("a negative Content-Length")
        else:
            self._length = -1
            self._keep_alive = False

    def _chunks(self) -> None:
        buffer = self._buffer
        while True:
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(buffer[:line_end]).split(b";")[0].strip(), 16)
            if size == 0:
                trailers_end = buffer.find(b"\r\n\r\n", line_end)
                if buffer[line_end : line_end + 4] == b"\r\n\r\n":
                    trailers_end = line_end
                if trailers_end < 0:
                    return
                del buffer[: trailers_end + 4]
                self._finish()
                return
            start = line_end + 2
            if len(buffer) < start + size + 2:
                return
            self._received += buffer[start : start + size]
            del buffer[: start + size + 2]

    def _finish(self) -> None:
        waiter, self._waiter = self._waiter, None
        self._in_body = False
        if not self._keep_alive:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(Reply(self._status, self._headers, bytes(self._received)))

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
