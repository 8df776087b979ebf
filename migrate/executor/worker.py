"""What a distributed executor's worker runs for a chunk: claim it, build it, record and load it.

A worker opens its own connections from the run's settings (`ChunkJob.config`), once per
process (the target once per thread: a worker may run chunks on several threads), with every
password from its own environment: the variables `password_env` names and RIAK_USER /
RIAK_PASSWORD, exported wherever the worker runs. The source is read under the run's snapshot
through `SharedView`, which names the password's variable, never the password.

A chunk is worked on under its ledger claim (`Ledger.claim_chunk`): a second attempt (Dask runs
a chunk again when its worker died, or when it lost touch with one still at work) waits for the
first to end, then starts from what the ledger recorded: a chunk the first attempt loaded is not
loaded again, one it left half-way is done again from its phase (every phase is idempotent).
Before anything is recorded, the run's lease must still be the one the job names: a command
that stopped (its lease released) or was taken over leaves its queued chunks unrecorded.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import xxhash

from migrate.config import Config
from migrate.executor import ChunkJob
from migrate.ledger import Ledger
from migrate.ledger.leases import LeaseLost
from migrate.loading import ChunkLoaded, ChunkLoader, is_done
from migrate.mapping import DocPlan, cached_plan
from migrate.processes import quiet_gc
from migrate.project import Project
from migrate.target import Target, open_target
from migrate.transform import TransformTask, transform_chunk


class _Opened:
    """A run's connections in this worker process: its ledger, and a target per thread."""

    def __init__(self, config: Config) -> None:
        self.project = Project(config)
        self._targets = threading.local()

    @property
    def ledger(self) -> Ledger:
        return self.project.ledger

    def target(self) -> Target:
        target: Target | None = getattr(self._targets, "target", None)
        if target is None:
            config = self.project.config
            target = open_target(config.target, base_dir=config.base_dir)
            self._targets.target = target
        return target


_OPENED: dict[str, _Opened] = {}
_LOCK = threading.Lock()
_KEEP = 4  # runs' connections kept open at once (a worker serves one run at a time, mostly)


def _opened(config: Config) -> _Opened:
    key = xxhash.xxh3_128_hexdigest(repr(config).encode())
    with _LOCK:
        found = _OPENED.get(key)
        if found is None:
            if not _OPENED:
                quiet_gc()  # this process now runs the pipeline's work, as a local worker does
            while len(_OPENED) >= _KEEP:
                _OPENED.pop(next(iter(_OPENED))).project.close()
            found = _OPENED[key] = _Opened(config)
        return found


def load_chunk(job: ChunkJob) -> ChunkLoaded:
    """Build, record and load the job's chunk."""
    task = job.task
    opened = _opened(job.config)
    ledger = opened.ledger
    context = job.context
    chunk_id = job.chunk.chunk_id
    with ledger.claim_chunk(context.run_id, chunk_id):
        _check_lease(ledger, job)
        record = ledger.chunk(context.run_id, chunk_id)
        plans = _plans(task)
        if is_done(record, plans[record.doc_type], context.max_bytes):  # an earlier attempt did
            return ChunkLoaded(chunk_id, record.documents or 0, 0, 0, record.rejects or 0)
        loader = ChunkLoader(ledger, opened.target(), context, plans, shared=True)
        task = replace(task, collided=loader.register.known(chunk_id))
        output = transform_chunk(task)
        loaded, _output = loader.load(record, job.snapshot, output, task)
        return loaded


def _plans(task: TransformTask) -> dict[str, DocPlan]:
    plan = cached_plan(
        task.mapping_path,
        default_bucket_type=task.default_bucket_type,
        fingerprint=task.fingerprint,
        schema=task.schema,
    )
    return {doc.name: doc for doc in plan.doc_types}


def _check_lease(ledger: Ledger, job: ChunkJob) -> None:
    service = job.context.service
    lease = ledger.lease(service)
    if lease is None or lease.holder != job.holder:
        raise LeaseLost(
            f"{service}: chunk {job.chunk.chunk_id} was sent by a command that no longer holds "
            "the service's lease; it was left as the ledger has it",
            hint="the command stopped (or another took the service over); `migrate status` "
            "shows who holds it, and `migrate run` resumes",
        )


__all__ = ["load_chunk"]
