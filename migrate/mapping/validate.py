"""Check a parsed mapping against the source schema, reporting every problem at once.

Each problem names the file, line and field path, says what is wrong and, where it can, how to fix
it ("did you mean ...?"). Compilation runs this first and refuses a mapping with any problem, so
the plan and the builder can take every name as resolved.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from migrate.errors import Problem
from migrate.mapping import indexes as idx
from migrate.mapping.keys import parse_template
from migrate.mapping.model import (
    ColumnField,
    DocTypeModel,
    EmbedField,
    Field,
    IndexModel,
    JoinPair,
    ListField,
    Loc,
    LookupField,
    Mapping,
    Name,
    ObjectField,
)
from migrate.mapping.values import AS_TYPES, as_accepts
from migrate.schema import ColumnInfo, SchemaInfo, TableInfo, ValueKind

_K = ValueKind
_JOIN_FAMILY = {
    _K.INTEGER: "number",
    _K.DECIMAL: "number",
    _K.NUMBER: "number",
    _K.FLOAT: "number",
    _K.DATE: "date-time",
    _K.TIMESTAMP: "date-time",
}
_INT_INDEX_KINDS = frozenset({_K.INTEGER, _K.NUMBER})
_INT_INDEX_AS = frozenset({"integer", "yyyymmdd"})


def validate_mapping(mapping: Mapping, schema: SchemaInfo) -> list[Problem]:
    """Every problem of `mapping` against `schema`; an empty list when it can be compiled."""
    checker = _Checker(str(mapping.path), schema)
    names: dict[str, int] = {}
    buckets: dict[tuple[str, str], str] = {}
    for doc in mapping.documents:
        if doc.name in names:
            checker.problem(
                doc.loc,
                f"document type `{doc.name}` is defined twice (first on line {names[doc.name]})",
                "give each document type its own name",
            )
        else:
            names[doc.name] = doc.loc.line
        identity = (doc.bucket_type, doc.bucket)
        if identity in buckets:
            checker.problem(
                doc.loc.at("bucket"),
                f"bucket `{doc.bucket}` (type `{doc.bucket_type}`) is already used by document "
                f"type `{buckets[identity]}`",
                "each document type needs its own bucket, or its keys would collide",
            )
        else:
            buckets[identity] = doc.name
        checker.doc_type(doc)
    return checker.problems


def suggest(name: str, candidates: Iterable[str], what: str) -> str:
    """A "did you mean" hint comparing names without regard to case."""
    options = {candidate.casefold(): candidate for candidate in candidates}
    close = difflib.get_close_matches(name.casefold(), list(options), n=1, cutoff=0.6)
    if close:
        return f"did you mean `{options[close[0]]}`?"
    return f"check the spelling against the source schema's {what}"


class _Checker:
    def __init__(self, file: str, schema: SchemaInfo) -> None:
        self.file = file
        self.schema = schema
        self.problems: list[Problem] = []

    def problem(self, loc: Loc, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.file, loc.line, loc.path, message, hint))

    def table(self, name: Name) -> TableInfo | None:
        found = self.schema.table(name.text)
        if found is None:
            self.problem(
                name.loc,
                f"no table `{name.text}` in the source",
                suggest(name.text, self.schema.tables, "tables"),
            )
        return found

    def column(self, table: TableInfo | None, name: Name) -> ColumnInfo | None:
        if table is None:
            return None
        found = table.column(name.text)
        if found is None:
            self.problem(
                name.loc,
                f"table `{table.name}` has no column `{name.text}`",
                suggest(name.text, (c.name for c in table.columns), f"columns of {table.name}"),
            )
        return found

    # -- document types ---------------------------------------------------------------------------

    def doc_type(self, doc: DocTypeModel) -> None:
        table = self.table(doc.table)
        if table is not None and not table.primary_key:
            self.problem(
                doc.table.loc,
                f"root table `{table.name}` has no primary key",
                "chunks are cut along the root table's primary key; use a table that has one",
            )
        self.fields(doc.fields, table)
        if doc.key is not None:
            self.key(doc.key, table)
        for index in doc.indexes:
            self.index(index, table, doc)

    def key(self, key: Name, table: TableInfo | None) -> None:
        parsed = parse_template(key.text)
        for error in parsed.errors:
            self.problem(key.loc, f"key template: {error}")
        columns = [self.column(table, Name(c, key.loc)) for c in parsed.columns]
        if table is None or parsed.errors or any(c is None for c in columns):
            return
        used = {c.name.casefold() for c in columns if c is not None}
        candidates = [table.primary_key, *table.unique] if table.primary_key else list(table.unique)
        if not any(cols and {c.casefold() for c in cols} <= used for cols in candidates):
            pk = ", ".join(table.primary_key) or "none"
            self.problem(
                key.loc,
                "the key template does not cover the primary key or a unique constraint of "
                f"`{table.name}`, so two rows could get the same key",
                f"include every primary-key column ({pk}) as a placeholder",
            )

    # -- fields -----------------------------------------------------------------------------------

    def fields(self, fields: tuple[Field, ...], table: TableInfo | None) -> None:
        for field in fields:
            if isinstance(field, ColumnField):
                self.column_field(field, table)
            elif isinstance(field, ListField):
                for name in field.columns:
                    self.column(table, name)
            elif isinstance(field, ObjectField):
                self.fields(field.fields, table)
            elif isinstance(field, EmbedField):
                child = self.table(field.table)
                self.on(field.on, child, table)
                for name in field.order_by:
                    self.column(child, name)
                self.fields(field.fields, child)
            elif isinstance(field, LookupField):
                child = self.table(field.table)
                self.on(field.on, child, table)
                if field.field is not None:
                    self.column(child, field.field)
                if field.fields is not None:
                    self.fields(field.fields, child)

    def column_field(self, field: ColumnField, table: TableInfo | None) -> None:
        column = self.column(table, field.column)
        if field.as_ is not None:
            as_ = field.as_.text
            if as_ not in AS_TYPES:
                self.problem(
                    field.as_.loc,
                    f"unknown `as: {as_}`",
                    suggest(as_, sorted(AS_TYPES), "`as` types")
                    + " (one of "
                    + ", ".join(sorted(AS_TYPES))
                    + ")",
                )
            elif column is not None and not as_accepts(column.type.kind, as_):
                self.problem(
                    field.as_.loc,
                    f"`as: {as_}` cannot convert column `{column.name}` "
                    f"({column.type.kind.value}, {column.type.declared})",
                    "see the `as:` table in docs/mapping-semantics.md",
                )
            if field.values is not None:
                self.problem(
                    field.loc.at("values"),
                    "`values` and `as` cannot be combined: codes are matched as the column's text "
                    "and translated to the values written",
                    "remove `as`",
                )
        if field.has_default and field.values is None:
            self.problem(
                field.loc.at("default"),
                "`default` without `values`",
                "`default` is the translation of codes with no entry in `values`",
            )

    def on(
        self, pairs: tuple[JoinPair, ...], their: TableInfo | None, our: TableInfo | None
    ) -> None:
        for pair in pairs:
            mine = self.column(their, pair.their)
            other = self.column(our, pair.our)
            if mine is None or other is None:
                continue
            left = _JOIN_FAMILY.get(mine.type.kind, mine.type.kind.value)
            right = _JOIN_FAMILY.get(other.type.kind, other.type.kind.value)
            if left != right:
                self.problem(
                    pair.their.loc,
                    f"`{mine.name}` ({mine.type.declared}) and `{other.name}` "
                    f"({other.type.declared}) hold different kinds of value, so they never match",
                    "join columns of the same kind",
                )

    # -- indexes ----------------------------------------------------------------------------------

    def index(self, index: IndexModel, table: TableInfo | None, doc: DocTypeModel) -> None:
        reason = idx.name_problem(index.name)
        if reason:
            self.problem(index.loc, f"bad index name `{index.name}`: {reason}")
        as_ = index.as_.text if index.as_ is not None else None
        if index.as_ is not None and as_ not in AS_TYPES:
            self.problem(
                index.as_.loc, f"unknown `as: {as_}`", suggest(str(as_), AS_TYPES, "types")
            )
            return
        if table is None:
            return
        source = idx.resolve_source(index, table, doc)
        if isinstance(source, str):
            self.problem(
                index.source.loc,
                f"index source `{index.source.text}` names nothing: {source}",
                "name a root-table column or a path of field names such as `addresses.postcode`",
            )
            return
        if isinstance(source, idx.PathSource):
            return
        column = source.column
        if as_ is not None and index.as_ is not None and not as_accepts(column.type.kind, as_):
            self.problem(
                index.as_.loc,
                f"`as: {as_}` cannot convert column `{column.name}` ({column.type.declared})",
            )
            return
        if idx.is_int_index(index.name) and not (
            as_ in _INT_INDEX_AS or (as_ is None and column.type.kind in _INT_INDEX_KINDS)
        ):
            self.problem(
                index.loc,
                f"`{index.name}` is an integer index but column `{column.name}` "
                f"({column.type.declared}) does not give integers"
                + (f" with `as: {as_}`" if as_ else ""),
                "use `{column: C, as: integer}` or `as: yyyymmdd`, or name the index `..._bin`",
            )
