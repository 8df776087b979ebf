"""Delta, document-keyed: every kind of change to any table a mapping reads reaches exactly the
documents that read it, and the target then equals a plain build of the source (the changes of
every kind under both capture modes)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from support import (
    VISIBLE,
    Invoke,
    assert_matches_reference,
    load_under_capture,
    use_capture,
    visible_patients,
)


@pytest.fixture
def loaded(demo_project: Path, migrate_cli: Invoke, request: pytest.FixtureRequest) -> Path:
    """The demo's pds under capture (by triggers, or as the test is parametrized), bulk-loaded."""
    return load_under_capture(demo_project, migrate_cli, getattr(request, "param", "triggers"))


_patients = visible_patients
BOTH = pytest.mark.parametrize("loaded", ["triggers", "watermark"], indirect=True)


def _delta(migrate_cli: Invoke) -> str:
    result = migrate_cli("delta", "pds")
    assert result.exit_code == 0, result.output
    return result.output


@BOTH
def test_every_kind_of_change_reaches_exactly_its_documents(
    loaded: Path, migrate_cli: Invoke
) -> None:
    with sqlite3.connect(loaded / "legacy.db") as db:
        a, b, c, d = _patients(db, 4, 100)
        db.execute("UPDATE PATIENTS SET FAMILY_NAME = 'Root Changed' WHERE NHS_NUMBER = ?", (a,))
        # a child moved from one parent to another: both documents change
        (address,) = db.execute(
            "SELECT ADDRESS_ID FROM PATIENT_ADDRESSES WHERE NHS_NUMBER = ? LIMIT 1", (b,)
        ).fetchone() or (None,)
        if address is None:
            db.execute(
                "INSERT INTO PATIENT_ADDRESSES (ADDRESS_ID, NHS_NUMBER, ADDRESS_USE, LINE1,"
                " POSTCODE, FROM_DATE) VALUES (990000000001, ?, 'H', 'x', 'AB1 2CD', '2001-01-01')",
                (b,),
            )
            address = 990000000001
        db.execute(
            "UPDATE PATIENT_ADDRESSES SET NHS_NUMBER = ?, POSTCODE = 'ZZ9 9ZZ'"
            " WHERE ADDRESS_ID = ?",
            (c, address),
        )  # an indexed child value changed too (postcode_bin)
        # a lookup renamed: every patient whose GP it is
        (gp,) = db.execute(
            f"SELECT GP_PRACTICE_CODE FROM PATIENTS WHERE {VISIBLE} AND GP_PRACTICE_CODE IN "
            "(SELECT ODS_CODE FROM ORGANISATIONS) GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        db.execute("UPDATE ORGANISATIONS SET NAME = 'Renamed Surgery' WHERE ODS_CODE = ?", (gp,))
        # a root deleted with its children, and a new one
        for table in (
            "PATIENT_ADDRESSES",
            "PATIENT_NAMES",
            "PATIENT_TELECOMS",
            "PATIENT_PHARMACIES",
        ):
            db.execute(f"DELETE FROM {table} WHERE NHS_NUMBER = ?", (d,))
        db.execute("DELETE FROM PATIENTS WHERE NHS_NUMBER = ?", (d,))
        db.execute(
            "INSERT INTO PATIENTS (NHS_NUMBER, GIVEN_NAME, FAMILY_NAME, DATE_OF_BIRTH, GENDER,"
            " GP_PRACTICE_CODE, SENSITIVE_FLAG, RECORD_UID, CREATED_AT, SERIAL_CHANGE) VALUES"
            " ('0000000001', 'New', 'Patient', '1990-01-02', 'F', ?, 'N',"
            " X'00112233445566778899aabbccddeeff', '2020-01-01T00:00:00Z', 1)",
            (gp,),
        )
        # a root now left out by the mapping's `where`: its document goes
        (hidden,) = _patients(db, 1, 300)
        db.execute("UPDATE PATIENTS SET SENSITIVE_FLAG = 'S' WHERE NHS_NUMBER = ?", (hidden,))
    output = _delta(migrate_cli)
    assert "documents rebuilt" in output
    assert_matches_reference(migrate_cli, loaded, "pds")
    reconciled = migrate_cli("reconcile", "pds", "--dry-run")
    assert reconciled.exit_code == 0, reconciled.output


@BOTH
def test_a_root_deleted_and_inserted_again_between_deltas(
    loaded: Path, migrate_cli: Invoke
) -> None:
    with sqlite3.connect(loaded / "legacy.db") as db:
        (key,) = _patients(db, 1, 50)
        row = db.execute("SELECT * FROM PATIENTS WHERE NHS_NUMBER = ?", (key,)).fetchone()
        children = db.execute(
            "SELECT * FROM PATIENT_TELECOMS WHERE NHS_NUMBER = ?", (key,)
        ).fetchall()
        for table in (
            "PATIENT_ADDRESSES",
            "PATIENT_NAMES",
            "PATIENT_TELECOMS",
            "PATIENT_PHARMACIES",
        ):
            db.execute(f"DELETE FROM {table} WHERE NHS_NUMBER = ?", (key,))
        db.execute("DELETE FROM PATIENTS WHERE NHS_NUMBER = ?", (key,))
    _delta(migrate_cli)
    assert_matches_reference(migrate_cli, loaded, "pds")
    with sqlite3.connect(loaded / "legacy.db") as db:
        db.execute(f"INSERT INTO PATIENTS VALUES ({', '.join('?' * len(row))})", row)
        db.execute("UPDATE PATIENTS SET GIVEN_NAME = 'Back' WHERE NHS_NUMBER = ?", (key,))
        for child in children:
            db.execute(
                f"INSERT INTO PATIENT_TELECOMS VALUES ({', '.join('?' * len(child))})", child
            )
    _delta(migrate_cli)
    assert_matches_reference(migrate_cli, loaded, "pds")


def test_nothing_to_do_writes_nothing(loaded: Path, migrate_cli: Invoke) -> None:
    result = migrate_cli("delta", "pds")
    assert result.exit_code == 0 and "nothing to apply" in result.output
    with sqlite3.connect(loaded / ".migrate" / "state.db") as db:
        assert db.execute("SELECT count(*) FROM deltas").fetchone() == (0,)


def test_a_delta_is_refused_without_capture_or_a_run(
    demo_project: Path, migrate_cli: Invoke
) -> None:
    no_capture = migrate_cli("delta", "pds")
    assert no_capture.exit_code == 2 and "capture" in no_capture.output
    use_capture(demo_project)
    not_installed = migrate_cli("run", "pds")
    assert not_installed.exit_code == 2
    assert "migrate capture install pds" in not_installed.output
    assert migrate_cli("capture", "install", "pds").exit_code == 0
    no_run = migrate_cli("delta", "pds")
    assert no_run.exit_code == 1 and "migrate run pds" in no_run.output


def test_capture_uninstall_removes_every_object(loaded: Path, migrate_cli: Invoke) -> None:
    def objects() -> list[str]:
        with sqlite3.connect(loaded / "legacy.db") as db:
            rows = db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'MIGRATE%'")
            return sorted(r[0] for r in rows)

    assert len(objects()) == 1 + 3 * 6  # the log, and three triggers per table read
    result = migrate_cli("capture", "uninstall", "pds")
    assert result.exit_code == 0, result.output
    assert objects() == []
    status = migrate_cli("capture", "status", "pds", "--format", "json")
    assert '"installed": false' in status.stdout


def _small_project(tmp_path: Path, mapping: str, ddl: str, rows: list[tuple[object, ...]]) -> Path:
    project = tmp_path / "small"
    (project / "mappings").mkdir(parents=True)
    with sqlite3.connect(project / "legacy.db") as db:
        db.executescript(ddl)
        db.executemany(f"INSERT INTO T VALUES ({', '.join('?' * len(rows[0]))})", rows)
    (project / "mappings" / "t.yaml").write_text(mapping)
    (project / "migrate.toml").write_text(
        '[source]\nurl = "sqlite:///legacy.db"\n'
        '[target]\nurl = "local:///.migrate/target.db"\n'
        '[state]\nurl = "sqlite:///.migrate/state.db"\n'
        "[run]\nchunk_size = 2\nmax_rejects = 10\nworkers = 1\n"
        '[services.t]\nmapping = "mappings/t.yaml"\ncapture = "triggers"\n'
    )
    return project


def _cli(project: Path, *args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from migrate.cli.main import cli

    result = CliRunner().invoke(cli, ["--config", str(project / "migrate.toml"), *args])
    return result.exit_code, result.output


def _keys(project: Path) -> list[str]:
    import json

    code, output = _cli(project, "dump", "t")
    assert code == 0, output
    return sorted(json.loads(line)["key"] for line in output.splitlines() if line.startswith("{"))


def test_a_root_whose_key_changes_loses_its_old_document(tmp_path: Path) -> None:
    project = _small_project(
        tmp_path,
        'service: t\ndocuments:\n  d:\n    table: T\n    bucket: t\n    key: "{CODE}"\n'
        "    fields: {name: NAME}\n",
        "CREATE TABLE T (ID INTEGER PRIMARY KEY, CODE VARCHAR2(9) NOT NULL, NAME TEXT);"
        "CREATE UNIQUE INDEX T_CODE ON T (CODE);",
        [(1, "a", "one"), (2, "b", "two"), (3, "c", "three")],
    )
    assert _cli(project, "capture", "install", "t")[0] == 0
    assert _cli(project, "run")[0] == 0
    with sqlite3.connect(project / "legacy.db") as db:
        db.execute("UPDATE T SET CODE = 'z' WHERE ID = 2")
    code, output = _cli(project, "delta", "t")
    assert code == 0, output
    assert _keys(project) == ["a", "c", "z"]
    assert _cli(project, "reconcile", "--dry-run")[0] == 0


def test_a_collision_made_by_a_delta_and_undone_by_the_next(tmp_path: Path) -> None:
    project = _small_project(
        tmp_path,
        "service: t\ndocuments:\n  d:\n    table: T\n    bucket: t\n"
        '    key: "{SITE}/{CODE}"\n    fields: {name: NAME}\n',
        "CREATE TABLE T (SITE VARCHAR2(9) NOT NULL, CODE VARCHAR2(9) NOT NULL, NAME TEXT,"
        " PRIMARY KEY (SITE, CODE));",
        [("a", "x", "one"), ("b", "y", "two"), ("c", "z", "three"), ("d", "w", "four")],
    )
    assert _cli(project, "capture", "install", "t")[0] == 0
    assert _cli(project, "run")[0] == 0
    with sqlite3.connect(project / "legacy.db") as db:  # a/x and a/x (as a + x... made equal)
        db.execute("UPDATE T SET SITE = 'a/x', CODE = '' WHERE SITE = 'b'")  # renders a/x/
        db.execute("UPDATE T SET SITE = 'a', CODE = 'x/' WHERE SITE = 'c'")  # renders a/x/
    code, output = _cli(project, "delta", "t")
    assert code == 0, output
    assert _keys(project) == ["a/x", "d/w"]  # both rows of a/x/ rejected, neither written
    code, output = _cli(project, "reconcile", "--dry-run", "--format", "json")
    assert code == 1 and '"rejected": 2' in output
    with sqlite3.connect(project / "legacy.db") as db:
        db.execute("UPDATE T SET CODE = 'q/' WHERE SITE = 'a' AND CODE = 'x/'")
    code, output = _cli(project, "delta", "t")
    assert code == 0, output
    assert _keys(project) == ["a/q/", "a/x", "a/x/", "d/w"]  # the other row is back
    code, output = _cli(project, "reconcile", "--dry-run")
    assert code == 0, output
