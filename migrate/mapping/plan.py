"""Compile a validated mapping into a plan: what to extract per document type, and a builder.

Node ids are field paths from the root ("root", "root.addresses", "root.items.events"), so they stay
stable while the mapping's meaning does. Fingerprints hash everything that can change the output
(resolved names, value rules, column types, keys, indexes), and nothing that cannot (line numbers,
comments, field order, the case names were written in).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from migrate.document import BuildResult
from migrate.errors import MappingError, MigrateError
from migrate.mapping.builder import DocumentBuilder, node_column
from migrate.mapping.collisions import settle
from migrate.mapping.indexes import ColumnSource, resolve_source
from migrate.mapping.keys import parse_template
from migrate.mapping.loader import load_mapping
from migrate.mapping.model import (
    ColumnField,
    DocTypeModel,
    EmbedField,
    Field,
    ListField,
    LiteralField,
    LookupField,
    Mapping,
    ObjectField,
)
from migrate.mapping.validate import validate_mapping
from migrate.schema import ColumnInfo, SchemaInfo, TableInfo
from migrate.spec import ExtractSpec, NodeKind, NodeSpec

# Bump when the builder's output for the same mapping and schema changes.
PLAN_FORMAT = 1


@dataclass(frozen=True, eq=False)
class DocPlan:
    """One document type, compiled: what to read per chunk, and how to turn it into documents."""

    name: str
    bucket_type: str
    bucket: str
    extract: ExtractSpec
    fingerprint: str
    builder: DocumentBuilder = field(repr=False)

    def build(
        self,
        tables: AbcMapping[str, pa.Table],
        *,
        max_bytes: int | None = None,
        collided: AbcMapping[str, Sequence[str]] | None = None,
    ) -> BuildResult:
        """Documents and rejects for one chunk: `tables` maps node id to that node's rows, with
        exactly the node's columns in order. See `DocumentBuilder.build`. Rows that render one
        key are all rejected, inside the chunk and, through `collided` (key -> the other rows,
        described), with rows elsewhere (`migrate.mapping.collisions`)."""
        result = self.builder.build(tables, max_bytes=max_bytes)
        return settle(self.name, self.extract.primary_key, result, collided)


@dataclass(frozen=True, eq=False)
class ServicePlan:
    service: str
    doc_types: list[DocPlan]
    fingerprint: str

    def doc_type(self, name: str) -> DocPlan:
        for plan in self.doc_types:
            if plan.name == name:
                return plan
        raise KeyError(name)


def compile_mapping(mapping: Mapping, schema: SchemaInfo) -> ServicePlan:
    """Validate `mapping` against `schema` and compile it; `MappingError` lists every problem."""
    problems = validate_mapping(mapping, schema)
    if problems:
        raise MappingError(problems)
    plans = [_compile_doc(mapping.service, doc, schema) for doc in mapping.documents]
    parts = sorted((plan.name, plan.fingerprint) for plan in plans)
    fingerprint = _hash({"format": PLAN_FORMAT, "service": mapping.service, "doc_types": parts})
    return ServicePlan(mapping.service, plans, fingerprint)


def _compile_doc(service: str, doc: DocTypeModel, schema: SchemaInfo) -> DocPlan:
    root_table = _table(schema, doc.table.text)
    collector = _Collector(schema)
    root = collector.node("root", NodeKind.ROOT, root_table, None, ())
    for name in root_table.primary_key:
        root.need(node_column(root_table, name))
    if doc.key is not None:
        for name in parse_template(doc.key.text).columns:
            root.need(node_column(root_table, name))
    for index in doc.indexes:
        source = resolve_source(index, root_table, doc)
        if isinstance(source, ColumnSource):
            root.need(source.column)
    collector.fields(doc.fields, root, "root")
    extract = ExtractSpec(
        service=service,
        doc_type=doc.name,
        root_table=root_table.name,
        primary_key=root_table.primary_key,
        where=doc.where,
        nodes=tuple(draft.spec() for draft in collector.drafts),
    )
    fingerprint = _hash(
        {
            "format": PLAN_FORMAT,
            "extract": asdict(extract),
            "doc": _describe_doc(doc, schema),
            "types": {
                draft.node_id: [_describe_column(c) for c in draft.columns()]
                for draft in collector.drafts
            },
            "primary_keys": {d.node_id: list(d.table.primary_key) for d in collector.drafts},
        }
    )
    builder = DocumentBuilder(doc, schema, extract)
    return DocPlan(doc.name, doc.bucket_type, doc.bucket, extract, fingerprint, builder)


def _table(schema: SchemaInfo, name: str) -> TableInfo:
    table = schema.table(name)
    if table is None:  # validation reports it first; this guards direct misuse
        raise KeyError(name)
    return table


class _Draft:
    """A node being collected: its table, link and the columns the builder will need."""

    def __init__(
        self,
        node_id: str,
        kind: NodeKind,
        table: TableInfo,
        parent_id: str | None,
        link: tuple[tuple[ColumnInfo, ColumnInfo], ...],
    ) -> None:
        self.node_id = node_id
        self.kind = kind
        self.table = table
        self.parent_id = parent_id
        self.link = link
        self._needed: set[str] = set()

    def need(self, column: ColumnInfo) -> None:
        self._needed.add(column.name.casefold())

    def columns(self) -> list[ColumnInfo]:
        """Needed columns in the table's column order, so a node's row order never depends on
        how the mapping was written."""
        return [c for c in self.table.columns if c.name.casefold() in self._needed]

    def spec(self) -> NodeSpec:
        return NodeSpec(
            node_id=self.node_id,
            kind=self.kind,
            table=self.table.name,
            columns=tuple(c.name for c in self.columns()),
            parent_id=self.parent_id,
            link=tuple((their.name, our.name) for their, our in self.link),
        )


class _Collector:
    """Walks the field tree once, creating a node per embed and lookup (parents first)."""

    def __init__(self, schema: SchemaInfo) -> None:
        self.schema = schema
        self.drafts: list[_Draft] = []

    def node(
        self,
        node_id: str,
        kind: NodeKind,
        table: TableInfo,
        parent: _Draft | None,
        link: tuple[tuple[ColumnInfo, ColumnInfo], ...],
    ) -> _Draft:
        draft = _Draft(node_id, kind, table, parent.node_id if parent else None, link)
        self.drafts.append(draft)
        return draft

    def fields(self, fields: tuple[Field, ...], draft: _Draft, prefix: str) -> None:
        table = draft.table
        for f in fields:
            node_id = f"{prefix}.{f.name}"
            if isinstance(f, ColumnField):
                draft.need(node_column(table, f.column.text))
            elif isinstance(f, ListField):
                for name in f.columns:
                    draft.need(node_column(table, name.text))
            elif isinstance(f, ObjectField):
                self.fields(f.fields, draft, node_id)
            elif isinstance(f, EmbedField | LookupField):
                child_table = _table(self.schema, f.table.text)
                link = tuple(
                    (node_column(child_table, p.their.text), node_column(table, p.our.text))
                    for p in f.on
                )
                kind = NodeKind.EMBED if isinstance(f, EmbedField) else NodeKind.LOOKUP
                child = self.node(node_id, kind, child_table, draft, link)
                for their, our in link:
                    child.need(their)
                    draft.need(our)
                for pk_name in child_table.primary_key:
                    child.need(node_column(child_table, pk_name))
                if isinstance(f, EmbedField):
                    for order in f.order_by:
                        child.need(node_column(child_table, order.text))
                elif f.field is not None:
                    child.need(node_column(child_table, f.field.text))
                if f.fields is not None:
                    self.fields(f.fields, child, node_id)


# -- fingerprints --------------------------------------------------------------------------------


def _hash(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return ["decimal", str(value)]
    if hasattr(value, "value"):  # enums
        return value.value
    raise TypeError(type(value).__name__)


def _describe_column(column: ColumnInfo) -> list[Any]:
    ctype = column.type
    return [column.name, ctype.kind.value, ctype.declared, ctype.precision, ctype.scale]


def _typed(value: Any) -> Any:
    """A constant with its JSON type made explicit (so `1`, `1.0` and `true` differ)."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return [type(value).__name__, value]


def _describe_doc(doc: DocTypeModel, schema: SchemaInfo) -> dict[str, Any]:
    table = _table(schema, doc.table.text)
    return {
        "name": doc.name,
        "bucket_type": doc.bucket_type,
        "bucket": doc.bucket,
        "key": doc.key.text if doc.key is not None else None,
        **({"key_escape": doc.key_escape} if doc.key_escape else {}),
        "nulls": doc.nulls,
        "fields": _describe_fields(doc.fields, table, schema),
        "indexes": {
            index.name: {
                "source": _describe_source(resolve_source(index, table, doc)),
                "as": index.as_.text if index.as_ is not None else None,
            }
            for index in doc.indexes
        },
    }


def _describe_source(source: Any) -> Any:
    if isinstance(source, ColumnSource):
        return ["column", source.column.name]
    return ["path", list(getattr(source, "segments", ()))]


def _describe_fields(
    fields: tuple[Field, ...], table: TableInfo, schema: SchemaInfo
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields:
        if isinstance(f, ColumnField):
            out[f.name] = {
                "column": node_column(table, f.column.text).name,
                "as": f.as_.text if f.as_ is not None else None,
                "values": None
                if f.values is None
                else {entry.code: _typed(entry.value) for entry in f.values},
                "default": _typed(f.default) if f.has_default else None,
                "has_default": f.has_default,
            }
        elif isinstance(f, ListField):
            out[f.name] = {"list": [node_column(table, n.text).name for n in f.columns]}
        elif isinstance(f, LiteralField):
            out[f.name] = {"literal": _typed(f.value)}
        elif isinstance(f, ObjectField):
            out[f.name] = {"object": _describe_fields(f.fields, table, schema)}
        else:
            child = _table(schema, f.table.text)
            described: dict[str, Any] = {
                "table": child.name,
                "on": [
                    [node_column(child, p.their.text).name, node_column(table, p.our.text).name]
                    for p in f.on
                ],
                "fields": None if f.fields is None else _describe_fields(f.fields, child, schema),
            }
            if isinstance(f, EmbedField):
                described["embed"] = True
                described["single"] = f.single
                described["order_by"] = [node_column(child, n.text).name for n in f.order_by]
            else:
                described["lookup"] = True
                described["field"] = (
                    node_column(child, f.field.text).name if f.field is not None else None
                )
            out[f.name] = described
    return out


_cached: dict[tuple[str, str], ServicePlan] = {}


def cached_plan(
    mapping_path: str, *, default_bucket_type: str, fingerprint: str, schema: SchemaInfo
) -> ServicePlan:
    """The compiled plan of a mapping file, compiled once per process (worker processes build
    many chunks). Keyed by the plan's fingerprint, so an edited mapping is never served stale;
    a file that no longer compiles to `fingerprint` changed under the running command."""
    plan = _cached.get((mapping_path, fingerprint))
    if plan is None:
        mapping = load_mapping(Path(mapping_path), default_bucket_type=default_bucket_type)
        plan = compile_mapping(mapping, schema)
        if plan.fingerprint != fingerprint:
            raise MigrateError(
                f"{mapping_path} changed while migrate was running",
                hint="run the same command again: it starts from the mapping as it is now",
            )
        _cached[(mapping_path, fingerprint)] = plan
    return plan
