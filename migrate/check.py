"""`migrate check`: the config and every mapping, validated against the live source schema.

The runbook's gate: it refuses (exit 2, with file:line) everything `run` would refuse for a reason
in migrate.toml or a mapping (`preflight`), and warns (exit 0) about what will be slow, oversized
or surprising (`hazards`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from migrate.errors import MappingError, MigrateError, Problem
from migrate.hazards import key_template_warnings, service_warnings
from migrate.mapping import Mapping, validate_mapping
from migrate.preflight import capture_problems, config_problems, where_problems
from migrate.project import Project


@dataclass(frozen=True, slots=True)
class ServiceCheck:
    service: str
    mapping: str
    doc_types: list[str]
    warnings: int = 0


@dataclass(frozen=True, slots=True)
class CheckReport:
    services: list[ServiceCheck]
    warnings: list[Problem] = field(default_factory=list)


class CheckError(MappingError):
    """Problems `run` would stop on (exit 2), listed with the warnings found beside them."""

    def __init__(self, problems: Sequence[Problem], warnings: Sequence[Problem]) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings)
        count = len(self.problems)
        lines = [f"{count} problem{'s' if count != 1 else ''} found by migrate check:"]
        lines += [p.render() for p in self.problems]
        lines += [f"warning: {w.render()}" for w in self.warnings]
        MigrateError.__init__(self, "\n".join(lines))


def check_project(project: Project) -> CheckReport:
    """Validate the config and every service's mapping; raise one `CheckError` listing every
    problem found (and the warnings), else return the services checked and the warnings."""
    problems = config_problems(project.config)
    schema = project.schema()
    warnings: list[Problem] = []
    results = []
    mappings: list[tuple[str, Mapping]] = []
    owners: dict[tuple[str, str], str] = {}
    for service in project.config.select([]):
        try:
            mapping = project.mapping(service)
        except MappingError as exc:
            problems.extend(exc.problems)
            continue
        mapping_problems = validate_mapping(mapping, schema)
        for doc in mapping.documents:
            identity = (doc.bucket_type, doc.bucket)
            owner = owners.setdefault(identity, service.name)
            if owner != service.name:
                where = doc.loc.at("bucket")
                mapping_problems.append(
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
        found: list[Problem] = []
        if not mapping_problems:
            plan = project.plan(service)
            mapping_problems = where_problems(project, mapping, plan)
            mapping_problems += capture_problems(project, service)
            if not mapping_problems:
                found = service_warnings(project, mapping, plan)
                mappings.append((service.name, mapping))
        problems.extend(mapping_problems)
        warnings.extend(found)
        results.append(
            ServiceCheck(
                service.name,
                str(service.mapping),
                [d.name for d in mapping.documents],
                warnings=len(found),
            )
        )
    warnings.extend(key_template_warnings(mappings, schema))
    if problems:
        raise CheckError(problems, warnings)
    return CheckReport(results, warnings)
