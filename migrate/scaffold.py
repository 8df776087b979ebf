"""`migrate scaffold`: a first mapping for a service, guessed from the source schema's keys.

From a root table it follows foreign keys: tables whose foreign key refers to the root (and, at
any depth, to those) become embeds ordered by their primary key, or `single: true` when the
foreign key is the child's own key; a table's other foreign keys become lookups; the root's
single-column foreign keys and its date columns become secondary indexes; the primary key makes
the key template. Every guess carries a comment saying why, for the engineer to review.

The result is checked like any mapping before it is written (`validate_mapping`), a file that
exists is never overwritten, and the service is added to migrate.toml, so `migrate check` and
`migrate preview` see it at once.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from migrate.errors import MappingError, MigrateError, UsageError
from migrate.mapping import parse_mapping, validate_mapping
from migrate.mapping.indexes import name_problem
from migrate.mapping.validate import suggest
from migrate.project import Project
from migrate.schema import ColumnInfo, ForeignKey, SchemaInfo, TableInfo, TableLinks, ValueKind
from migrate.source import probe

_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")  # as migrate.toml's [services.NAME]
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_$#]*$")
_DATES = frozenset({ValueKind.DATE, ValueKind.TIMESTAMP, ValueKind.TIMESTAMP_TZ})
_JOIN_FAMILY = {
    ValueKind.INTEGER: "number",
    ValueKind.DECIMAL: "number",
    ValueKind.NUMBER: "number",
    ValueKind.FLOAT: "number",
    ValueKind.DATE: "date-time",
    ValueKind.TIMESTAMP: "date-time",
}
_KEY_SUFFIXES = ("_ID", "_CODE", "_NO", "_NUMBER", "_KEY", "_REF")
_COMMENT_AT = 48  # the column comments start at


@dataclass(frozen=True, slots=True)
class ScaffoldResult:
    service: str
    mapping: Path
    config: Path
    root: str
    embeds: list[str]  # tables embedded, at any depth
    lookups: list[str]  # tables looked up
    indexes: list[str]


def scaffold_service(
    project: Project, service: str, root: str, *, output: Path | None = None
) -> ScaffoldResult:
    """Write a first mapping of `service` with `root` as its root table, and add the service to
    migrate.toml. Refuses an existing file or service; writes nothing when it refuses."""
    config = project.config
    if not _SERVICE_NAME.match(service):
        raise UsageError(
            f"service name {service!r} is not allowed",
            hint="use lowercase letters, digits, '-' and '_', starting with a letter",
        )
    if service in config.services:
        raise UsageError(
            f"service {service} is already in {config.path} "
            f"(mapping {config.services[service].mapping})",
            hint="choose another name, or edit that mapping",
        )
    path = output if output is not None else config.base_dir / "mappings" / f"{service}.yaml"
    if os.path.lexists(path):
        raise UsageError(
            f"{path} exists; scaffold never overwrites a file",
            hint="move it aside, or name another file with --output",
        )
    schema = project.schema()
    table = schema.table(root)
    if table is None:
        raise UsageError(
            f"no table {root} in the source", hint=suggest(root, schema.tables, "tables")
        )
    if not table.primary_key:
        raise UsageError(
            f"table {table.name} has no primary key, so it cannot be a root",
            hint="chunks are cut along the root's primary key: choose a table that has one, "
            "or a view over one",
        )
    links = probe.links(project.source, schema.tables, indexes=False)
    buckets = _buckets_in_use(project)
    writer = _Writer(schema, links, service)
    text = writer.mapping(table, _bucket(table, service, buckets))
    mapping = parse_mapping(text, path, default_bucket_type=config.target.bucket_type)
    problems = validate_mapping(mapping, schema)
    if problems:  # a guess this module should never make: say so rather than write it
        raise MappingError(problems)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise MigrateError(
            f"cannot write the mapping {path}: {exc.strerror or exc}",
            hint="check that its folder can be created and written, or name another --output",
        ) from exc
    _add_service(config.path, service, path)
    return ScaffoldResult(
        service,
        path,
        config.path,
        table.name,
        writer.embedded,
        sorted(set(writer.looked_up)),
        writer.indexes,
    )


def _buckets_in_use(project: Project) -> set[str]:
    used: set[str] = set()
    for service in project.config.select([]):
        try:
            used.update(doc.bucket for doc in project.mapping(service).documents)
        except MappingError:
            continue  # check reports it; a scaffold need not fail for it
    return used


def _bucket(table: TableInfo, service: str, used: set[str]) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", table.name.lower()).strip("-") or service
    return name if name not in used else f"{service}-{name}"


def _add_service(config: Path, service: str, mapping: Path) -> None:
    try:
        relative = mapping.resolve().relative_to(config.parent.resolve()).as_posix()
    except ValueError:
        relative = str(mapping.resolve())
    text = config.read_text(encoding="utf-8")
    block = f"\n[services.{service}]\nmapping = {json.dumps(relative)}\n"
    with open(config, "a", encoding="utf-8") as handle:
        handle.write(("" if text.endswith("\n") else "\n") + block)


# -- naming -------------------------------------------------------------------------------------


def _scalar(text: str) -> str:
    """`text` as YAML reads it back as that same string (quoted when it would not)."""
    if _PLAIN.match(text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _camel(name: str) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", name) if w]
    if not words:
        return "field"
    first, *rest = words
    text = first.lower() + "".join(w[:1].upper() + w[1:].lower() for w in rest)
    return text if not text[0].isdigit() else f"f{text}"


def _child_name(child: str, parent: str) -> str:
    """PATIENT_ADDRESSES under PATIENTS: `addresses`; NOTE_TAGS under ADMISSION_NOTES: `tags`
    (a leading word that begins a word of the parent's name is dropped)."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", child) if w]
    parents = [w.upper() for w in re.split(r"[^A-Za-z0-9]+", parent) if w]
    first = words[0].upper() if words else ""
    if len(words) > 1 and len(first) >= 3 and any(p.startswith(first) for p in parents):
        words = words[1:]
    return _camel("_".join(words))


def _lookup_name(fk: ForeignKey) -> str:
    """GP_PRACTICE_CODE -> `gpPractice`; a composite key is named after the table it refers to."""
    if len(fk.columns) == 1:
        column = fk.columns[0]
        for suffix in _KEY_SUFFIXES:
            if column.upper().endswith(suffix) and len(column) > len(suffix):
                return _camel(column[: -len(suffix)])
    return _camel(_singular(fk.referred_table))


def _singular(name: str) -> str:
    upper = name.upper()
    if upper.endswith("IES") and len(name) > 4:
        return name[:-3] + ("y" if name[-1].islower() else "Y")
    if upper.endswith("S") and not upper.endswith(("SS", "US", "IS")) and len(name) > 3:
        return name[:-1]
    return name


def _index_name(column: str, suffix: str) -> str | None:
    name = re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_") + suffix
    return None if name_problem(name) else name


class _Names:
    """Field names of one object, made distinct."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, name: str) -> str:
        candidate, number = name, 2
        while candidate in self.used:
            candidate, number = f"{name}{number}", number + 1
        self.used.add(candidate)
        return candidate


# -- the mapping text ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Writer:
    schema: SchemaInfo
    links: dict[str, TableLinks]
    service: str
    embedded: list[str] = field(default_factory=list)
    looked_up: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def line(self, depth: int, text: str, why: str | None = None) -> None:
        body = "  " * depth + text
        if why:
            body = f"{body.ljust(_COMMENT_AT - 1)} # {why}"
        self.lines.append(body)

    def mapping(self, root: TableInfo, bucket: str) -> str:
        self.lines = [
            f"# A first mapping of {self.service}, scaffolded from {root.name} and the foreign",
            "# keys that reach it. Every guess says why on its line: review them, then run",
            f"# `migrate check` and `migrate preview {self.service}`. See docs/mapping.md.",
        ]
        self.line(0, f"service: {_scalar(self.service)}")
        self.line(0, f"description: {json.dumps(f'{root.name} documents (scaffolded)')}")
        self.line(0, "documents:")
        doc = _singular(re.sub(r"[^a-z0-9]+", "_", root.name.lower()).strip("_")) or "document"
        self.line(1, f"{_scalar(doc)}:", "one document per row of the root table")
        self.line(2, f"table: {_scalar(root.name)}")
        self.line(2, f"bucket: {_scalar(bucket)}", "the root table's name; rename freely")
        separator = "/"
        key = separator.join(f"{{{c}}}" for c in root.primary_key)
        why = "the primary key"
        if len(root.primary_key) > 1:
            why += f"; `{separator}` must never occur inside a part"
        self.line(2, f"key: {json.dumps(key)}", why)
        self.line(2, "nulls: omit", "a NULL column makes no field (`keep`: null)")
        self.line(2, "fields:")
        self.fields(root, 3, set(), skip=set(), parent=None)
        self.index_lines(root)
        return "\n".join(self.lines) + "\n"

    def fields(
        self,
        table: TableInfo,
        depth: int,
        path: set[str],
        *,
        skip: set[str],
        parent: ForeignKey | None,
    ) -> None:
        """The table's columns (but `skip`), then its embeds and lookups."""
        names = _Names()
        own_links = self.links.get(table.name)
        for column in table.columns:
            if column.name.casefold() in skip:
                continue
            self.line(depth, f"{_scalar(names.take(_camel(column.name)))}: {_scalar(column.name)}")
        path = path | {table.name.casefold()}
        for child, fk in self.children(table):
            if child.name.casefold() in path:
                continue
            self.embed(table, child, fk, depth, path, names)
        for fk in own_links.foreign_keys if own_links else ():
            if fk == parent or fk.referred_table.casefold() == table.name.casefold():
                continue
            self.lookup(table, fk, depth, names)

    def children(self, table: TableInfo) -> Iterator[tuple[TableInfo, ForeignKey]]:
        """Tables with a foreign key referring to `table`, in name order."""
        for name in sorted(self.links):
            if name.casefold() == table.name.casefold():
                continue
            child = self.schema.table(name)
            if child is None:
                continue
            for fk in self.links[name].foreign_keys:
                if fk.referred_table.casefold() == table.name.casefold() and _joinable(
                    child, fk.columns, table, fk.referred_columns
                ):
                    yield child, fk

    def embed(  # noqa: PLR0917 (one call site, in `fields`)
        self,
        parent: TableInfo,
        child: TableInfo,
        fk: ForeignKey,
        depth: int,
        path: set[str],
        names: _Names,
    ) -> None:
        name = names.take(_child_name(child.name, parent.name))
        link = ", ".join(f"{c}" for c in fk.columns)
        self.line(depth, f"{_scalar(name)}:", f"{child.name} ({link}) refers to {parent.name}")
        self.line(depth + 1, f"embed: {_scalar(child.name)}")
        self.line(depth + 1, f"on: {_on(fk)}", "{child column: parent column}")
        own = {c.casefold() for c in fk.columns}
        unique = [set(map(str.casefold, u)) for u in (child.primary_key, *child.unique) if u]
        if any(u <= own for u in unique):
            self.line(depth + 1, "single: true", "its foreign key is its own key: one at most")
        else:
            order = [c for c in child.primary_key if c.casefold() not in own]
            if order:
                listed = ", ".join(_scalar(c) for c in order)
                self.line(depth + 1, f"order_by: [{listed}]", "the primary key: a stable order")
            else:
                self.line(depth + 1, "# no primary key: children are ordered by what is read")
        self.line(depth + 1, "fields:", "every column but the link (the parent's key)")
        self.embedded.append(child.name)
        self.fields(child, depth + 2, path, skip=own, parent=fk)

    def lookup(self, table: TableInfo, fk: ForeignKey, depth: int, names: _Names) -> None:
        target = self.schema.table(fk.referred_table)
        if target is None or not _joinable(target, fk.referred_columns, table, fk.columns):
            return
        name = names.take(_lookup_name(fk))
        link = ", ".join(fk.columns)
        self.line(depth, f"{_scalar(name)}:", f"({link}) refers to {target.name}: many-to-one")
        self.line(depth + 1, f"lookup: {_scalar(target.name)}")
        self.line(depth + 1, f"on: {_on(fk, lookup=True)}", "{their column: our column}")
        self.line(depth + 1, "fields:", "every column; keep the ones the document needs")
        inner = _Names()
        for column in target.columns:
            name = inner.take(_camel(column.name))
            self.line(depth + 2, f"{_scalar(name)}: {_scalar(column.name)}")
        self.looked_up.append(target.name)

    def index_lines(self, root: TableInfo) -> None:
        entries: list[tuple[str, str, str]] = []
        seen: set[str] = set()
        links = self.links.get(root.name)
        for fk in links.foreign_keys if links else ():
            if len(fk.columns) != 1:
                continue
            column = root.column(fk.columns[0])
            if column is None or column.name in seen:
                continue
            integer = column.type.kind is ValueKind.INTEGER
            name = _index_name(column.name, "_int" if integer else "_bin")
            if name:
                seen.add(column.name)
                why = f"a foreign key to {fk.referred_table}: find documents by it"
                entries.append((name, _scalar(column.name), why))
        for column in root.columns:
            if column.type.kind in _DATES and column.name not in seen:
                name = _index_name(column.name, "_int")
                if name:
                    seen.add(column.name)
                    source = f"{{column: {_scalar(column.name)}, as: yyyymmdd}}"
                    entries.append((name, source, "a date: find documents by day or range"))
        taken = set()
        if not entries:
            return
        self.line(2, "indexes:", "Riak secondary indexes (_bin text, _int integers)")
        for name, source, why in entries:
            if name in taken:
                continue
            taken.add(name)
            self.line(3, f"{name}: {source}", why)
            self.indexes.append(name)


def _on(fk: ForeignKey, *, lookup: bool = False) -> str:
    """`on:` of an embed (child column: parent column) or a lookup (their column: our column)."""
    pairs = (
        zip(fk.referred_columns, fk.columns, strict=True)
        if lookup
        else zip(fk.columns, fk.referred_columns, strict=True)
    )
    return "{" + ", ".join(f"{_scalar(a)}: {_scalar(b)}" for a, b in pairs) + "}"


def _joinable(
    their: TableInfo, their_columns: tuple[str, ...], our: TableInfo, our_columns: tuple[str, ...]
) -> bool:
    """Whether every pair of columns exists and holds the same kind of value (a join of two
    kinds never matches, and `check` refuses it)."""
    for mine, other in zip(their_columns, our_columns, strict=True):
        left, right = their.column(mine), our.column(other)
        if left is None or right is None or _family(left) != _family(right):
            return False
    return True


def _family(column: ColumnInfo) -> str:
    kind = column.type.kind
    return _JOIN_FAMILY.get(kind, kind.value)
