"""The column-wise build: the fast path of `DocumentBuilder.build`.

The row builder walks the field tree once per root row, calling a converter per value; at demo
shapes that tops out near 15k documents/s. This one walks the tree once per chunk: each field
becomes a column of canonical JSON text (`columns.py`), Arrow joins each node's fields into object
text, children are sorted and grouped by link key in Arrow and joined into arrays, and only the root
loop (checksum, key, index entries) is Python per document.

It never decides a hard case itself. Any root row touched by a broken rule (a value, a missing code,
a `single` embed or lookup matching several rows, a NULL or empty key, an index value, a document
over the size limit) is built again by the row builder, which produces the exact document or reject.
Mappings it does not cover (index paths through literals) use the row builder throughout.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from itertools import repeat
from typing import TYPE_CHECKING, Any, cast

import msgspec
import pyarrow as pa
import pyarrow.compute as _compute
from xxhash import xxh3_128_hexdigest

from migrate.document import BuildResult, Document, IndexValue, Reject
from migrate.mapping.canonical import canonical_json
from migrate.mapping.columns import (
    BINARY,
    ColumnRule,
    int_values,
    json_parts,
    json_texts,
    key_texts,
    lit,
    python_values,
    quote_text,
)
from migrate.mapping.indexes import (
    ColumnSource,
    compile_index,
    compile_path_values,
    is_int_index,
    resolve_source,
)
from migrate.mapping.keys import Placeholder, RowError, escaped_characters, percent
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
from migrate.mapping.values import ValueRuleError
from migrate.schema import ValueKind

# pyarrow-stubs type each compute function by overloads that cannot follow a chain of calls
# over arrays, chunked arrays and scalars; the calls here are checked by the tests instead.
pc: Any = _compute

if TYPE_CHECKING:
    from migrate.mapping.builder import DocumentBuilder, _Node

NULL_TEXT = b"null"
_NULL = pa.scalar(None, BINARY)
_ZERO32 = pa.scalar(0, pa.int32())
# Kinds whose staged values Arrow sorts and matches exactly as Python does (not FLOAT: a NaN never
# equals another in Python, but Arrow's hash lookups match them; not NUMBER/JSON: compared as
# Decimals and canonical text; not BOOLEAN: staged as integers or text by some drivers).
_ARROW_KINDS = frozenset(
    {
        ValueKind.STRING,
        ValueKind.INTEGER,
        ValueKind.DECIMAL,
        ValueKind.DATE,
        ValueKind.TIMESTAMP,
        ValueKind.TIMESTAMP_TZ,
        ValueKind.BINARY,
    }
)


class Unsupported(Exception):
    """The mapping uses something the column-wise build does not cover: use the row builder."""


# -- the compiled field tree -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    at: int
    rule: ColumnRule


@dataclass(frozen=True, slots=True)
class _Codes:
    at: int
    rule: ColumnRule
    codes: pa.Array[Any]
    outputs: pa.Array[Any]
    default: pa.Scalar[Any] | None  # None: a missing code breaks the row


@dataclass(frozen=True, slots=True)
class _List:
    parts: tuple[_Column, ...]


@dataclass(frozen=True, slots=True)
class _Literal:
    text: bytes


@dataclass(frozen=True, slots=True)
class _Object:
    fields: tuple[tuple[bytes, Any], ...]  # ('"name":', plan), sorted by name


@dataclass(frozen=True, slots=True)
class _Child:
    node_id: str
    parent_link: tuple[int, ...]
    mode: str  # "list", "single" (one object) or "field" (a lookup's one value)
    inner: _Object | _Column


@dataclass(frozen=True, slots=True)
class _PathIndex:
    name: str
    chain: tuple[str, ...]  # child node ids walked from the root
    leaf_node: str
    leaf: Callable[[tuple[Any, ...]], Any]
    entries: Callable[[list[Any]], list[IndexValue]]
    column: _Column | None  # the leaf, when it is a plain column (no `values:`, no list)
    is_int: bool


@dataclass(frozen=True, slots=True)
class _ColumnIndex:
    name: str
    at: int
    rule: ColumnRule
    is_int: bool
    entries: Callable[[Any, Any], list[IndexValue]]


@dataclass(frozen=True, slots=True)
class _Wrapped:
    """A field's JSON text as `opening + text + closing` (null text: no field), left unjoined so
    the object's own join writes the brackets or quotes with the label, in the same pass."""

    text: pa.Array[Any]
    opening: bytes
    closing: bytes


# -- per chunk state -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Grouping:
    """A child node's rows in embed order, deduplicated, cut into one run per link key."""

    perm: pa.Array[Any]  # row positions, group after group
    offsets: list[int]
    keys: list[tuple[Any, ...]] | None  # Python keys (None when `arrow_key` is used)
    arrow_key: pa.Array[Any] | None  # the single link column's value per group, for index_in

    def group_of_rows(self, rows: set[int]) -> set[int]:
        positions = {row: at for at, row in enumerate(self.perm.to_pylist()) if row in rows}
        return {bisect_right(self.offsets, at) - 1 for at in positions.values()}


@dataclass(slots=True)
class _Run:
    node: _Node
    table: pa.Table
    bad: set[int] = field(default_factory=set)
    value: pa.Array[Any] | None = None  # the node's object (or lookup value) text per row
    empty: pa.Array[Any] | None = None  # where that object has no field
    grouping: _Grouping | None = None
    parent_index: pa.Array[Any] | None = None  # group per parent row


class ColumnarBuilder:
    """Compiled from a `DocumentBuilder` (it shares its nodes and falls back to it)."""

    def __init__(self, rows: DocumentBuilder, doc: DocTypeModel) -> None:
        self._rows = rows
        self._keep = doc.nulls == "keep"
        self._nodes = rows._nodes
        self._fields = self._object(doc.fields, rows._root, "root")
        self._key_parts = self._key_parts_of(rows)
        self._key_escapes: list[tuple[bytes, bytes]] = []
        if doc.key_escape == "percent":
            self._key_escapes = [
                (char.encode("utf-8", "surrogatepass"), percent(char).encode("ascii"))
                for char in escaped_characters(rows._template)
            ]
        self._indexes = self._compile_indexes(doc)

    # -- compilation ------------------------------------------------------------------------------

    def _rule(self, node: _Node, column_name: str, as_: str | None, f: Field) -> _Column:
        from migrate.mapping.builder import node_column

        column = node_column(node.table, column_name)
        rule = ColumnRule(column.name, column.type, as_, self._rows._path(f))
        return _Column(node.pos(column.name), rule)

    def _object(self, fields: tuple[Field, ...], node: _Node, prefix: str) -> _Object:
        out: list[tuple[bytes, Any]] = []
        for f in sorted(fields, key=lambda item: item.name):
            label = canonical_json(f.name) + b":"
            out.append((label, self._field(f, node, f"{prefix}.{f.name}")))
        return _Object(tuple(out))

    def _field(self, f: Field, node: _Node, node_id: str) -> Any:
        if isinstance(f, ColumnField):
            column = self._rule(node, f.column.text, f.as_.text if f.as_ else None, f)
            if f.values is None:
                return column
            codes = pa.array([entry.code.encode("utf-8") for entry in f.values], BINARY)
            outputs = pa.array([_encoded(entry.value) for entry in f.values], BINARY)
            default = None
            if f.has_default:
                text = _encoded(f.default)
                default = _NULL if text is None else pa.scalar(text, BINARY)
            return _Codes(column.at, column.rule, codes, outputs, default)
        if isinstance(f, ListField):
            return _List(tuple(self._rule(node, name.text, None, f) for name in f.columns))
        if isinstance(f, LiteralField):
            text = _encoded(f.value)
            return _Literal(NULL_TEXT if text is None else text)
        if isinstance(f, ObjectField):
            return self._object(f.fields, node, node_id)
        child = self._nodes[node_id]
        parent_link = tuple(node.pos(our) for _, our in child.spec.link)
        if isinstance(f, EmbedField):
            inner = self._object(f.fields, child, node_id)
            return _Child(node_id, parent_link, "single" if f.single else "list", inner)
        assert isinstance(f, LookupField)
        if f.field is not None:
            leaf = self._rule(child, f.field.text, None, f)
            return _Child(node_id, parent_link, "field", leaf)
        assert f.fields is not None
        return _Child(node_id, parent_link, "single", self._object(f.fields, child, node_id))

    def _key_parts_of(self, rows: DocumentBuilder) -> list[bytes | _Column]:
        from migrate.mapping.builder import node_column

        root = rows._root
        parts: list[bytes | _Column] = []
        for part in rows._template.parts:
            if isinstance(part, Placeholder):
                column = node_column(root.table, part.column)
                rule = ColumnRule(column.name, column.type, None, "key")
                parts.append(_Column(root.pos(column.name), rule))
            else:
                parts.append(part.encode("utf-8"))
        return parts

    def _compile_indexes(self, doc: DocTypeModel) -> list[_PathIndex | _ColumnIndex]:
        from migrate.mapping.builder import node_column

        root = self._rows._root
        out: list[_PathIndex | _ColumnIndex] = []
        for index in sorted(doc.indexes, key=lambda item: item.name):
            source = resolve_source(index, root.table, doc)
            if isinstance(source, str):
                raise Unsupported(source)
            if isinstance(source, ColumnSource):
                column = node_column(root.table, source.column.name)
                as_ = index.as_.text if index.as_ is not None else None
                rule = ColumnRule(column.name, column.type, as_, f"indexes.{index.name}")
                entries = compile_index(index, doc, root.table, root.pos)
                out.append(
                    _ColumnIndex(
                        index.name, root.pos(column.name), rule, is_int_index(index.name), entries
                    )
                )
                continue
            chain, leaf_node, leaf, plain = self._path(doc.fields, source.segments)
            entries_of = compile_path_values(index.name, source.segments)
            is_int = is_int_index(index.name)
            out.append(_PathIndex(index.name, chain, leaf_node, leaf, entries_of, plain, is_int))
        return out

    def _path(
        self, fields: tuple[Field, ...], segments: tuple[str, ...]
    ) -> tuple[tuple[str, ...], str, Callable[[tuple[Any, ...]], Any], _Column | None]:
        """The nodes an index path walks through, the value it ends at per row of its node, and
        the column it ends at when that value is the column's plain JSON value."""
        from migrate.mapping.builder import OMIT, node_column

        node, prefix = self._rows._root, "root"
        chain: list[str] = []
        current: tuple[Field, ...] | None = fields
        for position, segment in enumerate(segments):
            last = position == len(segments) - 1
            found = next((f for f in current or () if f.name == segment), None)
            node_id = f"{prefix}.{segment}"
            if found is None or isinstance(found, LiteralField):
                raise Unsupported(f"index path {'.'.join(segments)}")
            if isinstance(found, ColumnField | ListField):
                if not last:
                    raise Unsupported(f"index path {'.'.join(segments)}")
                getter = self._rows._getter(found, node, node_id)

                def value(row: tuple[Any, ...], get: Any = getter) -> Any:
                    got = get(row, [])
                    return None if got is OMIT else got

                plain = None
                if isinstance(found, ColumnField) and found.values is None:
                    as_ = found.as_.text if found.as_ else None
                    plain = self._rule(node, found.column.text, as_, found)
                return tuple(chain), node.spec.node_id, value, plain
            if isinstance(found, ObjectField):
                current, prefix = found.fields, node_id
                continue
            child = self._nodes[node_id]
            chain.append(node_id)
            if isinstance(found, LookupField) and found.field is not None:
                if not last:
                    raise Unsupported(f"index path {'.'.join(segments)}")
                column = node_column(child.table, found.field.text)
                at = child.pos(column.name)
                rule = ColumnRule(column.name, column.type, None, self._rows._path(found))
                convert = rule.converter()

                def lookup_value(row: tuple[Any, ...], at: int = at, convert: Any = convert) -> Any:
                    raw = row[at]
                    return None if raw is None else convert(raw)

                return tuple(chain), node_id, lookup_value, None
            current, prefix, node = found.fields, node_id, child
        raise Unsupported(f"index path {'.'.join(segments)} ends at an object")

    # -- building ---------------------------------------------------------------------------------

    def build(self, tables: Mapping[str, pa.Table], max_bytes: int | None) -> BuildResult:
        try:
            return self._build(tables, max_bytes)
        except pa.ArrowException:
            # Staged types Arrow has no kernel for (a column of NULLs only, say): the row builder
            # gives the same result, only slower.
            return self._rows.build_rows_result(tables, max_bytes)

    def _build(self, tables: Mapping[str, pa.Table], max_bytes: int | None) -> BuildResult:
        rows = self._rows
        runs: dict[str, _Run] = {}
        for node in rows._order:
            table, flaws = rows._staged(node, tables)
            run = runs[node.spec.node_id] = _Run(node, table)
            if flaws is not None:  # rows read with a flaw: the row builder rejects their roots
                run.bad.update(row for row, flaw in enumerate(flaws) if flaw is not None)
        for node in reversed(rows._order[1:]):
            run = runs[node.spec.node_id]
            run.grouping = self._grouping(run)
        for node in reversed(rows._order):
            self._node_value(runs[node.spec.node_id], runs)
        root = runs["root"]
        n = root.table.num_rows
        bad = root.bad
        keys = self._keys(root, bad)
        index_rows = self._index_rows(root, runs, bad)
        assert root.value is not None
        values: list[Any] = root.value.to_pylist()
        order = self._root_order(root)
        if max_bytes is not None:
            over = pc.greater(pc.binary_length(root.value), pa.scalar(max_bytes, pa.int32()))
            if pc.any(over).as_py():
                bad.update(pc.indices_nonzero(over).to_pylist())
        named = [
            [(index.name, found) if found else None for found in found_rows]
            for index, found_rows in zip(self._indexes, index_rows, strict=True)
        ]
        entries = (
            [tuple(filter(None, per_root)) for per_root in zip(*named, strict=True)]
            if named
            else None
        )
        built = list(
            map(
                Document,
                repeat(rows.bucket_type, n),
                repeat(rows.bucket, n),
                keys,
                values,
                entries if entries is not None else repeat((), n),
                map(xxh3_128_hexdigest, values),
            )
        )
        names = rows.source_key_texts(tables)
        if not bad:
            return BuildResult(
                [built[position] for position in order], [], [names[p] for p in order]
            )
        redone = dict(rows.build_rows(tables, max_bytes=max_bytes, only=bad))
        documents: list[Document] = []
        rejects: list[Reject] = []
        source_keys: list[str] = []
        for position in order:
            outcome = redone[position] if position in bad else built[position]
            if isinstance(outcome, Document):
                documents.append(outcome)
                source_keys.append(names[position])
            else:
                rejects.append(replace(outcome, row=names[position]))
        return BuildResult(documents, rejects, source_keys)

    # -- values -----------------------------------------------------------------------------------

    def _node_value(self, run: _Run, runs: dict[str, _Run]) -> None:
        node_id = run.node.spec.node_id
        plan = self._plan_of(node_id)
        if isinstance(plan, _Column):
            run.value = self._column(plan, run)
            return
        run.value, run.empty = self._object_text(plan, run, runs)

    def _plan_of(self, node_id: str) -> _Object | _Column:
        if node_id == "root":
            return self._fields
        found = _find_child(self._fields, node_id)
        if found is None:
            raise Unsupported(f"node {node_id} is not in the field tree")
        return found.inner

    def _column(self, plan: _Column, run: _Run) -> pa.Array[Any]:
        texts, bad = json_texts(run.table.column(plan.at), plan.rule)
        run.bad.update(bad)
        return texts

    def _object_text(
        self, plan: _Object, run: _Run, runs: dict[str, _Run]
    ) -> tuple[pa.Array[Any], pa.Array[Any]]:
        """Each row's object in one join over every field's label and value. A field absent on
        some rows is first joined to its label, so the two vanish together; the first field needs
        no comma before it when it is on every row, else the comma after `{` comes out again."""
        pieces: list[Any] = [b"{"]  # bytes for constants, merged with their neighbours below
        first_on_every_row = False
        for position, (label, sub) in enumerate(plan.fields):
            value = self._value(sub, run, runs)
            opening = closing = b""
            if isinstance(value, _Wrapped):
                if self._keep and value.text.null_count:
                    value = _unwrapped(value)
                else:
                    opening, closing = value.opening, value.closing
                    value = value.text
            if not isinstance(value, bytes) and self._keep:
                value = pc.fill_null(value, lit(NULL_TEXT))
            always = isinstance(value, bytes) or value.null_count == 0
            if position == 0:
                first_on_every_row = always
            lead = (label if position == 0 and always else b"," + label) + opening
            if isinstance(value, bytes):
                pieces.append(lead + value)
            elif always:
                pieces.extend((lead, value))
                if closing:
                    pieces.append(closing)
            else:
                pieces.append(
                    pc.binary_join_element_wise(
                        lit(lead), value, lit(closing), lit(b""), null_handling="emit_null"
                    )
                )
        pieces.append(b"}")
        rows = run.table.num_rows
        if not any(isinstance(piece, pa.Array | pa.ChunkedArray) for piece in pieces):
            pieces.insert(1, pa.array([b""] * rows, BINARY))  # constants only: one per row
        joined = pc.binary_join_element_wise(
            *_merged(pieces), lit(b""), null_handling="replace", null_replacement=b""
        )
        if plan.fields and not first_on_every_row:
            joined = pc.replace_substring(joined, b"{,", b"{", max_replacements=1)
        text = _array(joined)
        return text, pc.equal(text, lit(b"{}"))

    def _value(
        self, plan: Any, run: _Run, runs: dict[str, _Run]
    ) -> pa.Array[Any] | bytes | _Wrapped:
        if isinstance(plan, _Literal):
            return plan.text
        if isinstance(plan, _Column):
            text, quoted, bad = json_parts(run.table.column(plan.at), plan.rule)
            run.bad.update(bad)
            return _Wrapped(text, b'"', b'"') if quoted else text
        if isinstance(plan, _Codes):
            return self._codes(plan, run)
        if isinstance(plan, _List):
            return self._list(plan, run)
        if isinstance(plan, _Object):
            text, empty = self._object_text(plan, run, runs)
            return text if self._keep else _array(pc.if_else(empty, _NULL, text))
        assert isinstance(plan, _Child)
        return self._child(plan, run, runs[plan.node_id])

    def _list(self, plan: _List, run: _Run) -> pa.Array[Any]:
        """A list field's array: when every column's text needs quotes only (plain text), they
        go in with the commas, one join instead of one per column and another for the list."""
        parts = [json_parts(run.table.column(part.at), part.rule) for part in plan.parts]
        for _, _, bad in parts:
            run.bad.update(bad)
        rows = run.table.num_rows
        if all(quoted for _, quoted, _ in parts):
            return _enclosed(b"[", [text for text, _, _ in parts], b"]", rows, quote=b'"')
        texts = [quote_text(text) if quoted else text for text, quoted, _ in parts]
        return _enclosed(b"[", texts, b"]", rows)

    def _codes(self, plan: _Codes, run: _Run) -> pa.Array[Any]:
        codes, bad = key_texts(run.table.column(plan.at), plan.rule)
        run.bad.update(bad)
        found = pc.index_in(codes, value_set=plan.codes)
        out = pc.take(plan.outputs, found)
        missing = pc.and_(pc.is_null(found), pc.is_valid(codes))
        if plan.default is not None:
            return _array(pc.if_else(missing, plan.default, out))
        if pc.any(missing).as_py():
            run.bad.update(pc.indices_nonzero(missing).to_pylist())
        return _array(out)

    def _child(self, plan: _Child, run: _Run, child: _Run) -> pa.Array[Any] | _Wrapped:
        grouping = child.grouping
        assert grouping is not None and child.value is not None
        index = self._parent_index(plan, run, child, grouping)
        child.parent_index = index
        offsets = pa.array(grouping.offsets, pa.int32())
        bad_groups = grouping.group_of_rows(child.bad) if child.bad else set()
        if plan.mode == "list":
            elements = pc.take(child.value, grouping.perm)
            joined = pc.binary_join(pa.ListArray.from_arrays(offsets, elements), lit(b","))
            value = pc.fill_null(pc.take(joined, index), lit(b""))  # no children: []
        else:
            sizes = [b - a for a, b in zip(grouping.offsets, grouping.offsets[1:], strict=False)]
            bad_groups.update(g for g, size in enumerate(sizes) if size > 1)
            starts = pc.take(grouping.perm, pa.array(grouping.offsets[:-1], pa.int64()))
            first = pc.take(child.value, starts)
            if plan.mode == "single" and not self._keep:
                assert child.empty is not None
                first = pc.if_else(pc.take(child.empty, starts), _NULL, first)
            value = pc.take(first, index)
        if bad_groups:
            groups = index.to_pylist()
            run.bad.update(row for row, g in enumerate(groups) if g in bad_groups)
        if plan.mode == "list":
            return _Wrapped(_array(value), b"[", b"]")
        return _array(value)

    def _parent_index(
        self, plan: _Child, run: _Run, child: _Run, grouping: _Grouping
    ) -> pa.Array[Any]:
        if grouping.arrow_key is not None:
            ours = run.table.column(plan.parent_link[0])
            if ours.type == grouping.arrow_key.type and _arrow_kind(
                run.node, plan.parent_link[0], run.table
            ):
                return _array(pc.index_in(ours, value_set=grouping.arrow_key))
        keys = grouping.keys
        if keys is None:
            assert grouping.arrow_key is not None
            keys = [(value,) for value in grouping.arrow_key.to_pylist()]
        where = {key: g for g, key in enumerate(keys)}
        columns = [
            python_values(run.table.column(at), run.node.kinds[at].kind) for at in plan.parent_link
        ]
        found = [None if None in key else where.get(key) for key in zip(*columns, strict=True)]
        return pa.array(found, pa.int64())

    def _grouping(self, run: _Run) -> _Grouping:
        node = run.node
        link = node.link_child
        order = node.sort_positions if node.sort_key is not None else ()
        positions = link + order + node.primary_key
        if all(_arrow_kind(node, at, run.table) for at in positions):
            return _arrow_grouping(run.table, link, order + node.primary_key, node.primary_key)
        return self._python_grouping(run)

    def _python_grouping(self, run: _Run) -> _Grouping:
        node = run.node
        table = run.table
        columns = [
            python_values(table.column(i), node.kinds[i].kind) for i in range(table.num_columns)
        ]
        rows = list(zip(*columns, range(table.num_rows), strict=True))
        grouped = self._rows._group(node, rows)
        perm: list[int] = []
        offsets = [0]
        for members in grouped.values():
            perm.extend(row[-1] for row in members)
            offsets.append(len(perm))
        return _Grouping(pa.array(perm, pa.int64()), offsets, list(grouped), None)

    # -- keys, indexes, order ---------------------------------------------------------------------

    def _keys(self, root: _Run, bad: set[int]) -> list[str]:
        parts: list[Any] = []
        for part in self._key_parts:
            if isinstance(part, bytes):
                parts.append(lit(part))
                continue
            texts, failed = key_texts(root.table.column(part.at), part.rule)
            bad.update(failed)
            for char, code in self._key_escapes:  # `key_escape: percent`, as `keys.escaper`
                texts = pc.replace_substring(texts, char, code)
            parts.append(texts)
        joined = pc.binary_join_element_wise(*parts, lit(b""), null_handling="emit_null")
        if not isinstance(joined, pa.Array | pa.ChunkedArray):
            joined = pa.array([joined.as_py()] * root.table.num_rows, BINARY)
        unusable = pc.fill_null(pc.equal(pc.binary_length(joined), 0), True)
        if pc.any(unusable).as_py():
            bad.update(pc.indices_nonzero(unusable).to_pylist())
        try:
            return cast("list[str]", _array(joined).cast(pa.string()).to_pylist())
        except pa.ArrowInvalid:  # text that is not UTF-8: the row builder says which row
            bad.update(range(root.table.num_rows))
            return [""] * root.table.num_rows

    def _index_rows(
        self, root: _Run, runs: dict[str, _Run], bad: set[int]
    ) -> list[list[tuple[IndexValue, ...]]]:
        return [
            self._column_index(index, root, bad)
            if isinstance(index, _ColumnIndex)
            else self._path_index(index, root, runs, bad)
            for index in self._indexes
        ]

    def _column_index(
        self, index: _ColumnIndex, root: _Run, bad: set[int]
    ) -> list[tuple[IndexValue, ...]]:
        column = root.table.column(index.at)
        if index.is_int:
            ints = int_values(column, index.rule)
            if ints is not None:
                return [() if value is None else (value,) for value in ints]
        elif index.rule.as_ is None:
            texts, failed = key_texts(column, index.rule)
            bad.update(failed)
            return [
                (text.decode("utf-8", "surrogatepass"),) if text else ()
                for text in texts.to_pylist()
            ]
        out: list[tuple[IndexValue, ...]] = []
        at = index.at
        for position, raw in enumerate(python_values(column, index.rule.ctype.kind)):
            try:
                found = index.entries({at: raw}, None)
            except RowError:
                bad.add(position)
                found = []
            out.append(tuple(sorted(set(found))))
        return out

    def _path_index(
        self, index: _PathIndex, root: _Run, runs: dict[str, _Run], bad: set[int]
    ) -> list[tuple[IndexValue, ...]]:
        leaf_run = runs[index.leaf_node]
        owners, rows_reached = self._walk(index.chain, root.table.num_rows, runs)
        text_column = self._text_leaf(index, leaf_run)
        if text_column is not None and not leaf_run.bad:
            return _text_entries(owners, pc.take(text_column, rows_reached), root.table.num_rows)
        leaves, plain_text = self._leaves(index, leaf_run)
        reached: dict[int, list[int]] = {}
        pairs = zip(
            cast("list[int]", owners.to_pylist()),
            cast("list[int]", rows_reached.to_pylist()),
            strict=True,
        )
        for owner, row in pairs:
            found = reached.get(owner)
            if found is None:
                reached[owner] = [row]
            else:
                found.append(row)
        leaf_bad = leaf_run.bad
        out: list[tuple[IndexValue, ...]] = [()] * root.table.num_rows
        for position, rows in reached.items():
            if leaf_bad and any(row in leaf_bad for row in rows):
                bad.add(position)
                continue
            if plain_text:  # text values: an entry each, empty text none (as json_text gives)
                texts = {leaves[row] for row in rows}
                texts.discard(None)
                texts.discard("")
                out[position] = tuple(sorted(texts))
                continue
            try:
                entries = index.entries([leaves[row] for row in rows])
            except RowError:
                bad.add(position)
                continue
            out[position] = tuple(sorted(set(entries)))
        return out

    @staticmethod
    def _walk(
        chain: tuple[str, ...], roots: int, runs: dict[str, _Run]
    ) -> tuple[pa.Array[Any], pa.Array[Any]]:
        """(root position, row of the last node) for every row an index path reaches, following
        each node's groups in Arrow: a parent's group is a list of child rows."""
        owner: pa.Array[Any] = pa.array(range(roots), pa.int64())
        rows: pa.Array[Any] = owner
        for node_id in chain:
            child = runs[node_id]
            grouping = child.grouping
            assert grouping is not None and child.parent_index is not None
            members = pa.ListArray.from_arrays(
                pa.array(grouping.offsets, pa.int32()), grouping.perm
            )
            lists = pc.take(members, pc.take(child.parent_index, rows))
            owner = _array(pc.take(owner, pc.list_parent_indices(lists)))
            rows = _array(pc.list_flatten(lists))
        return owner, rows

    @staticmethod
    def _text_leaf(index: _PathIndex, run: _Run) -> pa.Array[Any] | None:
        """The leaf column, when a `_bin` path ends at plain text: its entries are the text."""
        plan = index.column
        if plan is None or index.is_int or plan.rule.ctype.kind is not ValueKind.STRING:
            return None
        if plan.rule.as_ not in (None, "string"):
            return None
        column = run.table.column(plan.at)
        if not pa.types.is_string(column.type):
            return None
        return _array(column)

    def _leaves(self, index: _PathIndex, run: _Run) -> tuple[list[Any], bool]:
        """The value at the path's end per row of its node, and whether all are text (or None)
        for a `_bin` index; rows whose value breaks a rule are added to the node's bad rows."""
        plan = index.column
        if plan is not None:
            column = run.table.column(plan.at)
            values = python_values(column, plan.rule.ctype.kind)
            text = plan.rule.ctype.kind is ValueKind.STRING and plan.rule.as_ in (None, "string")
            if text and (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                return values, not index.is_int
            convert = plan.rule.converter()
            leaves: list[Any] = []
            for position, raw in enumerate(values):
                try:
                    leaves.append(None if raw is None else convert(raw))
                except RowError:
                    leaves.append(None)
                    run.bad.add(position)
            return leaves, False
        rows = self._rows._rows(run.node, {run.node.spec.node_id: run.table})
        leaves = []
        for position, row in enumerate(rows):
            try:
                leaves.append(index.leaf(row))
            except RowError:
                leaves.append(None)
                run.bad.add(position)
        return leaves, False

    def _root_order(self, root: _Run) -> list[int]:
        node = root.node
        pk = node.primary_key
        if pk and all(_arrow_kind(node, at, root.table) for at in pk):
            sub = pa.table({f"k{i}": root.table.column(at) for i, at in enumerate(pk)})
            keys = [(f"k{i}", "ascending", "at_end") for i in range(len(pk))]
            order = pc.sort_indices(sub, sort_keys=keys)
            return order.to_pylist()  # type: ignore[no-any-return]
        rows = self._rows._rows(node, {node.spec.node_id: root.table})
        sort_key = self._rows._root_sort_key()
        return sorted(range(len(rows)), key=lambda i: sort_key(rows[i]))


# -- helpers ---------------------------------------------------------------------------------------


def _encoded(value: Any) -> bytes | None:
    if value is None:
        return None
    try:
        return canonical_json(value)
    except (ValueRuleError, msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
        # a literal the canonical writer refuses: the row builder reports it
        raise Unsupported("a constant has no canonical JSON form") from exc


def _array(value: Any) -> pa.Array[Any]:
    if isinstance(value, pa.ChunkedArray):
        return cast(
            "pa.Array[Any]", value.combine_chunks() if value.num_chunks != 1 else value.chunk(0)
        )
    assert isinstance(value, pa.Array)
    return value


def _text_entries(
    owners: pa.Array[Any], texts: pa.Array[Any], roots: int
) -> list[tuple[IndexValue, ...]]:
    """Per root: its distinct non-empty texts, sorted (UTF-8 byte order is code point order)."""
    table = pa.table({"owner": owners, "text": texts})
    table = table.filter(pc.greater(pc.binary_length(table.column("text")), _ZERO32))
    table = table.sort_by([("owner", "ascending"), ("text", "ascending")])
    owner, text = _array(table.column("owner")), _array(table.column("text"))
    if len(owner) > 1:
        repeated = pc.and_(_same_as_previous(owner), _same_as_previous(text))
        keep = pc.invert(repeated)
        owner, text = _array(owner.filter(keep)), _array(text.filter(keep))
    out: list[tuple[IndexValue, ...]] = [()] * roots
    if len(owner) == 0:
        return out
    starts = pc.indices_nonzero(pc.invert(_same_as_previous(owner)))
    offsets = pa.concat_arrays([starts.cast(pa.int32()), pa.array([len(owner)], pa.int32())])
    lists: Any = pa.ListArray.from_arrays(offsets, text)
    grouped = cast("list[list[str]]", lists.to_pylist())
    for position, values in zip(pc.take(owner, starts).to_pylist(), grouped, strict=True):
        out[position] = tuple(values)
    return out


def _unwrapped(value: _Wrapped) -> pa.Array[Any]:
    opening, closing = lit(value.opening), lit(value.closing)
    return _array(pc.binary_join_element_wise(opening, value.text, closing, lit(b"")))


def _merged(pieces: list[Any]) -> list[Any]:
    """The pieces of an element-wise join, each run of constants (bytes) made one scalar: the
    same text per row, and the join's cost grows with the number of pieces, not with their
    length (a string field's closing quote rides with the next field's label)."""
    out: list[Any] = []
    constant = b""
    for piece in pieces:
        if isinstance(piece, bytes):
            constant += piece
            continue
        if constant:
            out.append(lit(constant))
            constant = b""
        out.append(piece)
    if constant:
        out.append(lit(constant))
    return out


def _enclosed(
    start: bytes, pieces: list[Any], end: bytes, rows: int, *, quote: bytes = b""
) -> pa.Array[Any]:
    """Per row: `start`, the non-null pieces joined by commas, `end`; with `quote`, each piece
    inside its quotes (text that needs no escaping, joined with its quotes in the same pass).

    The opening bracket rides along as an always-present first piece, because Arrow's
    binary_join_element_wise drops rows (not just values) whose pieces are all null when told to
    skip nulls; the separator it gets after it is then taken out again. A row with no piece is
    then `start` alone, which takes no quote."""
    if not any(isinstance(piece, pa.Array | pa.ChunkedArray) for piece in pieces):
        pieces = [*pieces, pa.nulls(rows, BINARY)]
    separator = quote + b"," + quote
    joined = pc.binary_join_element_wise(lit(start), *pieces, lit(separator), null_handling="skip")
    opened = pc.replace_substring(joined, start + separator, start + quote, max_replacements=1)
    closed = pc.binary_join_element_wise(opened, lit(quote + end), lit(b""))
    if quote:
        closed = pc.if_else(pc.equal(joined, lit(start)), lit(start + end), closed)
    return _array(closed)


def _arrow_kind(node: _Node, at: int, table: pa.Table) -> bool:
    """Whether Arrow compares this column's staged values as the row builder does."""
    return node.kinds[at].kind in _ARROW_KINDS and not pa.types.is_null(table.column(at).type)


def _find_child(plan: _Object, node_id: str) -> _Child | None:
    for _, sub in plan.fields:
        if isinstance(sub, _Child):
            if sub.node_id == node_id:
                return sub
            if isinstance(sub.inner, _Object):
                found = _find_child(sub.inner, node_id)
                if found is not None:
                    return found
        elif isinstance(sub, _Object):
            found = _find_child(sub, node_id)
            if found is not None:
                return found
    return None


def _same_as_previous(column: pa.Array[Any]) -> pa.Array[Any]:
    """Per row: equal to the row before (NULL equals NULL, as in Python tuples); row 0 is not."""
    if len(column) < 2:
        return pa.array([False] * len(column), pa.bool_())
    now, before = column.slice(1), column.slice(0, len(column) - 1)
    equal = pc.fill_null(pc.equal(now, before), False)
    both_null = pc.and_(pc.is_null(now), pc.is_null(before))
    tail = pc.or_(equal, both_null)
    return pa.concat_arrays([pa.array([False], pa.bool_()), _array(tail)])


def _arrow_grouping(
    table: pa.Table, link: tuple[int, ...], order: tuple[int, ...], primary_key: tuple[int, ...]
) -> _Grouping:
    valid: Any = None
    for at in link:
        ok = pc.is_valid(table.column(at))
        valid = ok if valid is None else pc.and_(valid, ok)
    rows = pc.indices_nonzero(valid) if valid is not None else pa.array([], pa.uint64())
    positions = link + order
    sub = pa.table({f"k{i}": table.column(at).take(rows) for i, at in enumerate(positions)})
    keys = [(f"k{i}", "ascending", "at_end") for i in range(len(positions))]
    sorted_rows = _array(rows.take(pc.sort_indices(sub, sort_keys=keys)))
    sorted_rows = sorted_rows.cast(pa.int64())
    link_columns = [_array(table.column(at).take(sorted_rows)) for at in link]
    if primary_key and len(sorted_rows) > 1:
        same: Any = None
        for at in link + primary_key:
            step = _same_as_previous(_array(table.column(at).take(sorted_rows)))
            same = step if same is None else pc.and_(same, step)
        keep = pc.invert(same)
        sorted_rows = _array(sorted_rows.filter(keep))
        link_columns = [_array(column.filter(keep)) for column in link_columns]
    starts: Any = None
    for column in link_columns:
        step = pc.invert(_same_as_previous(column))
        starts = step if starts is None else pc.or_(starts, step)
    first = pc.indices_nonzero(starts).to_pylist() if starts is not None else []
    offsets = [*first, len(sorted_rows)]
    if len(link) == 1:
        key = _array(link_columns[0].take(pa.array(first, pa.int64())))
        return _Grouping(sorted_rows, offsets, None, key)
    key_columns = [column.take(pa.array(first, pa.int64())).to_pylist() for column in link_columns]
    return _Grouping(sorted_rows, offsets, list(zip(*key_columns, strict=True)), None)
