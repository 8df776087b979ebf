"""`migrate run --format json`: what each service's run did, for scripts (schema in
docs/run-report.md; fields are only added, a breaking change bumps `schema_version`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from migrate.pipeline import ServiceReport

RUN_REPORT_SCHEMA_VERSION = 1


def json_report(reports: Sequence[ServiceReport]) -> dict[str, Any]:
    different = any(r.verification is not None and not r.verification.equal for r in reports)
    return {
        "schema_version": RUN_REPORT_SCHEMA_VERSION,
        "outcome": "different" if different else "equal",
        "services": [_service(r) for r in reports],
    }


def render_json(reports: Sequence[ServiceReport]) -> str:
    return json.dumps(json_report(reports), indent=2, ensure_ascii=False)


def _service(report: ServiceReport) -> dict[str, Any]:
    check = report.verification
    return {
        "service": report.service,
        "run_id": report.run_id,
        "status": report.status.value,
        "chunks": report.chunks,
        "documents": report.documents,
        "written": report.written,
        "unchanged": report.unchanged,
        "rejects": report.rejects,
        "rejects_file": str(report.rejects_file) if report.rejects_file else None,
        "duration_seconds": round(report.seconds, 3),
        "verification": None
        if check is None
        else {
            "verification_id": check.verification_id,
            "outcome": check.outcome,
            "against": check.against.value,
            "counts": check.counts(),
            "differences_file": str(check.differences_path) if check.differences_path else None,
        },
    }
