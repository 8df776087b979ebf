"""`migrate preview`: documents built straight from the source, before any run, to look at.

A document is built exactly as `run` builds it: its chunk's rows read under a snapshot by the
same extract (`Snapshot.extract`), then the compiled plan's builder (`DocPlan.build`) with the
project's `max_document_bytes`; so a row `run` would reject shows its rejects here. Nothing is
written anywhere: no ledger, no staging, no target.

A document is found by its key: the key is split back into its template's parts (every way the
template's literal text allows), the root rows whose text and integer key columns equal those
parts are read one by one, each as a chunk holding that row alone, and the documents whose key is
the one asked for are kept. A template with no text or integer column (only dates, say), or parts
that match more than `CANDIDATES` rows without finding the key, is searched chunk by chunk.

A sample is deterministic: chunks spread evenly along the root's key, and in each the documents
whose keys hash lowest (xxh3_64), taken from each chunk in turn: the same documents every time
while the source is unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import xxhash

from migrate.document import Document, Reject
from migrate.errors import UsageError
from migrate.mapping import DocPlan
from migrate.mapping.keys import ParsedTemplate, Placeholder, default_template, parse_template
from migrate.mapping.model import DocTypeModel
from migrate.project import Project
from migrate.schema import TableInfo, ValueKind
from migrate.source import ChunkRange, Snapshot, probe

CANDIDATES = 50  # root rows tried for one reading of a key before searching chunk by chunk
_SPLITS = 64  # ways of splitting a key tried at most
_INTEGER = re.compile(r"^-?[0-9]+$")


@dataclass(frozen=True, slots=True)
class Preview:
    """One root row's outcome: its document (None when rejected), or the rejects it raises."""

    service: str
    doc_type: str
    bucket_type: str
    bucket: str
    key: str | None
    document: Document | None
    rejects: tuple[Reject, ...] = ()

    @property
    def size(self) -> int | None:
        """The document's canonical JSON, in bytes (what the target stores)."""
        return None if self.document is None else len(self.document.value)


def preview_key(
    project: Project, service: str, key: str, *, doc_type: str | None = None
) -> list[Preview]:
    """The document (or rejects) of `service` whose key is `key`; `UsageError` when none is."""
    config = project.config.service(service)
    mapping = project.mapping(config)
    plan = project.plan(config)
    found: list[Preview] = []
    with project.source.snapshot() as snapshot:
        for model in _models(mapping.documents, doc_type, service):
            doc = plan.doc_type(model.name)
            found += _by_key(project, snapshot, service, model, doc, key=key)
    if not found:
        raise UsageError(
            f"{service} has no document with key {key!r}",
            hint=f"keys follow the template of each document type; `migrate preview {service} "
            "--sample 3` shows a few existing ones",
        )
    return found


def preview_sample(
    project: Project, service: str, count: int, *, doc_type: str | None = None
) -> list[Preview]:
    """`count` documents (or rejected rows) of each document type of `service`, deterministic."""
    config = project.config.service(service)
    mapping = project.mapping(config)
    plan = project.plan(config)
    out: list[Preview] = []
    with project.source.snapshot() as snapshot:
        for model in _models(mapping.documents, doc_type, service):
            out += _sample(project, snapshot, service, plan.doc_type(model.name), count=count)
    return out


def _models(
    models: Sequence[DocTypeModel], doc_type: str | None, service: str
) -> list[DocTypeModel]:
    if doc_type is None:
        return list(models)
    chosen = [m for m in models if m.name == doc_type]
    if not chosen:
        names = ", ".join(m.name for m in models)
        raise UsageError(
            f"{service} has no document type {doc_type!r}", hint=f"its document types: {names}"
        )
    return chosen


def _outcomes(
    service: str, doc: DocPlan, documents: list[Document], rejects: list[Reject]
) -> list[Preview]:
    """A preview per document and per rejected row."""
    out = [Preview(service, doc.name, d.bucket_type, d.bucket, d.key, d) for d in documents]
    by_row: dict[tuple[tuple[str, str], ...], list[Reject]] = {}
    for reject in rejects:
        by_row.setdefault(tuple(sorted(reject.source_key.items())), []).append(reject)
    for row in by_row.values():
        out.append(
            Preview(service, doc.name, doc.bucket_type, doc.bucket, row[0].key, None, tuple(row))
        )
    return out


def _build(project: Project, snapshot: Snapshot, doc: DocPlan, chunk: ChunkRange) -> Any:
    tables = snapshot.extract(doc.extract, chunk)
    return doc.build(tables, max_bytes=project.config.run.max_document_bytes)


# -- by key --------------------------------------------------------------------------------------


def _by_key(
    project: Project,
    snapshot: Snapshot,
    service: str,
    model: DocTypeModel,
    doc: DocPlan,
    *,
    key: str,
) -> list[Preview]:
    spec = doc.extract
    info = project.source.tables(spec)[spec.root_table]
    template = parse_template(model.key.text) if model.key else default_template(info.primary_key)
    readings = splits(template, key)
    if not readings:
        return []
    lookups = [equal for split in readings if (equal := _filter(split, info))]
    roots: dict[tuple[Any, ...], None] = {}
    crowded = not _filterable(template, info)  # nothing to narrow by: every chunk is searched
    for equal in lookups:
        found_roots = probe.root_keys_where(snapshot, spec, info, equal, CANDIDATES)
        crowded = crowded or len(found_roots) == CANDIDATES
        roots.update(dict.fromkeys(found_roots))
    found = _search(
        project,
        snapshot,
        service,
        doc,
        key,
        (probe.row_range(snapshot, spec, info, r) for r in roots),
    )
    if not found and crowded:
        chunks = snapshot.plan_chunks(spec, project.config.run.chunk_size)
        found = _search(project, snapshot, service, doc, key, iter(chunks))
    return found


def _search(  # noqa: PLR0917 (a private helper of _by_key)
    project: Project,
    snapshot: Snapshot,
    service: str,
    doc: DocPlan,
    key: str,
    chunks: Iterator[ChunkRange],
) -> list[Preview]:
    """The documents and rejected rows with key `key` among these chunks' rows."""
    found = []
    for chunk in chunks:
        result = _build(project, snapshot, doc, chunk)
        documents = [d for d in result.documents if d.key == key]
        rejects = [r for r in result.rejects if r.key == key]
        found += _outcomes(service, doc, documents, rejects)
    return found


def splits(template: ParsedTemplate, key: str) -> list[dict[str, str]]:
    """Every way `key` reads as `template`: the text of each placeholder's column, by column.

    `{SITE}/{CODE}` reads `a/b/c` two ways (SITE `a` or `a/b`); a key the literal text does not
    fit reads none.
    """
    parts = template.parts
    found: list[dict[str, str]] = []

    def walk(index: int, at: int, taken: dict[str, str]) -> None:
        if len(found) >= _SPLITS:
            return
        if index == len(parts):
            if at == len(key):
                found.append(taken)
            return
        part = parts[index]
        if isinstance(part, str):
            if key.startswith(part, at):
                walk(index + 1, at + len(part), taken)
            return
        ends: list[int]
        if index + 1 == len(parts):
            ends = [len(key)]
        else:
            after = parts[index + 1]
            assert isinstance(after, str)  # placeholders never touch
            ends = [m.start() for m in re.finditer(f"(?={re.escape(after)})", key[at:])]
            ends = [at + e for e in ends]
        for end in ends:
            value = key[at:end]
            column = part.column.casefold()
            if taken.get(column, value) != value:
                continue  # one column twice in the template, with two values
            walk(index + 1, end, {**taken, column: value})

    walk(0, 0, {})
    return found


def _filterable(template: ParsedTemplate, info: TableInfo) -> bool:
    return any(
        (column := info.column(p.column)) is not None
        and column.type.kind in (ValueKind.STRING, ValueKind.INTEGER)
        for p in template.parts
        if isinstance(p, Placeholder)
    )


def _filter(split: dict[str, str], info: TableInfo) -> dict[str, Any] | None:
    """The root columns a split's parts can be compared with in SQL: text as the text, integers
    as their number. None when a part cannot be a value of its integer column."""
    equal: dict[str, Any] = {}
    for name, text in split.items():
        column = info.column(name)
        if column is None:
            continue
        if column.type.kind is ValueKind.STRING:
            equal[column.name] = text
        elif column.type.kind is ValueKind.INTEGER:
            if not _INTEGER.match(text):
                return None
            equal[column.name] = int(text)
    return equal or None


# -- a sample ------------------------------------------------------------------------------------


def _sample(
    project: Project, snapshot: Snapshot, service: str, doc: DocPlan, *, count: int
) -> list[Preview]:
    ranges = snapshot.plan_chunks(doc.extract, project.config.run.chunk_size)
    if not ranges or count < 1:
        return []
    spread = min(count, len(ranges))  # chunks to read: evenly spaced along the key
    picked = sorted({(i * len(ranges)) // spread for i in range(spread)})
    per_chunk = []
    for index in picked:
        result = _build(project, snapshot, doc, ranges[index])
        outcomes = _outcomes(service, doc, result.documents, result.rejects)
        per_chunk.append(sorted(outcomes, key=_hash))
    chosen: list[Preview] = []
    turn = 0
    while len(chosen) < count and any(per_chunk):
        queue = per_chunk[turn % len(per_chunk)]
        if queue:
            chosen.append(queue.pop(0))
        turn += 1
    return chosen


def _hash(preview: Preview) -> tuple[int, str]:
    text = preview.key
    if text is None:  # a row whose key could not be built: by its primary key
        text = repr(sorted(preview.rejects[0].source_key.items()))
    return int(xxhash.xxh3_64_intdigest(text.encode("utf-8"))), text


# -- output --------------------------------------------------------------------------------------

_encode = msgspec.json.Encoder(order="sorted").encode


def json_line(preview: Preview) -> bytes:
    """One preview as a JSON object (no newline): the dump's fields plus the document type, its
    size and its rejects. The value is written with the canonical bytes the target would store,
    so decimals keep their digits."""
    document = preview.document
    head = {
        "service": preview.service,
        "document_type": preview.doc_type,
        "bucket_type": preview.bucket_type,
        "bucket": preview.bucket,
        "key": preview.key,
        "bytes": preview.size,
        "indexes": dict(document.indexes) if document is not None else {},
        "rejects": [
            {"field": r.field, "reason": r.reason, "source_key": r.source_key}
            for r in preview.rejects
        ],
    }
    value = document.value if document is not None else b"null"
    return _encode(head)[:-1] + b',"value":' + value + b"}"


def indent_json(text: bytes, step: str = "  ") -> str:
    """Canonical JSON laid out on lines for people, every token kept as written (a number such
    as `12.50` is not read back through a float)."""
    out: list[str] = []
    depth = 0
    in_string = escaped = False
    source = text.decode("utf-8")
    for i, char in enumerate(source):
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
            out.append(char)
        elif char in "{[":
            closing = "}" if char == "{" else "]"
            if source[i + 1 : i + 2] == closing:
                out.append(char)
            else:
                depth += 1
                out.append(char + "\n" + step * depth)
        elif char in "}]":
            if source[i - 1 : i] in "{[" and i > 0:
                out.append(char)
            else:
                depth -= 1
                out.append("\n" + step * depth + char)
        elif char == ",":
            out.append(",\n" + step * depth)
        elif char == ":":
            out.append(": ")
        else:
            out.append(char)
    return "".join(out)
