"""Warnings from `migrate check`: a mapping that compiles but will be slow, oversized, or not what
its author meant. None of them stops anything (exit 0); each names the file, line and field, and
says what to do.

- Columns of a table whose rows become documents or array elements (a root or an embed) that
  nothing reads: no field, key, index, join, `order_by` or `where`. Lookup tables are reference
  data a document takes a few columns from, so their other columns are not listed.
- An embed or lookup whose link columns lead no index of the source table: every chunk then
  reads the whole table. The warning gives the `CREATE INDEX` to run.
- A predicted largest document over half of `[run] max_document_bytes`: each field's widest JSON
  from its column's declared width (or, where the type sets none, the longest value in the
  table, sampled when large), times the largest number of children one parent has (one GROUP BY
  per embed, sampled when large). An estimate: the real largest document may be smaller.
- Two services whose documents come from the same table under different key templates: the same
  row gets two different keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import msgspec

from migrate.errors import MigrateError, Problem
from migrate.mapping import Mapping, ServicePlan
from migrate.mapping.keys import (
    Placeholder,
    default_template,
    parse_template,
    separator_hazards,
)
from migrate.mapping.model import (
    ColumnField,
    DocTypeModel,
    EmbedField,
    Field,
    ListField,
    LiteralField,
    Loc,
    LookupField,
    ObjectField,
)
from migrate.project import Project
from migrate.schema import ColumnInfo, SchemaInfo, TableInfo, ValueKind
from migrate.source import probe
from migrate.spec import NodeKind, NodeSpec

_K = ValueKind


@dataclass(slots=True)
class _Node:
    """A table of a document type's tree, with where the mapping names it."""

    spec: NodeSpec
    table: TableInfo
    loc: Loc  # the line naming the table (`table:`, `embed:` or `lookup:`)
    holder: Loc | None  # the embed or lookup field; None for the root
    fields: tuple[Field, ...] = ()
    single: bool = False
    children: list[_Node] = field(default_factory=list)


def service_warnings(project: Project, mapping: Mapping, plan: ServicePlan) -> list[Problem]:
    """Every warning about one service's valid mapping."""
    schema = project.schema()
    file = str(mapping.path)
    warnings: list[Problem] = []
    trees = [_tree(model, plan, schema) for model in mapping.documents]
    warnings += _unread_columns(file, mapping.documents, trees)
    warnings += _unindexed_links(project, file, trees)
    limit = project.config.run.max_document_bytes
    for model, root in zip(mapping.documents, trees, strict=True):
        warnings += _oversized(project, file, model, root, limit)
        warnings += _separator_hazards(file, model, root.table)
    return warnings


def _separator_hazards(file: str, model: DocTypeModel, table: TableInfo) -> list[Problem]:
    """A key template whose placeholders' values can hold its own separators: two rows could
    render one key (then both are rejected as a collision)."""
    if model.key_escape is not None:
        return []
    if model.key is not None:
        template, line = parse_template(model.key.text), model.key.loc.line
    else:
        template, line = default_template(table.primary_key), model.loc.line
    found = []
    for column, separators in separator_hazards(template, table):
        shown = " ".join(f"`{c}`" for c in separators)
        found.append(
            Problem(
                file,
                line,
                f"documents.{model.name}.key",
                f"values of {column} can hold {shown}, a separator of the key template: two "
                "rows could render one key (both are then rejected as a key collision)",
                "if they can, choose a separator the values never hold, or add "
                "`key_escape: percent` to escape it inside values",
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class Prediction:
    """The predicted largest document of a type: its bytes, the field holding most of them, and
    the most children one parent has, by embedded table."""

    bytes: int
    biggest_field: str
    biggest_bytes: int
    children: dict[str, int]


def predict_largest(project: Project, mapping: Mapping, plan: ServicePlan) -> dict[str, Prediction]:
    """Each document type's predicted largest document (see the module's notes)."""
    schema = project.schema()
    predictions = {}
    for model in mapping.documents:
        predictions[model.name] = _predict(project, model, _tree(model, plan, schema))
    return predictions


def _predict(project: Project, model: DocTypeModel, root: _Node) -> Prediction:
    sizes = _Sizes(project, root)
    total, biggest, biggest_bytes = _fields_width(model.fields, root, sizes)
    children = {
        node.table.name: sizes.counts[node.spec.node_id]
        for node in _nodes(root)
        if node.spec.node_id in sizes.counts
    }
    return Prediction(total, biggest, biggest_bytes, children)


def key_template_warnings(
    services: Sequence[tuple[str, Mapping]], schema: SchemaInfo
) -> list[Problem]:
    """Two services whose documents come from one table under different key templates."""
    first: dict[str, tuple[str, str, str]] = {}  # table -> (service, document type, template)
    warnings = []
    for service, mapping in services:
        for model in mapping.documents:
            table = schema.table(model.table.text)
            if table is None:
                continue
            template = _template_text(model, table)
            seen = first.setdefault(table.name.casefold(), (service, model.name, template))
            if seen[0] == service or _same_template(seen[2], template):
                continue
            where = model.loc.at("key") if model.key is not None else model.loc
            warnings.append(
                Problem(
                    str(mapping.path),
                    where.line,
                    where.path,
                    f"service {seen[0]} also makes documents from {table.name} "
                    f"(`{seen[1]}`, key `{seen[2]}`), with key `{template}` here: the same row "
                    "gets two different keys",
                    "if both documents stand for the same record, give them one key template",
                )
            )
    return warnings


def _template_text(model: DocTypeModel, table: TableInfo) -> str:
    if model.key is not None:
        return model.key.text
    parts = default_template(table.primary_key).parts
    return "".join(f"{{{p.column}}}" if isinstance(p, Placeholder) else p for p in parts)


def _same_template(one: str, other: str) -> bool:
    def normal(text: str) -> tuple[object, ...]:
        return tuple(
            ("col", p.column.casefold()) if isinstance(p, Placeholder) else p
            for p in parse_template(text).parts
        )

    return normal(one) == normal(other)


# -- the tree of tables --------------------------------------------------------------------------


def _tree(model: DocTypeModel, plan: ServicePlan, schema: SchemaInfo) -> _Node:
    specs = {node.node_id: node for node in plan.doc_type(model.name).extract.nodes}
    root = _Node(
        specs["root"], _info(schema, model.table.text), model.table.loc, None, model.fields
    )
    _walk(model.fields, "root", root, specs, schema)
    return root


def _info(schema: SchemaInfo, name: str) -> TableInfo:
    table = schema.table(name)
    if table is None:  # compiled plans name reflected tables only
        raise KeyError(name)
    return table


def _walk(
    fields: tuple[Field, ...],
    prefix: str,
    parent: _Node,
    specs: dict[str, NodeSpec],
    schema: SchemaInfo,
) -> None:
    for f in fields:
        node_id = f"{prefix}.{f.name}"
        if isinstance(f, ObjectField):
            _walk(f.fields, node_id, parent, specs, schema)
        elif isinstance(f, EmbedField | LookupField):
            child = _Node(
                specs[node_id],
                _info(schema, f.table.text),
                f.table.loc,
                f.loc,
                f.fields or (),
                single=isinstance(f, EmbedField) and f.single,
            )
            parent.children.append(child)
            _walk(f.fields or (), node_id, child, specs, schema)


def _nodes(root: _Node) -> Iterator[_Node]:
    yield root
    for child in root.children:
        yield from _nodes(child)


# -- columns nothing reads -----------------------------------------------------------------------


def _unread_columns(
    file: str, models: Sequence[DocTypeModel], trees: Sequence[_Node]
) -> list[Problem]:
    read: dict[str, set[str]] = {}
    first: dict[str, _Node] = {}
    for model, root in zip(models, trees, strict=True):
        for node in _nodes(root):
            name = node.table.name.casefold()
            read.setdefault(name, set()).update(c.casefold() for c in node.spec.columns)
            if node.spec.kind is not NodeKind.LOOKUP:
                first.setdefault(name, node)
        if model.where:
            words = {w.casefold() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_$#]*", model.where)}
            read[root.table.name.casefold()].update(words)
    warnings = []
    for name, node in first.items():
        unread = [c.name for c in node.table.columns if c.name.casefold() not in read[name]]
        if unread:
            warnings.append(
                Problem(
                    file,
                    node.loc.line,
                    node.loc.path,
                    f"{len(unread)} column{'s' if len(unread) != 1 else ''} of "
                    f"{node.table.name} no field reads: {', '.join(unread)}",
                    "map them, or leave them out on purpose (this is only a reminder)",
                )
            )
    return warnings


# -- links without an index ----------------------------------------------------------------------


def _unindexed_links(project: Project, file: str, trees: Sequence[_Node]) -> list[Problem]:
    linked = [node for root in trees for node in _nodes(root) if node.holder is not None]
    if not linked:
        return []
    found = probe.links(project.source, {node.table.name for node in linked})
    warnings = []
    for node in linked:
        columns = [their for their, _ in node.spec.link]
        links = found.get(node.table.name)
        if links is None or links.has_index(columns):
            continue
        assert node.holder is not None
        what = "embed" if node.spec.kind is NodeKind.EMBED else "lookup"
        name = _index_name(node.table.name, columns)
        listed = ", ".join(columns)
        warnings.append(
            Problem(
                file,
                node.holder.line,
                node.holder.path,
                f"the {what} of {node.table.name} joins on ({listed}), which no index of the "
                "source leads: every chunk reads the whole table",
                f"CREATE INDEX {name} ON {node.table.name} ({listed});",
            )
        )
    return warnings


def _index_name(table: str, columns: Sequence[str]) -> str:
    name = "IX_" + "_".join([table, *columns])
    return re.sub(r"[^A-Za-z0-9_]", "_", name)[:30].rstrip("_")


# -- the largest document ------------------------------------------------------------------------

_FIXED = {
    _K.FLOAT: 24,
    _K.DATE: 21,  # "YYYY-MM-DDTHH:MM:SS"
    _K.TIMESTAMP: 28,  # with six fraction digits
    _K.TIMESTAMP_TZ: 29,
    _K.BOOLEAN: 5,
}
_AS_FIXED = {"integer": 20, "boolean": 5, "date": 12, "datetime": 29, "yyyymmdd": 8}
_LENGTH = re.compile(r"\(\s*(\d+)")


class _Sizes:
    """Widths of one document type's fields, with the measurements they need from the source."""

    def __init__(self, project: Project, root: _Node) -> None:
        self.project = project
        self.measured: dict[tuple[str, str], int] = {}
        self.counts: dict[str, int] = {}
        self._measure(root)

    def _measure(self, root: _Node) -> None:
        unbounded: dict[str, tuple[TableInfo, list[str]]] = {}
        for node in _nodes(root):
            for column in _columns_of(node):
                if _declared_width(column) is None:
                    entry = unbounded.setdefault(node.table.name, (node.table, []))
                    if column.name not in entry[1]:
                        entry[1].append(column.name)
            if node.spec.kind is NodeKind.EMBED and not node.single:
                link = [their for their, _ in node.spec.link]
                self.counts[node.spec.node_id] = probe.largest_child_count(
                    self.project.source, node.table, link
                )
        for table, columns in unbounded.values():
            for name, longest in probe.longest_values(self.project.source, table, columns).items():
                self.measured[(table.name, name)] = longest

    def column(self, table: TableInfo, name: str, as_: str | None) -> int:
        column = table.column(name)
        if column is None:
            return 0
        width = _declared_width(column)
        if width is None:
            width = self.measured.get((table.name, column.name), 0)
        kind = column.type.kind
        if as_ in _AS_FIXED:
            return _AS_FIXED[as_]
        if as_ == "base64" or (as_ is None and kind is _K.BINARY):
            return 4 * math.ceil(width / 3) + 2
        if as_ == "string" and kind is not _K.STRING:
            return width + 2
        if kind in (_K.STRING,) and as_ != "json":
            return width + 2
        return width


def _columns_of(node: _Node) -> Iterator[ColumnInfo]:
    for name in node.spec.columns:
        column = node.table.column(name)
        if column is not None:
            yield column


def _declared_width(column: ColumnInfo) -> int | None:
    """The widest JSON text of a value of `column`, from its declared type (without quotes for
    text); None when the type sets no bound."""
    ctype = column.type
    kind = ctype.kind
    if kind in _FIXED:
        return _FIXED[kind]
    if kind is _K.INTEGER:
        return (ctype.precision or 19) + 1
    if kind is _K.DECIMAL:
        return (ctype.precision or 38) + 2
    if kind is _K.NUMBER:
        return 40
    if kind in (_K.STRING, _K.BINARY):
        match = _LENGTH.search(ctype.declared)
        if match:
            return int(match.group(1))
        if ctype.declared.strip().upper() in ("CHAR", "NCHAR", "CHARACTER"):
            return 1
    return None


def _fields_width(fields: tuple[Field, ...], node: _Node, sizes: _Sizes) -> tuple[int, str, int]:
    """The widest JSON object of these fields: (bytes, the field holding most, its bytes)."""
    total = 2
    biggest, biggest_bytes = "", 0
    children = {child.holder.path: child for child in node.children if child.holder is not None}
    for f in fields:
        width = _field_width(f, node, children, sizes)
        total += len(f.name.encode()) + 4 + width
        if width > biggest_bytes:
            biggest, biggest_bytes = f.name, width
    return total, biggest, biggest_bytes


def _field_width(f: Field, node: _Node, children: dict[str, _Node], sizes: _Sizes) -> int:
    if isinstance(f, ColumnField):
        if f.values is not None:
            values = [entry.value for entry in f.values]
            if f.has_default:
                values.append(f.default)
            return max(len(msgspec.json.encode(v)) for v in values)
        return sizes.column(node.table, f.column.text, f.as_.text if f.as_ else None)
    if isinstance(f, ListField):
        return 2 + sum(sizes.column(node.table, c.text, None) + 1 for c in f.columns)
    if isinstance(f, LiteralField):
        return len(msgspec.json.encode(f.value))
    if isinstance(f, ObjectField):
        return _fields_width(f.fields, node, sizes)[0]
    child = children[f.loc.path]
    if isinstance(f, LookupField) and f.field is not None:
        return sizes.column(child.table, f.field.text, None)
    one = _fields_width(f.fields or (), child, sizes)[0]
    if isinstance(f, EmbedField) and not f.single:
        return 2 + sizes.counts.get(child.spec.node_id, 0) * (one + 1)
    return one


def _oversized(
    project: Project, file: str, model: DocTypeModel, root: _Node, limit: int
) -> list[Problem]:
    try:
        prediction = _predict(project, model, root)
    except MigrateError:
        raise
    except Exception as exc:  # a statistic the database would not compute
        return [
            Problem(
                file,
                model.loc.line,
                model.loc.path,
                f"the largest document could not be predicted: {type(exc).__name__}",
                "nothing to do; `migrate preview` shows real documents and their sizes",
            )
        ]
    if prediction.bytes <= limit // 2:
        return []
    embeds = [f"{table}: up to {n:,} per parent" for table, n in prediction.children.items()]
    detail = f"; {'; '.join(embeds)}" if embeds else ""
    return [
        Problem(
            file,
            model.loc.line,
            model.loc.path,
            f"the largest `{model.name}` document could reach about {prediction.bytes:,} bytes, "
            f"over half of [run] max_document_bytes ({limit:,}); most of it in "
            f"`{prediction.biggest_field}` (about {prediction.biggest_bytes:,} bytes){detail}",
            "larger documents are rejected: move the largest embed into a document type of its "
            "own, or raise max_document_bytes (Riak recommends under 1 MB)",
        )
    ]
