"""The SQL of chunk planning and extraction, built with SQLAlchemy Core for any dialect.

Statements are compiled here, once per shape (which bounds a chunk has), and run through the
driver's cursor by `snapshot`; bound values carry no SQLAlchemy type, so the driver receives
primary-key bounds exactly as it returned them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement, quoted_name
from sqlalchemy.sql.selectable import NamedFromClause, Select, TableClause

from migrate.errors import SourceError
from migrate.schema import ColumnInfo, ColumnType, TableInfo, ValueKind
from migrate.source.chunks import Bound, ChunkRange
from migrate.spec import ExtractSpec, NodeSpec

if TYPE_CHECKING:
    from migrate.source.dialects import SourceDialect

Params = Sequence[Any] | Mapping[str, Any]
From = NamedFromClause
# node id or name, for COPY, bound lengths, how many keys
Shape = tuple[str, bool, int | None, int | None, int | None]


class SourceTable(TableClause):
    """A table reference that reads as of an Oracle SCN when one is set (`AS OF SCN n`)."""

    __visit_name__ = "source_table"
    inherit_cache = False  # the SCN is part of the SQL; these statements are compiled directly

    def __init__(
        self,
        name: str,
        *columns: sa.ColumnClause[Any],
        scn: int | None = None,
        schema: str | None = None,
    ) -> None:
        super().__init__(name, *columns, schema=schema)
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
    return Compiled(statement, dialect).bind({})


class Compiled:
    """A statement compiled once; `bind` gives its parameters for one set of bound values."""

    def __init__(self, statement: sa.ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self._compiled = compiled
        order: list[str] | None = getattr(compiled, "positiontup", None)
        self._order = order if dialect.positional else None

    def bind(self, values: Mapping[str, Any]) -> tuple[str, Params]:
        params = dict(self._compiled.construct_params(dict(values)) or {})
        if self._order is not None:
            return self.sql, [params[name] for name in self._order]
        return self.sql, params


def _param(name: str) -> sa.BindParameter[Any]:
    return sa.bindparam(name, None, type_=sqltypes.NULLTYPE)


def _bound(
    columns: Sequence[ColumnElement[Any]],
    names: Sequence[str],
    strict: Callable[[ColumnElement[Any], Any], ColumnElement[bool]],
    last: Callable[[ColumnElement[Any], Any], ColumnElement[bool]],
) -> ColumnElement[bool]:
    """(a, b) OP (x, y) spelled without row values: a STRICT x OR (a = x AND b LAST y)."""
    head, value = columns[0], _param(names[0])
    if len(columns) == 1:
        return last(head, value)
    rest = _bound(columns[1:], names[1:], strict, last)
    return sa.or_(strict(head, value), sa.and_(head == value, rest))


def _names(side: str, bound: Bound | None) -> list[str]:
    return [] if bound is None else [f"{side}{i}" for i in range(len(bound))]


def padded(count: int) -> int:
    """How many rows an IN list of `count` rows is given: the next power of two, and at most
    500 beyond 256 (callers batch by 500, under Oracle's 1,000-item limit); the list is filled
    with its last row again. Statements with an IN list are compiled once per such size
    instead of once per count: compiling hundreds of parameters costs more than running them."""
    if count <= 256:
        return 1 << max(count - 1, 0).bit_length()
    return max(count, 500)


def padded_rows(rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """`rows` filled to `padded(len(rows))` with its last row (an IN list is a set)."""
    listed = list(rows)
    return listed + listed[-1:] * (padded(len(listed)) - len(listed)) if listed else listed


def bound_values(chunk: ChunkRange) -> dict[str, Any]:
    """The chunk's bounds (and keys) as the parameters `range_predicate` names."""
    values: dict[str, Any] = {}
    for side, bound in (("lo", chunk.lo), ("hi", chunk.hi)):
        values.update(zip(_names(side, bound), bound or (), strict=True))
    for row, key in enumerate(padded_rows(chunk.keys or ())):
        values.update((f"key{row}_{i}", value) for i, value in enumerate(key))
    return values


def in_values(
    columns: Sequence[ColumnElement[Any]], count: int, prefix: str = "key"
) -> ColumnElement[bool]:
    """`columns` equal to one of `count` rows of parameters `{prefix}{row}_{column}`: an IN
    list for one column, an OR of ANDs for several (no row values, for Oracle). Callers keep
    `count` under Oracle's 1,000-item limit."""
    if len(columns) == 1:
        return columns[0].in_([_param(f"{prefix}{row}_0") for row in range(count)])
    return sa.or_(
        *(
            sa.and_(*(c == _param(f"{prefix}{row}_{i}") for i, c in enumerate(columns)))
            for row in range(count)
        )
    )


def check_bounds(chunk: ChunkRange, width: int) -> None:
    for bound in (chunk.lo, chunk.hi):
        if bound is not None and len(bound) != width:
            raise SourceError(
                f"chunk {chunk.index} has a {len(bound)}-column bound for a "
                f"{width}-column primary key",
                hint="the root table's primary key changed since the run was planned; "
                "start a fresh run",
            )


def range_predicate(
    columns: Sequence[ColumnElement[Any]], chunk: ChunkRange
) -> list[ColumnElement[bool]]:
    """`lo <= key < hi` on these key columns, portable (Oracle has no row-value comparison), with
    the bounds as parameters `lo0, lo1, ...` and `hi0, ...` (see `bound_values`)."""
    check_bounds(chunk, len(columns))
    clauses: list[ColumnElement[bool]] = []
    if chunk.keys is not None:
        clauses.append(in_values(columns, padded(len(chunk.keys))))
    if chunk.lo is not None:
        names = _names("lo", chunk.lo)
        clauses.append(_bound(columns, names, lambda c, v: c > v, lambda c, v: c >= v))
    if chunk.hi is not None:
        names = _names("hi", chunk.hi)
        clauses.append(_bound(columns, names, lambda c, v: c < v, lambda c, v: c < v))
    return clauses


class Queries:
    """Every statement one document type needs, against the reflected tables of its nodes.

    `rows` and `count` compile once per shape of chunk (which bounds it has) and bind each chunk's
    bounds as parameters: SQLAlchemy compiles the SQL, it does not run per chunk.
    """

    def __init__(
        self,
        spec: ExtractSpec,
        tables: Mapping[str, TableInfo],
        *,
        dialect: SourceDialect,
        scn: int | None = None,
        schema: str | None = None,
    ) -> None:
        self.spec = spec
        self.tables = tables
        self.dialect = dialect
        self.scn = scn
        self.schema = schema
        # Names exactly as the catalog reports them: Oracle folds an unquoted name to upper
        # case, so a name is always quoted there (a lower-case table stays lower case).
        self._exact = bool(dialect.sa.requires_name_normalize)
        self.kinds = {n.node_id: self._kinds(n) for n in spec.nodes}
        self._compiled: dict[Shape, Compiled] = {}
        self._keyed = {n.node_id: self._key_link(n) for n in spec.nodes}

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

    def _name(self, name: str) -> str:
        return quoted_name(name, True) if self._exact else name

    def _from(self, table: str, alias: str | None = None) -> From:
        info = self.tables[table]
        clause = SourceTable(
            self._name(info.name),
            *(sa.column(self._name(c.name)) for c in info.columns),
            scn=self.scn,
            schema=self._name(self.schema) if self.schema else None,
        )
        return clause.alias(alias) if alias else clause

    def _col(self, source: From, table: str, name: str) -> ColumnElement[Any]:
        return source.c[self._column(table, name).name]

    def _where(self) -> list[ColumnElement[bool]]:
        """The mapping's trusted predicate as written: SQL text, not a boolean expression (which
        a dialect without booleans, Oracle before 23ai, renders as `(<where>) = 1`)."""
        where = self.spec.where
        return [sa.text(f"({where})")] if where and where.strip() else []  # type: ignore[list-item]

    def _pk(self, source: From) -> list[ColumnElement[Any]]:
        return [self._col(source, self.spec.root_table, k) for k in self.spec.primary_key]

    def _select_expr(
        self, column: ColumnElement[Any], type_: ColumnType, *, copy: bool = False
    ) -> ColumnElement[Any]:
        """Ask the database for a form the driver (or, `copy`, PostgreSQL's COPY text) returns
        exactly (the engine's rules)."""
        return self.dialect.select_expr(column, type_, copy=copy)

    def _compile(
        self,
        what: str,
        chunk: ChunkRange,
        make: Callable[[], sa.ClauseElement],
        *,
        copy: bool = False,
    ) -> tuple[str, Params]:
        check_bounds(chunk, len(self.spec.primary_key))
        shape = (
            what,
            copy,
            None if chunk.lo is None else len(chunk.lo),
            None if chunk.hi is None else len(chunk.hi),
            None if chunk.keys is None else padded(len(chunk.keys)),
        )
        compiled = self._compiled.get(shape)
        if compiled is None:
            compiled = self._compiled[shape] = Compiled(make(), self.dialect.sa)
        return compiled.bind(bound_values(chunk))

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

    def count(self, chunk: ChunkRange) -> tuple[str, Params]:
        """Root rows in the chunk (after `where`)."""

        def make() -> Select[Any]:
            root = self._from(self.spec.root_table)
            where = [*range_predicate(self._pk(root), chunk), *self._where()]
            return sa.select(sa.func.count()).select_from(root).where(*where)

        return self._compile("", chunk, make)

    def dirty(self, node: NodeSpec, values: Sequence[Sequence[Any]]) -> tuple[str, Params]:
        """`dirty_roots` of these link values (at most 500 rows), compiled once per node and
        padded size."""
        rows = padded_rows(values)
        shape = (f"dirty:{node.node_id}", False, None, None, len(rows))
        compiled = self._compiled.get(shape)
        if compiled is None:
            statement = self.dirty_roots(node, len(rows))
            compiled = self._compiled[shape] = Compiled(statement, self.dialect.sa)
        params = {f"val{r}_{i}": v for r, row in enumerate(rows) for i, v in enumerate(row)}
        return compiled.bind(params)

    def existing(self, chunk: ChunkRange) -> tuple[str, Params]:
        """`root_keys_in` of the chunk, compiled once per shape of chunk."""
        return self._compile("existing", chunk, lambda: self.root_keys_in(chunk))

    def dirty_roots(self, node: NodeSpec, count: int) -> Select[Any]:
        """The keys of the root rows whose documents read rows linked to `count` value rows of
        `node`'s link (parameters `val{row}_{i}`, the node's own side of the link): the roots
        reached from the node's parent rows holding those values, up the mapping's join chain,
        set-based. The mapping's `where` is not applied: a root it now leaves out is dirty too
        (its document is deleted)."""
        assert node.parent_id is not None
        current = self.spec.node(node.parent_id)
        source = self._source_of(current)
        theirs = [self._col(source, current.table, t) for _, t in node.link]
        condition: ColumnElement[bool] = in_values(theirs, count, prefix="val")
        while current.parent_id is not None:
            up = self.spec.node(current.parent_id)
            ours = [self._col(source, current.table, o) for o, _ in current.link]
            inner: Select[Any] = sa.select(*ours).select_from(source).where(condition)
            up_source = self._source_of(up)
            upper = [self._col(up_source, up.table, t) for _, t in current.link]
            condition = upper[0].in_(inner) if len(upper) == 1 else sa.tuple_(*upper).in_(inner)
            current, source = up, up_source
        return sa.select(*self._pk(source)).select_from(source).where(condition)

    def root_keys_in(self, chunk: ChunkRange) -> Select[Any]:
        """The root keys of `chunk` (its range, and its keys when it names some), without the
        mapping's `where`: which of them exist, in the database's own key order."""
        root = self._from(self.spec.root_table)
        pk = self._pk(root)
        return sa.select(*pk).select_from(root).where(*range_predicate(pk, chunk)).order_by(*pk)

    def _source_of(self, node: NodeSpec) -> From:
        if node.parent_id is None:
            return self._from(node.table)
        return self._from(node.table, self._alias(node))

    def rows(self, node: NodeSpec, chunk: ChunkRange) -> tuple[str, Params]:
        """A node's rows for a chunk: the root by range, every other node by semi-joins up to it
        (or by range, see `_restrict`), ordered by the table's key."""
        return self._compile(node.node_id, chunk, lambda: self._rows(node, chunk))

    def copy_rows(self, node: NodeSpec, chunk: ChunkRange) -> tuple[str, Params]:
        """`rows` for PostgreSQL's COPY: the same rows, a TIMESTAMP WITH TIME ZONE read as UTC."""
        return self._compile(
            node.node_id, chunk, lambda: self._rows(node, chunk, copy=True), copy=True
        )

    def selected_types(self, node: NodeSpec) -> list[ColumnType]:
        """The type of each column `rows` selects: the node's columns, then key columns it does
        not read (see `key_positions`)."""
        names = [*node.columns, *(k for k in self._key_names(node) if k not in node.columns)]
        return [self._column(node.table, name).type for name in names]

    def key_positions(self, node: NodeSpec, names: Sequence[str] | None = None) -> list[int]:
        """Where each named column (the table's primary key by default) is in a row of `rows`:
        among the node's columns when it reads it, else in the key columns selected after them."""
        at = {name.casefold(): i for i, name in enumerate(node.columns)}
        extra = len(node.columns)
        for name in self._key_names(node):
            if name.casefold() not in at:
                at[name.casefold()] = extra
                extra += 1
        wanted = self.tables[node.table].primary_key if names is None else names
        return [at[name.casefold()] for name in wanted]

    def root_keys(self) -> list[int]:
        """Where the root's key is in a root row, in the order of `spec.primary_key`."""
        return self.key_positions(self.spec.root, self.spec.primary_key)

    def _key_names(self, node: NodeSpec) -> list[str]:
        """The table's key, each as the node's columns spell it when the node reads it."""
        mapped = {self._column(node.table, c).name: c for c in node.columns}
        return [mapped.get(k, k) for k in self.tables[node.table].primary_key]

    def _rows(self, node: NodeSpec, chunk: ChunkRange, *, copy: bool = False) -> Select[Any]:
        if node.parent_id is None:
            source = self._from(node.table)
            where = [*range_predicate(self._pk(source), chunk), *self._where()]
        else:
            source = self._from(node.table, self._alias(node))
            where = self._restrict(source, node, chunk)
        selected = [
            self._select_expr(
                self._col(source, node.table, name), self._column(node.table, name).type, copy=copy
            ).label(f"c{i}")
            for i, name in enumerate(node.columns)
        ]
        # The table's key names a row in errors and orders the rows; a key column the node does
        # not read follows the mapped columns (one read it is not read twice).
        key = [self._col(source, node.table, k) for k in self.tables[node.table].primary_key]
        extra = []
        for i, (column, name) in enumerate(zip(key, self._key_names(node), strict=True)):
            if name not in node.columns:
                type_ = self._column(node.table, name).type
                extra.append(
                    (self._select_expr(column, type_, copy=True) if copy else column).label(f"k{i}")
                )
        return sa.select(*selected, *extra).select_from(source).where(*where).order_by(*key)

    def _alias(self, node: NodeSpec) -> str:
        return f"mig_n{[n.node_id for n in self.spec.nodes].index(node.node_id)}"

    def _key_link(self, node: NodeSpec) -> list[str] | None:
        """The node's link columns in primary-key order, when they are the root's whole key and of
        the same declared type (an equal key then sorts alike: not so for CHAR against VARCHAR in
        PostgreSQL, or for two SQLite affinities)."""
        if node.parent_id != self.spec.root.node_id:
            return None
        by_parent = {parent.casefold(): child for child, parent in node.link}
        key = [k.casefold() for k in self.spec.primary_key]
        if len(node.link) != len(key) or set(by_parent) != set(key):
            return None
        ours = [by_parent[k] for k in key]
        for mine, theirs in zip(ours, self.spec.primary_key, strict=True):
            if _type_name(self._column(node.table, mine)) != _type_name(
                self._column(self.spec.root_table, theirs)
            ):
                return None
        read = {c.casefold() for c in node.columns}
        if self._where() and any(c.casefold() not in read for c in ours):
            return None
        return ours

    def filtered_by_root(self, node: NodeSpec) -> list[int] | None:
        """For a node read by key range while a `where` drops root rows: the positions of its link
        columns in its rows (in root key order), to keep only rows whose link equals the key of
        one of the chunk's root rows, before any value is converted, so rows of roots the `where`
        leaves out are neither staged nor checked. None when the SQL already restricts it."""
        link = self._keyed[node.node_id]
        if link is None or not self._where():
            return None
        positions = {c.casefold(): i for i, c in enumerate(node.columns)}
        return [positions[c.casefold()] for c in link]

    def _restrict(
        self, source: From, node: NodeSpec, chunk: ChunkRange, *, inner: bool = False
    ) -> list[ColumnElement[bool]]:
        """Predicates on a non-root node's rows: those the chunk's documents can use.

        When the link is the root's whole key, the range applies to the link columns directly: a
        range scan instead of a semi-join. Such rows may include orphans (a key in range whose root
        row does not exist) and, with a `where`, rows of roots it leaves out: they match no
        document, and `filtered_by_root` drops the latter after reading. That filter cannot reach
        into SQL, so with a `where` the node restricts its own children (`inner`) by semi-join.
        """
        shortcut = self._keyed[node.node_id]
        if shortcut is None or (inner and self._where()):
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
            where = self._restrict(source, parent, chunk, inner=True)
        inner: Select[Any] = sa.select(*theirs).select_from(source).where(*where)
        if len(ours) == 1:
            return ours[0].in_(inner)
        return sa.tuple_(*ours).in_(inner)


def _type_name(column: ColumnInfo) -> tuple[ValueKind, str]:
    """A column's value kind and declared type name without its length or precision."""
    return column.type.kind, column.type.declared.split("(")[0].strip().casefold()
