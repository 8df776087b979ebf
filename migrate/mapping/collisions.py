"""Key collisions: distinct root rows that render one document key.

A key template can render one key for two rows: a part holding the template's own separator
(`{SITE}/{CODE}` with a SITE of `a/b`), the default `:` join of a composite key whose values hold
`:`, or two spellings of one value in a loosely typed source. Writing both would silently keep one
of them, so every row of a collision is rejected, each naming the others, and none is written.

Inside a chunk the build finds them itself. Across chunks (and document types writing one
bucket) the loader finds them in the ledger's register of the run's documents, and the build is
told which of its keys collide elsewhere (`known`), so a chunk built again gives the same result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from migrate.document import BuildResult, Claim, Document, Reject

COLLISION_FIELD = "key"


def source_key_dict(names: Sequence[str], text: str) -> dict[str, str]:
    """A source-key text (JSON array) as the name -> value mapping reject records carry."""
    values = json.loads(text)
    return {
        name: "" if value is None else str(value)
        for name, value in zip(names, values, strict=False)
    }


def describe_row(names: Sequence[str], text: str, chunk_id: str | None = None) -> str:
    """A root row for a message: `A=1, B=x`, with its chunk when it is another chunk's."""
    pairs = ", ".join(f"{k}={v}" for k, v in source_key_dict(names, text).items())
    return f"{pairs} (chunk {chunk_id})" if chunk_id else pairs


def settle(
    doc_type: str,
    key_names: Sequence[str],
    result: BuildResult,
    known: Mapping[str, Sequence[str]] | None = None,
) -> BuildResult:
    """`result` with every document whose key another row also renders withdrawn and rejected.

    `known` maps keys that collide with rows outside this build to descriptions of those rows
    (`describe_row`). Withdrawn documents are listed in `collided`, so the ledger still registers
    their claims (a row that collides stays in the register, where the next build finds it).
    """
    counts: dict[str, int] = {}
    for document in result.documents:
        counts[document.key] = counts.get(document.key, 0) + 1
    clashing = {key for key, count in counts.items() if count > 1}
    if known:
        clashing.update(key for key in known if key in counts)
    if not clashing:
        return result
    inside: dict[str, list[tuple[int, str]]] = {}
    pairs = list(zip(result.documents, result.source_keys, strict=True))
    for position, (document, source_key) in enumerate(pairs):
        if document.key in clashing:
            inside.setdefault(document.key, []).append((position, source_key))
    documents: list[Document] = []
    source_keys: list[str] = []
    rejects = list(result.rejects)
    collided = list(result.collided)
    for position, (document, source_key) in enumerate(pairs):
        if document.key not in clashing:
            documents.append(document)
            source_keys.append(source_key)
            continue
        others = [
            describe_row(key_names, other)
            + (" (read alike: the source spells one value two ways)" if other == source_key else "")
            for at, other in inside[document.key]
            if at != position
        ]
        others += list((known or {}).get(document.key, ()))
        reason = (
            f"key collision: {len(others) + 1} rows render this document key; the others are "
            + "; ".join(others)
        )
        rejects.append(
            Reject(
                doc_type,
                source_key_dict(key_names, source_key),
                document.key,
                COLLISION_FIELD,
                reason,
                source_key,
            )
        )
        collided.append(Claim(document.key, source_key, document.checksum))
    return BuildResult(documents, rejects, source_keys, collided)


def claims(result: BuildResult) -> list[Claim]:
    """Every key the build rendered for a row with no other fault, withdrawn ones included."""
    made = [
        Claim(document.key, source_key, document.checksum)
        for document, source_key in zip(result.documents, result.source_keys, strict=True)
    ]
    return made + list(result.collided)
