"""The SQL of chunk planning and extraction, built with SQLAlchemy Core for any dialect.

Statements are compiled here and run through the driver's cursor by `extract`; bound values carry no
SQLAlchemy type, so the driver receives primary-key bounds exactly as it returned them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import NamedFromClause, Select, TableClause

from migrate.errors import SourceError
from migrate.schema import ColumnInfo, TableInfo, ValueKind
from migrate.source.chunks import Bound, ChunkRange
from migrate.spec import ExtractSpec, NodeSpec

Params = Sequence[Any] | Mapping[str, Any]
From = NamedFromClause


class SourceTable(TableClause):
    """A table reference that reads as of an Oracle SCN when one is set (`AS OF SCN n`)."""

    __visit_name__ = "source_table"
    inherit_cache = False  # the SCN is part of the SQL; these statements are compiled directly

    def __init__(self, name: str, *columns: sa.ColumnClause[Any], scn: int | None = None) -> None:
        super().__init__(name, *columns)
        self.scn = scn


@compiles(SourceTable)
def _compile_table(element: SourceTable, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.visit_table(element, **kw))  # type: ignore[no-untyped-call]


@compiles(SourceTable, "oracle")
def _compile_oracle_table(element: SourceTable, compiler: SQLCompiler, **kw: Any) -> str:
    text = str(compiler.visit_table(element, **kw))  # type: ignore[no-untyped-call]
    if element.scn is not None and kw.get("asfrom"):
        text += f" AS OF SCN {int(element.scn)}"
    return text


def compile_statement(statement: sa.ClauseElement, dialect: Dialect) -> tuple[str, Params]:
    """SQL text and parameters in the driver's own paramstyle."""
    compiled = statement.compile(dialect=dialect)
    params = dict(compiled.construct_params() or {})
    if dialect.positional:
        order: list[str] = getattr(compiled, "positiontup", None) or []
        return compiled.string, [params[name] for name in order]
    return compiled.string, params


def _value(value: Any) -> sa.BindParameter[Any]:
    return sa.bindparam(None, value, type_=sqltypes.NULLTYPE, unique=True)


def _bound(
    columns: Sequence[ColumnElement[Any]],
    values: Bound,
    strict: Callable[[ColumnElement[Any], Any], ColumnElement[bool]],
    last: Callable[[ColumnElement[Any], Any], ColumnElement[bool]],
) -> ColumnElement[bool]:
    """(a, b) OP (x, y) spelled without row values: a STRICT x OR (a = x AND b LAST y)."""
    head, value = columns[0], _value(values[0])
    if len(columns) == 1:
        return last(head, value)
    rest = _bound(columns[1:], values[1:], strict, last)
    return sa.or_(strict(head, value), sa.and_(head == value, rest))


def range_predicate(
    columns: Sequence[ColumnElement[Any]], chunk: ChunkRange
) -> list[ColumnElement[bool]]:
    """`lo <= key < hi` on these key columns, portable (Oracle has no row-value comparison)."""
    clauses: list[ColumnElement[bool]] = []
    for bound in (chunk.lo, chunk.hi):
        if bound is not None and len(bound) != len(columns):
            raise SourceError(
                f"chunk {chunk.index} has a {len(bound)}-column bound for a "
                f"{len(columns)}-column primary key",
                hint="the root table's primary key changed since the run was planned; "
                "start a fresh run",
            )
    if chunk.lo is not None:
        clauses.append(_bound(columns, chunk.lo, lambda c, v: c > v, lambda c, v: c >= v))
    if chunk.hi is not None:
        clauses.append(_bound(columns, chunk.hi, lambda c, v: c < v, lambda c, v: c < v))
    return clauses


class Queries:
    """Every statement one document type needs, against the reflected tables of its nodes."""

    def __init__(
        self,
        spec: ExtractSpec,
        tables: Mapping[str, TableInfo],
        *,
        dialect: str,
        scn: int | None = None,
    ) -> None:
        self.spec = spec
        self.tables = tables
        self.dialect = dialect
        self.scn = scn
        self.kinds = {n.node_id: self._kinds(n) for n in spec.nodes}

    # -- names ---------------------------------------------------------------------------

    def table_info(self, name: str) -> TableInfo:
        return self.tables[name]

    def _column(self, table: str, name: str) -> ColumnInfo:
        column = self.tables[table].column(name)
        if column is None:
            raise SourceError(
                f"column {name!r} is not in table {self.tables[table].name}",
                where=f"service {self.spec.service}, document type {self.spec.doc_type}",
                hint="the source schema changed since the mapping was checked; run `migrate check`",
            )
        return column

    def _kinds(self, node: NodeSpec) -> list[ValueKind]:
        return [self._column(node.table, name).type.kind for name in node.columns]

    def _from(self, table: str, alias: str | None = None) -> From:
        info = self.tables[table]
        clause = SourceTable(info.name, *(sa.column(c.name) for c in info.columns), scn=self.scn)
        return clause.alias(alias) if alias else clause

    def _col(self, source: From, table: str, name: str) -> ColumnElement[Any]:
        return source.c[self._column(table, name).name]

    def _where(self) -> list[ColumnElement[bool]]:
        where = self.spec.where
        return [sa.literal_column(f"({where})", sa.Boolean)] if where and where.strip() else []

    def _pk(self, source: From) -> list[ColumnElement[Any]]:
        return [self._col(source, self.spec.root_table, k) for k in self.spec.primary_key]

    def _select_expr(self, column: ColumnElement[Any], kind: ValueKind) -> ColumnElement[Any]:
        """Ask the database for a form the driver returns exactly."""
        if self.dialect == "postgresql" and kind is ValueKind.JSON:
            return sa.cast(column, sa.Text)  # psycopg parses JSON into floats; keep the text
        if self.dialect == "oracle" and kind is ValueKind.TIMESTAMP_TZ:
            return sa.func.sys_extract_utc(column)  # oracledb drops the zone; read UTC instead
        return column

    # -- statements ----------------------------------------------------------------------

    def boundaries(self, chunk_size: int) -> Select[Any]:
        """The key of every `chunk_size`-th root row, in key order, in one pass."""
        root = self._from(self.spec.root_table)
        keys = [c.label(f"k{i}") for i, c in enumerate(self._pk(root))]
        number = sa.func.row_number().over(order_by=self._pk(root)).label("mig_rn")
        ranked = sa.select(*keys, number).select_from(root).where(*self._where()).subquery("mig_k")
        first_of_chunk = (ranked.c.mig_rn - 1) % chunk_size == 0
        columns = [ranked.c[f"k{i}"] for i in range(len(keys))]
        return sa.select(*columns).where(first_of_chunk).order_by(ranked.c.mig_rn)

    def null_keys(self) -> Select[Any]:
        """Root rows with a NULL in the key: no range can hold them."""
        root = self._from(self.spec.root_table)
        nulls = sa.or_(*(c.is_(None) for c in self._pk(root)))
        return sa.select(sa.func.count()).select_from(root).where(nulls, *self._where())

    def count(self, chunk: ChunkRange) -> Select[Any]:
        root = self._from(self.spec.root_table)
        where = [*range_predicate(self._pk(root), chunk), *self._where()]
        return sa.select(sa.func.count()).select_from(root).where(*where)

    def rows(self, node: NodeSpec, chunk: ChunkRange) -> Select[Any]:
        """A node's rows for a chunk: the root by range, every other node by semi-joins up to it."""
        if node.parent_id is None:
            source = self._from(node.table)
            where = [*range_predicate(self._pk(source), chunk), *self._where()]
        else:
            source = self._from(node.table, self._alias(node))
            where = self._restrict(source, node, chunk)
        kinds = self.kinds[node.node_id]
        selected = [
            self._select_expr(self._col(source, node.table, name), kind).label(f"c{i}")
            for i, (name, kind) in enumerate(zip(node.columns, kinds, strict=True))
        ]
        # The table's key follows the mapped columns: it names a row in errors and orders the rows.
        key = [source.c[k] for k in self.tables[node.table].primary_key]
        extra = [c.label(f"k{i}") for i, c in enumerate(key)]
        return sa.select(*selected, *extra).select_from(source).where(*where).order_by(*key)

    def _alias(self, node: NodeSpec) -> str:
        return f"mig_n{[n.node_id for n in self.spec.nodes].index(node.node_id)}"

    def _key_link(self, node: NodeSpec) -> list[str] | None:
        """The node's link columns in primary-key order, when they map onto the whole root key."""
        if node.parent_id != self.spec.root.node_id or self._where():
            return None
        by_parent = {parent.casefold(): child for child, parent in node.link}
        key = [k.casefold() for k in self.spec.primary_key]
        if len(node.link) != len(key) or set(by_parent) != set(key):
            return None
        return [by_parent[k] for k in key]

    def _restrict(
        self, source: From, node: NodeSpec, chunk: ChunkRange
    ) -> list[ColumnElement[bool]]:
        """Predicates on a non-root node's rows: those the chunk's documents can use.

        When the link is the root's whole key and there is no `where`, the range applies to the
        link columns directly: a range scan instead of a semi-join. Such rows may include orphans
        (a key in range whose root row does not exist); they match no document.
        """
        shortcut = self._key_link(node)
        if shortcut is None:
            return [self._linked(source, node, chunk)]
        columns = [self._col(source, node.table, c) for c in shortcut]
        return [*range_predicate(columns, chunk), *(c.is_not(None) for c in columns)]

    def _linked(self, child: From, node: NodeSpec, chunk: ChunkRange) -> ColumnElement[bool]:
        """`child`'s link IN the parent rows' link values, restricted the same way up to the root.

        An uncorrelated IN semi-join rather than a correlated EXISTS: PostgreSQL and Oracle plan
        both as a semi-join, but SQLite runs EXISTS once per child row (a scan of the whole child
        table per chunk) while it drives IN from the chunk's key range through the child's index.
        IN never matches NULL and never duplicates a row, whatever the link's uniqueness.
        """
        assert node.parent_id is not None
        parent = self.spec.node(node.parent_id)
        is_root = parent.parent_id is None
        source = self._from(parent.table, None if is_root else self._alias(parent))
        theirs = [self._col(source, parent.table, t) for _, t in node.link]
        ours = [self._col(child, node.table, o) for o, _ in node.link]
        if is_root:
            where = [*range_predicate(self._pk(source), chunk), *self._where()]
        else:
            where = self._restrict(source, parent, chunk)
        inner: Select[Any] = sa.select(*theirs).select_from(source).where(*where)
        if len(ours) == 1:
            return ours[0].in_(inner)
        return sa.tuple_(*ours).in_(inner)
