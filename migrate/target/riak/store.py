"""RiakTarget: the Target protocol over Riak KV's HTTP API.

Writes are idempotent and sibling-free: each document is first read with HEAD (vclock, checksum
metadata and indexes); an object stored with the same checksum and indexes costs no write, and any
other is PUT with the vclock it replaces, so even an `allow_mult=true` bucket type gets no sibling.
Siblings already there (a 300) are resolved on purpose: the document is the truth, and a PUT with
the 300's vclock replaces them all. Transient failures are retried (tenacity) with exponential
backoff and jitter; the first terminal failure stops the whole write. A circuit breaker over
every request pauses the load when the node keeps failing (see `breaker`).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Any, TypeVar

import msgspec
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from migrate.document import Document, IndexValue
from migrate.errors import ConfigError, TargetError, TransientTargetError
from migrate.target.base import StoredObject, WriteStats
from migrate.target.riak.breaker import DEFAULT_THRESHOLD, CircuitBreaker, CircuitOpenError
from migrate.target.riak.client import Reply, RiakHTTP, parse_url, segment

CHECKSUM_META = "migrate-checksum"
JSON_TYPE = "application/json; charset=utf-8"
QUORUM_WORDS = ("one", "quorum", "all", "default")
PAGE_SIZE = 1000
_INDEX_NAME = re.compile(r"^[a-z0-9_]+_(bin|int)$")
_META_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_T = TypeVar("_T")


class _Aborted(Exception):
    """Another document failed for good: stop this one without trying further."""


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
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if max_in_flight < 1 or max_attempts < 1 or failure_threshold < 1:
            raise ConfigError(
                "[target] max_in_flight, max_attempts and failure_threshold must be at least 1"
            )
        env = os.environ if environ is None else environ
        self._url = parse_url(url)
        self._http = RiakHTTP(
            self._url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            cool_off=cool_off,
            user=env.get("RIAK_USER") or None,
            password=env.get("RIAK_PASSWORD"),
        )
        self.max_in_flight = max_in_flight
        self.max_attempts = max_attempts
        self.backoff = (backoff_initial, backoff_max)
        self._write_q = _quorum({"w": w, "dw": dw, "pw": pw})
        self._read_q = _quorum({"r": r})
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._breaker = CircuitBreaker(self._url.display, threshold=failure_threshold)

    @property
    def display_url(self) -> str:
        return self._url.display

    # ---- writes -------------------------------------------------------------------------------

    def write(self, documents: Sequence[Document], *, meta: Mapping[str, str]) -> WriteStats:
        meta_headers = _meta_headers(meta)
        plans = [(doc, _index_headers(doc)) for doc in documents]
        if not plans:
            return WriteStats(written=0, unchanged=0)
        self._breaker.trial()
        abort = threading.Event()
        pool = self._executor()
        futures: list[Future[bool]] = [
            pool.submit(self._store_one, doc, headers, meta_headers, abort)
            for doc, headers in plans
        ]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in done if f.exception() is not None), None)
        if failed is not None:
            abort.set()
            for future in futures:
                future.cancel()  # queued documents never start
            wait(futures)
            errors = [f.exception() for f in futures if not f.cancelled()]
            failures = [e for e in errors if e is not None and not isinstance(e, _Aborted)]
            # an open circuit is the cause of the other failures: report it, not one of them
            raise next((e for e in failures if isinstance(e, CircuitOpenError)), failures[0])
        written = sum(1 for f in futures if f.result())
        return WriteStats(written=written, unchanged=len(futures) - written)

    def _store_one(
        self,
        doc: Document,
        index_headers: list[tuple[str, str]],
        meta_headers: list[tuple[str, str]],
        abort: threading.Event,
    ) -> bool:
        """Store one document; True when a PUT was made (now or by an earlier attempt)."""
        path = _object_path(doc.bucket_type, doc.bucket, doc.key)
        put_sent = False

        def attempt() -> bool:
            nonlocal put_sent
            if abort.is_set():
                raise _Aborted
            head = self._request("HEAD", path, query=self._read_q, ok=(200, 300, 404))
            if head.status == 200 and _is_current(head, doc):
                return put_sent
            headers = [("Content-Type", JSON_TYPE), *index_headers, *meta_headers]
            headers.append(("X-Riak-Meta-Migrate-Checksum", doc.checksum))
            vclock = head.header("x-riak-vclock")
            if vclock:
                headers.append(("X-Riak-Vclock", vclock))
            put_sent = True
            self._request(
                "PUT", path, query=self._write_q, headers=headers, body=doc.value, ok=(200, 204)
            )
            return True

        return self._retrying(attempt, abort)

    def _retrying(self, call: Callable[[], _T], abort: threading.Event | None = None) -> _T:
        """Run `call`, retrying transient failures with exponential backoff and jitter."""
        if abort is None:
            self._breaker.trial()  # a new operation outside a write (which tries once itself)
        event = abort or threading.Event()

        def sleep(seconds: float) -> None:
            event.wait(seconds)  # wakes at once when another document failed for good

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=self.backoff[0], max=self.backoff[1], jitter=self.backoff[0]
            ),
            retry=retry_if_exception_type(TransientTargetError),
            sleep=sleep,
            reraise=True,
        )
        try:
            return retrying(call)
        except TransientTargetError as exc:
            if self.max_attempts == 1:
                raise
            raise TransientTargetError(
                f"{exc.message} (gave up after {self.max_attempts} attempts)", hint=exc.hint
            ) from exc

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        ok: Collection[int] = (200,),
    ) -> Reply:
        """One request through the circuit breaker: refused while it is open, counted after."""
        self._breaker.check()
        try:
            reply = self._http.request(method, path, query=query, headers=headers, body=body, ok=ok)
        except TransientTargetError as exc:
            self._breaker.record_failure(exc, every_host_down=_every_host_down(self._http))
            raise
        self._breaker.record_success()
        return reply

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="riak")
            return self._pool

    # ---- reads --------------------------------------------------------------------------------

    def get(self, bucket_type: str, bucket: str, key: str) -> StoredObject | None:
        path = _object_path(bucket_type, bucket, key)
        reply: Reply = self._retrying(
            lambda: self._request("GET", path, query=self._read_q, ok=(200, 300, 404))
        )
        if _missing(reply, self.display_url, path):
            return None
        if reply.status == 300:
            count = max(0, len(reply.body.decode("utf-8", "replace").splitlines()) - 1)
            raise TargetError(
                f"Riak at {self.display_url} holds {count} siblings for "
                f"{bucket_type}/{bucket}/{key}",
                hint="rerun the load of its chunk: a write resolves siblings with the document",
            )
        indexes, meta = _parse_headers(reply)
        return StoredObject(bucket_type, bucket, key, reply.body, indexes, meta)

    def delete(self, bucket_type: str, bucket: str, key: str) -> bool:
        path = _object_path(bucket_type, bucket, key)
        reply: Reply = self._retrying(
            lambda: self._request("DELETE", path, query=self._write_q, ok=(204, 404))
        )
        return not _missing(reply, self.display_url, path)

    def query_index(
        self,
        bucket_type: str,
        bucket: str,
        name: str,
        value: IndexValue,
        end: IndexValue | None = None,
    ) -> list[str]:
        if name not in ("$bucket", "$key") and not _INDEX_NAME.match(name):
            raise TargetError(
                f"index name {name!r} is not a Riak index",
                hint="names are lowercase letters, digits and _, ending in _bin or _int",
            )
        if name.endswith("_int") and any(
            isinstance(v, bool) or not isinstance(v, int) for v in (value, end) if v is not None
        ):
            raise TargetError(f"index {name} is an integer index: query it with integers")
        path = f"/types/{segment(bucket_type)}/buckets/{segment(bucket)}/index/{segment(name)}"
        path += "/" + segment(str(value))
        if end is not None:
            path += "/" + segment(str(end))
        keys: dict[str, None] = {}
        continuation: str | None = None
        while True:
            query = {"max_results": str(PAGE_SIZE)}
            if continuation:
                query["continuation"] = continuation
            reply = self._retrying(partial(self._request, "GET", path, query=query))
            try:
                page = msgspec.json.decode(reply.body, type=_IndexPage)
            except msgspec.DecodeError as exc:
                raise TargetError(
                    f"Riak at {self.display_url} answered an index query on {name} with "
                    "something that is not its JSON result",
                    hint="check that the URL points at Riak's HTTP API",
                ) from exc
            keys.update(dict.fromkeys(page.keys))
            continuation = page.continuation
            if not continuation or not page.keys:
                return list(keys)

    def index_terms(
        self, bucket_type: str, bucket: str, name: str, start: IndexValue, end: IndexValue
    ) -> Iterator[tuple[IndexValue, str]]:
        """(term, key) pairs of a 2i range query with return_terms, page by page (Riak sorts a
        paginated range by term, then key)."""
        if not _INDEX_NAME.match(name):
            raise TargetError(
                f"index name {name!r} is not a Riak index",
                hint="names are lowercase letters, digits and _, ending in _bin or _int",
            )
        integer = name.endswith("_int")
        path = f"/types/{segment(bucket_type)}/buckets/{segment(bucket)}/index/{segment(name)}"
        path += f"/{segment(str(start))}/{segment(str(end))}"
        continuation: str | None = None
        while True:
            query = {"max_results": str(PAGE_SIZE), "return_terms": "true"}
            if continuation:
                query["continuation"] = continuation
            reply = self._retrying(partial(self._request, "GET", path, query=query))
            try:
                page = msgspec.json.decode(reply.body, type=_TermsPage)
            except msgspec.DecodeError as exc:
                raise TargetError(
                    f"Riak at {self.display_url} answered an index query on {name} with "
                    "something that is not its JSON result",
                    hint="check that the URL points at Riak's HTTP API",
                ) from exc
            for pair in page.results:
                for term, key in pair.items():
                    yield (int(term) if integer else term), key
            continuation = page.continuation
            if not continuation or not page.results:
                return

    def iter_bucket(self, bucket_type: str, bucket: str) -> Iterator[StoredObject]:
        """Every object via the `$bucket` index, in key order. Costs a key listing: tests only."""
        for key in sorted(self.query_index(bucket_type, bucket, "$bucket", bucket)):
            stored = self.get(bucket_type, bucket, key)
            if stored is not None:
                yield stored

    # ---- node ---------------------------------------------------------------------------------

    def ping(self) -> bool:
        return self._retrying(lambda: self._request("GET", "/ping")).body.strip() == b"OK"

    def stats(self) -> dict[str, Any]:
        reply: Reply = self._retrying(lambda: self._request("GET", "/stats"))
        return dict(msgspec.json.decode(reply.body, type=dict[str, Any]))

    def bucket_props(self, bucket_type: str, bucket: str | None = None) -> dict[str, Any]:
        """The properties of a bucket type, or of one bucket in it."""
        path = f"/types/{segment(bucket_type)}"
        if bucket is not None:
            path += f"/buckets/{segment(bucket)}"
        reply: Reply = self._retrying(lambda: self._request("GET", path + "/props"))
        props = msgspec.json.decode(reply.body, type=dict[str, dict[str, Any]])
        return dict(props["props"])

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()


class _TermsPage(msgspec.Struct):
    results: list[dict[str, str]] = []
    continuation: str | None = None


class _IndexPage(msgspec.Struct):
    keys: list[str] = []
    continuation: str | None = None


def _every_host_down(http: RiakHTTP) -> bool:
    """True when every host of the client is in cool-off after a failure (client.py keeps that
    state per host; it has no public accessor yet)."""
    now = time.monotonic()
    return all(host.down_until > now for host in http._hosts)


def _missing(reply: Reply, url: str, path: str) -> bool:
    """True for Riak's 404 "not found" of an object; a 404 for another reason is an error."""
    if reply.status != 404:
        return False
    text = reply.body.decode("utf-8", errors="replace").strip()
    if text and text != "not found":
        raise TargetError(
            f"Riak at {url} answered 404 to {path}: {text[:200]}",
            hint="create and activate the bucket type (riak admin bucket-type create/activate)",
        )
    return True


def _object_path(bucket_type: str, bucket: str, key: str) -> str:
    if not key or not bucket or not bucket_type:
        raise TargetError(f"empty bucket type, bucket or key in {bucket_type}/{bucket}/{key}")
    return f"/types/{segment(bucket_type)}/buckets/{segment(bucket)}/keys/{segment(key)}"


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


def _meta_headers(meta: Mapping[str, str]) -> list[tuple[str, str]]:
    headers = []
    for name, value in meta.items():
        if not _META_NAME.match(name) or name.lower() == CHECKSUM_META:
            raise TargetError(
                f"metadata name {name!r} cannot be sent to Riak",
                hint="use letters, digits and '-'; migrate-checksum is set by the target itself",
            )
        if any(ord(c) < 32 or ord(c) == 127 for c in str(value)):
            raise TargetError(f"metadata {name} holds control characters")
        headers.append((f"X-Riak-Meta-{name}", str(value)))
    return headers


def _index_headers(doc: Document) -> list[tuple[str, str]]:
    """One `X-Riak-Index-NAME` header per index, its values comma-separated as Riak splits them."""
    headers = []
    for name, values in doc.indexes:
        where = f"document {doc.bucket_type}/{doc.bucket}/{doc.key}, index {name}"
        if not _INDEX_NAME.match(name):
            raise TargetError(f"{where}: not a Riak index name", hint="end it in _bin or _int")
        texts = []
        for value in values:
            if name.endswith("_int"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TargetError(f"{where}: an entry is not an integer")
                texts.append(str(value))
                continue
            text = str(value)
            if "," in text or text != text.strip() or not text:
                raise TargetError(
                    f"{where}: an entry has a comma or leading/trailing spaces, which Riak's HTTP "
                    "API would split or strip",
                    hint="derive the index from a column without commas, or normalise it",
                )
            if any(ord(c) < 32 or ord(c) == 127 for c in text):
                raise TargetError(f"{where}: an entry holds control characters")
            texts.append(text)
        if texts:
            headers.append((f"X-Riak-Index-{name}", ", ".join(texts)))
    return headers


def _parse_headers(reply: Reply) -> tuple[dict[str, list[IndexValue]], dict[str, str]]:
    indexes: dict[str, list[IndexValue]] = {}
    meta: dict[str, str] = {}
    for name, value in reply.headers.items():
        if name.startswith("x-riak-index-"):
            index = name[len("x-riak-index-") :]
            parts = [p.strip() for p in value.split(",") if p.strip()]
            entries: list[IndexValue] = []
            entries += [int(p) for p in parts] if index.endswith("_int") else parts
            indexes[index] = _ordered(entries)
        elif name.startswith("x-riak-meta-"):
            meta[name[len("x-riak-meta-") :]] = value
    return dict(sorted(indexes.items())), meta


def _is_current(head: Reply, doc: Document) -> bool:
    """True when the stored object has the document's checksum and exactly its indexes."""
    if head.header("x-riak-meta-migrate-checksum") != doc.checksum:
        return False
    stored, _ = _parse_headers(head)
    wanted = {
        name: _ordered(values if name.endswith("_int") else [str(v) for v in values])
        for name, values in doc.indexes
        if values
    }
    return stored == wanted


def _ordered(values: Sequence[IndexValue]) -> list[IndexValue]:
    """Distinct entries in order: integers numerically, then text by code point."""
    ints = sorted({v for v in values if isinstance(v, int)})
    texts = sorted({v for v in values if isinstance(v, str)})
    return [*ints, *texts]
