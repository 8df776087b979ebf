"""A test double of a python-oracledb thin connection to Oracle 19, for what needs no server.

No Oracle server can run here. SQLAlchemy's own Oracle dialect connects through this double (an
engine `creator`), so it sets itself up exactly as a connection to Oracle 19 sets it up: the
server version it reads (19.3), no native booleans, Oracle's identifier length. Every statement
the toolkit sends is recorded with its parameters and bind types; `answer` gives the rows of a
statement and `fail` makes one raise oracledb's own exception (an ORA-01555, say).

It answers only what it is told to, and what SQLAlchemy asks while connecting; anything else
raises, so a test cannot pass on a statement it did not expect.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import oracledb
import sqlalchemy as sa

VERSION = "19.3.0.0.0"
URL = "oracle+oracledb://spine_reader@db.example:1521/?service_name=SPINE"

# What SQLAlchemy asks when it first connects, and Oracle 19's answers.
_SETUP: dict[str, list[tuple[Any, ...]]] = {
    "current_schema": [("SPINE_READER",)],
    "select 1.1 from dual": [("1.1",)],  # the decimal character
    "local_transaction_id": [],
    "v$parameter": [("19.0.0",)],  # compatible
    "v$transaction": [],
    "isolation": [("READ COMMITTED",)],
}


@dataclass
class Executed:
    sql: str
    params: Any
    input_sizes: dict[str, Any]


Responder = Callable[[str, Any], list[tuple[Any, ...]] | None]


@dataclass
class OracleDouble:
    """The server's side: what was run, what to answer, what to fail."""

    executed: list[Executed] = field(default_factory=list)
    answers: list[tuple[re.Pattern[str], Responder]] = field(default_factory=list)
    failures: list[tuple[re.Pattern[str], Callable[[], Exception | None]]] = field(
        default_factory=list
    )

    def answer(self, pattern: str, rows: list[tuple[Any, ...]] | Responder) -> None:
        respond = rows if callable(rows) else (lambda _sql, _params, r=rows: list(r))
        self.answers.insert(0, (re.compile(pattern, re.I | re.S), respond))

    def fail(self, pattern: str, error: Callable[[], Exception | None]) -> None:
        """Raise `error()` for statements matching `pattern` (while it returns an exception)."""
        self.failures.insert(0, (re.compile(pattern, re.I | re.S), error))

    def engine(self, url: str = URL) -> sa.Engine:
        return sa.create_engine(url, creator=lambda: _Connection(self))

    def statements(self, pattern: str = "") -> list[Executed]:
        found = re.compile(pattern, re.I | re.S)
        return [e for e in self.executed if found.search(e.sql)]

    def _run(self, sql: str, params: Any, sizes: dict[str, Any]) -> list[tuple[Any, ...]]:
        for pattern, error in self.failures:
            if pattern.search(sql):
                exc = error()
                if exc is not None:
                    self.executed.append(Executed(sql, params, sizes))
                    raise exc
        self.executed.append(Executed(sql, params, sizes))
        for pattern, respond in self.answers:
            if pattern.search(sql):
                rows = respond(sql, params)
                if rows is not None:
                    return rows
        lowered = sql.lower()
        for marker, rows in _SETUP.items():
            if marker in lowered:
                return list(rows)
        raise AssertionError(f"the Oracle double has no answer for: {sql}")


def ora_error(code: int, message: str) -> oracledb.DatabaseError:
    """oracledb's own exception for ORA-`code`, as the thin driver raises it."""
    from oracledb import errors

    text = f"ORA-{code:05d}: {message}"
    return oracledb.DatabaseError(errors._Error(text, code=code))


class _Cursor:
    def __init__(self, server: OracleDouble) -> None:
        self._server = server
        self.description: list[tuple[Any, ...]] | None = None
        self.rowcount = -1
        self.arraysize = 100
        self.prefetchrows = 2
        self.outputtypehandler: Any = None
        self._rows: list[tuple[Any, ...]] = []
        self._sizes: dict[str, Any] = {}

    def setinputsizes(self, *args: Any, **kwargs: Any) -> None:
        self._sizes = dict(kwargs)

    def execute(self, sql: str, params: Any = None, **kwargs: Any) -> None:
        sizes, self._sizes = self._sizes, {}
        self._rows = self._server._run(sql, params, sizes)
        width = len(self._rows[0]) if self._rows else 1
        self.description = [(f"C{i}", oracledb.DB_TYPE_VARCHAR, 0, 0, None, None, True)
                            for i in range(width)]  # fmt: skip

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        count = size or self.arraysize
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    def var(self, *args: Any, **kwargs: Any) -> _Var:
        return _Var(args, kwargs)

    def close(self) -> None:
        pass

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass
class _Var:
    """A fetch or bind variable as `cursor.var` makes it: its arguments, to be looked at."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def getvalue(self) -> str:
        return "10.21.3517"  # a transaction id, for SQLAlchemy's isolation-level probe


class _Connection:
    version = VERSION
    thin = True
    max_identifier_length = 128
    autocommit = False

    def __init__(self, server: OracleDouble) -> None:
        self._server = server
        self.outputtypehandler: Any = None
        self.stmtcachesize = 20

    def cursor(self) -> _Cursor:
        return _Cursor(self._server)

    def rollback(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass

    def ping(self) -> None:
        pass
