"""`migrate check`'s warnings as a library: the predicted largest document (an upper bound on
the demo's real ones, and the documented arithmetic on a small schema), and where each warning
points."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrate.hazards import predict_largest, service_warnings
from migrate.project import Project

DDL = """
CREATE TABLE PARENTS (ID INTEGER PRIMARY KEY, NAME VARCHAR(10), CODE CHAR);
CREATE TABLE KIDS (KID_ID INTEGER PRIMARY KEY, PARENT_ID INTEGER, NOTE TEXT, BORN DATE);
"""
MAPPING = """service: fam
documents:
  parent:
    table: PARENTS
    bucket: parents
    fields:
      id: ID
      name: NAME
      kids:
        embed: KIDS
        on: {PARENT_ID: ID}
        fields:
          note: NOTE
"""


@pytest.fixture
def family(tmp_path: Path) -> Iterator[Project]:
    db = sqlite3.connect(tmp_path / "fam.db")
    db.executescript(DDL)
    db.executemany("INSERT INTO PARENTS VALUES (?, ?, ?)", [(1, "a", "x"), (2, "b", "y")])
    kids = [(k, 1, "n" * k, "2020-01-01") for k in range(1, 8)] + [(8, 2, None, None)]
    db.executemany("INSERT INTO KIDS VALUES (?, ?, ?, ?)", kids)
    db.commit()
    db.close()
    (tmp_path / "fam.yaml").write_text(MAPPING)
    (tmp_path / "migrate.toml").write_text(
        '[source]\nurl = "sqlite:///fam.db"\n[target]\nurl = "local:///target.db"\n'
        '[state]\nurl = "sqlite:///state.db"\n[run]\nmax_document_bytes = 300\n'
        '[services.fam]\nmapping = "fam.yaml"\n'
    )
    project = Project.load(tmp_path / "migrate.toml")
    yield project
    project.close()


def test_the_prediction_follows_the_documented_widths(family: Project) -> None:
    service = family.config.service("fam")
    (prediction,) = predict_largest(family, family.mapping(service), family.plan(service)).values()
    # {"id":INTEGER(20),"name":"VARCHAR(10)","kids":[7 x {"note":"<7 measured>"}]}
    kid = 2 + len("note") + 4 + (7 + 2)
    expected = 2 + (2 + 4 + 20) + (4 + 4 + 12) + (4 + 4 + 2 + 7 * (kid + 1))
    assert prediction.bytes == expected
    assert prediction.children == {"KIDS": 7}
    assert prediction.biggest_field == "kids"


def test_warnings_point_at_the_lines_to_change(family: Project) -> None:
    service = family.config.service("fam")
    warnings = service_warnings(family, family.mapping(service), family.plan(service))
    by_field = {w.field: w for w in warnings}
    # CODE is never read; BORN of the embedded table neither
    assert by_field["documents.parent.table"].line == 4
    assert "1 column of PARENTS no field reads: CODE" in by_field["documents.parent.table"].message
    kids = by_field["documents.parent.fields.kids.embed"]
    # KID_ID is read though no field names it: it orders the children
    assert kids.line == 10 and kids.message == "1 column of KIDS no field reads: BORN"
    # no index leads KIDS.PARENT_ID
    link = by_field["documents.parent.fields.kids"]
    assert link.line == 9
    assert link.hint == "CREATE INDEX IX_KIDS_PARENT_ID ON KIDS (PARENT_ID);"
    # 300 bytes allowed: the prediction is over half of it
    size = by_field["documents.parent"]
    assert size.line == 3 and "over half of [run] max_document_bytes (300)" in size.message
    assert "KIDS: up to 7 per parent" in size.message


def test_an_index_on_the_link_silences_its_warning(family: Project, tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "fam.db") as db:
        db.execute("CREATE INDEX IX_KIDS_PARENT ON KIDS (PARENT_ID, KID_ID)")
    service = family.config.service("fam")
    warnings = service_warnings(family, family.mapping(service), family.plan(service))
    assert "documents.parent.fields.kids" not in {w.field for w in warnings}


def test_the_prediction_is_never_below_the_demos_largest_documents(demo_project: Path) -> None:
    project = Project.load(demo_project / "migrate.toml")
    try:
        for service in project.config.select([]):
            plan = project.plan(service)
            predicted = predict_largest(project, project.mapping(service), plan)
            with project.source.snapshot() as snapshot:
                for doc in plan.doc_types:
                    largest = 0
                    for chunk in snapshot.plan_chunks(doc.extract, 500):
                        built = doc.build(snapshot.extract(doc.extract, chunk))
                        largest = max([largest, *(len(d.value) for d in built.documents)])
                    assert largest > 0
                    assert predicted[doc.name].bytes >= largest, (service.name, doc.name)
    finally:
        project.close()
