"""`migrate check`: the config and every mapping, validated against the live source schema."""

from __future__ import annotations

from dataclasses import dataclass

from migrate.errors import MappingError, Problem
from migrate.mapping import validate_mapping
from migrate.project import Project


@dataclass(frozen=True, slots=True)
class ServiceCheck:
    service: str
    mapping: str
    doc_types: list[str]


def check_project(project: Project) -> list[ServiceCheck]:
    """Validate every service's mapping; raise one MappingError listing every problem found."""
    schema = project.schema()
    problems: list[Problem] = []
    results = []
    owners: dict[tuple[str, str], str] = {}
    for service in project.config.select([]):
        try:
            mapping = project.mapping(service)
        except MappingError as exc:
            problems.extend(exc.problems)
            continue
        problems.extend(validate_mapping(mapping, schema))
        for doc in mapping.documents:
            identity = (doc.bucket_type, doc.bucket)
            owner = owners.setdefault(identity, service.name)
            if owner != service.name:
                where = doc.loc.at("bucket")
                problems.append(
                    Problem(
                        str(service.mapping),
                        where.line,
                        where.path,
                        f"bucket `{doc.bucket}` (type `{doc.bucket_type}`) is also written by "
                        f"service {owner}",
                        "give each service its own buckets: keys, the chunk index and "
                        "reconciliation are per bucket",
                    )
                )
        results.append(
            ServiceCheck(service.name, str(service.mapping), [d.name for d in mapping.documents])
        )
    if problems:
        raise MappingError(problems)
    return results
