"""Recording and loading one built chunk: its ledger transitions, its register rows, its writes.

Used where chunks are loaded: the one loader thread of a local run (chunk after chunk, in
order) and every worker of a distributed executor (many chunks at once, in any order). What
keeps the second exact is the same code with two ledger locks (`migrate.ledger.locks`): chunks
register their documents one at a time, so a key two chunks render is always seen by the one
registering second; and a chunk's load is recorded under that lock too, after its writes, so a
key another chunk withdrew from it meanwhile (whose delete may have reached the target before
this chunk's write did) is deleted again, and the chunk is recorded with what it holds now.
In a local run nothing can withdraw a chunk's key between its transform and its load (the same
thread does both), so that check finds nothing, at the cost of one indexed read per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import msgspec

from migrate.document import Reject
from migrate.errors import MigrateError
from migrate.files import private_writer
from migrate.ledger import ChunkRecord, ChunkState, Ledger
from migrate.mapping import DocPlan
from migrate.mapping.canonical import aggregate
from migrate.register import Known, Register
from migrate.target import Target
from migrate.transform import TransformOutput, TransformTask, transform_chunk


@dataclass(frozen=True, slots=True)
class ChunkLoaded:
    """What loading a chunk did: its documents and rejects as recorded, its writes, and the rows
    of other chunks it withdrew (a key collision it found)."""

    chunk_id: str
    documents: int
    written: int
    unchanged: int
    rejects: int
    withdrawn: int = 0


@dataclass(frozen=True, slots=True)
class LoadContext:
    """What loading a run's chunks needs besides connections: no secret, so it travels in tasks."""

    service: str
    run_id: str
    run_dir: str  # the run's folder under [run] work_dir: staged chunks and reject files
    max_bytes: int  # [run] max_document_bytes, part of what a transform depends on
    # Whether an earlier run of the service may have written documents (see `Target.write`'s
    # first_load): only chunks no run has written are loaded without asking the target first.
    loaded_before: bool


def transform_fingerprint(doc: DocPlan, max_bytes: int) -> str:
    """What a chunk's transform depends on besides its rows: the document type's compiled
    mapping and the document size limit."""
    return f"{doc.fingerprint}/max={max_bytes}"


def is_done(chunk: ChunkRecord, doc: DocPlan, max_bytes: int) -> bool:
    """Whether the chunk is loaded, by the mapping and size limit in force."""
    return chunk.state is ChunkState.LOADED and chunk.transform_fingerprint == (
        transform_fingerprint(doc, max_bytes)
    )


class ChunkLoader:
    """Records and loads the chunks of one run of one service."""

    def __init__(
        self,
        ledger: Ledger,
        target: Target,
        context: LoadContext,
        plans: dict[str, DocPlan],
        *,
        shared: bool = False,
    ) -> None:
        """`shared`: other processes load chunks of the run at the same time."""
        self.ledger = ledger
        self.target = target
        self.context = context
        self.plans = plans
        self.run_dir = Path(context.run_dir)
        self.register = Register(
            ledger, context.run_id, plans, self._add_chunk_rejects, shared=shared
        )

    def load(
        self,
        chunk: ChunkRecord,
        snapshot: str | None,
        output: TransformOutput,
        task: TransformTask,
    ) -> tuple[ChunkLoaded, TransformOutput]:
        """Record the extract (when `snapshot` says the chunk was just staged under it) and the
        transform in one ledger transaction, write the documents, then record the load once the
        target has acknowledged every one of them. `chunk` is the chunk's record as it stood
        before (its phase says whether any run may have written it); `task` built `output`, and
        builds it again should the register find a key collision the build did not know. Also
        returns the output loaded (the rebuilt one, if it was)."""
        run_id = self.context.run_id
        doc = self.plans[chunk.doc_type]
        fingerprint = transform_fingerprint(doc, self.context.max_bytes)
        if (
            chunk.state is ChunkState.TRANSFORMED
            and chunk.transform_fingerprint == fingerprint
            and chunk.doc_checksum != output.checksum
            and not output.collided  # a collision found since is withdrawn from the record too
        ):
            raise MigrateError(
                f"{self.context.service}: chunk {chunk.chunk_id} rebuilt to checksum "
                f"{output.checksum}, but the ledger recorded {chunk.doc_checksum} for the same "
                "mapping and staged rows",
                hint="the staged files or the builder changed under the run; "
                "start over with `migrate run --fresh`",
            )
        with self.ledger.together():
            self.ledger.lock_register(run_id)
            if snapshot is not None:
                self.ledger.mark_extracted(
                    run_id,
                    chunk.chunk_id,
                    rows=output.staged.rows,
                    staged_path=output.staged.path,
                    staged_checksum=output.staged.checksum,
                    snapshot=snapshot,
                )
            rebuild = partial(_rebuild, task, output)
            settled = self.register.settle(
                chunk.chunk_id, doc, output, fingerprint=fingerprint, rebuild=rebuild
            )
            output = settled.output
            self._write_chunk_rejects(chunk, output.rejects)
            self.ledger.mark_transformed(
                run_id,
                chunk.chunk_id,
                transform_fingerprint=fingerprint,
                documents=len(output.documents),
                rejects=len(output.rejects),
                doc_checksum=output.checksum,
            )
        # No row of a collision stays stored, nor a document under a key no row renders now.
        for bucket_type, bucket, key in settled.deletions:
            self.target.delete(bucket_type, bucket, key)
        meta = {"migrate-run": run_id, "migrate-chunk": chunk.chunk_id}
        first_load = (
            chunk.state.rank < ChunkState.TRANSFORMED.rank and not self.context.loaded_before
        )
        stats = self.target.write(output.documents, meta=meta, first_load=first_load)
        with self.ledger.together():
            self.ledger.lock_register(run_id)
            documents, checksum = self._withdrawn_since(chunk, doc, output)
            self.ledger.mark_loaded(
                run_id,
                chunk.chunk_id,
                documents=documents,
                written=stats.written,
                unchanged=stats.unchanged,
                doc_checksum=checksum,
            )
        loaded = ChunkLoaded(
            chunk.chunk_id,
            documents,
            stats.written,
            stats.unchanged,
            len(output.rejects),
            settled.withdrawn,
        )
        return loaded, output

    def _withdrawn_since(
        self, chunk: ChunkRecord, doc: DocPlan, output: TransformOutput
    ) -> tuple[int, str]:
        """The chunk's documents and checksum once its keys that another chunk withdrew after
        this one's transform was recorded are deleted again (under the register lock)."""
        since = self.ledger.collided_keys(self.context.run_id, chunk.chunk_id) - output.collided
        if not since:
            return len(output.documents), output.checksum
        for key in sorted(since):
            self.target.delete(doc.bucket_type, doc.bucket, key)
        live = [c.checksum for c in output.claims if c.key not in output.collided | since]
        return len(live), aggregate(live)

    # -- reject files ---------------------------------------------------------------------------

    def _chunk_rejects_path(self, chunk: ChunkRecord) -> Path:
        return self.run_dir / "rejects" / f"{chunk.doc_type}-{chunk.index:05d}.jsonl"

    def _write_chunk_rejects(self, chunk: ChunkRecord, rejects: list[Reject]) -> None:
        path = self._chunk_rejects_path(chunk)
        if not rejects:
            path.unlink(missing_ok=True)
            return
        with private_writer(path) as handle:
            for reject in rejects:
                handle.write(self._reject_line(chunk.run_id, chunk.chunk_id, reject))

    def _add_chunk_rejects(self, chunk_id: str, rejects: list[Reject]) -> None:
        """Append rejects found later to another chunk's reject file (rows withdrawn from it)."""
        record = self.ledger.chunk(self.context.run_id, chunk_id)
        path = self._chunk_rejects_path(record)
        before = path.read_bytes() if path.is_file() else b""
        with private_writer(path) as handle:
            handle.write(before)
            for reject in rejects:
                handle.write(self._reject_line(record.run_id, chunk_id, reject))

    def _reject_line(self, run_id: str, chunk_id: str, reject: Reject) -> bytes:
        record = {
            "service": self.context.service,
            "run_id": run_id,
            "chunk_id": chunk_id,
            "doc_type": reject.doc_type,
            "source_key": reject.source_key,
            "key": reject.key,
            "field": reject.field,
            "reason": reject.reason,
        }
        return msgspec.json.encode(record) + b"\n"


def _rebuild(task: TransformTask, output: TransformOutput, known: Known) -> TransformOutput:
    """The chunk built again from its staged rows, knowing its keys that other chunks' rows
    render (a collision across chunks is rare)."""
    return transform_chunk(replace(task, source=output.staged, collided=known))


__all__ = ["ChunkLoaded", "ChunkLoader", "LoadContext", "is_done", "transform_fingerprint"]
