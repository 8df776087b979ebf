"""The asyncio write path: HTTP/1.1 framing against a scripted server (with httptools, and with the
hand-made parser it replaced, kept as the bench's baseline: both read every answer alike),
keep-alive loss, the create-only PUT (412) path and the adaptive read-first switch, against the
fake node."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
import xxhash
from riak_fake import RiakFake

from benchmarks.hand_parser import HandConnection
from migrate.document import Document
from migrate.errors import TransientTargetError
from migrate.target.riak import RiakTarget, parse_url, wire
from migrate.target.riak.loader import WINDOW
from migrate.target.riak.wire import AsyncRiakHTTP

META = {"migrate-run": "run-1"}


def doc(key: str, value: object, *, bucket: str = "b", bucket_type: str = "default") -> Document:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return Document(bucket_type, bucket, key, raw, (), xxhash.xxh3_128_hexdigest(raw))


# ---- a scripted HTTP server ---------------------------------------------------------------------

Script = Callable[[socket.socket, int], bool]  # (connection, request number) -> keep it open


class Scripted:
    """A loopback server that reads each request head (and its Content-Length body) and lets the
    test write the raw answer bytes, so framing cases a real node rarely sends are exercised."""

    def __init__(self, answer: Script) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                self.requests.append(head)
                if not self.answer(conn, len(self.requests)):
                    return

    def close(self) -> None:
        self._sock.close()


@pytest.fixture(params=["httptools", "hand-made"])
def scripted(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[Script], Scripted]]:
    """Start scripted servers; the clients of the test parse with httptools, or with the
    hand-made parser."""
    if request.param == "hand-made":
        monkeypatch.setattr(wire, "Connection", HandConnection)
    servers: list[Scripted] = []

    def start(answer: Script) -> Scripted:
        servers.append(Scripted(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def exchange(port: int, *requests: tuple[str, bytes]) -> list[tuple[int, bytes, dict[str, str]]]:
    """Send requests one after another through one AsyncRiakHTTP; (status, body, headers)."""

    async def run() -> list[tuple[int, bytes, dict[str, str]]]:
        client = AsyncRiakHTTP(parse_url(f"riak://127.0.0.1:{port}"), timeout=2.0)
        try:
            out = []
            for method, extra in requests:
                head = f"{method} /k HTTP/1.1\r\n".encode() + extra + b"\r\n"
                reply = await client.request(method, "/k", head, ok=(200, 204, 404))
                out.append((reply.status, reply.body, reply.headers))
            return out
        finally:
            await client.close()

    return asyncio.run(run())


def test_chunked_answers_split_anywhere_are_read_whole(
    scripted: Callable[[Script], Scripted],
) -> None:
    body = "Siân, chunked: " + "x" * 3000
    encoded = body.encode()
    pieces = [encoded[:7], encoded[7:2000], encoded[2000:]]
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Riak-Meta-A: 1\r\n\r\n"
    wire += b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    wire += b"0\r\nX-Trailer: t\r\n\r\n"

    def answer(conn: socket.socket, _: int) -> bool:
        for start in range(0, len(wire), 5):  # five bytes at a time: every boundary is split
            conn.sendall(wire[start : start + 5])
        return True

    server = scripted(answer)
    first, second = exchange(server.port, ("GET", b""), ("GET", b""))
    assert first[0] == 200 and first[1].decode() == body and first[2]["x-riak-meta-a"] == "1"
    assert second[1] == encoded and server.connections == 1  # kept alive after the last chunk


def test_framing_by_length_by_close_and_without_body(
    scripted: Callable[[Script], Scripted],
) -> None:
    answers = {
        1: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        2: b"HTTP/1.1 404 Object Not Found\r\nContent-Length: 10\r\n\r\n",  # HEAD: no body
        3: b"HTTP/1.1 204 No Content\r\n\r\n",
        4: b"HTTP/1.0 200 OK\r\n\r\nuntil the close",
    }

    def answer(conn: socket.socket, number: int) -> bool:
        conn.sendall(answers[number])
        return number != 4

    server = scripted(answer)
    replies = exchange(
        server.port, ("GET", b""), ("HEAD", b""), ("PUT", b"Content-Length: 0\r\n"), ("GET", b"")
    )
    assert [(s, b) for s, b, _ in replies] == [
        (200, b"abc"),
        (404, b""),
        (204, b""),
        (200, b"until the close"),
    ]
    assert server.connections == 1


def test_an_answer_that_is_not_http_is_a_transient_failure_and_the_connection_is_dropped(
    scripted: Callable[[Script], Scripted],
) -> None:
    def answer(conn: socket.socket, number: int) -> bool:
        if number == 1:
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\nProtocol mismatch.\r\n\r\n")
            return True
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
        return True

    server = scripted(answer)
    with pytest.raises(TransientTargetError, match="malformed answer"):
        exchange(server.port, ("GET", b""))
    assert exchange(server.port, ("PUT", b"Content-Length: 0\r\n"))[0][0] == 204


def test_a_keep_alive_connection_closed_between_requests_is_retried_on_a_new_one(
    scripted: Callable[[Script], Scripted],
) -> None:
    def answer(conn: socket.socket, number: int) -> bool:
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
        return number % 2 == 0  # closes after every other answer, without saying so

    server = scripted(answer)
    replies = exchange(server.port, *[("PUT", b"Content-Length: 0\r\n")] * 5)
    assert [status for status, _, _ in replies] == [204] * 5
    assert server.connections == 3  # 1, 2-3, 4-5: each lost connection replaced once


def test_a_connection_lost_mid_answer_is_a_transient_failure(
    scripted: Callable[[Script], Scripted],
) -> None:
    def answer(conn: socket.socket, _: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        return False

    server = scripted(answer)
    with pytest.raises(TransientTargetError, match="dropped") as caught:
        exchange(server.port, ("GET", b""))
    assert isinstance(caught.value.__cause__, ConnectionResetError)


def test_a_connection_closed_before_its_request_went_fails_as_dropped() -> None:
    """A node that is stopping closes connections it has just accepted: one lost before its
    request was written fails that request as dropped (a transient failure the load retries),
    never as an internal error."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def refuse() -> None:
        conn, _ = server.accept()
        conn.close()

    thread = threading.Thread(target=refuse, daemon=True)
    thread.start()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: wire.Connection(b"Host: 127.0.0.1\r\n"), "127.0.0.1", port
        )
        while conn.transport is not None:  # the close has reached this side
            await asyncio.sleep(0.01)
        answer = conn.send(b"GET /ping HTTP/1.1\r\n\r\n", head_only=False, deadline=1.0)
        with pytest.raises(wire.Dropped) as caught:
            await answer
        assert caught.value.early and conn.closed and not conn.reusable

    try:
        asyncio.run(run())
    finally:
        server.close()
        thread.join(5)


def test_a_silent_server_times_out(scripted: Callable[[Script], Scripted]) -> None:
    server = scripted(lambda conn, _: conn.recv(10) is None)  # waits; never answers

    async def run() -> None:
        client = AsyncRiakHTTP(parse_url(f"riak://127.0.0.1:{server.port}"), timeout=0.2)
        try:
            await client.request("GET", "/k", b"GET /k HTTP/1.1\r\n\r\n", ok=(200,))
        finally:
            await client.close()

    with pytest.raises(TransientTargetError, match=r"no answer within 0\.2s") as caught:
        asyncio.run(run())
    assert isinstance(caught.value.__cause__, TimeoutError)


# ---- against the fake -------------------------------------------------------------------------


def test_dropped_connections_are_retried_and_the_write_is_exact(riak_fake: RiakFake) -> None:
    riak_fake.faults.drop_rate = 0.3
    riak = RiakTarget(riak_fake.url, max_in_flight=8, max_attempts=20, backoff_initial=0.005)
    docs = [doc(f"k{n}", {"n": n}, bucket_type="siblings") for n in range(120)]
    try:
        assert riak.write(docs, meta=META).written == len(docs)
    finally:
        riak.close()
    assert riak_fake.injected["drop"] > 20
    for d in docs:
        assert riak_fake.siblings("siblings", "b", d.key) == [d.value]


def test_an_existing_key_is_refused_then_read_then_updated_with_its_vclock(
    riak_fake: RiakFake,
) -> None:
    bucket_type = "default"
    old, new = (
        doc("k", {"v": 1}, bucket_type=bucket_type),
        doc("k", {"v": 2}, bucket_type=bucket_type),
    )
    riak = RiakTarget(riak_fake.url, max_in_flight=1)
    try:
        assert riak.write([old], meta=META).written == 1
        assert (riak_fake.requests["PUT"], riak_fake.requests["HEAD"]) == (1, 0)
        stats = riak.write([new], meta=META)
        assert (stats.written, stats.unchanged) == (1, 0)
        # a refused create-only PUT (412), the HEAD for the vclock, the update
        assert (riak_fake.requests["PUT"], riak_fake.requests["HEAD"]) == (3, 1)
        assert riak_fake.writes == 2
        assert riak_fake.siblings(bucket_type, "b", "k") == [new.value]
        again = RiakTarget(riak_fake.url, max_in_flight=1)  # a new target: creates first again
        try:
            assert again.write([new], meta=META).unchanged == 1
        finally:
            again.close()
        assert riak_fake.writes == 2 and riak_fake.requests["PUT"] == 4
    finally:
        riak.close()


def test_a_bucket_that_keeps_siblings_is_always_read_before_it_is_written(
    riak_fake: RiakFake,
) -> None:
    """allow_mult: a create-only PUT over a tombstone would leave it as a sibling, so every write
    reads the vclock first (the bucket's props are asked once)."""
    old, new = (
        doc("k", {"v": 1}, bucket_type="siblings"),
        doc("k", {"v": 2}, bucket_type="siblings"),
    )
    riak = RiakTarget(riak_fake.url, max_in_flight=1)
    try:
        assert riak.write([old], meta=META).written == 1
        assert (riak_fake.requests["PUT"], riak_fake.requests["HEAD"]) == (1, 1)
        assert riak.write([new], meta=META).written == 1
        assert (riak_fake.requests["PUT"], riak_fake.requests["HEAD"]) == (2, 2)
        assert riak.write([new], meta=META).unchanged == 1
        assert (riak_fake.requests["PUT"], riak_fake.requests["HEAD"]) == (2, 3)
        assert riak_fake.siblings("siblings", "b", "k") == [new.value]
        props_reads = riak_fake.requests["GET"]
        assert props_reads == 1
    finally:
        riak.close()


def test_a_rerun_switches_to_reading_first_and_back_when_keys_are_new(riak_fake: RiakFake) -> None:
    riak = RiakTarget(riak_fake.url, max_in_flight=1)  # one at a time: a deterministic order
    loaded = [doc(f"k{n:02}", n) for n in range(40)]
    try:
        assert riak.write(loaded, meta=META).written == 40
        assert (riak_fake.requests["PUT"], riak_fake.requests["HEAD"]) == (40, 0)

        assert riak.write(loaded, meta=META).unchanged == 40
        refused = riak_fake.requests["PUT"] - 40
        # refused PUTs only until most of the window said "exists"; HEAD only after that
        assert 1 <= refused <= WINDOW // 2 + 1
        assert riak_fake.requests["HEAD"] == 40 and riak_fake.writes == 40

        fresh = [doc(f"new{n:02}", n) for n in range(40)]
        heads_before, puts_before = riak_fake.requests["HEAD"], riak_fake.requests["PUT"]
        assert riak.write(fresh, meta=META).written == 40
        heads = riak_fake.requests["HEAD"] - heads_before
        assert 1 <= heads <= WINDOW // 2 + 1  # reads first only until misses dominate
        assert riak_fake.requests["PUT"] - puts_before == 40  # every new key: one PUT
    finally:
        riak.close()
    assert riak_fake.keys("default", "b") == sorted(d.key for d in [*loaded, *fresh])
