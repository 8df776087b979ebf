"""Dask clusters and demo projects that run on them, for the distributed executor's tests.

`local_cluster` is a real `LocalCluster` of worker processes (each under a nanny that starts it
again when it dies); `SchedulerProcesses` runs `dask scheduler` and `dask worker` as commands, so
a test can kill the scheduler and start it again on the same port. Both are stopped when the test
ends, however it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from riak_projects import SERVICES, dump, invoke, use_riak

from migrate.ledger import ChunkState
from migrate.project import Project

DASK = Path(sys.executable).parent / "dask"


@contextlib.contextmanager
def local_cluster(workers: int = 2) -> Iterator[Any]:
    """A LocalCluster of `workers` processes with one thread each, and a client to it."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # its HTTP server runs anyway: on a free port, not 8787
        host="127.0.0.1",
    )
    try:
        with Client(cluster, set_as_default=False) as client:
            yield client
    finally:
        cluster.close()


def address(client: Any) -> str:
    """The `[run] executor` of a client's cluster."""
    return str(client.scheduler.address).replace("tcp://", "dask://")


def use_dask(project: Path, executor: str, state_url: str) -> None:
    """Point a project's [run] executor at a scheduler and its ledger at a PostgreSQL database."""
    config = project / "migrate.toml"
    text = config.read_text()
    text = text.replace('url = "sqlite:///.migrate/state.db"', f'url = "{state_url}"')
    text = text.replace("[run]\n", f'[run]\nexecutor = "{executor}"\n')
    config.write_text(text)


def reconcile_report(project: Path) -> list[Any]:
    """What `reconcile --dry-run --format json` found per service and document type (not when,
    nor the buckets, which the tests make unique per project)."""
    result = invoke(project, "reconcile", "--dry-run", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    return [
        (
            service["service"],
            service["outcome"],
            [
                (d["document_type"], d["outcome"], d["counts"], d["differences"])
                for d in service["document_types"]
            ],
        )
        for service in report["services"]
    ]


def riak_project(project: Path, riak_url: str, *options: str, suffix: str = "") -> None:
    use_riak(project, riak_url, *options, suffix=suffix)


def chunk_records(project: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Per service, what its latest run's ledger says of each chunk: phase, rows, staged and
    document checksums, documents and rejects (what two runs of the same data must share)."""
    opened = Project.load(project / "migrate.toml")
    try:
        found: dict[str, list[tuple[Any, ...]]] = {}
        for service in SERVICES:
            run = opened.ledger.latest_run(service)
            assert run is not None, service
            found[service] = [
                (
                    c.chunk_id,
                    c.state,
                    c.rows,
                    c.staged_checksum,
                    c.documents,
                    c.rejects,
                    c.doc_checksum,
                )
                for c in opened.ledger.chunks(run.run_id)
            ]
        return found
    finally:
        opened.close()


def transformed_twice(project: Path, service: str) -> list[str]:
    """Chunks of the service's latest run whose transform was recorded more than once."""
    opened = Project.load(project / "migrate.toml")
    try:
        run = opened.ledger.latest_run(service)
        assert run is not None
        phases = [
            (c["chunk_id"], c["phase"])
            for c in opened.ledger.checkpoints(run.run_id)
            if c["chunk_id"]
        ]
        return sorted(
            {
                chunk
                for chunk, phase in phases
                if phases.count((chunk, ChunkState.TRANSFORMED.value)) > 1
            }
        )
    finally:
        opened.close()


def dumps(project: Path, suffix: str = "") -> dict[str, bytes]:
    found = {service: dump(project, service) for service in SERVICES}
    if suffix:
        found = {s: d.replace(f'{suffix}"'.encode(), b'"') for s, d in found.items()}
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SchedulerProcesses:
    """`dask scheduler` on a fixed port and `dask worker` processes, as an operator starts them."""

    def __init__(self, folder: Path, workers: int = 2) -> None:
        self.folder = folder
        self.port = free_port()
        self.workers = workers
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def executor(self) -> str:
        return f"dask://127.0.0.1:{self.port}"

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.folder / f"{name}.log", "ab") as log:  # the process has its own copy
            return subprocess.Popen(
                [str(DASK), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stopping it stops its children
            )

    def start(self) -> None:
        """The scheduler (on its port, again after `stop`) and its workers."""
        self.scheduler = self._spawn(
            "scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
            "--no-dashboard", "--no-show",
        )  # fmt: skip
        self.worker = self._spawn(
            "worker", "worker", self.address, "--nworkers", str(self.workers),
            "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
        )  # fmt: skip
        self.wait_for_workers()

    def wait_for_workers(self) -> None:
        from distributed import Client

        with Client(self.address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(self.workers, timeout=120)

    def kill_scheduler(self) -> None:
        _kill_group(self.scheduler)
        self.scheduler = None

    def stop(self) -> None:
        _kill_group(self.worker)
        _kill_group(self.scheduler)
        self.worker = self.scheduler = None


def _kill_group(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def wait_until(condition: Any, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what or condition}")
        time.sleep(0.05)
