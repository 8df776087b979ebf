"""The end-to-end benchmark and its naive baseline run on a tiny demo (no timing asserted)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from benchmarks import end_to_end
from benchmarks.harness import Settings
from benchmarks.naive import ServiceRate, migrate_naively, mixed_rate
from migrate.demo import create_demo
from migrate.project import Project


def test_end_to_end_case_reports_both_goals_against_the_naive_script() -> None:
    figures = end_to_end.run(Settings(quick=True, repeats=1, documents=120))
    assert [f.name for f in figures] == [
        "migrate run root documents/s, all services",
        "migrate run vs naive script",
    ]
    for figure in figures:
        assert figure.baseline_name == end_to_end.BASELINE
        assert figure.value is not None and figure.value > 0
        assert figure.baseline is not None and figure.baseline > 0
    assert figures[0].goal is not None and figures[0].goal.text == ">= 20000"
    assert figures[1].goal is not None and figures[1].goal.text == ">= 10x"
    assert "120-patient demo" in figures[0].note and "commit every 1,000" in figures[0].note


def test_a_failing_migrate_is_reported_with_its_command(tmp_path: Path) -> None:
    with pytest.raises(end_to_end.BenchError, match="`migrate run` exited with"):
        end_to_end.run_migrate(end_to_end.migrate_command(), tmp_path, "run")


def test_naive_script_nests_children_and_respects_its_bounds(tmp_path: Path) -> None:
    create_demo(tmp_path / "demo", patients=60, seed=3)
    project = Project.load(tmp_path / "demo" / "migrate.toml")
    try:
        specs = [p.extract for p in project.plan(project.config.service("pds")).doc_types]
    finally:
        project.close()
    legacy = tmp_path / "demo" / "legacy.db"
    output = tmp_path / "naive.db"
    done = migrate_naively(f"sqlite:///{legacy}", specs, output, max_documents=25, max_seconds=60)
    assert done.service == "pds" and done.documents == 25 and done.seconds > 0

    with sqlite3.connect(legacy) as db:
        addresses = dict(
            db.execute("SELECT NHS_NUMBER, count(*) FROM PATIENT_ADDRESSES GROUP BY NHS_NUMBER")
        )
        sensitive = {
            r[0] for r in db.execute("SELECT NHS_NUMBER FROM PATIENTS WHERE SENSITIVE_FLAG = 'S'")
        }
    with sqlite3.connect(output) as out:
        rows = out.execute("SELECT doc_type, key, body FROM docs").fetchall()
    assert len(rows) == 25
    for doc_type, key, body in rows:
        document = json.loads(body)
        assert doc_type == "patient" and key == document["NHS_NUMBER"]
        assert key not in sensitive
        assert len(document["addresses"]) == addresses.get(key, 0)


def test_mixed_rate_weights_each_service_by_its_share_of_documents() -> None:
    rates = [ServiceRate("a", 100, 1.0), ServiceRate("b", 10, 1.0)]
    # 1,000 documents at 100/s and 100 at 10/s: 1,100 documents in 20 s.
    assert mixed_rate(rates, {"a": 1000, "b": 100}) == pytest.approx(55.0)
    assert mixed_rate([], {}) == 0.0
