"""The Riak case (issue 3 part 6, issue 5 goal 3): what RiakTarget costs and how fast it loads.

Every load writes real demo documents (pds patients: ~0.7-1 KB of JSON, up to five indexes) and is
measured against the naive baseline in the same run: one PUT at a time on one keep-alive
`http.client` connection, with the same documents, paths and headers.

- Against a loopback sink (its own process, answering 204 / HEAD 404) the client's own CPU is
  measured, per PUT and per request: RiakTarget's first load is one create-only PUT per document
  (`If-None-Match: *`) on its asyncio client. The previous client (RiakHTTP, http.client on 64
  threads) doing the same PUTs is measured beside it, so the client change has its own figure.
- Against the Riak fake (its own process) and a real node (RIAK_URL's, or one the bench starts
  from the Riak test server folder beside the checkout): documents/s; on that node and on a
  three-node cluster, a whole `migrate run` beside wrk (`benchmarks.riak_run`).
- Against all three, RiakTarget's documents/s beside wrk's (a C client, `benchmarks.wrk`, 16
  connections) sending the same first-load PUTs: goal 3's ">= 0.9x what a C client gets from the
  same node" is the node's line; the sink's shows the client's own cost, the fake's a slow server.

Each load is bounded in documents and in seconds; a load cut by its time budget reports the rate
of the documents it finished.
"""

from __future__ import annotations

import base64
import http.client
import os
import pickle
import secrets
import ssl
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import msgspec

from benchmarks.hand_parser import HandConnection
from benchmarks.harness import Figure, Goal, Settings, repeat, skipped
from benchmarks.riak_run import bench_nodes, cluster_figures, node_run_figures
from benchmarks.sink import ServerProcess
from benchmarks.wrk import CONNECTIONS, wrk_load, wrk_path
from migrate.document import Document
from migrate.errors import MigrateError, TargetError
from migrate.target.riak import RiakHTTP, RiakTarget, RiakURL, parse_url
from migrate.target.riak.client import segment
from migrate.target.riak.store import JSON_TYPE

CASE = "riak"
IN_FLIGHT = 64
CPU_GOAL_US = 100.0
NODE_REPEATS = 3  # a real node takes ~1,300 PUT/s: fewer repeats keep the run within minutes
META = {"migrate-run": "bench", "migrate-chunk": "pds/patient/00001"}
NAIVE = "naive: 1 PUT at a time, http.client"
C_CLIENT = f"wrk (C), {CONNECTIONS} connections"
C_CLIENT_GOAL = Goal(">=", 0.9, "ratio")  # of what the C client gets from the same node
NO_WRK = "wrk not installed (Debian: apt-get install wrk)"


class BenchError(MigrateError):
    """A benchmark load went wrong (the figures would not mean what they say)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How much one run of the case loads."""

    documents: int
    batch: int  # documents per RiakTarget.write, as the pipeline writes a chunk
    budget: float  # seconds a single load may take before it stops between batches
    repeats: int


def plan_for(settings: Settings) -> Plan:
    if settings.quick:
        plan = Plan(documents=2000, batch=1000, budget=4.0, repeats=settings.repeats)
    else:
        plan = Plan(documents=8000, batch=2000, budget=15.0, repeats=settings.repeats)
    if settings.documents is not None:
        count = settings.documents
        plan = replace(plan, documents=count, batch=min(plan.batch, count))
    return plan


@dataclass(frozen=True, slots=True)
class Load:
    """One load as the server counted it and as this process's clock and CPU saw it."""

    documents: int
    heads: int
    puts: int
    cpu: float
    wall: float

    @property
    def requests(self) -> int:
        return self.heads + self.puts

    @property
    def cpu_per_put_us(self) -> float:
        return self.cpu / max(1, self.puts) * 1e6

    @property
    def cpu_per_request_us(self) -> float:
        return self.cpu / max(1, self.requests) * 1e6

    @property
    def cpu_per_document_us(self) -> float:
        return self.cpu / max(1, self.documents) * 1e6

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.wall if self.wall > 0 else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.wall if self.wall > 0 else 0.0


# ---- documents -------------------------------------------------------------------------------


def demo_documents(count: int) -> list[Document]:
    """`count` pds documents of a freshly generated demo (synthetic people, never real data)."""
    from migrate.demo import create_demo
    from migrate.project import Project

    documents: list[Document] = []
    with tempfile.TemporaryDirectory(prefix="migrate-bench-") as tmp:
        summary = create_demo(Path(tmp) / "demo", patients=count + count // 10 + 20, seed=1)
        project = Project.load(summary.config)
        try:
            plan = project.plan(project.config.select(["pds"])[0])
            with project.source.snapshot() as snapshot:
                for doc_plan in plan.doc_types:
                    for chunk in snapshot.plan_chunks(doc_plan.extract, 2000):
                        built = doc_plan.build(snapshot.extract(doc_plan.extract, chunk))
                        documents.extend(built.documents)
                        if len(documents) >= count:
                            return documents[:count]
        finally:
            project.close()
    raise BenchError(f"the demo gave {len(documents)} pds documents, fewer than {count}")


def object_path(doc: Document) -> str:
    return (
        f"/types/{segment(doc.bucket_type)}/buckets/{segment(doc.bucket)}/keys/{segment(doc.key)}"
    )


def put_headers(doc: Document, meta: dict[str, str]) -> list[tuple[str, str]]:
    """The headers RiakTarget sends with a first PUT: type, indexes, metadata and checksum."""
    headers = [("Content-Type", JSON_TYPE)]
    for name, values in doc.indexes:
        if values:
            headers.append((f"X-Riak-Index-{name}", ", ".join(str(v) for v in values)))
    headers += [(f"X-Riak-Meta-{name}", value) for name, value in meta.items()]
    headers.append(("X-Riak-Meta-Migrate-Checksum", doc.checksum))
    return headers


def raw_put(doc: Document, meta: dict[str, str], url: RiakURL) -> bytes:
    """The whole HTTP/1.1 request of RiakTarget's first-load PUT of `doc`: the naive baseline's
    path and headers, `If-None-Match: *`, and basic auth when RIAK_USER is set."""
    host, port = url.hosts[0]
    lines = [f"PUT {object_path(doc)} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in put_headers(doc, meta)]
    lines += [f"{name}: {value.decode('ascii')}" for name, value in basic_auth().items()]
    lines += ["If-None-Match: *", f"Content-Length: {len(doc.value)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + doc.value


class Buckets:
    """A fresh bucket name for every load, so no load finds another's objects."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.count = 0

    def next(self) -> str:
        self.count += 1
        return f"{self.prefix}-{self.count}"


# ---- loads -----------------------------------------------------------------------------------


def _measure(
    server: ServerProcess | None,
    body: Callable[[float], tuple[int, int]],
    budget: float,
) -> Load:
    """Run `body(deadline)` -> (documents, PUTs by the client's count), with CPU and wall clock;
    requests come from the server's counters when there is one."""
    before = server.counts() if server else Counter[str]()
    cpu, wall = time.process_time(), time.perf_counter()
    documents, puts = body(wall + budget)
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    if server is None:
        return Load(documents, documents, puts, cpu, wall)
    after = server.counts()
    return Load(documents, after["HEAD"] - before["HEAD"], after["PUT"] - before["PUT"], cpu, wall)


def target_load(
    target: RiakTarget, docs: Sequence[Document], plan: Plan, server: ServerProcess | None
) -> Load:
    """RiakTarget.write, a batch at a time (a create-only PUT per new document, 64 in flight)."""
    batches = (docs[start : start + plan.batch] for start in range(0, len(docs), plan.batch))
    return _write_each(target, batches, plan, server)


def planned_load(
    target: RiakTarget, docs: Sequence[Document], plan: Plan, server: ServerProcess | None
) -> Load:
    """`target_load` as `migrate run` loads: each batch planned beforehand by the target's
    preparer and pickled, as a worker sends it; the loading process unpickles it and writes."""
    prepare = target.preparer()
    assert prepare is not None
    sent = [
        pickle.dumps(prepare(docs[start : start + plan.batch]), pickle.HIGHEST_PROTOCOL)
        for start in range(0, len(docs), plan.batch)
    ]
    batches = (pickle.loads(data) for data in sent)  # noqa: S301 (made just above, by this process)
    return _write_each(target, batches, plan, server)


def _write_each(
    target: RiakTarget,
    batches: Iterator[Sequence[Document]],
    plan: Plan,
    server: ServerProcess | None,
) -> Load:
    """RiakTarget.write of each batch in turn, the batches made inside the measurement."""

    def body(deadline: float) -> tuple[int, int]:
        done = written = 0
        for batch in batches:
            written += target.write(batch, meta=META).written
            done += len(batch)
            if time.perf_counter() > deadline:
                break
        return done, written

    return _measure(server, body, plan.budget)


def naive_load(
    url: RiakURL, docs: Sequence[Document], plan: Plan, server: ServerProcess | None
) -> Load:
    """The baseline: one PUT at a time on one keep-alive http.client connection."""
    host, port = url.hosts[0]
    if url.tls:
        context = ssl.create_default_context(cafile=url.ca_file)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=10, context=context
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=10)
    auth = basic_auth()

    def body(deadline: float) -> tuple[int, int]:
        done = 0
        for doc in docs:
            if done % 64 == 0 and time.perf_counter() > deadline:
                break
            path = object_path(doc)
            headers = {name: value.encode("utf-8") for name, value in put_headers(doc, META)}
            headers.update(auth)
            conn.request("PUT", path, body=doc.value, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status not in (200, 204):
                raise BenchError(
                    f"naive baseline: {url.display} answered {response.status} to PUT "
                    f"{doc.bucket_type}/{doc.bucket}/{doc.key}"
                )
            done += 1
        return done, done

    try:
        return _measure(server, body, plan.budget)
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(
            f"naive baseline: {url.display} failed ({type(exc).__name__})",
            hint="check that the node is up and answering on its HTTP port",
        ) from exc
    finally:
        conn.close()


def basic_auth() -> dict[str, bytes]:
    """RiakTarget's basic auth (RIAK_USER / RIAK_PASSWORD), for the baseline to match it."""
    user = os.environ.get("RIAK_USER")
    if not user:
        return {}
    token = base64.b64encode(f"{user}:{os.environ.get('RIAK_PASSWORD', '')}".encode())
    return {"Authorization": b"Basic " + token}


def put_only_load(
    client: RiakHTTP,
    pool: ThreadPoolExecutor,
    docs: Sequence[Document],
    plan: Plan,
    server: ServerProcess | None,
) -> Load:
    """The previous client: RiakHTTP (http.client) on 64 threads, one PUT per document."""

    def put(doc: Document) -> None:
        client.request(
            "PUT",
            object_path(doc),
            headers=put_headers(doc, META),
            body=doc.value,
            ok=(200, 204),
        )

    def body(deadline: float) -> tuple[int, int]:
        done = 0
        for start in range(0, len(docs), plan.batch):
            batch = docs[start : start + plan.batch]
            for _ in pool.map(put, batch):
                pass
            done += len(batch)
            if time.perf_counter() > deadline:
                break
        return done, done

    return _measure(server, body, plan.budget)


def c_client_load(
    wrk: str, url: RiakURL, docs: Sequence[Document], plan: Plan, server: ServerProcess | None
) -> Load:
    """The C client's load: wrk sends the same first-load PUTs, each document once; a server of
    ours must have received every PUT wrk had answered (and none it did not send). As a Load:
    the documents answered 2xx, wrk's PUTs, and wrk's clock (this process's CPU is not wrk's)."""
    host, port = url.hosts[0]
    scheme = "https" if url.tls else "http"
    base_url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/"
    before = server.counts()["PUT"] if server else 0
    requests = [raw_put(doc, META, url) for doc in docs]
    load = wrk_load(wrk, base_url, requests, budget=plan.budget, where=url.display)
    if server is not None:
        received = server.counts()["PUT"] - before
        if not load.answered <= received <= load.sent:
            raise BenchError(
                f"wrk counted {load.answered} answers of {load.sent} PUTs, the server "
                f"{received} PUTs"
            )
    return Load(load.ok, 0, load.sent, 0.0, load.seconds)


def in_bucket(docs: Sequence[Document], bucket: str) -> list[Document]:
    return [msgspec.structs.replace(doc, bucket=bucket) for doc in docs]


def _check_stored(server: ServerProcess, docs: Sequence[Document], load: Load) -> Load:
    stored = server.stored_keys(docs[0].bucket_type, docs[0].bucket)
    if stored != load.documents:
        raise BenchError(
            f"the fake holds {stored} objects in bucket {docs[0].bucket} after a load of "
            f"{load.documents} documents"
        )
    return load


# ---- figures ---------------------------------------------------------------------------------


def _samples(loads: Sequence[Load], metric: Callable[[Load], float]) -> tuple[float, ...]:
    return tuple(metric(load) for load in loads)


def _per_doc(loads: Sequence[Load], metric: Callable[[Load], int]) -> float:
    docs = sum(load.documents for load in loads)
    return sum(metric(load) for load in loads) / max(1, docs)


def sink_figures(docs: Sequence[Document], plan: Plan) -> list[Figure]:
    """Client CPU per PUT and per request against the 204 sink, beside the naive loop and the
    previous threaded client."""
    buckets = Buckets("bench-sink")
    with ServerProcess("sink") as sink:
        url = f"riak://127.0.0.1:{sink.port}"
        target = RiakTarget(url, max_in_flight=IN_FLIGHT)
        hand = RiakTarget(url, max_in_flight=IN_FLIGHT)
        hand._async.protocol = HandConnection
        client = RiakHTTP(parse_url(url))
        pool = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="bench-put")
        try:
            warm = list(docs[: min(len(docs), 200)])
            target.write(in_bucket(warm, "bench-warm-up"), meta=META)
            hand.write(in_bucket(warm, "bench-warm-up-hand"), meta=META)
            for _ in pool.map(lambda d: client.request("HEAD", object_path(d), ok=(404,)), warm):
                pass
            runs = [
                lambda: target_load(target, in_bucket(docs, buckets.next()), plan, sink),
                lambda: naive_load(parse_url(url), in_bucket(docs, buckets.next()), plan, sink),
                lambda: put_only_load(client, pool, in_bucket(docs, buckets.next()), plan, sink),
                lambda: planned_load(target, in_bucket(docs, buckets.next()), plan, sink),
                lambda: target_load(hand, in_bucket(docs, buckets.next()), plan, sink),
            ]
            wrk = wrk_path()
            if wrk is not None:
                c_run = partial(c_client_load, wrk, parse_url(url), plan=plan, server=sink)
                runs.append(lambda: c_run(in_bucket(docs, buckets.next())))
            tgt, naive, idea, planned, handmade, *c_loads = repeat(plan.repeats, *runs)
        finally:
            pool.shutdown(wait=True)
            client.close()
            target.close()
            hand.close()
    heads, puts = _per_doc(tgt, lambda x: x.heads), _per_doc(tgt, lambda x: x.puts)
    shape = (
        f"RiakTarget sent {heads:.2f} HEAD + {puts:.2f} PUT per document; "
        f"{len(docs)} documents per load, medians of {plan.repeats}"
    )
    return [
        Figure(
            CASE,
            "client CPU per PUT (sink)",
            "us/PUT",
            _samples(tgt, lambda x: x.cpu_per_put_us),
            NAIVE,
            _samples(naive, lambda x: x.cpu_per_put_us),
            Goal("<=", CPU_GOAL_US),
            note=shape,
        ),
        Figure(
            CASE,
            "client CPU per PUT, planned by the workers (sink)",
            "us/PUT",
            _samples(planned, lambda x: x.cpu_per_put_us),
            "RiakTarget.write of documents",
            _samples(tgt, lambda x: x.cpu_per_put_us),
            Goal("<=", CPU_GOAL_US),
            note="the loading process's share when `migrate run` loads: batches planned by the "
            "target's preparer and pickled beforehand, as a worker sends them; unpickling them "
            "is counted here, unpickling the baseline's documents is not",
        ),
        Figure(
            CASE,
            "client CPU per PUT, httptools vs the hand-made parser (sink)",
            "us/PUT",
            _samples(tgt, lambda x: x.cpu_per_put_us),
            "hand-made parser (benchmarks/hand_parser.py)",
            _samples(handmade, lambda x: x.cpu_per_put_us),
            note="the same RiakTarget.write, its answers parsed by httptools (llhttp) or by the "
            "parser it replaced; httptools stays unless it costs more CPU per PUT",
        ),
        Figure(
            CASE,
            "client CPU per request (sink)",
            "us/req",
            _samples(tgt, lambda x: x.cpu_per_request_us),
            NAIVE,
            _samples(naive, lambda x: x.cpu_per_request_us),
        ),
        Figure(
            CASE,
            "client CPU per doc vs threads (sink)",
            "us/doc",
            _samples(tgt, lambda x: x.cpu_per_document_us),
            "http.client, 64 threads",
            _samples(idea, lambda x: x.cpu_per_document_us),
            Goal("<=", CPU_GOAL_US),
            note="the same PUTs through RiakHTTP on a pool of 64 threads (the previous write path)",
        ),
        Figure(
            CASE,
            "documents/s into the sink",
            "docs/s",
            _samples(tgt, lambda x: x.docs_per_s),
            NAIVE,
            _samples(naive, lambda x: x.docs_per_s),
        ),
        _c_client_figure(
            "documents/s into the sink vs wrk",
            tgt,
            c_loads,
            None,
            "the 204 sink is one Python process: it bounds wrk",
        ),
    ]


def fake_figures(docs: Sequence[Document], plan: Plan) -> list[Figure]:
    """Documents/s into the Riak fake (its own process), RiakTarget against the naive loop."""
    buckets = Buckets("bench-fake")
    with ServerProcess("fake") as fake:
        url = f"riak://127.0.0.1:{fake.port}"
        target = RiakTarget(url, max_in_flight=IN_FLIGHT)

        def fresh() -> list[Document]:
            fake.reset()  # keeps the fake's memory flat between loads
            return in_bucket(docs, buckets.next())

        def load_target() -> Load:
            batch = fresh()
            return _check_stored(fake, batch, target_load(target, batch, plan, fake))

        def load_naive() -> Load:
            batch = fresh()
            return _check_stored(fake, batch, naive_load(parse_url(url), batch, plan, fake))

        runs = [load_target, load_naive]
        wrk = wrk_path()
        if wrk is not None:
            runs.append(lambda: c_client_load(wrk, parse_url(url), fresh(), plan, fake))
        try:
            target.write(in_bucket(docs[: min(len(docs), 200)], "bench-warm-up"), meta=META)
            tgt, naive, *c_loads = repeat(plan.repeats, *runs)
        finally:
            target.close()
    rates = (
        f"requests/s: RiakTarget {_median(tgt, lambda x: x.requests_per_s):,.0f} "
        f"(create-only PUT), naive {_median(naive, lambda x: x.requests_per_s):,.0f} (PUT)"
    )
    return [
        Figure(
            CASE,
            f"documents/s into the fake (max_in_flight {IN_FLIGHT})",
            "docs/s",
            _samples(tgt, lambda x: x.docs_per_s),
            NAIVE,
            _samples(naive, lambda x: x.docs_per_s),
            note=rates,
        ),
        _c_client_figure(
            "documents/s into the fake vs wrk",
            tgt,
            c_loads,
            None,
            "a slow server (Python) bounds both",
        ),
    ]


def _c_client_figure(
    name: str,
    tgt: Sequence[Load],
    c_loads: Sequence[Sequence[Load]],
    goal: Goal | None,
    note: str,
) -> Figure:
    """RiakTarget's documents/s beside wrk's into the same server, or why it was not measured."""
    if not c_loads:
        return skipped(CASE, name, "docs/s", NO_WRK)
    return Figure(
        CASE,
        name,
        "docs/s",
        _samples(tgt, lambda x: x.docs_per_s),
        C_CLIENT,
        _samples(c_loads[0], lambda x: x.docs_per_s),
        goal,
        note=f"{note}; each document once per load, the same first-load PUTs",
    )


def _median(loads: Sequence[Load], metric: Callable[[Load], float]) -> float:
    return statistics.median(metric(load) for load in loads)


NODE_FIGURES = (
    ("documents/s into the node", "docs/s"),
    ("client CPU per PUT, node", "us/PUT"),
    ("documents/s into the node vs wrk", "docs/s"),
)


def node_figures(
    docs: Sequence[Document], plan: Plan, riak_url: str | None, reason: str = "RIAK_URL not set"
) -> list[Figure]:
    """The same two loads against a real node, in new buckets (nothing is deleted)."""
    if not riak_url:
        return [skipped(CASE, name, unit, reason) for name, unit in NODE_FIGURES]
    buckets = Buckets(f"migrate-bench-{secrets.token_hex(4)}")
    try:
        url = parse_url(riak_url)
        target = RiakTarget(riak_url, max_in_flight=IN_FLIGHT)
    except MigrateError as exc:
        return [skipped(CASE, name, unit, exc.message) for name, unit in NODE_FIGURES]
    try:
        if not target.ping():
            raise TargetError(f"{url.display} did not answer its ping with OK")
        runs = [
            lambda: target_load(target, in_bucket(docs, buckets.next()), plan, None),
            lambda: naive_load(url, in_bucket(docs, buckets.next()), plan, None),
        ]
        wrk = wrk_path()
        if wrk is not None:
            c_run = partial(c_client_load, wrk, url, plan=plan, server=None)
            runs.append(lambda: c_run(in_bucket(docs, buckets.next())))
        tgt, naive, *c_loads = repeat(min(plan.repeats, NODE_REPEATS), *runs)
    except MigrateError as exc:
        return [skipped(CASE, name, unit, exc.message) for name, unit in NODE_FIGURES]
    finally:
        target.close()
    where = f"{url.display}, buckets {buckets.prefix}-1..{buckets.count} (left in place)"
    return [
        Figure(
            CASE,
            NODE_FIGURES[0][0],
            NODE_FIGURES[0][1],
            _samples(tgt, lambda x: x.docs_per_s),
            NAIVE,
            _samples(naive, lambda x: x.docs_per_s),
            note=where,
        ),
        Figure(
            CASE,
            NODE_FIGURES[1][0],
            NODE_FIGURES[1][1],
            _samples(tgt, lambda x: x.cpu_per_put_us),
            NAIVE,
            _samples(naive, lambda x: x.cpu_per_put_us),
            Goal("<=", CPU_GOAL_US),
        ),
        _c_client_figure(NODE_FIGURES[2][0], tgt, c_loads, C_CLIENT_GOAL, where),
    ]


def run(settings: Settings) -> list[Figure]:
    """The whole Riak case: sink, fake, and a real node (RIAK_URL's, or one started here from
    the Riak test server folder) and a three-node cluster (started here) when there is one."""
    plan = plan_for(settings)
    docs = demo_documents(plan.documents)
    figures = [*sink_figures(docs, plan), *fake_figures(docs, plan)]
    with bench_nodes(1) as (url, reason):
        figures += node_figures(docs, plan, url, reason)
        figures += node_run_figures(settings, 1, url, reason)
    figures += cluster_figures(settings)
    return figures
