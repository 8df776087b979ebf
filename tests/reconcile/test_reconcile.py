"""End to end: a clean run reconciles equal; source edits are named exactly; --dry-run writes
nothing; repair makes the next reconcile equal. On the embedded target and on the Riak fake."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from riak_fake import RiakFake
from support import Invoke, WaitingWriter, share_then_block

from migrate.project import Project
from migrate.reconcile import in_sample

LOCAL_URL = 'url = "local:///.migrate/target.db"'


def use_riak(project: Path, fake: RiakFake) -> None:
    config = project / "migrate.toml"
    text = config.read_text()
    assert LOCAL_URL in text
    config.write_text(text.replace(LOCAL_URL, f'url = "riak://127.0.0.1:{fake.port}"\ntimeout = 5'))


def files_state(project: Path) -> dict[str, bytes]:
    """Every byte of the ledger, the embedded target and the staged files."""
    migrate_dir = project / ".migrate"
    state = {}
    for path in sorted(migrate_dir.rglob("*")):
        if path.is_file() and not path.name.endswith(("-wal", "-shm")):
            state[str(path.relative_to(project))] = path.read_bytes()
    return state


def edit_source(project: Path) -> dict[str, set[str]]:
    """Edit the legacy DB like users do; the affected pds keys by kind, computed from SQL alone."""
    visible = "COALESCE(SENSITIVE_FLAG, 'N') <> 'S'"
    with sqlite3.connect(project / "legacy.db") as db:
        nhs = [
            r[0]
            for r in db.execute(
                f"SELECT NHS_NUMBER FROM PATIENTS WHERE {visible} ORDER BY NHS_NUMBER"
            )
        ]
        roots, deleted = nhs[10:13], nhs[500:502]
        db.executemany(
            "UPDATE PATIENTS SET FAMILY_NAME = FAMILY_NAME || 'x' WHERE NHS_NUMBER = ?",
            [(k,) for k in roots],
        )
        address_owner = db.execute(
            f"SELECT a.NHS_NUMBER, a.ADDRESS_ID FROM PATIENT_ADDRESSES a JOIN PATIENTS p"
            f" USING (NHS_NUMBER) WHERE {visible} AND a.NHS_NUMBER NOT IN (?, ?, ?, ?, ?)"
            " ORDER BY a.ADDRESS_ID LIMIT 1",
            [*roots, *deleted],
        ).fetchone()
        db.execute(
            "UPDATE PATIENT_ADDRESSES SET LINE1 = 'Changed Lane' WHERE ADDRESS_ID = ?",
            (address_owner[1],),
        )
        code = db.execute(
            "SELECT GP_PRACTICE_CODE FROM PATIENTS p JOIN ORGANISATIONS o"
            f" ON o.ODS_CODE = p.GP_PRACTICE_CODE WHERE {visible}"
            " GROUP BY GP_PRACTICE_CODE ORDER BY COUNT(*), GP_PRACTICE_CODE LIMIT 1"
        ).fetchone()[0]
        db.execute(
            "UPDATE ORGANISATIONS SET NAME = NAME || ' (renamed)' WHERE ODS_CODE = ?", (code,)
        )
        lookup_users = {
            r[0]
            for r in db.execute(
                f"SELECT NHS_NUMBER FROM PATIENTS WHERE {visible} AND (GP_PRACTICE_CODE = ?"
                " OR NHS_NUMBER IN (SELECT NHS_NUMBER FROM PATIENT_PHARMACIES"
                " WHERE PHARMACY_ODS_CODE = ?))",
                (code, code),
            )
        }
        for table in (
            "PATIENT_ADDRESSES",
            "PATIENT_NAMES",
            "PATIENT_TELECOMS",
            "PATIENT_PHARMACIES",
        ):
            db.executemany(f"DELETE FROM {table} WHERE NHS_NUMBER = ?", [(k,) for k in deleted])
        db.executemany("DELETE FROM PATIENTS WHERE NHS_NUMBER = ?", [(k,) for k in deleted])
        db.execute(
            "INSERT INTO PATIENTS (NHS_NUMBER, GIVEN_NAME, FAMILY_NAME, DATE_OF_BIRTH, GENDER,"
            " GP_PRACTICE_CODE, SENSITIVE_FLAG, RECORD_UID, CREATED_AT, SERIAL_CHANGE)"
            " VALUES ('9999999999', 'New', 'Patient', '1990-01-02', 'F', NULL, 'N',"
            " X'00112233445566778899aabbccddeeff', '2020-01-01T00:00:00Z', 1)"
        )
    changed = set(roots) | {address_owner[0]} | (lookup_users - set(deleted))
    return {"missing": {"9999999999"}, "extra": set(deleted), "changed": changed}


def named(report: dict[str, object]) -> dict[str, set[str]]:
    (service,) = report["services"]  # type: ignore[misc]
    (doc,) = service["document_types"]
    kinds = ("missing", "extra", "changed")
    return {kind: {d["key"] for d in doc["differences"][kind]} for kind in kinds}


def scenario(project: Path, invoke: Invoke, target_state: object) -> None:
    assert invoke("run", "pds").exit_code == 0
    for fmt in ("table", "json", "junit"):
        result = invoke("reconcile", "pds", "--dry-run", "--format", fmt)
        assert result.exit_code == 0, result.output
    expected = edit_source(project)
    before, target_before = files_state(project), target_state()
    result = invoke("reconcile", "pds", "--dry-run", "--format", "json")
    assert result.exit_code == 1, result.output
    assert named(json.loads(result.stdout)) == expected
    assert files_state(project) == before
    assert target_state() == target_before
    assert invoke("reconcile", "pds").exit_code == 1
    repaired = invoke("repair", "pds")
    assert repaired.exit_code == 0, repaired.output
    final = invoke("reconcile", "pds", "--format", "json")
    assert final.exit_code == 0, final.output
    assert json.loads(final.stdout)["services"][0]["counts"]["expected"] > 1000


def test_reconcile_names_exactly_the_affected_keys_on_the_embedded_target(
    demo_project: Path, migrate_cli: Invoke
) -> None:
    target = demo_project / ".migrate" / "target.db"
    scenario(demo_project, migrate_cli, lambda: target.read_bytes())


def test_reconcile_names_exactly_the_affected_keys_on_riak(
    demo_project: Path, migrate_cli: Invoke, riak_fake: RiakFake
) -> None:
    use_riak(demo_project, riak_fake)

    def stored() -> object:
        keys = riak_fake.keys("default", "patients")
        writes = {m: riak_fake.requests[m] for m in ("PUT", "POST", "DELETE")}
        return writes, {k: riak_fake.siblings("default", "patients", k) for k in keys}

    scenario(demo_project, migrate_cli, stored)


def test_sample_is_deterministic_and_a_subset(demo_project: Path, migrate_cli: Invoke) -> None:
    assert migrate_cli("run", "pds").exit_code == 0
    expected = edit_source(demo_project)
    full = named(
        json.loads(migrate_cli("reconcile", "pds", "--dry-run", "--format", "json").stdout)
    )
    runs = [
        named(
            json.loads(
                migrate_cli(
                    "reconcile", "pds", "--dry-run", "--sample", "50%", "--format", "json"
                ).stdout
            )
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    for kind, keys in full.items():
        assert runs[0][kind] == {k for k in keys if in_sample(k, 50.0)}
        assert keys == expected[kind]
    assert 0 < sum(map(len, runs[0].values())) < sum(map(len, full.values()))


def test_deep_catches_a_value_tampered_without_its_index_term(
    demo_project: Path, migrate_cli: Invoke
) -> None:
    assert migrate_cli("run", "pds").exit_code == 0
    with sqlite3.connect(demo_project / ".migrate" / "target.db") as db:
        key = db.execute(
            "SELECT key FROM objects WHERE bucket = 'patients' ORDER BY key LIMIT 1"
        ).fetchone()[0]
        db.execute("UPDATE objects SET value = CAST('{}' AS BLOB) WHERE key = ?", (key,))
    assert migrate_cli("reconcile", "pds", "--dry-run").exit_code == 0  # the index still agrees
    result = migrate_cli("reconcile", "pds", "--dry-run", "--deep", "--format", "json")
    assert result.exit_code == 1
    assert named(json.loads(result.stdout))["changed"] == {key}


def test_run_reports_and_records_its_verification(demo_project: Path, migrate_cli: Invoke) -> None:
    result = migrate_cli("run", "pds")
    assert result.exit_code == 0, result.output
    assert "equal (" in result.output
    project = Project.load(demo_project / "migrate.toml")
    try:
        latest = project.ledger.latest_verification("pds")
        assert latest is not None and latest.against == "staging" and latest.outcome == "equal"
        chunks = project.ledger.chunk_verifications(latest.verification_id)
        assert len(chunks) == len(project.ledger.chunks(latest.run_id or ""))
        assert {a["action"] for a in project.ledger.audit_log("pds")} >= {"reconcile.equal"}
    finally:
        project.close()
    status = json.loads(migrate_cli("status", "--format", "json").stdout)
    pds = next(s for s in status if s["service"] == "pds")
    assert pds["last_verification"]["outcome"] == "equal"


def test_run_exits_1_when_its_verification_finds_a_difference(
    demo_project: Path, migrate_cli: Invoke
) -> None:
    assert migrate_cli("run", "pds").exit_code == 0
    with sqlite3.connect(demo_project / ".migrate" / "target.db") as db:
        key = db.execute(
            "SELECT key FROM objects WHERE bucket = 'patients' ORDER BY key LIMIT 1"
        ).fetchone()[0]
        db.execute("DELETE FROM objects WHERE key = ?", (key,))
        db.execute("DELETE FROM index_entries WHERE key = ?", (key,))
    result = migrate_cli("run", "pds")
    assert result.exit_code == 1
    assert "migrate repair pds" in result.output and "1 keys" in result.output
    assert migrate_cli("repair", "pds").exit_code == 0
    assert migrate_cli("reconcile", "pds", "--dry-run").exit_code == 0


@pytest.mark.parametrize("fmt", ["json", "junit", "table"])
def test_output_file_is_owner_only(demo_project: Path, migrate_cli: Invoke, fmt: str) -> None:
    assert migrate_cli("run", "ods").exit_code == 0
    out = demo_project / f"report.{fmt}"
    result = migrate_cli("reconcile", "ods", "--dry-run", "--format", fmt, "--output", str(out))
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o600
    assert "organisation" in out.read_text()


def test_bad_sample_is_a_usage_error(demo_project: Path, migrate_cli: Invoke) -> None:
    result = migrate_cli("reconcile", "ods", "--sample", "150%")
    assert result.exit_code == 2
    assert "--sample" in result.output


def test_workers_read_chunks_under_the_reconcile_snapshot(
    demo_project: Path, migrate_cli: Invoke
) -> None:
    """With a pool, each worker reads its chunks itself under the shared snapshot (SQLite in a
    rollback-journal mode); in WAL mode the reconcile's own connection reads them. Every way names
    the same keys."""
    assert migrate_cli("run", "pds", "--workers", "1").exit_code == 0
    expected = edit_source(demo_project)
    found = []
    for journal in ("DELETE", "WAL", "DELETE"):
        with sqlite3.connect(demo_project / "legacy.db") as db:
            db.execute(f"PRAGMA journal_mode={journal}")
        for workers in ("2", "1"):
            args = ("reconcile", "pds", "--dry-run", "--format", "json", "--workers", workers)
            result = migrate_cli(*args)
            assert result.exit_code == 1, result.output
            report = json.loads(result.stdout)
            assert report["services"][0]["counts"]["expected"] > 1000
            found.append(named(report))
    assert found == [expected] * 6


def test_chunks_workers_cannot_read_are_read_by_the_reconcile_snapshot(
    demo_project: Path, migrate_cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLite writer waiting to commit keeps the workers out: the reconcile's own connection
    reads those chunks, and the result is the same."""
    assert migrate_cli("run", "pds", "--workers", "1").exit_code == 0
    expected = edit_source(demo_project)
    writers: list[WaitingWriter] = []
    blocking = share_then_block(demo_project / "legacy.db", writers)
    monkeypatch.setattr("migrate.reconcile.service.share_view", blocking)
    args = ("reconcile", "pds", "--dry-run", "--format", "json", "--workers", "2")
    result = migrate_cli(*args)
    assert result.exit_code == 1, result.output
    assert named(json.loads(result.stdout)) == expected
    (writer,) = writers
    writer.finish()


def test_rejected_rows_are_counted_named_and_taken_again_after_a_limit_change(
    demo_project: Path, migrate_cli: Invoke
) -> None:
    """A bad value is one reject (never a stop); reconcile counts it as its own category and
    fails on it unless accepted; a raised size limit takes the rows it rejected again."""
    with sqlite3.connect(demo_project / "legacy.db") as db:
        (bad,) = db.execute(
            "SELECT NHS_NUMBER FROM PATIENTS WHERE COALESCE(SENSITIVE_FLAG, 'N') <> 'S'"
            " ORDER BY NHS_NUMBER LIMIT 1 OFFSET 40"
        ).fetchone()
        db.execute("UPDATE PATIENTS SET DATE_OF_BIRTH = '1990-02-31' WHERE NHS_NUMBER = ?", (bad,))
    config = demo_project / "migrate.toml"
    config.write_text(config.read_text().replace("max_rejects = 0", "max_rejects = 100000"))
    run = migrate_cli("run", "pds")
    assert run.exit_code == 0, run.output
    result = migrate_cli("reconcile", "pds", "--dry-run", "--format", "json")
    assert result.exit_code == 1
    (service,) = json.loads(result.stdout)["services"]
    assert service["counts"]["rejected"] == 1 and service["outcome"] == "different"
    (rejected,) = service["document_types"][0]["differences"]["rejected"]
    assert rejected["key"] == bad and rejected["source_key"] == {"NHS_NUMBER": bad}
    assert "DATE_OF_BIRTH (DATE)" in rejected["reason"] and "1990-02-31" not in result.stdout
    accepted = migrate_cli("reconcile", "pds", "--accept-rejects")
    assert accepted.exit_code == 0, accepted.output
    with sqlite3.connect(demo_project / ".migrate" / "state.db") as db:
        counts, outcome = db.execute(
            "SELECT counts, outcome FROM verifications ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    assert outcome == "equal" and json.loads(counts)["rejects_accepted"] == 1

    small = config.read_text().replace("[run]\n", "[run]\nmax_document_bytes = 700\n")
    config.write_text(small)
    shrunk = migrate_cli("run", "pds")
    assert shrunk.exit_code == 0, shrunk.output
    grown = json.loads(migrate_cli("reconcile", "pds", "--dry-run", "--format", "json").stdout)
    assert grown["services"][0]["counts"]["rejected"] > 1
    config.write_text(small.replace("max_document_bytes = 700\n", ""))
    again = migrate_cli("run", "pds")
    assert again.exit_code == 0, again.output
    back = json.loads(migrate_cli("reconcile", "pds", "--dry-run", "--format", "json").stdout)
    assert back["services"][0]["counts"]["rejected"] == 1
    assert back["services"][0]["counts"]["missing"] == 0
