"""Loopback servers for the benchmarks, each in a process of its own.

A client's CPU is only measurable when the server's is not in the same process, so both servers run
in a child process and report their request counts over a pipe:

- `sink`: a minimal HTTP/1.1 keep-alive server (asyncio) answering every request with 204, every
  HEAD with Riak's 404 and bucket props with a bucket that keeps no siblings, so a client's cost
  per request is measured without a server's work;
- `fake`: the Riak fake of the test suite (`tests/riak_fake.py`), a stand-in for a node.

Both listen on 127.0.0.1 only, and the child ends when told, when the parent goes away (the pipe
closes) or after `MAX_LIFETIME` seconds, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import multiprocessing
import sys
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

from migrate.errors import MigrateError

Kind = Literal["sink", "fake"]
HOST = "127.0.0.1"
MAX_LIFETIME = 900.0
START_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0
MAX_HEAD_BYTES = 64 * 1024
TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"

NO_CONTENT = b"HTTP/1.1 204 No Content\r\nServer: migrate-bench-sink\r\n\r\n"
_PROPS_BODY = b'{"props":{"allow_mult":false,"n_val":3}}'
BUCKET_PROPS = (
    b"HTTP/1.1 200 OK\r\nServer: migrate-bench-sink\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(_PROPS_BODY)).encode() + b"\r\n\r\n" + _PROPS_BODY
)
# Riak's answer to HEAD of a missing object; a HEAD answer carries no body despite its length.
NOT_FOUND_HEAD = (
    b"HTTP/1.1 404 Object Not Found\r\nServer: migrate-bench-sink\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 10\r\n\r\n"
)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
NOT_IMPLEMENTED = b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class ServerError(MigrateError):
    """A benchmark server could not start or stopped answering."""


# ---- the sink ------------------------------------------------------------------------------------


class SinkProtocol(asyncio.Protocol):
    """One keep-alive connection: parse each request head, skip its body, answer at once.

    Requests must carry their body with Content-Length (chunked uploads get 501 and a close);
    pipelined requests are answered in order, in one write per read.
    """

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self.buffer = bytearray()
        self.body_left = 0
        self.answer = b""
        self.close_after = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.counts["connections"] += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out: list[bytes] = []
        while self.transport is not None:
            if self.body_left:
                taken = min(self.body_left, len(self.buffer))
                del self.buffer[:taken]
                self.body_left -= taken
                if self.body_left:
                    break
                out.append(self.answer)
                if self.close_after:
                    self._finish(out)
                    return
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    self._finish([*out, BAD_REQUEST])
                    return
                break
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            if not self._start(head, out):
                return
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def _start(self, head: bytes, out: list[bytes]) -> bool:
        """Read one request head; False when the connection was closed over it."""
        method, _, _ = head.partition(b" ")
        length = 0
        self.close_after = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                text = value.strip()
                if not text.isdigit():
                    self._finish([*out, BAD_REQUEST])
                    return False
                length = int(text)
            elif name == b"transfer-encoding":
                self._finish([*out, NOT_IMPLEMENTED])
                return False
            elif name == b"connection" and value.strip().lower() == b"close":
                self.close_after = True
        self.counts[method.decode("ascii", "replace")] += 1
        if method == b"HEAD":
            self.answer = NOT_FOUND_HEAD
        elif method == b"GET" and head.split(b" ", 2)[1].split(b"?")[0].endswith(b"/props"):
            self.answer = BUCKET_PROPS  # the client asks once whether a bucket keeps siblings
        else:
            self.answer = NO_CONTENT
        self.body_left = length
        if length == 0:
            out.append(self.answer)
            if self.close_after:
                self._finish(out)
                return False
        return True

    def _finish(self, out: list[bytes]) -> None:
        if self.transport is not None:
            self.transport.write(b"".join(out))
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def _run_sink(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    counts: Counter[str] = Counter()
    server = await loop.create_server(lambda: SinkProtocol(counts), HOST, 0, backlog=512)
    port = server.sockets[0].getsockname()[1]
    conn.send(("ready", port))
    stop = loop.create_future()

    def on_command() -> None:
        try:
            command = conn.recv()
        except (EOFError, OSError):
            command = ("stop",)
        if command[0] == "counts":
            conn.send(dict(counts))
        elif command[0] == "reset":
            counts.clear()
            conn.send(True)
        elif not stop.done():
            loop.remove_reader(conn.fileno())
            stop.set_result(None)

    loop.add_reader(conn.fileno(), on_command)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop, MAX_LIFETIME)
    server.close()


# ---- the fake ------------------------------------------------------------------------------------


def _run_fake(conn: Connection) -> None:
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    # The test suite's fake, not part of the package (so not type-checked with it).
    fake: Any = importlib.import_module("riak_fake").RiakFake().start()
    conn.send(("ready", fake.port))
    deadline = time.monotonic() + MAX_LIFETIME
    try:
        while time.monotonic() < deadline:
            if not conn.poll(1.0):
                continue
            try:
                command = conn.recv()
            except (EOFError, OSError):
                return
            if command[0] == "counts":
                conn.send(dict(fake.requests))
            elif command[0] == "reset":
                fake.reset()
                conn.send(True)
            elif command[0] == "keys":
                conn.send(len(fake.keys(command[1], command[2])))
            else:
                return
    finally:
        fake.stop()


def _serve(kind: Kind, conn: Connection) -> None:
    """The child process's entry point."""
    if kind == "sink":
        asyncio.run(_run_sink(conn))
    else:
        _run_fake(conn)


# ---- the parent's handle -------------------------------------------------------------------------


class ServerProcess:
    """A sink or fake in a child process (spawned: the parent may already run threads)."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._child_conn: Connection | None = child
        self._process = context.Process(
            target=_serve, args=(kind, child), name=f"bench-{kind}", daemon=True
        )
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> ServerProcess:
        self._process.start()
        if self._child_conn is not None:
            self._child_conn.close()  # the child holds its end; EOF then means it is gone
            self._child_conn = None
        try:
            if not self._conn.poll(START_TIMEOUT):
                raise EOFError
            _, self.port = self._conn.recv()
        except (EOFError, OSError) as exc:
            self.stop()
            raise ServerError(
                f"the benchmark {self.kind} did not start within {START_TIMEOUT:g}s",
                hint="check that this machine can spawn Python processes and bind 127.0.0.1; "
                "a script starting it needs the `if __name__ == '__main__':` guard",
            ) from exc
        return self

    def _call(self, *command: Any) -> Any:
        try:
            self._conn.send(command)
            if not self._conn.poll(CALL_TIMEOUT):
                raise EOFError
            return self._conn.recv()
        except (EOFError, OSError) as exc:
            raise ServerError(
                f"the benchmark {self.kind} stopped answering ({command[0]})",
                hint="run the benchmark again; its server process may have been killed",
            ) from exc

    def counts(self) -> Counter[str]:
        """Requests served so far, by method (and `connections` accepted, for the sink)."""
        return Counter(self._call("counts"))

    def reset(self) -> None:
        """Zero the counters (and, for the fake, forget every object)."""
        self._call("reset")

    def stored_keys(self, bucket_type: str, bucket: str) -> int:
        """How many live keys the fake holds in a bucket."""
        if self.kind != "fake":
            raise ServerError("only the fake stores objects")
        return int(self._call("keys", bucket_type, bucket))

    def stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(("stop",))
            self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()  # our own child, by its handle
            self._process.join(5)
        self._conn.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
