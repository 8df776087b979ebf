"""RiakTarget: the Target protocol over Riak KV's HTTP API.

Writes go through `loader` on a lean asyncio HTTP/1.1 client (`wire`) whose event loop runs in a
thread of the target, started on the first write and stopped by `close()`; `write()` stays
synchronous and returns once every document is acknowledged. Reads (get, 2i queries, node calls)
are one request at a time, so they stay on the thread-safe `RiakHTTP` (measured: its ~100-250 us per
request is noise beside a 2i page or a GET body, and it serves any caller thread without a hop).
Transient failures are retried by one policy (tenacity, see `retry`); a circuit breaker shared by
both clients pauses the load when the node keeps failing or no host serves (see `breaker`), and
with a patience the target waits that long for a node to serve again before it gives up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

import msgspec

from migrate.document import Document, IndexValue
from migrate.errors import ConfigError, TargetError, TransientTargetError
from migrate.target.base import StoredObject, WriteStats
from migrate.target.riak.answers import Reply
from migrate.target.riak.batch import plan_documents, plans_of
from migrate.target.riak.breaker import DEFAULT_THRESHOLD, CircuitBreaker, CircuitOpenError
from migrate.target.riak.client import RiakHTTP, parse_url, segment
from migrate.target.riak.loader import Loader, common_headers
from migrate.target.riak.loop import LoopThread, Pacing
from migrate.target.riak.objects import (
    CHECKSUM_META,
    INDEX_NAME,
    JSON_TYPE,
    meta_headers,
    missing,
    object_path,
    parse_headers,
)
from migrate.target.riak.retry import Outage, RetryPolicy
from migrate.target.riak.wire import AsyncRiakHTTP

__all__ = ["CHECKSUM_META", "JSON_TYPE", "PAGE_SIZE", "RiakTarget"]

QUORUM_WORDS = ("one", "quorum", "all", "default")
PAGE_SIZE = 10_000  # terms per 2i page: a page costs the node ~15 ms whatever its size
_T = TypeVar("_T")
_PageT = TypeVar("_PageT", bound="_Page")


class RiakTarget:
    """A Target over Riak's HTTP API; safe to use from several threads."""

    def __init__(
        self,
        url: str,
        *,
        max_in_flight: int = 64,
        max_attempts: int = 10,  # patient per document: the breaker stops a storm
        backoff_initial: float = 0.1,
        backoff_max: float = 2.0,
        timeout: float = 10.0,
        connect_timeout: float = 2.0,
        cool_off: float = 5.0,
        w: str | None = None,
        dw: str | None = None,
        pw: str | None = None,
        r: str | None = None,
        failure_threshold: int = DEFAULT_THRESHOLD,
        patience: float = 0.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if max_in_flight < 1 or max_attempts < 1 or failure_threshold < 1:
            raise ConfigError(
                "[target] max_in_flight, max_attempts and failure_threshold must be at least 1"
            )
        if patience < 0:
            raise ConfigError("[target] patience must be a number of seconds >= 0")
        env = os.environ if environ is None else environ
        self._url = parse_url(url)
        options: dict[str, Any] = {
            "timeout": timeout,
            "connect_timeout": connect_timeout,
            "cool_off": cool_off,
            "user": env.get("RIAK_USER") or None,
            "password": env.get("RIAK_PASSWORD"),
        }
        self._http = RiakHTTP(self._url, **options)
        pacing = Pacing()
        pacing.window = max_in_flight
        self._async = AsyncRiakHTTP(self._url, **options, pacing=pacing)
        self.max_in_flight = max_in_flight
        self.policy = RetryPolicy(max_attempts, backoff_initial, backoff_max)
        self._write_q = _quorum({"w": w, "dw": dw, "pw": pw})
        self._read_q = _quorum({"r": r})
        self._breaker = CircuitBreaker(self._url.display, threshold=failure_threshold)
        self.outage = Outage(self._breaker, patience)
        self._loop = LoopThread("riak-loop", pacing)
        self._loader = Loader(
            self._async,
            self._breaker,
            self.policy,
            self.outage,
            max_in_flight=max_in_flight,
            write_query=_query_text(self._write_q),
            read_query=_query_text(self._read_q),
        )
        self._closed = threading.Event()
        self._allow_mult: dict[tuple[str, str], bool] = {}

    @property
    def display_url(self) -> str:
        return self._url.display

    @property
    def max_attempts(self) -> int:
        return self.policy.max_attempts

    # ---- writes -------------------------------------------------------------------------------

    def preparer(self) -> Callable[[Sequence[Document]], Sequence[Document]]:
        """Worker processes make each document's request parts (`batch`): about a third of the
        client's CPU per PUT, taken off the process that loads."""
        return plan_documents

    def write(
        self,
        documents: Sequence[Document],
        *,
        meta: Mapping[str, str],
        first_load: bool = False,
    ) -> WriteStats:
        """`first_load`: the ledger has never seen these documents loaded, so where the bucket
        keeps no siblings each is one plain PUT (see `loader`); elsewhere, and always on
        allow_mult buckets, writes read or create conditionally."""
        common = common_headers(meta_headers(meta), self._async.auth_line)
        plans = plans_of(documents)  # refuses a bad document before any request
        if not plans:
            return WriteStats(written=0, unchanged=0)
        if self._closed.is_set():
            raise TargetError(f"{self.display_url}: the target is closed")
        self._breaker.trial()
        for plan in plans:
            plan.read_first = self._keeps_siblings(plan.doc.bucket_type, plan.doc.bucket)
            plan.plain = first_load and not plan.read_first
        written = self._loop.run(self._loader.write(plans, common))
        return WriteStats(written=written, unchanged=len(plans) - written)

    # ---- reads --------------------------------------------------------------------------------

    def get(self, bucket_type: str, bucket: str, key: str) -> StoredObject | None:
        path = object_path(bucket_type, bucket, key)
        reply = self._read_object("GET", path)
        if missing(reply, self.display_url, path):
            return None
        if reply.status == 300:
            count = max(0, len(reply.body.decode("utf-8", "replace").splitlines()) - 1)
            raise TargetError(
                f"Riak at {self.display_url} holds {count} siblings for "
                f"{bucket_type}/{bucket}/{key}",
                hint="rerun the load of its chunk: a write resolves siblings with the document",
            )
        indexes, meta = parse_headers(reply)
        return StoredObject(bucket_type, bucket, key, reply.body, indexes, meta)

    def delete(self, bucket_type: str, bucket: str, key: str) -> bool:
        """Delete one object; True when it existed. The DELETE carries the vclock just read, so
        its tombstone replaces exactly what was read (every sibling of it on allow_mult types),
        and a write that the read did not see is kept beside it rather than lost."""
        path = object_path(bucket_type, bucket, key)
        head = self._read_object("HEAD", path)
        if missing(head, self.display_url, path):
            return False
        vclock = head.header("x-riak-vclock")
        headers = [("X-Riak-Vclock", vclock)] if vclock else []
        self._retrying(
            lambda: self._request(
                "DELETE", path, query=self._write_q, headers=headers, ok=(204, 404)
            )
        )
        return True

    def _read_object(self, method: str, path: str) -> Reply:
        """GET or HEAD an object at the read quorum; one found nowhere is asked for once more of
        every replica (r=all) before it is called absent. While a node is down, a key with two
        of its three replicas there (rings are not always even) is answered not found by two
        empty fallback vnodes at r=quorum (notfound_ok), though its third replica holds it."""
        reply: Reply = self._retrying(
            lambda: self._request(method, path, query=self._read_q, ok=(200, 300, 404))
        )
        if reply.status == 404 and self._read_q.get("r") != "all":
            every = {**self._read_q, "r": "all"}
            reply = self._retrying(
                lambda: self._request(method, path, query=every, ok=(200, 300, 404))
            )
        return reply

    def query_index(
        self,
        bucket_type: str,
        bucket: str,
        name: str,
        value: IndexValue,
        end: IndexValue | None = None,
    ) -> list[str]:
        if name not in ("$bucket", "$key"):
            _check_index_name(name)
        if name.endswith("_int") and any(
            isinstance(v, bool) or not isinstance(v, int) for v in (value, end) if v is not None
        ):
            raise TargetError(f"index {name} is an integer index: query it with integers")
        path = _index_path(bucket_type, bucket, name, value, end)
        keys: dict[str, None] = {}
        for page in self._pages(path, name, {}, _IndexPage):
            keys.update(dict.fromkeys(page.keys))
        return list(keys)

    def index_terms(
        self, bucket_type: str, bucket: str, name: str, start: IndexValue, end: IndexValue
    ) -> Iterator[tuple[IndexValue, str]]:
        """(term, key) pairs of a 2i range query with return_terms, page by page (Riak sorts a
        paginated range by term, then key)."""
        _check_index_name(name)
        integer = name.endswith("_int")
        path = _index_path(bucket_type, bucket, name, start, end)
        for page in self._pages(path, name, {"return_terms": "true"}, _TermsPage):
            for pair in page.results:
                for term, key in pair.items():
                    yield (int(term) if integer else term), key

    def iter_bucket(self, bucket_type: str, bucket: str) -> Iterator[StoredObject]:
        """Every object via the `$bucket` index, in key order. Costs a key listing: tests only."""
        for key in sorted(self.query_index(bucket_type, bucket, "$bucket", bucket)):
            stored = self.get(bucket_type, bucket, key)
            if stored is not None:
                yield stored

    def _pages(
        self, path: str, name: str, extra: Mapping[str, str], kind: type[_PageT]
    ) -> Iterator[_PageT]:
        """Every page of a paginated 2i query, following Riak's continuations to the end."""
        continuation: str | None = None
        while True:
            query = {"max_results": str(PAGE_SIZE), **extra}
            if continuation:
                query["continuation"] = continuation
            reply: Reply = self._retrying(partial(self._request, "GET", path, query=query))
            try:
                page = msgspec.json.decode(reply.body, type=kind)
            except msgspec.DecodeError as exc:
                raise TargetError(
                    f"Riak at {self.display_url} answered an index query on {name} with "
                    "something that is not its JSON result",
                    hint="check that the URL points at Riak's HTTP API",
                ) from exc
            yield page
            continuation = page.continuation
            if not continuation or page.empty:
                return

    # ---- node ---------------------------------------------------------------------------------

    def ping(self) -> bool:
        return self._retrying(lambda: self._request("GET", "/ping")).body.strip() == b"OK"

    def stats(self) -> dict[str, Any]:
        reply: Reply = self._retrying(lambda: self._request("GET", "/stats"))
        return dict(msgspec.json.decode(reply.body, type=dict[str, Any]))

    def _keeps_siblings(self, bucket_type: str, bucket: str) -> bool:
        """Whether the bucket's properties allow siblings (asked once per bucket, then cached).

        When the node cannot answer right now, assume it does: reading before writing is correct
        on every bucket, only slower, and the write that follows meets the failure with its own
        retries and circuit breaker.
        """
        known = self._allow_mult.get((bucket_type, bucket))
        if known is None:
            path = f"/types/{segment(bucket_type)}/buckets/{segment(bucket)}/props"
            try:
                reply = self._request("GET", path)
            except (TransientTargetError, CircuitOpenError):
                return True
            props = msgspec.json.decode(reply.body, type=dict[str, dict[str, Any]])
            known = bool(props["props"].get("allow_mult"))
            self._allow_mult[(bucket_type, bucket)] = known
        return known

    def bucket_props(self, bucket_type: str, bucket: str | None = None) -> dict[str, Any]:
        """The properties of a bucket type, or of one bucket in it."""
        path = f"/types/{segment(bucket_type)}"
        if bucket is not None:
            path += f"/buckets/{segment(bucket)}"
        reply: Reply = self._retrying(lambda: self._request("GET", path + "/props"))
        props = msgspec.json.decode(reply.body, type=dict[str, dict[str, Any]])
        return dict(props["props"])

    def close(self) -> None:
        self._closed.set()
        self._loop.stop(self._async.close())
        self._http.close()

    # ---- the synchronous path -----------------------------------------------------------------

    def _retrying(self, call: Callable[[], _T]) -> _T:
        """Run `call` with the target's retries; while the circuit is open, wait for the node
        within the target's patience and go on."""
        self._breaker.trial()  # a new operation: an open circuit lets one try through
        while True:
            try:
                return self.policy.call(call)
            except CircuitOpenError as error:
                self.outage.wait(error, self._http.serving)

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Sequence[tuple[str, str]] = (),
        ok: Collection[int] = (200,),
    ) -> Reply:
        """One request through the circuit breaker: refused while it is open, counted after."""
        self._breaker.check()
        try:
            reply = self._http.request(method, path, query=query, headers=headers, ok=ok)
        except TransientTargetError as exc:
            self._breaker.record_failure(exc, every_host_down=self._http.every_host_down())
            raise
        self._breaker.record_success()
        return reply


class _Page(Protocol):
    @property
    def continuation(self) -> str | None: ...

    @property
    def empty(self) -> bool: ...


class _TermsPage(msgspec.Struct):
    results: list[dict[str, str]] = []
    continuation: str | None = None

    @property
    def empty(self) -> bool:
        return not self.results


class _IndexPage(msgspec.Struct):
    keys: list[str] = []
    continuation: str | None = None

    @property
    def empty(self) -> bool:
        return not self.keys


def _query_text(query: Mapping[str, str]) -> str:
    return "?" + "&".join(f"{segment(k)}={segment(v)}" for k, v in query.items()) if query else ""


def _check_index_name(name: str) -> None:
    if not INDEX_NAME.match(name):
        raise TargetError(
            f"index name {name!r} is not a Riak index",
            hint="names are lowercase letters, digits and _, ending in _bin or _int",
        )


def _index_path(
    bucket_type: str, bucket: str, name: str, value: IndexValue, end: IndexValue | None
) -> str:
    path = f"/types/{segment(bucket_type)}/buckets/{segment(bucket)}/index/{segment(name)}"
    path += "/" + segment(str(value))
    if end is not None:
        path += "/" + segment(str(end))
    return path


def _quorum(values: Mapping[str, str | None]) -> dict[str, str]:
    out = {}
    for name, value in values.items():
        if value is None:
            continue
        text = str(value).strip().lower()
        if text not in QUORUM_WORDS and not text.isdigit():
            raise ConfigError(
                f"[target] {name} = {value!r} is not a Riak quorum",
                hint="use one, quorum, all, default or a number no larger than the bucket's n_val",
            )
        out[name] = text
    return out
