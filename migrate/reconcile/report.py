"""Machine-readable reports: JSON (schema in docs/reconcile-report.md) and JUnit XML for CI.

Keys are named; document values appear only when asked (--show-values): they hold personal data.
"""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from migrate.reconcile.model import DocTypeResult, Kind, ServiceResult
from migrate.reconcile.sample import sample_label

REPORT_SCHEMA_VERSION = 1


def json_report(results: Sequence[ServiceResult], *, show_values: bool = False) -> dict[str, Any]:
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "outcome": "equal" if all(r.equal for r in results) else "different",
        "services": [_service_json(r, show_values) for r in results],
    }


def render_json(results: Sequence[ServiceResult], *, show_values: bool = False) -> str:
    return json.dumps(json_report(results, show_values=show_values), indent=2, ensure_ascii=False)


def _service_json(result: ServiceResult, show_values: bool) -> dict[str, Any]:
    return {
        "service": result.service,
        "run_id": result.run_id,
        "verification_id": result.verification_id,
        "against": result.against.value,
        "sample": sample_label(result.sample),
        "deep": result.deep,
        "snapshot": result.snapshot,
        "started_at": result.started_at.isoformat(),
        "duration_seconds": round(result.seconds, 3),
        "outcome": result.outcome,
        "rejects_accepted": result.rejects_accepted,
        "counts": result.counts(),
        "document_types": [_doc_json(d, show_values) for d in result.doc_types],
    }


def _doc_json(doc: DocTypeResult, show_values: bool) -> dict[str, Any]:
    differences: dict[str, list[dict[str, Any]]] = {k.value: [] for k in Kind}
    for d in doc.differences:
        item: dict[str, Any] = {"key": d.key, "chunk_id": d.chunk_id}
        if d.kind is Kind.CHANGED:
            item["reason"] = d.reason
            if show_values:
                item["expected_value"] = d.expected_value
                item["actual_value"] = d.actual_value
        differences[d.kind.value].append(item)
    differences["rejected"] = [
        {
            "chunk_id": r.chunk_id,
            "key": r.key,
            "source_key": r.source_key,
            "field": r.field,
            "reason": r.reason,
        }
        for r in doc.rejected
    ]
    return {
        "document_type": doc.doc_type,
        "bucket_type": doc.bucket_type,
        "bucket": doc.bucket,
        "outcome": "equal" if doc.equal else "different",
        "counts": doc.counts(),
        "differences": differences,
    }


def render_junit(results: Sequence[ServiceResult], *, show_values: bool = False) -> str:
    """One testsuite per service, one testcase per document type; a failure lists keys by kind."""
    root = ET.Element("testsuites", name="migrate reconcile")
    total = failures = 0
    for result in results:
        failed = sum(1 for d in result.doc_types if not _passes(result, d))
        total += len(result.doc_types)
        failures += failed
        suite = ET.SubElement(
            root,
            "testsuite",
            name=result.service,
            tests=str(len(result.doc_types)),
            failures=str(failed),
            errors="0",
            skipped="0",
            time=f"{result.seconds:.3f}",
            timestamp=result.started_at.strftime("%Y-%m-%dT%H:%M:%S"),
            hostname=socket.gethostname(),
        )
        properties = ET.SubElement(suite, "properties")
        for name, value in (
            ("against", result.against.value),
            ("sample", sample_label(result.sample) or "all"),
            ("snapshot", result.snapshot),
            ("run_id", result.run_id or ""),
            ("verification_id", result.verification_id or ""),
            *((f"count.{k}", str(v)) for k, v in result.counts().items()),
        ):
            ET.SubElement(properties, "property", name=name, value=value)
        for doc in result.doc_types:
            case = ET.SubElement(
                suite,
                "testcase",
                name=doc.doc_type,
                classname=f"reconcile.{result.service}",
                time=f"{result.seconds / max(1, len(result.doc_types)):.3f}",
            )
            if not _passes(result, doc):
                _failure(case, doc, show_values)
            elif doc.rejected:  # accepted: said, not failed
                out = ET.SubElement(case, "system-out")
                out.text = "\n".join(_rejected_lines(doc, accepted=True))
    root.set("tests", str(total))
    root.set("failures", str(failures))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _passes(result: ServiceResult, doc: DocTypeResult) -> bool:
    return doc.equal and (result.rejects_accepted or not doc.rejected)


def _rejected_lines(doc: DocTypeResult, *, accepted: bool = False) -> list[str]:
    word = "rejected (accepted)" if accepted else "rejected"
    lines = []
    for r in doc.rejected:
        row = ", ".join(f"{k}={v}" for k, v in r.source_key.items())
        lines.append(f"{word} {row} key {r.key} chunk {r.chunk_id}: {r.field}: {r.reason}")
    return lines


def _failure(case: ET.Element, doc: DocTypeResult, show_values: bool) -> None:
    counts = doc.counts()
    kinds = [k.value for k in Kind] + ["rejected"]
    message = ", ".join(f"{counts[k]} {k}" for k in kinds)
    failure = ET.SubElement(case, "failure", message=message, type="ReconcileMismatch")
    lines = []
    for kind in Kind:
        for d in doc.differences:
            if d.kind is kind:
                reason = f" ({d.reason})" if d.reason else ""
                lines.append(f"{kind.value} {d.key} chunk {d.chunk_id}{reason}")
                if show_values and kind is Kind.CHANGED:
                    lines.append(f"  expected: {d.expected_value}")
                    lines.append(f"  actual:   {d.actual_value}")
    lines += _rejected_lines(doc)
    failure.text = "\n".join(lines)
