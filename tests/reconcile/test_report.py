"""Reports: JUnit XML valid per junit-10.xsd, the JSON schema's fields, no values unless asked.

Neither xmlschema nor lxml is installed, so the XSD (flat style: top-level elements referenced in
sequences) is read with xml.etree and enforced by a small validator: allowed children in order
with their occurrence bounds, required and allowed attributes, text only in mixed/simple types.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migrate.reconcile.model import (
    Against,
    ChunkOutcome,
    Difference,
    DocTypeResult,
    Kind,
    Rejected,
    ServiceResult,
)
from migrate.reconcile.report import json_report, render_junit

XS = "{http://www.w3.org/2001/XMLSchema}"
XSD = Path(__file__).with_name("junit-10.xsd")


@dataclass
class Decl:
    children: list[tuple[str, int, int | None]]
    required: set[str]
    allowed: set[str]
    text: bool


def load_xsd() -> dict[str, Decl]:
    decls = {}
    for element in ET.parse(XSD).getroot().findall(f"{XS}element"):
        complex_type = element.find(f"{XS}complexType")
        if complex_type is None:
            decls[element.get("name", "")] = Decl([], set(), set(), True)
            continue
        children = []
        for ref in complex_type.iter(f"{XS}element"):
            high = ref.get("maxOccurs", "1")
            children.append(
                (
                    ref.get("ref", ""),
                    int(ref.get("minOccurs", "1")),
                    None if high == "unbounded" else int(high),
                )
            )
        attributes = complex_type.findall(f"{XS}attribute")
        decls[element.get("name", "")] = Decl(
            children,
            {a.get("name", "") for a in attributes if a.get("use") == "required"},
            {a.get("name", "") for a in attributes},
            complex_type.get("mixed") == "true",
        )
    return decls


def validate(element: ET.Element, decls: dict[str, Decl], path: str = "") -> None:
    where = f"{path}/{element.tag}"
    assert element.tag in decls, f"{where}: element not declared"
    decl = decls[element.tag]
    assert decl.required <= set(element.attrib), (
        f"{where}: missing {decl.required - set(element.attrib)}"
    )
    if decl.allowed or decl.children:
        assert set(element.attrib) <= decl.allowed, f"{where}: unknown attributes"
    if not decl.text:
        assert not (element.text or "").strip(), f"{where}: text not allowed"
    children = list(element)
    position = 0
    for name, low, high in decl.children:
        count = 0
        while position < len(children) and children[position].tag == name:
            count += 1
            position += 1
        assert count >= low and (high is None or count <= high), f"{where}: {name} x{count}"
    assert position == len(children), f"{where}: unexpected {children[position].tag}"
    for child in children:
        validate(child, decls, where)


def result(
    *,
    differences: tuple[Difference, ...] = (),
    rejected: tuple[Rejected, ...] = (),
    accepted: bool = False,
) -> ServiceResult:
    chunk = ChunkOutcome("patient:00000", 0, 3, 3, not differences, differences)
    equal = ChunkOutcome("patient:00001", 1, 5, 5, True, rejected=rejected)
    return ServiceResult(
        service="pds",
        run_id="r1",
        against=Against.SOURCE,
        sample=None,
        deep=False,
        snapshot="sqlite:at=x",
        started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        seconds=1.5,
        doc_types=[DocTypeResult("patient", "default", "patients", (chunk, equal))],
        rejects_accepted=accepted,
    )


REJECTED = (
    Rejected(
        "patient:00001",
        "9/1",
        {"SITE": "9", "NO": "1"},
        "key",
        "key collision: 2 rows render this document key; the others are SITE=9/1, NO=",
    ),
    Rejected("patient:00001", None, {"SITE": "7", "NO": "2"}, "key", "NULL in key column NO"),
)


@pytest.mark.parametrize("accepted", [False, True])
def test_rejected_rows_are_their_own_category_in_every_format(accepted: bool) -> None:
    service = result(rejected=REJECTED, accepted=accepted)
    assert service.equal is accepted
    report = json_report([service])
    assert report["outcome"] == ("equal" if accepted else "different")
    (entry,) = report["services"]
    assert entry["rejects_accepted"] is accepted and entry["counts"]["rejected"] == 2
    (doc,) = entry["document_types"]
    assert doc["outcome"] == "equal"  # the target holds what is expected; the rows are apart
    assert doc["differences"]["rejected"][1] == {
        "chunk_id": "patient:00001",
        "key": None,
        "source_key": {"SITE": "7", "NO": "2"},
        "field": "key",
        "reason": "NULL in key column NO",
    }
    root = ET.fromstring(render_junit([service]))
    validate(root, load_xsd())
    case = root.find("testsuite/testcase")
    assert case is not None
    failure, out = case.find("failure"), case.find("system-out")
    if accepted:
        assert failure is None and out is not None
        assert "rejected (accepted) SITE=7, NO=2 key None" in (out.text or "")
    else:
        assert failure is not None and out is None
        assert "2 rejected" in failure.get("message", "")
        assert "rejected SITE=9, NO=1 key 9/1 chunk patient:00001: key: key collision" in (
            failure.text or ""
        )


DIFFS = (
    Difference("k1", Kind.MISSING, "patient:00000"),
    Difference("k2", Kind.EXTRA, "patient:00000"),
    Difference("k3", Kind.CHANGED, "patient:00000", "checksum", '{"secret":"A"}', '{"secret":"B"}'),
)


@pytest.mark.parametrize("differences", [(), DIFFS])
def test_junit_validates_against_the_xsd(differences: tuple[Difference, ...]) -> None:
    root = ET.fromstring(render_junit([result(differences=differences)]))
    validate(root, load_xsd())
    case = root.find("testsuite/testcase")
    assert case is not None and case.get("name") == "patient"
    failure = case.find("failure")
    assert (failure is None) == (not differences)
    if failure is not None:
        assert {"missing k1", "extra k2", "changed k3"} <= {
            " ".join(line.split()[:2]) for line in (failure.text or "").splitlines()
        }
        assert "secret" not in ET.tostring(root, encoding="unicode")


def test_the_validator_rejects_a_broken_document() -> None:
    broken = ET.fromstring('<testsuites><testsuite name="x"><testcase/></testsuite></testsuites>')
    with pytest.raises(AssertionError):
        validate(broken, load_xsd())


def test_json_report_follows_the_documented_schema() -> None:
    report = json_report([result(differences=DIFFS)])
    assert report["schema_version"] == 1 and report["outcome"] == "different"
    (service,) = report["services"]
    assert {"service", "against", "sample", "snapshot", "duration_seconds", "outcome"} <= set(
        service
    )
    (doc,) = service["document_types"]
    assert doc["counts"] == {
        "expected": 8,
        "actual": 8,
        "equal": 6,
        "missing": 1,
        "extra": 1,
        "changed": 1,
        "rejected": 0,
        "chunks_compared": 2,
        "chunks_skipped_equal": 1,
        "chunks_different": 1,
    }
    assert doc["differences"]["missing"] == [{"key": "k1", "chunk_id": "patient:00000"}]
    assert "secret" not in json.dumps(report)
    shown = json_report([result(differences=DIFFS)], show_values=True)
    changed = shown["services"][0]["document_types"][0]["differences"]["changed"][0]
    assert changed["expected_value"] == '{"secret":"A"}'


def test_the_report_schema_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "reconcile-report.md").read_text()
    report = json_report([result(differences=DIFFS, rejected=REJECTED)])
    service = report["services"][0]
    names = set(report) | set(service) | set(service["document_types"][0]) | set(service["counts"])
    for name in names:
        assert f"`{name}`" in doc, name
