"""Build documents from one chunk's rows: the hot path of transform.

The field tree is compiled once per document type into closures over column positions and value
converters. Per chunk, each node's Arrow columns become Python row tuples once, each child
node's rows are grouped by link key in one pass (and sorted per the embed ordering rule), and every
root row becomes one `Document` or one `Reject`. Children are looked up by key, never scanned per
parent.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

import msgspec
import pyarrow as pa

from migrate.document import BuildResult, Document, IndexValue, Reject
from migrate.errors import StagingError
from migrate.mapping.canonical import canonical_json, checksum
from migrate.mapping.columnar import ColumnarBuilder, Unsupported
from migrate.mapping.indexes import compile_index
from migrate.mapping.keys import (
    RowError,
    compile_key,
    default_template,
    guard,
    parse_template,
)
from migrate.mapping.model import (
    ColumnField,
    DocTypeModel,
    EmbedField,
    Field,
    ListField,
    LiteralField,
    LookupField,
    ObjectField,
)
from migrate.mapping.values import ValueRuleError, json_converter, text_converter
from migrate.schema import ColumnInfo, SchemaInfo, TableInfo, ValueKind
from migrate.spec import FLAWS_COLUMN, ExtractSpec, NodeSpec

Row = tuple[Any, ...]
Groups = list[dict[Row, list[Row]]]
Getter = Callable[[Row, Groups], Any]
SortKey = Callable[[Row], tuple[tuple[Any, ...], ...]]

OMIT: Any = object()  # "make no field"
_MISSING: Any = object()


def _rank(value: Any) -> tuple[Any, ...]:
    """Sort rank of one value: values ascending, NaN after them, NULLs last."""
    if value is None:
        return (2,)
    if (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, Decimal) and value.is_nan()
    ):
        return (1,)
    return (0, value)


def node_column(table: TableInfo, name: str) -> ColumnInfo:
    """A column validation has already found; a missing one means the plan is inconsistent."""
    column = table.column(name)
    if column is None:
        raise StagingError(
            f"table {table.name} has no column {name}", hint="run `migrate check` on the mapping"
        )
    return column


class _Node:
    """One node of the tree as the builder reads it: column positions, links, ordering."""

    def __init__(self, spec: NodeSpec, table: TableInfo, position: int) -> None:
        self.spec = spec
        self.table = table
        self.position = position
        self.index = {name.casefold(): i for i, name in enumerate(spec.columns)}
        self.link_child = tuple(self.pos(their) for their, _ in spec.link)
        self.primary_key = tuple(self.pos(c) for c in table.primary_key)
        self.sort_key: SortKey | None = None
        self.sort_positions: tuple[int, ...] = ()
        self.kinds = [node_column(table, name).type for name in spec.columns]

    def pos(self, name: str) -> int:
        try:
            return self.index[name.casefold()]
        except KeyError:
            raise StagingError(
                f"node {self.spec.node_id} reads no column {name}",
                hint="the plan is inconsistent; run `migrate check` and report this",
            ) from None

    def make_sort_key(self, order_by: tuple[str, ...]) -> None:
        """Embed order: `order_by` ascending with NULLs last, then the primary key, or else every
        column read, in table order (the node's columns are in table order)."""
        tail = self.primary_key or tuple(range(len(self.spec.columns)))
        positions = tuple(self.pos(c) for c in order_by) + tail
        self.sort_positions = positions
        self.sort_key = _sort_key(positions, self.kinds)


def _sort_key(positions: tuple[int, ...], kinds: list[Any]) -> SortKey:
    """Compare JSON values by their canonical text; everything else by its staged value."""
    text_of: dict[int, Callable[[Any], str]] = {
        i: text_converter(kinds[i]) for i in positions if kinds[i].kind is ValueKind.JSON
    }

    def json_rank(i: int, value: Any) -> tuple[Any, ...]:
        if value is None:
            return (2,)
        try:
            return (0, text_of[i](value))
        except ValueRuleError:
            return (1, str(value))

    if text_of:
        return lambda row: tuple(
            json_rank(i, row[i]) if i in text_of else _rank(row[i]) for i in positions
        )
    return lambda row: tuple(_rank(row[i]) for i in positions)


class DocumentBuilder:
    """Compiled once per document type; `build` is pure and safe to call from several threads.

    Pickling sends the mapping model, not the compiled closures: a worker process recompiles.
    """

    def __init__(self, doc: DocTypeModel, schema: SchemaInfo, extract: ExtractSpec) -> None:
        self._args = (doc, schema, extract)
        self.doc_type = doc.name
        self.bucket_type = doc.bucket_type
        self.bucket = doc.bucket
        self.keep = doc.nulls == "keep"
        self._prefix = f"documents.{doc.name}."
        self._nodes: dict[str, _Node] = {}
        for position, spec in enumerate(extract.nodes):
            table = schema.table(spec.table)
            if table is None:
                raise StagingError(f"no table {spec.table} in the source schema")
            self._nodes[spec.node_id] = _Node(spec, table, position)
        self._order = list(self._nodes.values())
        root = self._nodes["root"]
        self._root = root
        self._fields = self._object(doc.fields, root, "root")
        pk = [node_column(root.table, c) for c in root.table.primary_key]
        self._source_key = [(c.name, root.pos(c.name), text_converter(c.type)) for c in pk]
        self._template = (
            parse_template(doc.key.text)
            if doc.key is not None
            else default_template(root.table.primary_key)
        )
        self.key_escape = doc.key_escape
        self._key = compile_key(self._template, root.table, root.pos, escape=doc.key_escape)
        ordered = sorted(doc.indexes, key=lambda index: index.name)
        self._indexes = [(i.name, compile_index(i, doc, root.table, root.pos)) for i in ordered]
        self._columnar: ColumnarBuilder | None
        try:
            self._columnar = ColumnarBuilder(self, doc)
        except Unsupported:
            self._columnar = None

    def __reduce__(self) -> tuple[type[DocumentBuilder], tuple[Any, ...]]:
        return (DocumentBuilder, self._args)

    # -- compilation ------------------------------------------------------------------------------

    def _path(self, field: Field) -> str:
        path = field.loc.path
        return path[len(self._prefix) :] if path.startswith(self._prefix) else path

    def _object(
        self, fields: tuple[Field, ...], node: _Node, prefix: str
    ) -> Callable[[Row, Groups], dict[str, Any]]:
        getters = [(f.name, self._getter(f, node, f"{prefix}.{f.name}")) for f in fields]

        def build(row: Row, groups: Groups) -> dict[str, Any]:
            obj: dict[str, Any] = {}
            for name, get in getters:
                value = get(row, groups)
                if value is not OMIT:
                    obj[name] = value
            return obj

        return build

    def _getter(self, field: Field, node: _Node, node_id: str) -> Getter:
        keep = self.keep
        null: Any = None if keep else OMIT
        path = self._path(field)
        if isinstance(field, ColumnField):
            return self._column_getter(field, node, path)
        if isinstance(field, ListField):
            return self._list_getter(field, node, path)
        if isinstance(field, LiteralField):
            constant = field.value
            return lambda row, groups: constant
        if isinstance(field, ObjectField):
            build = self._object(field.fields, node, node_id)

            def nested(row: Row, groups: Groups) -> Any:
                obj = build(row, groups)
                return obj if obj or keep else OMIT

            return nested
        child = self._nodes[node_id]
        parent_link = tuple(node.pos(our) for _, our in child.spec.link)
        n = child.position
        table_name = child.table.name

        width = len(child.spec.columns)

        def children(row: Row, groups: Groups) -> list[Row]:
            key = tuple(row[i] for i in parent_link)
            if None in key:
                return []
            found = groups[n].get(key, [])
            for member in found:
                if len(member) > width and member[width] is not None:
                    raise RowError(path, f"a row of {table_name} it takes: {member[width]}")
            return found

        if isinstance(field, EmbedField):
            child.make_sort_key(tuple(name.text for name in field.order_by))
            build = self._object(field.fields, child, node_id)
            if not field.single:
                return lambda row, groups: [build(r, groups) for r in children(row, groups)]

            def single(row: Row, groups: Groups) -> Any:
                found = children(row, groups)
                if not found:
                    return null
                if len(found) > 1:
                    raise RowError(
                        path, f"{len(found)} rows of {table_name} match a `single` embed"
                    )
                obj = build(found[0], groups)
                return obj if obj or keep else OMIT

            return single
        assert isinstance(field, LookupField)
        if field.field is not None:
            column = node_column(child.table, field.field.text)
            at = child.pos(column.name)
            convert = guard(json_converter(column.type), column.name, path)

            def value(found: Row, groups: Groups) -> Any:
                raw = found[at]
                return null if raw is None else convert(raw)

            make = value
        else:
            assert field.fields is not None
            build = self._object(field.fields, child, node_id)

            def obj_of(found: Row, groups: Groups) -> Any:
                obj = build(found, groups)
                return obj if obj or keep else OMIT

            make = obj_of

        def lookup(row: Row, groups: Groups) -> Any:
            found = children(row, groups)
            if not found:
                return null
            if len(found) > 1:
                raise RowError(path, f"{len(found)} rows of {table_name} match the lookup")
            return make(found[0], groups)

        return lookup

    def _column_getter(self, field: ColumnField, node: _Node, path: str) -> Getter:
        column = node_column(node.table, field.column.text)
        at = node.pos(column.name)
        keep = self.keep
        null: Any = None if keep else OMIT
        if field.values is None:
            as_ = field.as_.text if field.as_ is not None else None
            convert = guard(json_converter(column.type, as_), column.name, path)

            def plain(row: Row, groups: Groups) -> Any:
                raw = row[at]
                return null if raw is None else convert(raw)

            return plain
        code_of = guard(text_converter(column.type), column.name, path)
        table = {entry.code: entry.value for entry in field.values}
        has_default, default = field.has_default, field.default
        missing = f"code has no entry in `values` (column {column.name})"

        def translated(row: Row, groups: Groups) -> Any:
            raw = row[at]
            if raw is None:
                return null
            out = table.get(code_of(raw), _MISSING)
            if out is _MISSING:
                if not has_default:
                    raise RowError(path, missing)
                out = default
            return null if out is None else out

        return translated

    def _list_getter(self, field: ListField, node: _Node, path: str) -> Getter:
        parts = []
        for name in field.columns:
            column = node_column(node.table, name.text)
            convert = guard(json_converter(column.type), column.name, path)
            parts.append((node.pos(column.name), convert))

        def values(row: Row, groups: Groups) -> list[Any]:
            return [convert(row[at]) for at, convert in parts if row[at] is not None]

        return values

    # -- building ---------------------------------------------------------------------------------

    def build(self, tables: Mapping[str, pa.Table], *, max_bytes: int | None = None) -> BuildResult:
        """One document per root row that follows every rule, one reject per row that breaks one,
        in root primary-key order. `max_bytes` rejects documents whose value is larger.

        Column-wise (`columnar.py`) when the mapping allows, row by row otherwise; both give the
        same result, byte for byte."""
        if self._columnar is not None:
            return self._columnar.build(tables, max_bytes)
        return self.build_rows_result(tables, max_bytes)

    def build_rows_result(
        self, tables: Mapping[str, pa.Table], max_bytes: int | None = None
    ) -> BuildResult:
        """`build`, row by row."""
        documents: list[Document] = []
        rejects: list[Reject] = []
        names = self.source_key_texts(tables)
        source_keys: list[str] = []
        for position, result in self.build_rows(tables, max_bytes=max_bytes):
            if isinstance(result, Document):
                documents.append(result)
                source_keys.append(names[position])
            else:
                rejects.append(replace(result, row=names[position]))
        return BuildResult(documents, rejects, source_keys)

    def build_rows(
        self,
        tables: Mapping[str, pa.Table],
        *,
        max_bytes: int | None = None,
        only: set[int] | None = None,
    ) -> list[tuple[int, Document | Reject]]:
        """The row-by-row build, in root primary-key order: each result with its root row's
        position in the chunk. `only` limits it to those root positions."""
        rows = [self._rows(node, tables) for node in self._order]
        groups: Groups = [{} for _ in self._order]
        for node in self._order[1:]:
            groups[node.position] = self._group(node, rows[node.position])
        sort_key = self._root_sort_key()
        roots = [
            (position, row)
            for position, row in enumerate(rows[0])
            if only is None or position in only
        ]
        roots.sort(key=lambda item: sort_key(item[1]))
        return [(position, self._build_one(row, groups, max_bytes)) for position, row in roots]

    def _build_one(self, row: Row, groups: Groups, max_bytes: int | None) -> Document | Reject:
        key: str | None = None
        flaw = self._flaw(row)
        if flaw is not None:
            with contextlib.suppress(RowError):
                key = self._key(row)
            return Reject(self.doc_type, self._source_key_of(row), key, self._root.table.name, flaw)
        try:
            key = self._key(row)
            document = self._fields(row, groups)
            indexes = self._index_entries(row, document)
            try:
                value = canonical_json(document)
            except ValueRuleError as exc:
                raise RowError("fields", exc.reason) from None
            if max_bytes is not None and len(value) > max_bytes:
                raise RowError(
                    "fields",
                    f"the document is {len(value)} bytes, over the limit of {max_bytes}",
                )
        except RowError as exc:
            return Reject(self.doc_type, self._source_key_of(row), key, exc.field, exc.reason)
        return Document(self.bucket_type, self.bucket, key, value, indexes, checksum(value))

    def _flaw(self, row: Row) -> str | None:
        """The value-rule failures a root row was read with, if any."""
        width = len(self._root.spec.columns)
        return row[width] if len(row) > width else None

    def _table(self, node: _Node, tables: Mapping[str, pa.Table]) -> pa.Table:
        """The node's staged rows, checked against the plan (without their flaws column)."""
        return self._staged(node, tables)[0]

    def _staged(
        self, node: _Node, tables: Mapping[str, pa.Table]
    ) -> tuple[pa.Table, list[str | None] | None]:
        """The node's staged rows, checked against the plan, and per row the value-rule failures
        found when they were read (`FLAWS_COLUMN`), or None when there were none."""
        spec = node.spec
        table = tables.get(spec.node_id)
        if table is None:
            raise StagingError(
                f"no rows given for node {spec.node_id} ({spec.table})",
                hint="stage the chunk again with the current plan",
            )
        flaws: list[str | None] | None = None
        if table.num_columns and table.column_names[-1] == FLAWS_COLUMN:
            flaws = table.column(table.num_columns - 1).to_pylist()
            table = table.drop_columns([FLAWS_COLUMN])
        names = tuple(table.column_names)
        if tuple(n.casefold() for n in names) != tuple(c.casefold() for c in spec.columns):
            raise StagingError(
                f"rows of node {spec.node_id} have columns {', '.join(names)}; the plan reads "
                f"{', '.join(spec.columns)}",
                hint="the mapping changed since the chunk was staged; stage it again",
            )
        return table, flaws

    def _rows(self, node: _Node, tables: Mapping[str, pa.Table]) -> list[Row]:
        """The node's rows as tuples of its columns; a row read with flaws carries their text
        as one more, last, element (see `_flaw`)."""
        table, flaws = self._staged(node, tables)
        names = table.column_names
        columns = [
            _number_values(values) if node.kinds[i].kind is ValueKind.NUMBER else values
            for i, values in enumerate(table.column(i).to_pylist() for i in range(len(names)))
        ]
        if flaws is not None:
            columns.append(flaws)
        return list(zip(*columns, strict=True))

    def _group(self, node: _Node, rows: list[Row]) -> dict[Row, list[Row]]:
        """Rows by link key (a NULL never matches), each group in embed order, duplicates of one
        primary key read once."""
        link = node.link_child
        grouped: dict[Row, list[Row]] = {}
        for row in rows:
            key = tuple(row[i] for i in link)
            if None in key:
                continue
            found = grouped.get(key)
            if found is None:
                grouped[key] = [row]
            else:
                found.append(row)
        sort_key, pk = node.sort_key, node.primary_key
        for key, found in grouped.items():
            if len(found) < 2:
                continue
            if sort_key is not None:
                self._sort(found, sort_key, node)
            if pk:
                grouped[key] = _distinct_by(found, pk)
        return grouped

    @staticmethod
    def _sort(rows: list[Row], sort_key: SortKey, node: _Node) -> None:
        try:
            rows.sort(key=sort_key)
        except TypeError as exc:
            raise StagingError(
                f"rows of node {node.spec.node_id} ({node.table.name}) mix value types in a column",
                hint="stage the chunk again; staged values must follow the column's value kind",
            ) from exc

    def _root_sort_key(self) -> SortKey:
        root = self._root
        return _sort_key(root.primary_key, root.kinds)

    def _index_entries(
        self, row: Row, document: Any
    ) -> tuple[tuple[str, tuple[IndexValue, ...]], ...]:
        out: list[tuple[str, tuple[IndexValue, ...]]] = []
        for name, entries in self._indexes:
            found = entries(row, document)
            if found:
                out.append((name, tuple(sorted(set(found)))))
        return tuple(out)

    def source_key_texts(self, tables: Mapping[str, pa.Table]) -> list[str]:
        """Per root row (in staged order), its primary key as the ledger and reject files name
        the row: a JSON array of the key columns' text forms (`null` for a value read with a
        flaw). Column-wise, so both builders name rows alike and cheaply."""
        from migrate.mapping.columns import ColumnRule, key_texts

        root = self._root
        table = self._table(root, tables)
        columns: list[list[str | None]] = []
        for name, at, _ in self._source_key:
            column = node_column(root.table, name)
            texts, bad = key_texts(table.column(at), ColumnRule(name, column.type, None, "key"))
            values = [
                None if text is None or row in bad else text.decode("utf-8", "surrogatepass")
                for row, text in enumerate(texts.to_pylist())
            ]
            columns.append(values)
        return [_key_text(list(values)) for values in zip(*columns, strict=True)]

    def _source_key_of(self, row: Row) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, at, convert in self._source_key:
            raw = row[at]
            try:
                out[name] = "" if raw is None else convert(raw)
            except ValueRuleError:
                out[name] = ""
        return out


_KEY_ENCODER = msgspec.json.Encoder()


def _key_text(values: list[str | None]) -> str:
    try:
        return _KEY_ENCODER.encode(values).decode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escaped, as JSON allows
        return json.dumps(values)


def _number_values(values: list[Any]) -> list[Any]:
    """NUMBER (no declared scale) may be staged as exact decimal text: read it as a Decimal, so it
    converts, sorts and joins as a number. Text that is no number stays text and rejects its row."""
    return [_decimal_or_text(value) if isinstance(value, str) else value for value in values]


def _decimal_or_text(text: str) -> Decimal | str:
    try:
        return Decimal(text.strip())
    except ArithmeticError:
        return text


def _distinct_by(rows: list[Row], positions: tuple[int, ...]) -> list[Row]:
    seen: set[Row] = set()
    out: list[Row] = []
    for row in rows:
        key = tuple(row[i] for i in positions)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out
