"""A pooled keep-alive HTTP/1.1 client for Riak's HTTP API, on the standard library's http.client.

Thread-safe and synchronous: it serves the reads (GET, 2i pages, node calls), one request at a
time from any thread. Bulk writes use the asyncio client in `wire`, which costs a fraction of the
CPU per request (measured in `make bench`). Several hosts are used round-robin; a host that fails
to answer is skipped for a cool-off. Every foreign exception is translated here into
`migrate.errors`: timeouts, connection failures and 5xx are transient, other 4xx are terminal with
Riak's own text (values in it masked).
"""

from __future__ import annotations

import base64
import http.client
import ssl
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from migrate.errors import ConfigError, TargetError, TransientTargetError, register_secret
from migrate.target.riak.answers import NodeUnavailable, Reply, judge, needs_ping
from migrate.target.riak.hosts import PROBE_PATH, Host, HostRing

SCHEMES = {"riak": False, "http": False, "riaks": True, "https": True}
DEFAULT_PORT = 8098
_STALE = (
    http.client.RemoteDisconnected,
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
)


@dataclass(frozen=True, slots=True)
class RiakURL:
    """A parsed `riak://h1:8098,h2:8098` URL (`riaks://` for TLS), with TLS files from its query."""

    hosts: tuple[tuple[str, int], ...]
    tls: bool
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @property
    def display(self) -> str:
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts)
        return f"{'riaks' if self.tls else 'riak'}://{hosts}"


def parse_url(url: str) -> RiakURL:
    """Parse a Riak target URL; credentials never live in it (RIAK_USER / RIAK_PASSWORD do)."""
    scheme, sep, rest = url.partition("://")
    hint = (
        "write it as riak://host:8098, riaks://host:8443?ca=/path/ca.pem, or riak://h1:8098,h2:8098"
    )
    if not sep or scheme.lower() not in SCHEMES:
        raise ConfigError(f"{url!r} is not a Riak URL", hint=hint)
    netloc, _, query = rest.partition("?")
    netloc, _, path = netloc.partition("/")
    if "@" in netloc:
        raise ConfigError(
            "the Riak URL holds credentials",
            hint="remove them from the URL and set RIAK_USER and RIAK_PASSWORD in the environment",
        )
    if path:
        raise ConfigError(f"the Riak URL {url!r} has a path; Riak's API is at its root", hint=hint)
    hosts = tuple(_host_port(part, url, hint) for part in netloc.split(","))
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(options) - {"ca", "cert", "key"}
    if unknown:
        raise ConfigError(f"the Riak URL has unknown options {sorted(unknown)}", hint=hint)
    tls = SCHEMES[scheme.lower()]
    if not tls and options:
        raise ConfigError("ca/cert/key options need TLS", hint="use riaks:// for TLS")
    if options.get("cert") is None and options.get("key") is not None:
        raise ConfigError("the Riak URL names a client key without its certificate", hint=hint)
    return RiakURL(hosts, tls, options.get("ca"), options.get("cert"), options.get("key"))


def _host_port(part: str, url: str, hint: str) -> tuple[str, int]:
    host, port_text = part, ""
    if part.startswith("["):
        host, _, tail = part[1:].partition("]")
        port_text = tail.removeprefix(":")
    elif ":" in part:
        host, _, port_text = part.rpartition(":")
    if not host:
        raise ConfigError(f"the Riak URL {url!r} names an empty host", hint=hint)
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"the Riak URL {url!r} has a bad port {port_text!r}", hint=hint)
    return host, int(port_text)


def segment(text: str) -> str:
    """One path segment, percent-encoded as UTF-8 with nothing left raw (not even '/')."""
    return quote(text, safe="")


_Host = Host[http.client.HTTPConnection]
_Ring = HostRing[http.client.HTTPConnection]


class RiakHTTP:
    """Thread-safe: each request borrows an idle keep-alive connection of its host, or opens one."""

    def __init__(
        self,
        url: RiakURL,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 2.0,
        cool_off: float = 5.0,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.cool_off = cool_off
        self._ring: _Ring = HostRing(url.hosts)
        self._hosts = self._ring.hosts
        self._lock = threading.Lock()
        self._closed = False
        self._context = tls_context(url) if url.tls else None
        self._auth: str | None = None
        if user is not None:
            register_secret(password)
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
            self._auth = f"Basic {token}"

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        ok: Collection[int] = (200,),
    ) -> Reply:
        """Send one request and read the whole answer; raise unless its status is in `ok`."""
        target = path
        if query:
            target += "?" + "&".join(f"{segment(k)}={segment(v)}" for k, v in query.items())
        host = self._ring.pick()
        where = f"{method} {path} on {host.host}:{host.port}"
        for attempt in (1, 2):
            conn, reused = self._borrow(host, where, fresh=attempt == 2)
            try:
                reply = self._exchange(conn, method, target, headers, body)
            except _STALE as exc:
                conn.close()
                if reused and attempt == 1:
                    continue  # the node closed an idle keep-alive connection: once more, fresh
                raise self._failed(host, where, "the connection was dropped", exc) from exc
            except ssl.SSLCertVerificationError as exc:
                conn.close()
                raise self._untrusted(host, exc) from exc
            except TimeoutError as exc:
                conn.close()
                raise self._failed(host, where, f"no answer within {self.timeout:g}s", exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise self._failed(host, where, type(exc).__name__, exc) from exc
            self._give_back(host, conn)
            try:
                return judge(reply, ok, where, self.url.display, node_up=self._up(host, reply))
            except NodeUnavailable:
                with self._lock:
                    host.mark_down(self.cool_off)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def serving(self) -> bool:
        """True when some host serves again: /ping answers OK and riak_kv answers a read (the
        probe of a target waiting out an outage; hosts that serve are no longer cooled off)."""
        found = False
        for host in self._hosts:
            if self._answers(host, "/ping", (200,)) and self._answers(host, PROBE_PATH, (200, 404)):
                with self._lock:
                    host.mark_up()
                found = True
        return found

    def every_host_down(self) -> bool:
        """True when every host is in cool-off after a failure (the breaker's cue)."""
        return self._ring.every_host_down()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [c for h in self._hosts for c in h.idle]
            for h in self._hosts:
                h.idle.clear()
        for conn in idle:
            conn.close()

    # ---- internals ----------------------------------------------------------------------------

    def _borrow(
        self, host: _Host, where: str, *, fresh: bool
    ) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._closed:
                raise TargetError(f"{self.url.display}: the client is closed ({where})")
            if host.idle and not fresh:
                return host.idle.pop(), True
        if self._context is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host.host, host.port, timeout=self.connect_timeout, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(host.host, host.port, timeout=self.connect_timeout)
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise self._untrusted(host, exc) from exc
        except TimeoutError as exc:
            conn.close()
            raise self._failed(host, where, "connect timed out", exc) from exc
        except OSError as exc:
            conn.close()
            reason = exc.strerror or type(exc).__name__
            raise self._failed(host, where, f"cannot connect: {reason}", exc) from exc
        assert conn.sock is not None
        conn.sock.settimeout(self.timeout)
        return conn, False

    def _give_back(self, host: _Host, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and conn.sock is not None:
                host.idle.append(conn)
                host.mark_up()
                return
        conn.close()

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
    ) -> Reply:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value.encode("utf-8"))
        if self._auth is not None:
            conn.putheader("Authorization", self._auth)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        names: dict[str, str] = {}
        for name, value in response.getheaders():
            text = value.encode("latin-1").decode("utf-8", errors="replace")
            lower = name.lower()
            names[lower] = f"{names[lower]}, {text}" if lower in names else text
        if response.will_close:
            conn.close()
        return Reply(response.status, names, data)

    def _up(self, host: _Host, reply: Reply) -> bool:
        """For an answer only /ping can explain (`needs_ping`): whether the host answers it."""
        return not needs_ping(reply) or self._answers(host, "/ping", (200,))

    def _answers(self, host: _Host, path: str, statuses: Collection[int]) -> bool:
        """Whether `host` answers GET `path` with one of `statuses` from Riak KV itself (OK for
        /ping, text/plain for a 404), on a connection of its own; any failure is a no."""
        try:
            conn, _ = self._borrow(host, f"GET {path}", fresh=True)
        except TargetError:
            return False
        try:
            reply = self._exchange(conn, "GET", path, (), None)
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()
        if reply.status not in statuses or needs_ping(reply):
            return False
        return path != "/ping" or reply.body.strip() == b"OK"

    def _failed(self, host: _Host, where: str, reason: str, exc: BaseException) -> TargetError:
        with self._lock:
            host.mark_down(self.cool_off)
        return TransientTargetError(
            f"Riak at {self.url.display} did not answer {where}: {reason}",
            hint="check that the node is up and reachable (riak ping); the load resumes on rerun",
        )

    def _untrusted(self, host: _Host, exc: ssl.SSLCertVerificationError) -> TargetError:
        return TargetError(
            f"{self.url.display}: the TLS certificate of {host.host} is not trusted ({exc.reason})",
            hint="pass the CA bundle that signed it as ?ca=/path/ca.pem in the target URL",
        )


def tls_context(url: RiakURL) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=url.ca_file)
        if url.cert_file:
            context.load_cert_chain(url.cert_file, url.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the TLS files of {url.display}: {exc}",
            hint="check the ca=, cert= and key= paths in the target URL",
        ) from exc
    return context
