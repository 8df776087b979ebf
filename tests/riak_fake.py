"""A faithful fake of Riak KV's HTTP API on loopback, with fault injection, for the adapter tests.

Built to Riak's documentation and to the exchanges recorded from a real Riak 3.2 node in
`/work/shared/riak-http/` (a test replays every one of them against this fake). It keeps objects
with dotted version vectors per key, so a blind PUT on an `allow_mult` type makes a sibling and a
PUT carrying the current vclock replaces them all, as Riak does. A DELETE leaves a tombstone (a 404
that still carries the vclock) until it is reaped `delete_mode` seconds later (3, Riak's default)
on the fake's clock, which `advance` moves on without waiting.

Secondary indexes are kept as a real node's sorted backend keeps them: per bucket and index, a
sorted list of (term, key) entries updated on every write and delete, so an exact or range query
costs O(log n + page) whatever the bucket's size. As on Riak: a paginated query comes sorted by
term then key, a page that is full carries a continuation (even when nothing follows, so the next
page is empty), a continuation is stateless (entries added or removed between pages show or vanish
as they fall after it or not), and an unpaginated query comes in no particular order.

Faults are drawn from a seeded RNG per request: a rate of 503s, drops (the connection is closed
without an answer), stalls (the request is applied, then the answer never comes before the client's
timeout) and a fixed delay before every answer. A node's life is played as a real node answers
(`tests/riak_recordings/09-stopping-starting.txt`, `10-quorum.txt`): `state` "stopping" answers
every path, /ping included, with the web server's 404 page; "starting" answers /ping but no read,
write or index query; `primaries_up` below a request's pw or pr refuses it with a 503.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import socket
import ssl
import string
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from sortedcontainers import SortedList

IndexTerm = str | int
# An index entry as the sorted lists hold it: the term (bytes of a _bin term, an _int's integer)
# then the key's bytes, so tuples sort as Riak sorts a paginated answer.
Entry = tuple[bytes | int, bytes]
KEY_INDEX = "$key"  # every live key of a bucket, which `$bucket` and `$key` queries read

DEFAULT_PROPS: dict[str, Any] = {
    "allow_mult": False,
    "basic_quorum": False,
    "big_vclock": 50,
    "chash_keyfun": {"mod": "riak_core_util", "fun": "chash_std_keyfun"},
    "dvv_enabled": False,
    "dw": "quorum",
    "last_write_wins": False,
    "linkfun": {"mod": "riak_kv_wm_link_walker", "fun": "mapreduce_linkfun"},
    "n_val": 3,
    "node_confirms": 0,
    "notfound_ok": True,
    "old_vclock": 86400,
    "postcommit": [],
    "pr": 0,
    "precommit": [],
    "pw": 0,
    "r": "quorum",
    "repl": True,
    "rw": "quorum",
    "small_vclock": 50,
    "sync_on_write": "backend",
    "w": "quorum",
    "write_once": False,
    "young_vclock": 20,
}

SIBLINGS_TYPE_PROPS: dict[str, Any] = {
    "young_vclock": 20,
    "w": "quorum",
    "sync_on_write": "backend",
    "small_vclock": 50,
    "rw": "quorum",
    "r": "quorum",
    "pw": 0,
    "precommit": [],
    "pr": 0,
    "postcommit": [],
    "old_vclock": 86400,
    "notfound_ok": True,
    "node_confirms": 0,
    "n_val": 3,
    "linkfun": {"mod": "riak_kv_wm_link_walker", "fun": "mapreduce_linkfun"},
    "last_write_wins": False,
    "dw": "quorum",
    "dvv_enabled": True,
    "chash_keyfun": {"mod": "riak_core_util", "fun": "chash_std_keyfun"},
    "big_vclock": 50,
    "basic_quorum": False,
    "allow_mult": True,
    "active": True,
    "claimant": "riak@127.0.0.1",
}

NOT_FOUND = b"not found\n"
PRECONDITION_FAILED = (
    b"<html><head><title>412 Precondition Failed</title></head><body><h1>Precondition Failed</h1>"
    b"<p><hr><address>mochiweb+webmachine web server</address></body></html>"
)
NO_ROUTE = (
    b"<HTML><HEAD><TITLE>404 Not Found</TITLE></HEAD><BODY><H1>Not Found</H1>The requested "
    b"document was not found on this server.<P><HR><ADDRESS>mochiweb+webmachine web server"
    b"</ADDRESS></BODY></HTML>"
)
NOT_SERVING = (
    b"<html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server "
    b"Error</h1>The server encountered an error while processing this request:<br><pre>"
    b"{error,insufficient_vnodes_available}</pre><P><HR><ADDRESS>mochiweb+webmachine web server"
    b"</ADDRESS></body></html>"
)
NOT_ACCEPTABLE = (
    b"<html><head><title>406 Not Acceptable</title></head><body><h1>Not Acceptable</h1><p><hr>"
    b"<address>mochiweb+webmachine web server</address></body></html>"
)
DELETE_MODE = 3.0  # seconds a tombstone is kept, as Riak's delete_mode default
LINK_WALK = (
    b"Invalid link walk query submitted. Valid link walk query format is: "
    b"/riak/some_bucket/some_key/<bucket>,<riaktag>,0|1/..."
)
QUORUM_NAMES = ("r", "pr", "w", "dw", "pw", "rw", "node_confirms")
QUORUM_WORDS = ("one", "quorum", "all", "default")
REASONS = {
    200: "OK",
    204: "No Content",
    300: "Multiple Choices",
    400: "Bad Request",
    401: "Unauthorized",
    406: "Not Acceptable",
    404: "Object Not Found",
    412: "Precondition Failed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
VTAG_ALPHABET = string.ascii_letters + string.digits


@dataclass
class Faults:
    """Fault injection, changeable while the fake runs. Rates are fractions of all requests."""

    error_rate: float = 0.0
    drop_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 2.0
    delay: float = 0.0


@dataclass
class Sibling:
    vtag: str
    value: bytes
    content_type: str
    indexes: dict[str, list[IndexTerm]]
    meta: list[tuple[str, str]]
    modified: float
    dot: int
    deleted: bool = False  # a tombstone: what a DELETE leaves until it is reaped


@dataclass
class StoredKey:
    clock: dict[str, int]
    siblings: list[Sibling] = field(default_factory=list)
    deleted: bool = False
    deleted_at: float = 0.0  # on the fake's clock, for reaping the tombstone


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


def _text(status: int, body: bytes, content_type: str = "text/plain") -> Response:
    return Response(status, [("Content-Type", content_type)], body)


def utf8_header(value: str) -> str:
    """A header value as http.server hands it over (latin-1) read back as the UTF-8 it was."""
    return value.encode("latin-1").decode("utf-8", errors="replace")


def wire_header(value: str) -> str:
    """A header value to send as UTF-8 bytes through http.server's latin-1 encoding."""
    return value.encode("utf-8").decode("latin-1")


def _etf(term: IndexTerm) -> bytes:
    """Erlang external term encoding of a binary or an integer, as Riak's continuations hold."""
    if isinstance(term, int):
        if 0 <= term < 256:
            return bytes([97, term])
        if -(2**31) <= term < 2**31:
            return b"b" + struct.pack(">i", term)
        digits = abs(term).to_bytes((abs(term).bit_length() + 7) // 8, "little")
        return bytes([110, len(digits), 1 if term < 0 else 0]) + digits
    raw = term.encode("utf-8")
    return b"m" + struct.pack(">I", len(raw)) + raw


def _etf_read(data: bytes, pos: int) -> tuple[IndexTerm, int]:
    tag = data[pos]
    if tag == 97:
        return data[pos + 1], pos + 2
    if tag == 98:
        return struct.unpack(">i", data[pos + 1 : pos + 5])[0], pos + 5
    if tag == 110:
        size, sign = data[pos + 1], data[pos + 2]
        value = int.from_bytes(data[pos + 3 : pos + 3 + size], "little")
        return (-value if sign else value), pos + 3 + size
    if tag == 109:
        (size,) = struct.unpack(">I", data[pos + 1 : pos + 5])
        return data[pos + 5 : pos + 5 + size].decode("utf-8"), pos + 5 + size
    raise ValueError("unsupported term")


def encode_continuation(term: IndexTerm, key: str) -> str:
    return base64.b64encode(b"\x83h\x02" + _etf(term) + _etf(key)).decode("ascii")


def decode_continuation(token: str) -> tuple[IndexTerm, str]:
    data = base64.b64decode(token, validate=True)
    if data[:3] != b"\x83h\x02":
        raise ValueError("not a continuation")
    term, pos = _etf_read(data, 3)
    key, _ = _etf_read(data, pos)
    return term, str(key)


class RiakFake:
    """The fake node: state, fault settings and request counters, served on 127.0.0.1."""

    def __init__(self, *, seed: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.faults = Faults()
        self.requests: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.auth: tuple[str, str] | None = None
        self.state = "up"  # "stopping", "starting": see the module's docstring
        self.primaries_up: int | None = None  # None: every primary replica is up
        self.delete_mode = DELETE_MODE
        self._clock_offset = 0.0
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._actor = f"fake-{seed:04x}"
        self._types: dict[str, dict[str, Any]] = {"default": dict(DEFAULT_PROPS)}
        self._bucket_props: dict[tuple[str, str], dict[str, Any]] = {}
        self._data: dict[tuple[str, str, str], StoredKey] = {}
        self._indexes: dict[tuple[str, str, str], SortedList] = {}
        self._stats: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self.scheme = "https" if ssl_context else "http"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> RiakFake:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join(timeout=5)

    # ---- test helpers -------------------------------------------------------------------------

    def create_bucket_type(self, name: str, **props: Any) -> None:
        """Like `riak admin bucket-type create NAME '{"props":{...}}'` followed by `activate`."""
        with self._lock:
            self._types[name] = {
                **SIBLINGS_TYPE_PROPS,
                "allow_mult": False,
                **props,
                "active": True,
            }

    def now(self) -> float:
        """The fake's clock (monotonic, moved on by `advance`)."""
        return time.monotonic() + self._clock_offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock on (tombstones are reaped by it) without waiting."""
        with self._lock:
            self._clock_offset += seconds

    def reset(self) -> None:
        """Forget every object and counter (bucket types stay)."""
        with self._lock:
            self._data.clear()
            self._indexes.clear()
            self._bucket_props.clear()
            self.requests.clear()
            self._stats.clear()

    def siblings(self, bucket_type: str, bucket: str, key: str) -> list[bytes]:
        """The values stored under a key (several when it has siblings; none when absent)."""
        with self._lock:
            stored = self._data.get((bucket_type, bucket, key))
            if stored is None or stored.deleted:
                return []
            return [s.value for s in stored.siblings]

    @property
    def writes(self) -> int:
        """Object writes the fake applied: PUTs that stored something (a refused one, such as a
        412 to `If-None-Match: *`, is a request but no write)."""
        with self._lock:
            return self._stats["puts"]

    def keys(self, bucket_type: str, bucket: str) -> list[str]:
        with self._lock:
            entries = self._indexes.get((bucket_type, bucket, KEY_INDEX), ())
            return [key.decode("utf-8") for _, key in entries]

    # ---- the server side ----------------------------------------------------------------------

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)

    def _draw_fault(self) -> str | None:
        with self._lock:
            faults, roll = self.faults, self._rng.random()
        for name, rate in (
            ("error", faults.error_rate),
            ("drop", faults.drop_rate),
            ("stall", faults.stall_rate),
        ):
            if roll < rate:
                with self._lock:
                    self.injected[name] += 1
                return name
            roll -= rate
        return None

    def handle(
        self, method: str, target: str, headers: Any, body: bytes
    ) -> tuple[Response, str | None]:
        """Answer one request; the second item names a fault to apply to the answer."""
        with self._lock:
            self.requests[method] += 1
            if method == "PUT" and headers.get("If-None-Match"):
                self.requests["conditional PUT"] += 1
        if self.state != "up":
            return self._not_serving(method, target), None
        fault = self._draw_fault()
        if self.faults.delay:
            self._stopping.wait(self.faults.delay)
        if fault == "error":
            return _text(503, b"Service Unavailable\n"), None
        if fault == "drop":
            return Response(0, []), "drop"
        if self.auth is not None:
            expected = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
            if headers.get("Authorization") != expected:
                response = _text(401, b"Unauthorized\n")
                response.headers.append(("WWW-Authenticate", 'Basic realm="Riak"'))
                return response, None
        path, _, query_string = target.partition("?")
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        segments = [unquote(s, errors="strict") for s in path.split("/")[1:]]
        try:
            response = self._route(method, segments, query, headers, body)
        except UnicodeDecodeError:
            response = _text(400, b"Bad path encoding\n")
        return response, fault

    def _not_serving(self, method: str, target: str) -> Response:
        """A node stopping (the web server's 404 page to everything) or starting (/ping only)."""
        if self.state == "stopping":
            return _text(404, NO_ROUTE, "text/html")
        path = target.partition("?")[0]
        if path == "/ping":
            return _text(200, b"OK", "text/html")
        if "/index/" in path:
            response = _text(500, NOT_SERVING, "text/html")
        elif method in ("GET", "HEAD"):
            return _text(500, b"Error:\n{insufficient_vnodes,0,need,2}\n")
        else:
            response = _text(500, b"Error:\nall_nodes_down\n")
        response.headers.insert(0, ("Vary", "Accept-Encoding"))
        return response

    def _route(
        self, method: str, seg: list[str], query: dict[str, str], headers: Any, body: bytes
    ) -> Response:
        if seg == ["ping"] and method in ("GET", "HEAD"):
            return _text(200, b"OK", "text/html")
        if seg == ["stats"] and method in ("GET", "HEAD"):
            return Response(200, [("Content-Type", "application/json")], self._stats_body())
        if len(seg) >= 2 and seg[0] == "buckets":
            seg = ["types", "default", *seg]
        if len(seg) < 3 or seg[0] != "types":
            return _text(404, NO_ROUTE, "text/html")
        bucket_type = seg[1]
        with self._lock:
            type_props = self._types.get(bucket_type)
        if type_props is None:
            return _text(404, f"Unknown bucket type: {bucket_type}".encode())
        if seg[2:] == ["props"] and method == "GET":
            return _json(200, {"props": type_props})
        if len(seg) < 5 or seg[2] != "buckets":
            return _text(404, NO_ROUTE, "text/html")
        bucket, rest = seg[3], seg[4:]
        props = self._props(bucket_type, bucket)
        if rest == ["props"]:
            return self._bucket_props_op(method, bucket_type, bucket, body)
        if rest == ["keys"] and method == "GET" and query.get("keys") == "true":
            return _json(200, {"keys": self.keys(bucket_type, bucket)})
        if len(rest) == 2 and rest[0] == "keys":
            return self._object(method, (bucket_type, bucket, rest[1]), props, query, headers, body)
        if len(rest) > 2 and rest[0] == "keys":
            return _text(400, LINK_WALK)
        if rest and rest[0] == "index" and len(rest) in (3, 4) and method == "GET":
            return self._index(bucket_type, bucket, rest[1], rest[2:], query)
        return _text(404, NO_ROUTE, "text/html")

    def _props(self, bucket_type: str, bucket: str) -> dict[str, Any]:
        with self._lock:
            base = {
                k: v for k, v in self._types[bucket_type].items() if k not in ("active", "claimant")
            }
            return {"name": bucket, **base, **self._bucket_props.get((bucket_type, bucket), {})}

    def _bucket_props_op(self, method: str, bucket_type: str, bucket: str, body: bytes) -> Response:
        if method == "GET":
            return _json(200, {"props": self._props(bucket_type, bucket)})
        if method == "PUT":
            try:
                given = json.loads(body)["props"]
                assert isinstance(given, dict)
            except (ValueError, KeyError, TypeError, AssertionError):
                return _text(400, b"Invalid bucket properties\n")
            with self._lock:
                self._bucket_props.setdefault((bucket_type, bucket), {}).update(given)
            return Response(204, [("Content-Type", "application/json")])
        return _text(404, NO_ROUTE, "text/html")

    def _stats_body(self) -> bytes:
        with self._lock:
            counts = dict(self._stats)
        stats = {
            "node_puts": counts.get("puts", 0),
            "node_put_fsm_time_95": 1421,
            "node_put_fsm_time_99": 1640,
            "node_gets": counts.get("gets", 0),
            "node_get_fsm_siblings_100": counts.get("max_siblings", 0),
            "node_get_fsm_objsize_95": 416,
            "vnode_index_writes": counts.get("index_writes", 0),
            "riak_kv_version": "0.0.0+fake",
            "storage_backend": "riak_kv_leveled_backend",
            "ring_num_partitions": 16,
            "ring_members": ["riak@127.0.0.1"],
            "cpu_avg1": 0,
            "memory_total": 0,
            "pbc_active": 0,
            "sys_otp_release": "25",
            "connected_nodes": [],
            "node_put_fsm_active": 0,
            "node_put_fsm_rejected": 0,
        }
        return json.dumps(stats).encode()

    # ---- objects ------------------------------------------------------------------------------

    def _object(
        self,
        method: str,
        ident: tuple[str, str, str],
        props: dict[str, Any],
        query: dict[str, str],
        headers: Any,
        body: bytes,
    ) -> Response:
        request_type = headers.get("Content-Type") or "application/octet-stream"
        bad = _quorum_error(query, int(props["n_val"]), request_type)
        if bad is None:
            bad = self._primaries_short(method, query, int(props["n_val"]), request_type)
        if bad is not None:
            return bad
        self._reap(ident)
        if method in ("GET", "HEAD"):
            with self._lock:
                self._stats["gets"] += 1
            return self._read(ident, query, headers)
        if method == "PUT" or method == "POST":
            return self._write(ident, props, query, headers, body, request_type)
        if method == "DELETE":
            given: dict[str, int] | None = None
            if headers.get("X-Riak-Vclock"):
                try:
                    given = _decode_clock(headers["X-Riak-Vclock"])
                except ValueError:
                    return _text(400, b"Invalid X-Riak-Vclock\n")
            with self._lock:
                stored = self._data.get(ident)
                if stored is None or stored.deleted:
                    response = _text(404, NOT_FOUND)
                    response.headers.insert(0, ("Vary", "Accept-Encoding"))
                    return response
                for actor, count in (given or {}).items():
                    stored.clock[actor] = max(stored.clock.get(actor, 0), count)
                stored.clock[self._actor] = stored.clock.get(self._actor, 0) + 1
                tombstone = Sibling(
                    self._vtag(),
                    b"",
                    "application/octet-stream",
                    {},
                    [],
                    time.time(),
                    stored.clock[self._actor],
                    deleted=True,
                )
                # Without a vclock Riak reads the object first, so the tombstone replaces all of
                # it. With one, on allow_mult, what the vclock has not seen stays as a sibling.
                kept: list[Sibling] = []
                if given is not None and props.get("allow_mult"):
                    seen = given.get(self._actor, 0)
                    kept = [sib for sib in stored.siblings if sib.dot > seen]
                before = _entries(ident[2], stored)
                stored.siblings, stored.deleted = [*kept, tombstone], not kept
                stored.deleted_at = self.now()
                self._reindex(ident, before, _entries(ident[2], stored))
            return Response(204, [("Vary", "Accept-Encoding"), ("Content-Type", "text/html")])
        return _text(404, NO_ROUTE, "text/html")

    def _reap(self, ident: tuple[str, str, str]) -> None:
        """Forget a tombstone older than `delete_mode` (Riak reaps it then)."""
        with self._lock:
            stored = self._data.get(ident)
            if stored is None or not stored.deleted:
                return
            if self.now() - stored.deleted_at >= self.delete_mode:
                del self._data[ident]

    def _primaries_short(
        self, method: str, query: dict[str, str], n_val: int, content_type: str
    ) -> Response | None:
        """A 503 when fewer primaries are up than the request's pw (writes) or pr (reads)."""
        up = self.primaries_up
        name = "pr" if method in ("GET", "HEAD") else "pw"
        if up is None or name not in query:
            return None
        value = query[name]
        words = {"one": 1, "quorum": n_val // 2 + 1, "all": n_val, "default": 0}
        wanted = words[value] if value in words else int(value)
        if wanted <= up:
            return None
        text = f"{name.upper()}-value unsatisfied: {up}/{wanted}\n".encode()
        if name == "pr":
            return _text(503, text)
        response = _text(503, text, content_type)
        response.headers.insert(0, ("Vary", "Accept-Encoding"))
        return response

    def _write(
        self,
        ident: tuple[str, str, str],
        props: dict[str, Any],
        query: dict[str, str],
        headers: Any,
        body: bytes,
        content_type: str,
    ) -> Response:
        indexes: dict[str, set[IndexTerm]] = {}
        meta: list[tuple[str, str]] = []
        for name, raw in headers.items():
            lower = name.lower()
            if lower.startswith("x-riak-meta-"):
                meta.append((name, utf8_header(raw)))
            if not lower.startswith("x-riak-index-"):
                continue
            index = lower[len("x-riak-index-") :]
            if not index.endswith(("_bin", "_int")):
                return _text(400, f"Unknown field type for field: '{index}'.\n".encode())
            for part in utf8_header(raw).split(","):
                term = part.strip()
                if not term:
                    continue
                if index.endswith("_int"):
                    try:
                        indexes.setdefault(index, set()).add(int(term))
                    except ValueError:
                        message = f"Could not parse field '{index}', value '{term}'.\n"
                        return _text(400, message.encode())
                else:
                    indexes.setdefault(index, set()).add(term)
        given_clock: dict[str, int] = {}
        if headers.get("X-Riak-Vclock"):
            try:
                given_clock = _decode_clock(headers["X-Riak-Vclock"])
            except ValueError:
                return _text(400, b"Invalid X-Riak-Vclock\n")
        with self._lock:
            stored = self._data.get(ident)
            live = stored is not None and not stored.deleted
            if headers.get("If-None-Match") == "*" and live:
                response = _text(412, PRECONDITION_FAILED, "text/html")
                response.headers.insert(0, ("Vary", "Accept-Encoding"))
                return response
            clock = dict(stored.clock) if stored else {}
            for actor, count in given_clock.items():
                clock[actor] = max(clock.get(actor, 0), count)
            clock[self._actor] = clock.get(self._actor, 0) + 1
            kept: list[Sibling] = []
            if stored is not None and props.get("allow_mult"):
                # A write that does not descend a value keeps it as a sibling, a tombstone too:
                # on allow_mult types a blind PUT after a DELETE leaves a tombstone sibling.
                seen = given_clock.get(self._actor, 0)
                kept = [s for s in stored.siblings if s.dot > seen]
            sibling = Sibling(
                vtag=self._vtag(),
                value=body,
                content_type=content_type,
                indexes={k: sorted(v) for k, v in indexes.items()},
                meta=meta,
                modified=time.time(),
                dot=clock[self._actor],
            )
            before = _entries(ident[2], stored)
            self._data[ident] = StoredKey(clock, [*kept, sibling])
            self._reindex(ident, before, _entries(ident[2], self._data[ident]))
            self._stats["puts"] += 1
            self._stats["index_writes"] += sum(len(v) for v in indexes.values())
        if query.get("returnbody") == "true":
            return self._read(ident, {}, headers)
        return Response(204, [("Vary", "Accept-Encoding"), ("Content-Type", content_type)])

    def _vtag(self) -> str:
        return "".join(self._rng.choice(VTAG_ALPHABET) for _ in range(22))

    def _read(self, ident: tuple[str, str, str], query: dict[str, str], headers: Any) -> Response:
        with self._lock:
            stored = self._data.get(ident)
            if stored is None:
                return _text(404, NOT_FOUND)
            clock = _encode_clock(stored.clock)
            siblings = list(stored.siblings)
            deleted = stored.deleted
            if len(siblings) > 1:
                self._stats["max_siblings"] = max(self._stats["max_siblings"], len(siblings))
        if deleted:
            response = _text(404, NOT_FOUND)
            response.headers[:0] = [("X-Riak-Vclock", clock), ("X-Riak-Deleted", "true")]
            return response
        link = f'</buckets/{quote(ident[1], safe="")}>; rel="up"'
        if "vtag" in query:
            chosen = [s for s in siblings if s.vtag == query["vtag"]]
            if not chosen:
                return _text(404, NOT_FOUND)
            siblings = chosen
        accept = headers.get("Accept")
        if len(siblings) == 1 and _negotiate(accept, [siblings[0].content_type]) is None:
            return _text(406, NOT_ACCEPTABLE, "text/html")
        if len(siblings) == 1:
            sib = siblings[0]
            out = [("X-Riak-Vclock", clock), *[(n, wire_header(v)) for n, v in sib.meta]]
            for name, terms in sib.indexes.items():
                out.append((f"x-riak-index-{name}", wire_header(", ".join(map(str, terms)))))
            out += [
                ("Vary", "Accept-Encoding"),
                ("Link", link),
                ("Last-Modified", formatdate(sib.modified, usegmt=True)),
                ("ETag", f'"{sib.vtag}"'),
                ("Content-Type", sib.content_type),
            ]
            return Response(200, out, sib.value)
        common = [
            ("X-Riak-Vclock", clock),
            ("Vary", "Accept, Accept-Encoding"),
            ("Last-Modified", formatdate(max(s.modified for s in siblings), usegmt=True)),
            ("ETag", f'"{self._vtag()}"'),
        ]
        if _negotiate(accept, ["text/plain", "multipart/mixed"]) == "multipart/mixed":
            boundary = self._vtag() + "aBc12"
            parts = [b""]
            for sib in siblings:
                lines = [f"Content-Type: {sib.content_type}", f"Link: {link}", f"Etag: {sib.vtag}"]
                if sib.deleted:
                    lines.append("X-Riak-Deleted: true")
                lines += [f"{n}: {v}" for n, v in sib.meta]
                lines += [
                    f"X-Riak-Index-{n}: {', '.join(map(str, t))}" for n, t in sib.indexes.items()
                ]
                lines.append(f"Last-Modified: {formatdate(sib.modified, usegmt=True)}")
                head = "\r\n".join(lines).encode("utf-8")
                parts.append(f"--{boundary}\r\n".encode() + head + b"\r\n\r\n" + sib.value)
            body = b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode()
            content_type = f"multipart/mixed; boundary={boundary}"
            return Response(300, [*common, ("Content-Type", content_type)], body)
        text = "Siblings:\n" + "".join(f"{s.vtag}\n" for s in siblings)
        return Response(300, [*common, ("Content-Type", "text/plain")], text.encode())

    # ---- secondary indexes --------------------------------------------------------------------

    def _reindex(
        self,
        ident: tuple[str, str, str],
        before: dict[str, set[Entry]],
        after: dict[str, set[Entry]],
    ) -> None:
        """Move a key's entries in the sorted indexes from `before` to `after` (lock held)."""
        bucket_type, bucket, _ = ident
        for name in before.keys() | after.keys():
            old, new = before.get(name, set()), after.get(name, set())
            if old == new:
                continue
            entries = self._indexes.get((bucket_type, bucket, name))
            if entries is None:
                entries = self._indexes[(bucket_type, bucket, name)] = SortedList()
            for entry in old - new:
                entries.remove(entry)
            for entry in new - old:
                entries.add(entry)

    def _index(
        self, bucket_type: str, bucket: str, name: str, args: list[str], query: dict[str, str]
    ) -> Response:
        if name not in ("$bucket", "$key") and not name.endswith(("_bin", "_int")):
            return _text(400, f'Invalid query: {{unknown_field_type,<<"{name}">>}}\n'.encode())
        is_int = name.endswith("_int")
        try:
            bounds = [_order(int(a) if is_int else a) for a in args]
        except ValueError:
            return _text(400, f'Invalid query: {{invalid_integer,<<"{name}">>}}\n'.encode())
        try:
            max_results = int(query["max_results"]) if "max_results" in query else None
            after = None
            if "continuation" in query:
                term, key = decode_continuation(query["continuation"])
                after = (_order(term), key.encode("utf-8"))
                if isinstance(after[0], int) != is_int:
                    raise ValueError("a continuation of another index")
        except ValueError:
            return _text(400, b"Invalid query: {invalid_pagination}\n")
        if max_results is not None and max_results <= 0:
            return _text(400, b"Invalid query: {invalid_pagination}\n")
        ranged = len(bounds) == 2 and name != "$bucket"
        index = KEY_INDEX if name in ("$bucket", "$key") else name
        with self._lock:
            entries = self._indexes.get((bucket_type, bucket, index), SortedList())
            first, stop = 0, len(entries)
            if name != "$bucket":
                low, high = bounds[0], bounds[-1]
                first = entries.bisect_left((low,))
                stop = max(first, entries.bisect_left((_successor(high),)))
            if after is not None:
                first = max(first, entries.bisect_right(after))
            if max_results is not None:
                stop = min(stop, first + max_results)
            page: list[Entry] = list(entries.islice(first, stop))
            if max_results is None and after is None:
                self._rng.shuffle(page)  # a coverage query merges vnodes' answers unsorted
        result: dict[str, Any] = {}
        if max_results is not None and len(page) == max_results:
            result["continuation"] = encode_continuation(*_unorder(page[-1]))
        if ranged and query.get("return_terms") == "true":
            body: dict[str, Any] = {
                "results": [{str(_term(t)): k.decode("utf-8")} for t, k in page]
            }
        else:
            body = {"keys": [k.decode("utf-8") for _, k in page]}
        return _json(200, {**body, **result})


def _entries(key: str, stored: StoredKey | None) -> dict[str, set[Entry]]:
    """A key's index entries by index name: its live siblings' terms, and its `$key` entry."""
    if stored is None or stored.deleted:
        return {}
    raw = key.encode("utf-8")
    out: dict[str, set[Entry]] = {KEY_INDEX: {(raw, raw)}}
    for sibling in stored.siblings:
        for name, terms in sibling.indexes.items():
            out.setdefault(name, set()).update((_order(t), raw) for t in terms)
    return out


def _order(term: IndexTerm) -> bytes | int:
    """How Riak orders a term: integers by value, binaries by their bytes."""
    return term if isinstance(term, int) else term.encode("utf-8")


def _term(order: bytes | int) -> IndexTerm:
    return order if isinstance(order, int) else order.decode("utf-8")


def _unorder(entry: Entry) -> tuple[IndexTerm, str]:
    return _term(entry[0]), entry[1].decode("utf-8")


def _successor(term: bytes | int) -> bytes | int:
    """The least term above `term`: a range's end is inclusive, bisecting wants it exclusive."""
    return term + 1 if isinstance(term, int) else term + b"\x00"


def _negotiate(accept: str | None, offered: list[str]) -> str | None:
    """The offered content type an Accept header prefers, as webmachine chooses: the highest q,
    the server's order between equals; None when it takes none (no header takes the first)."""
    if not accept:
        return offered[0]
    ranges = []
    for part in accept.split(","):
        media, *params = (p.strip().lower() for p in part.split(";"))
        q = next((float(p[2:]) for p in params if p.startswith("q=")), 1.0)
        ranges.append((media, q))
    best: tuple[float, str] | None = None
    for kind in offered:
        main = kind.split("/", maxsplit=1)[0] + "/*"
        q = max((q for media, q in ranges if media in (kind, main, "*/*")), default=0.0)
        if q > 0 and (best is None or q > best[0]):
            best = (q, kind)
    return None if best is None else best[1]


def _json(status: int, payload: Any) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(
        status, [("Vary", "Accept-Encoding"), ("Content-Type", "application/json")], body
    )


def _encode_clock(clock: dict[str, int]) -> str:
    return base64.b64encode(json.dumps(sorted(clock.items())).encode()).decode("ascii")


def _decode_clock(text: str) -> dict[str, int]:
    try:
        pairs = json.loads(base64.b64decode(text, validate=True))
        return {str(actor): int(count) for actor, count in pairs}
    except (ValueError, TypeError) as exc:
        raise ValueError("bad vclock") from exc


def _quorum_error(query: dict[str, str], n_val: int, content_type: str) -> Response | None:
    for name in QUORUM_NAMES:
        if name not in query:
            continue
        value = query[name]
        if value in QUORUM_WORDS:
            continue
        if not value.isdigit():
            message = (
                f"{name} query parameter must be an integer or one of the following words: "
                "'one', 'quorum' or 'all'\n"
            )
            return _text(400, message.encode())
        if int(value) > n_val:
            message = (
                f"Specified w/dw/pw/node_confirms values invalid for bucket n value of {n_val}\n"
            )
            response = _text(400, message.encode(), content_type)
            response.headers.insert(0, ("Vary", "Accept-Encoding"))
            return response
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A node's listen backlog (mochiweb's is 128), not socketserver's 5: a client opening its
    # pool at once must not see connections the server accepts only after a SYN retransmit.
    request_queue_size = 128
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[_Handler], fake: RiakFake) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.fake._track(request, True)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.fake._track(request, False)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients vanishing mid-answer are normal here (timeouts, fault tests)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MochiWeb/1.1 WebMachine/1.10.9 (fake)"
    sys_version = ""
    timeout = 30
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read counters, not logs."""

    def _serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        response, fault = fake.handle(self.command, self.path, self.headers, body)
        if fault == "drop":
            self.close_connection = True
            return
        if fault == "stall":
            fake._stopping.wait(fake.faults.stall_seconds)
            self.close_connection = True
            return
        self.send_response(response.status, REASONS.get(response.status))
        for name, value in response.headers:
            self.send_header(name, value)
        if response.status != 204:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD" and response.status != 204:
            self.wfile.write(response.body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve
