"""The source database: type resolution, reflection, snapshots, chunk planning, extraction, staging.

Only this package talks SQLAlchemy. Rows are read through the driver's cursor and staged as Arrow
tables whose column types follow the value kinds of `migrate.schema` (NUMBER is staged as exact
decimal text; see `arrow_type`).
"""

from migrate.source.chunks import ChunkRange
from migrate.source.engine import Source
from migrate.source.snapshot import Snapshot
from migrate.source.staging import StagedChunk, read_staged, write_staged
from migrate.source.types import arrow_type, resolve_type

__all__ = [
    "ChunkRange",
    "Snapshot",
    "Source",
    "StagedChunk",
    "arrow_type",
    "read_staged",
    "resolve_type",
    "write_staged",
]
