"""A whole `migrate run` against a real Riak node, at the node's own ceiling (issue 18, part 5).

In one run of the bench, on the same node: wrk (a C client, 16 connections) sends the first-load
PUTs of a project's documents, byte for byte what `migrate run` sends (the same paths, index and
metadata headers, bodies), and `migrate run` of that project (`benchmarks.shop`: a schema unlike
the demo's) loads the same documents, extract, transform, load and the final verification all in
its wall clock. Each load goes to buckets of its own; the two alternate (A B A B). Goal: the run
reaches >= 0.9x wrk's documents/s. On a machine where the node shares the cores, the toolkit's
CPU is the node's, so every process of the run is counted (`benchmarks.cpu`), beside wrk's own.

Also measured there: a dry-run reconcile of the loaded project against 16 threads reading every
body back (goal >= 25x).

The node is RIAK_URL's when it is set; otherwise one started for the bench from the Riak test
server folder beside the checkout (`benchmarks.riak_node`), and a three-node cluster for the
same figures; without the folder those figures say why they were skipped.
"""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cpu import counted
from benchmarks.harness import Figure, Goal, Settings, repeat, skipped
from benchmarks.riak_node import RiakNodeError, RiakNodes, absent_reason, riak_home
from benchmarks.shop import BUCKET, SERVICE, create_project, documents, point_at
from benchmarks.wrk import CONNECTIONS, wrk_load, wrk_path
from migrate.document import Document
from migrate.errors import MigrateError
from migrate.ledger import new_run_id
from migrate.target.riak import RiakTarget, parse_url
from migrate.target.riak.batch import request_parts
from migrate.target.riak.loader import common_headers
from migrate.target.riak.objects import meta_headers

CASE = "riak"
C_CLIENT = f"wrk (C), {CONNECTIONS} connections"
RUN_GOAL = Goal(">=", 0.9, "ratio")
CPU_GOAL = Goal("<=", 100)
RECONCILE_GOAL = Goal(">=", 25, "ratio")
RECONCILE_BASELINE = "GET every body, 16 threads"
SMALL = 100  # documents of the run that shows a run's fixed CPU


class BenchError(MigrateError):
    """A whole-run load went wrong (the figures would not mean what they say)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One load: documents, its wall seconds, and its CPU seconds (every process counted)."""

    documents: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.documents / self.wall

    @property
    def cpu_per_document_us(self) -> float:
        return self.cpu / self.documents * 1e6


def customers_for(settings: Settings) -> int:
    if settings.documents is not None:
        return settings.documents
    return 3_000 if settings.quick else 20_000


# ---- the node or cluster ------------------------------------------------------------------------


@contextlib.contextmanager
def bench_nodes(nodes: int) -> Iterator[tuple[str | None, str]]:
    """(target URL, "") of RIAK_URL (one node only), else of `nodes` nodes started here (in a
    temporary folder) and stopped after; or (None, why there is none)."""
    named = os.environ.get("RIAK_URL")
    if named and nodes == 1:
        yield named, ""
        return
    if named:
        yield None, "RIAK_URL names the node: no cluster is started beside it"
        return
    if riak_home() is None:
        yield None, absent_reason()
        return
    with tempfile.TemporaryDirectory(prefix="migrate-bench-riak-") as folder:
        try:
            started = RiakNodes.start(Path(folder) / "riak", nodes=nodes)
        except RiakNodeError as exc:
            yield None, str(exc)
            return
        try:
            yield started.url, ""
        finally:
            with contextlib.suppress(RiakNodeError):
                started.stop()


# ---- the loads ----------------------------------------------------------------------------------


def wrk_requests(
    docs: Sequence[tuple[Document, str]], url: str, suffix: str, run_id: str
) -> list[bytes]:
    """The first-load PUTs `migrate run` sends for these documents into bucket BUCKET+suffix."""
    host, port = parse_url(url).hosts[0]
    out = []
    for built, chunk_id in docs:
        doc = replace_bucket(built, built.bucket + suffix)
        path, lines = request_parts(doc)
        common = common_headers(
            meta_headers({"migrate-run": run_id, "migrate-chunk": chunk_id}), b""
        )
        head = (
            f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()
            + common
            + lines
            + b"Content-Length: %d\r\n\r\n" % len(doc.value)
        )
        out.append(head + doc.value)
    return out


def replace_bucket(doc: Document, bucket: str) -> Document:
    import msgspec

    return msgspec.structs.replace(doc, bucket=bucket)


def wrk_sample(wrk: str, url: str, requests: list[bytes]) -> Sample:
    host, port = parse_url(url).hosts[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = wrk_load(wrk, f"http://{host}:{port}/", requests, budget=600, where=url)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # wrk stops once only its connections' last requests can still be unanswered
    if not len(requests) - CONNECTIONS <= load.ok <= len(requests):
        raise BenchError(f"wrk stored {load.ok} of {len(requests)} documents into {url}")
    return Sample(load.ok, load.seconds, cpu)


def run_sample(template: Path, work: Path, url: str, suffix: str, expected: int) -> Sample:
    """`migrate run` of a fresh copy of the project, into buckets of its own."""
    project = work / f"run{suffix}"
    shutil.copytree(template, project)
    point_at(project, url, bucket_suffix=suffix)
    command = [str(Path(sys.executable).parent / "migrate"), "run"]
    try:
        done = counted(command, cwd=project, env={**os.environ, "COLUMNS": "200"})
    finally:
        shutil.rmtree(project, ignore_errors=True)
    if done.returncode != 0 or "equal" not in done.stdout:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1][:300]
        raise BenchError(f"`migrate run` into {url} exited with {done.returncode}: {last}")
    return Sample(expected, done.wall, done.cpu)


def reconcile_rates(
    template: Path, work: Path, url: str, suffix: str, *, repeats: int
) -> tuple[list[float], float]:
    """(dry-run reconcile documents/s of each repeat, GET-every-body documents/s) of the project
    loaded into buckets of `suffix`. The workers' forkserver is started first, as the console
    script starts it beside its own imports, so no repeat pays for its start."""
    from migrate.processes import warm_up
    from migrate.project import Project
    from migrate.reconcile import Options, reconcile_service
    from migrate.target.chunks import CHUNK_INDEX, chunk_prefix_range

    project_dir = work / f"reconcile{suffix}"
    shutil.copytree(template, project_dir)
    point_at(project_dir, url, bucket_suffix=suffix)
    done = counted(
        [str(Path(sys.executable).parent / "migrate"), "run"], cwd=project_dir, env=dict(os.environ)
    )
    if done.returncode != 0:
        raise BenchError(f"`migrate run` for the reconcile figures exited {done.returncode}")
    warm_up()
    project = Project.load(project_dir / "migrate.toml")
    target = RiakTarget(url)
    try:
        reconciles = []
        for _ in range(repeats):
            started = time.perf_counter()
            service = project.config.service(SERVICE)
            result = reconcile_service(project, service, Options(dry_run=True))
            reconciles.append(result.counts()["expected"] / (time.perf_counter() - started))
            if not result.equal:
                raise BenchError(f"the dry-run reconcile of {url} found differences")
        bucket = BUCKET + suffix
        terms = target.index_terms("default", bucket, CHUNK_INDEX, *chunk_prefix_range())
        keys = [key for _, key in terms]
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            found = sum(1 for o in pool.map(lambda k: target.get("default", bucket, k), keys) if o)
        gets = found / (time.perf_counter() - started)
        if found != len(keys):
            raise BenchError(f"read {found} of {len(keys)} bodies back from {url}")
    finally:
        target.close()
        project.close()
        shutil.rmtree(project_dir, ignore_errors=True)
    return reconciles, gets


# ---- figures ------------------------------------------------------------------------------------

WHERE = {1: "one node", 3: "three-node cluster"}


def figure_names(nodes: int) -> list[tuple[str, str]]:
    where = WHERE[nodes]
    names = [
        (f"migrate run documents/s vs wrk, {where}", "docs/s"),
        (f"whole-run CPU per document, {where}", "us/doc"),
    ]
    if nodes == 1:
        names.append(("dry-run reconcile documents/s, node", "docs/s"))
    return names


def node_run_figures(settings: Settings, nodes: int, url: str | None, reason: str) -> list[Figure]:
    """The whole-run figures on one node or a three-node cluster at `url` (None: skipped, for
    `reason`)."""
    wrk = wrk_path()
    if url is None or wrk is None:
        why = reason if url is None else "wrk not installed (Debian: apt-get install wrk)"
        return [skipped(CASE, n, u, why) for n, u in figure_names(nodes)]
    with tempfile.TemporaryDirectory(prefix="migrate-bench-run-") as tmp:
        try:
            return _measure(settings, nodes, url, wrk, Path(tmp))
        except MigrateError as exc:
            return [skipped(CASE, n, u, exc.message) for n, u in figure_names(nodes)]


def _measure(settings: Settings, nodes: int, url: str, wrk: str, work: Path) -> list[Figure]:
    customers = customers_for(settings)
    template = create_project(work / "template", customers=customers)
    docs = documents(template)
    repeats = 1 if settings.quick else min(settings.repeats, 3)
    tag = secrets.token_hex(3)
    count = iter(range(1, 1000))
    run_id = new_run_id()  # the same length as the run's own: wrk sends as many bytes

    def migrate_once() -> Sample:
        return run_sample(template, work, url, f"-r{tag}{next(count)}", len(docs))

    def wrk_once() -> Sample:
        return wrk_sample(wrk, url, wrk_requests(docs, url, f"-w{tag}{next(count)}", run_id))

    runs, c_loads = repeat(repeats, migrate_once, wrk_once)
    # What a run costs whatever its size (imports, the workers' forkserver, the ledger): a run
    # of a hundred documents, so the note can say what each document costs beyond it.
    split = ""
    if len(docs) >= 10 * SMALL:
        small = create_project(work / "small", customers=SMALL)
        fixed = run_sample(small, work, url, f"-s{tag}", SMALL).cpu
        cpus = sorted(s.cpu for s in runs)
        marginal = (cpus[len(cpus) // 2] - fixed) / (len(docs) - SMALL) * 1e6
        split = (
            f"; a run of {SMALL} documents costs {fixed:.2f} s of CPU, and each document "
            f"beyond them {marginal:.0f} us"
        )
    where = WHERE[nodes]
    hosts = len(parse_url(url).hosts)
    note = (
        f"{len(docs):,} documents (benchmarks/shop.py: customers, orders embedded, 3 indexes "
        f"and the chunk index); {hosts} host(s) in the target URL, wrk on the first; fresh "
        "buckets each load; the run's wall clock is the whole command's"
    )
    figures = [
        Figure(
            CASE,
            f"migrate run documents/s vs wrk, {where}",
            "docs/s",
            tuple(s.rate for s in runs),
            C_CLIENT,
            tuple(s.rate for s in c_loads),
            RUN_GOAL,
            note=note,
        ),
        Figure(
            CASE,
            f"whole-run CPU per document, {where}",
            "us/doc",
            tuple(s.cpu_per_document_us for s in runs),
            "wrk's CPU per document",
            tuple(s.cpu_per_document_us for s in c_loads),
            CPU_GOAL,
            note="every process of `migrate run` counted (its workers and their forkserver), "
            f"start-up and the final verification included{split}",
        ),
    ]
    if nodes == 1:
        reconciled, gets = reconcile_rates(template, work, url, f"-c{tag}", repeats=3)
        figures.append(
            Figure(
                CASE,
                "dry-run reconcile documents/s, node",
                "docs/s",
                tuple(reconciled),
                RECONCILE_BASELINE,
                (gets,),
                RECONCILE_GOAL,
                note="the project loaded by `migrate run`, reconciled against the source in this "
                "process, three times (chunk index via 2i return_terms; the expected side rebuilt "
                "by the workers), against RiakTarget.get of every key on 16 threads",
            )
        )
    return figures


def cluster_figures(settings: Settings) -> list[Figure]:
    """The whole-run figures on a three-node cluster started for them."""
    with bench_nodes(3) as (url, reason):
        return node_run_figures(settings, 3, url, reason)
