"""PostgreSQL chunk reads through `COPY (SELECT ...) TO STDOUT (FORMAT csv)`, staged by `pgcsv`.

The cursor path builds a Python object per value, which costs several times the read itself; COPY
hands over a chunk's rows as one CSV stream that Arrow parses straight into typed columns. It runs
on the snapshot's own connection, so inside its transaction and exported snapshot.

The output is read through libpq (psycopg's `pq` wrapper): psycopg's `Copy` runs a generator and
a wait per row, which costs more than the row. A chunk's statements are known up front, so the
next one is sent before the current one is parsed: the server runs it meanwhile.
"""

from __future__ import annotations

import select
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from migrate.schema import ColumnType
from migrate.source.pgcsv import parse_csv

if TYPE_CHECKING:
    import psycopg
    from psycopg.pq.abc import PGresult

# Session settings that decide the CSV text, as the server reports them (GUC_REPORT).
_SETTINGS = {b"client_encoding": (b"UTF8",), b"DateStyle": (b"ISO, MDY", b"ISO, DMY", b"ISO, YMD")}


@dataclass(frozen=True, slots=True)
class CopyRead:
    """One SELECT to run as COPY, with its parameters and the type of each column it selects."""

    sql: str
    params: Mapping[str, Any] | Sequence[Any]
    columns: Sequence[ColumnType]


class CopyFailed(Exception):
    """The database refused or broke off read `index`; `error` is the driver's exception."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


class CopyReader:
    """Runs a chunk's SELECTs as COPY on the snapshot's connection, within its transaction."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        import psycopg  # an optional dependency: only a psycopg connection gets here

        self._connection = connection
        self._pgconn = connection.pgconn
        self._status = psycopg.pq.ExecStatus
        self._errors = psycopg.errors
        self._quoting = psycopg.ClientCursor(connection)  # psycopg's own literal quoting
        self._in_flight = False

    def usable(self) -> bool:
        """Whether the session writes CSV text `pgcsv` parses (UTF-8, ISO dates)."""
        status = self._pgconn.parameter_status
        return all(status(name) in allowed for name, allowed in _SETTINGS.items())

    def statement(self, read: CopyRead) -> str:
        """`COPY (sql) TO STDOUT`, the parameters inlined as psycopg quotes literals: COPY takes
        no parameters."""
        select_sql = self._quoting.mogrify(read.sql, read.params)
        return f"COPY ({select_sql}) TO STDOUT (FORMAT csv)"

    def read_all(self, reads: Sequence[CopyRead]) -> Generator[list[pa.Array[Any]]]:
        """Each read's rows as staged arrays, one per selected column, in order.

        Raises `pgcsv.Unfit` (read that chunk through the cursor) and `CopyFailed`. Closing the
        iterator early leaves the connection idle.
        """
        statements = [self.statement(read) for read in reads]
        index = 0
        try:
            if statements:
                self._send(statements, 0)
            for index, read in enumerate(reads):
                data = self._receive(index)
                if index + 1 < len(statements):
                    self._send(statements, index + 1)  # runs while this one is parsed
                yield parse_csv(data, read.columns)
        finally:
            if self._in_flight:  # a statement sent ahead and no longer wanted: its error counts
                self._receive(index + 1)

    def _send(self, statements: Sequence[str], index: int) -> None:
        pgconn = self._pgconn
        try:
            pgconn.send_query(statements[index].encode("utf-8"))  # UTF8 client encoding
            self._in_flight = True
            while pgconn.flush():  # the connection is non-blocking: wait to send the rest
                select.select([], [pgconn.socket], [])
        except self._errors.Error as exc:
            raise CopyFailed(index, exc) from exc

    def _receive(self, index: int) -> bytes:
        """The sent COPY's whole output; the connection is idle after it, error or not."""
        try:
            return self._received()
        except self._errors.Error as exc:
            raise CopyFailed(index, exc) from exc

    def _received(self) -> bytes:
        pgconn = self._pgconn
        result = pgconn.get_result()
        if result is None or result.status != self._status.COPY_OUT:
            self._finish()
            raise self._error(result)
        blocks: list[memoryview] = []
        get = pgconn.get_copy_data
        size, block = get(0)  # blocks for the next row; -1 at the end, -2 on error
        while size > 0:
            blocks.append(block)
            size, block = get(0)
        if size == -2:
            self._finish()
            raise self._error(None)
        final = pgconn.get_result()
        self._finish()
        if final is None or final.status != self._status.COMMAND_OK:
            raise self._error(final)
        return b"".join(blocks)

    def _finish(self) -> None:
        """Read the statement's remaining results, so the connection can run the next one."""
        while self._pgconn.get_result() is not None:
            pass
        self._in_flight = False

    def _error(self, result: PGresult | None) -> Exception:
        """The driver's exception for a failed COPY, as psycopg raises it for a statement."""
        if result is None:
            message = self._pgconn.error_message.decode("utf-8", "replace").strip()
            return self._errors.OperationalError(message or "the COPY was cut short")
        return self._errors.error_from_result(result, encoding="utf-8")

    def close(self) -> None:
        self._quoting.close()


__all__ = ["CopyFailed", "CopyRead", "CopyReader"]
