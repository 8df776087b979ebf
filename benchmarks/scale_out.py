"""Past one machine (issue 19): `migrate run` of the demo on a Dask cluster of 1 and of 2 worker
processes against the local executor, in one run of the bench, and what a verification costs;
with the figures a projection to a national estate (80 million root documents) is made from.

The source is the demo loaded into a throwaway PostgreSQL server (so the Dask workers read their
chunks themselves, under the run's exported snapshot, as they would from Oracle), the ledger a
fresh PostgreSQL database per run (a Dask executor needs one), the target a three-node Riak
cluster started from the Riak test server folder beside the checkout when there is one (else the
Riak fake, in a process of its own). The Dask cluster is a `LocalCluster` on this machine (worker
processes of one thread each). Every run loads fresh buckets; the loads alternate (A B C A B C).

Figures:
- root documents/s of the whole `migrate run` (extract, transform, load, ledger, the final
  verification: the command's wall clock), with 1 and with 2 Dask workers, each beside the
  local executor (as many processes as cores) measured in the same run;
- per Dask worker: the 2-worker rate over 2 (the 1-worker rate is the line above);
- per Riak node: the most the target took in the bench, over its nodes: wrk (a C client, the shop
  documents of `benchmarks.riak_run`) loading it as fast as it takes PUTs, or the fastest run
  above when that went faster: what one node of this machine absorbs;
- a dry-run reconcile (against the source, every chunk rebuilt) on 2 Dask workers beside the
  local executor's, documents/s.

On a 2-core machine the Riak nodes, PostgreSQL, the scheduler and the workers share the cores,
so these rates are floors for dedicated hosts, and 2 workers cannot be twice 1; the note says
what the projection assumes.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.end_to_end import documents_by_service, migrate_command, run_migrate
from benchmarks.extract import throwaway_postgres
from benchmarks.harness import Figure, Settings, repeat, skipped
from benchmarks.riak_run import bench_nodes, wrk_requests, wrk_sample
from benchmarks.shop import create_project, documents
from benchmarks.sink import ServerProcess
from benchmarks.wrk import wrk_path
from migrate.demo import create_demo
from migrate.ledger import new_run_id

CASE = "dask"
LOCAL = "local executor, {} processes"
ROOTS = 80_000_000  # the estate's root documents
LOAD_HOURS = 24
VERIFY_HOURS = 1
LOCAL_URL = 'url = "local:///.migrate/target.db"'


@dataclass(frozen=True, slots=True)
class Bounds:
    patients: int
    repeats: int
    shop_customers: int


def bounds_for(settings: Settings) -> Bounds:
    if settings.quick:
        bounds = Bounds(1_000, 1, 2_000)
    else:
        bounds = Bounds(10_000, min(settings.repeats, 2), 10_000)
    if settings.documents is not None:
        bounds = Bounds(settings.documents, bounds.repeats, bounds.shop_customers)
    return bounds


@contextlib.contextmanager
def _target() -> Iterator[tuple[str, int, str]]:
    """(riak:// URL, nodes, what it is): the three-node cluster, else the fake."""
    with bench_nodes(3) as (url, reason):
        if url is not None:
            yield url, 3, "a three-node Riak KV 3.2 cluster (riak-local) on this machine"
            return
        fake = ServerProcess("fake").start()
        try:
            yield (
                fake.url.replace("http://", "riak://"),
                1,
                f"the Riak fake in a process of its own ({reason})",
            )
        finally:
            fake.stop()


@contextlib.contextmanager
def _dask(workers: int) -> Iterator[str]:
    """A LocalCluster of `workers` processes (one thread each): its `[run] executor`."""
    import distributed

    start: Any = distributed.LocalCluster  # untyped
    cluster = start(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # its HTTP server runs anyway: on a free port, not 8787
        host="127.0.0.1",
        silence_logs=50,
    )
    try:
        yield str(cluster.scheduler_address).replace("tcp://", "dask://")
    finally:
        cluster.close()


class _Loads:
    """Fresh copies of the demo project, each run into buckets and a ledger of its own."""

    def __init__(self, template: Path, work: Path, url: str, server: Any) -> None:
        self.command = migrate_command()
        self.template = template
        self.work = work
        self.url = url
        self.server = server
        self.tag = secrets.token_hex(3)
        self.count = 0
        self.documents = 0
        self.kept: dict[str, Path] = {}  # the last project of each kind, for the reconcile

    def project(self, kind: str, executor: str | None) -> Path:
        self.count += 1
        project = self.work / f"{kind}-{self.count}"
        shutil.copytree(self.template, project)
        suffix = f"-{self.tag}{self.count}"
        config = project / "migrate.toml"
        text = config.read_text().replace(LOCAL_URL, f'url = "{self.url}"\ntimeout = 10')
        if executor is not None:
            ledger = self.server.create_database()
            text = text.replace('url = "sqlite:///.migrate/state.db"', f'url = "{ledger}"')
            text = text.replace("[run]\n", f'[run]\nexecutor = "{executor}"\n')
        config.write_text(text)
        for mapping in (project / "mappings").glob("*.yaml"):
            lines = mapping.read_text().splitlines(keepends=True)
            mapping.write_text(
                "".join(
                    line.rstrip("\n") + suffix + "\n"
                    if line.lstrip().startswith("bucket: ")
                    else line
                    for line in lines
                )
            )
        return project

    def rate(self, kind: str, executor: str | None) -> float:
        project = self.project(kind, executor)
        started = time.perf_counter()
        run_migrate(self.command, project, "run")
        seconds = time.perf_counter() - started
        self.documents = sum(documents_by_service(self.command, project).values())
        previous = self.kept.get(kind)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        self.kept[kind] = project
        return self.documents / seconds

    def reconcile_rate(self, kind: str) -> float:
        started = time.perf_counter()
        run_migrate(self.command, self.kept[kind], "reconcile", "--dry-run")
        return self.documents / (time.perf_counter() - started)


def _node_rate(work: Path, url: str, customers: int) -> tuple[float, int] | None:
    """wrk's PUTs/s into the target (the shop documents), and how many; None without wrk."""
    wrk = wrk_path()
    if wrk is None:
        return None
    template = create_project(work / "shop", customers=customers)
    docs = documents(template)
    sample = wrk_sample(
        wrk, url, wrk_requests(docs, url, f"-n{secrets.token_hex(3)}", new_run_id())
    )
    return sample.rate, len(docs)


def projection(
    per_worker: float, per_node: float, verify_per_worker: float, verify_per_node: float
) -> str:
    """How many workers and Riak nodes 80 million root documents need, from measured rates."""
    load = ROOTS / (LOAD_HOURS * 3600)
    verify = ROOTS / (VERIFY_HOURS * 3600)
    workers = math.ceil(load / per_worker)
    nodes = max(3, math.ceil(load / per_node))
    checkers = math.ceil(verify / verify_per_worker)
    read_nodes = max(3, math.ceil(verify / verify_per_node))
    return (
        f"projection for {ROOTS / 1e6:g} M root documents: a load in {LOAD_HOURS} h needs "
        f"{load:,.0f} docs/s = {workers} Dask worker(s) at {per_worker:,.0f}/s each and "
        f"{nodes} Riak node(s) at {per_node:,.0f}/s each (n_val 3: at least 3); a full "
        f"verification in {VERIFY_HOURS} h needs {verify:,.0f} docs/s = {checkers} worker(s) at "
        f"{verify_per_worker:,.0f}/s each and, for its reads of the chunk index, {read_nodes} "
        f"node(s) at the {verify_per_node:,.0f}/s per node the reconcile above drew (a floor: "
        "the nodes were not its limit); rates measured on this machine, where every process "
        "shares its cores, so dedicated hosts need fewer; linear scaling assumed (chunks are "
        "independent tasks, Riak spreads keys over its ring), one coordinating host reads the "
        "index for a verification"
    )


def run(settings: Settings) -> list[Figure]:
    bounds = bounds_for(settings)
    cores = os.cpu_count() or 1
    names = [
        "migrate run root documents/s, 1 Dask worker",
        "migrate run root documents/s, 2 Dask workers",
        "per Dask worker, 2 workers",
        "per Riak node, wrk PUTs/s over the nodes",
        "dry-run reconcile documents/s, 2 Dask workers",
    ]
    try:
        import distributed  # noqa: F401
    except ImportError:
        return [skipped(CASE, n, "docs/s", "Dask distributed not installed") for n in names]
    with throwaway_postgres() as server, tempfile.TemporaryDirectory() as tmp:
        if server is None:
            why = "no PostgreSQL binaries in /usr/lib/postgresql (a Dask run needs its ledger)"
            return [skipped(CASE, n, "docs/s", why) for n in names]
        work = Path(tmp)
        template = work / "demo"
        create_demo(template, patients=bounds.patients, seed=1, source=server.create_database())
        with _target() as (url, nodes, what), _dask(1) as one, _dask(2) as two:
            loads = _Loads(template, work, url, server)
            local_rates, one_rates, two_rates = repeat(
                bounds.repeats,
                lambda: loads.rate("local", None),
                lambda: loads.rate("one", one),
                lambda: loads.rate("two", two),
            )
            local_checks, two_checks = repeat(
                bounds.repeats,
                lambda: loads.reconcile_rate("local"),
                lambda: loads.reconcile_rate("two"),
            )
            node = _node_rate(work, url, bounds.shop_customers)
    local = LOCAL.format(cores)
    per_worker = tuple(r / 2 for r in two_rates)
    base_note = (
        f"{bounds.patients:,}-patient demo from PostgreSQL, {loads.documents:,} root documents "
        f"of every service per run, into {what}; ledger on PostgreSQL per run; Dask: a "
        f"LocalCluster on this {cores}-core machine, 1 thread per worker"
    )
    figures = [
        Figure(CASE, names[0], "docs/s", tuple(one_rates), local, tuple(local_rates), None,
               base_note),
        Figure(CASE, names[1], "docs/s", tuple(two_rates), local, tuple(local_rates), None,
               "the same runs' local executor, alternating with these"),
        Figure(CASE, names[2], "docs/s", per_worker, "1 Dask worker", tuple(one_rates), None,
               "2-worker rate / 2, beside 1 worker alone"),
    ]  # fmt: skip
    if node is None:
        figures.append(skipped(CASE, names[3], "docs/s", "wrk is not installed"))
        per_node = None
    else:
        rate, count = node
        # What the target took at most in this bench: wrk's PUTs, or a whole run's documents
        # when one went faster (wrk's 16 connections all go to the first host).
        best = max([*local_rates, *one_rates, *two_rates])
        per_node = max(rate, best) / nodes
        figures.append(
            Figure(
                CASE,
                names[3],
                "docs/s",
                (per_node,),
                note=f"the most the target took in this bench over its {nodes} node(s): wrk, "
                f"{count:,} shop documents (benchmarks.shop) at {rate:,.0f}/s to the first host, "
                f"or the fastest `migrate run` above at {best:,.0f} root documents/s; every node "
                "holds every replica (n_val 3)",
            )
        )
    verify_per_worker = statistics.median(two_checks) / 2
    verify_per_node = statistics.median(two_checks) / nodes
    closing = (
        projection(statistics.median(per_worker), per_node, verify_per_worker, verify_per_node)
        if per_node is not None
        else "no projection: the per-node rate was not measured"
    )
    figures.append(
        Figure(CASE, names[4], "docs/s", tuple(two_checks), local, tuple(local_checks), None,
               f"against the source, every chunk rebuilt by the workers; {closing}")
    )  # fmt: skip
    return figures
