"""`scaffold` as a library: what it guesses from foreign keys, how it names and quotes, and what
it refuses. On small SQLite schemas built for each case."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from migrate.errors import MigrateError, UsageError
from migrate.mapping import load_mapping, validate_mapping
from migrate.project import Project
from migrate.scaffold import scaffold_service

Make = Callable[[str], Project]

CLINIC = """
CREATE TABLE SITES (SITE_CODE VARCHAR(5) PRIMARY KEY, NAME VARCHAR(40));
CREATE TABLE ADMISSIONS (SITE VARCHAR(5) NOT NULL, ADMISSION_NO INTEGER NOT NULL,
    ADMITTED_ON DATE, WARD_ID INTEGER, "ON" CHAR(1), "FIRST NAME" VARCHAR(20),
    PRIMARY KEY (SITE, ADMISSION_NO),
    FOREIGN KEY (SITE) REFERENCES SITES (SITE_CODE));
CREATE TABLE ADMISSION_NOTES (NOTE_ID INTEGER PRIMARY KEY, SITE VARCHAR(5), ADMISSION_NO INTEGER,
    BODY TEXT, FOREIGN KEY (SITE, ADMISSION_NO) REFERENCES ADMISSIONS (SITE, ADMISSION_NO));
CREATE TABLE NOTE_TAGS (NOTE_ID INTEGER, TAG VARCHAR(10), PRIMARY KEY (NOTE_ID, TAG),
    FOREIGN KEY (NOTE_ID) REFERENCES ADMISSION_NOTES (NOTE_ID));
CREATE TABLE DISCHARGES (SITE VARCHAR(5), ADMISSION_NO INTEGER, LEFT_AT TIMESTAMP,
    PRIMARY KEY (SITE, ADMISSION_NO),
    FOREIGN KEY (SITE, ADMISSION_NO) REFERENCES ADMISSIONS (SITE, ADMISSION_NO));
CREATE TABLE A (ID INTEGER PRIMARY KEY, B_ID INTEGER REFERENCES B (ID));
CREATE TABLE B (ID INTEGER PRIMARY KEY, A_ID INTEGER REFERENCES A (ID));
CREATE TABLE LOOSE (X INTEGER);
"""


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    opened: list[Project] = []

    def build(ddl: str) -> Project:
        db = sqlite3.connect(tmp_path / "legacy.db")
        db.executescript(ddl)
        db.close()
        (tmp_path / "migrate.toml").write_text(
            '[source]\nurl = "sqlite:///legacy.db"\n[target]\nurl = "local:///target.db"\n'
            '[state]\nurl = "sqlite:///state.db"'  # no newline at the end: scaffold adds one
        )
        project = Project.load(tmp_path / "migrate.toml")
        opened.append(project)
        return project

    yield build
    for project in opened:
        project.close()


def test_children_at_any_depth_are_embeds_and_references_lookups(make: Make) -> None:
    project = make(CLINIC)
    result = scaffold_service(project, "pas", "admissions")

    assert result.mapping == project.config.base_dir / "mappings" / "pas.yaml"
    assert result.embeds == ["ADMISSION_NOTES", "NOTE_TAGS", "DISCHARGES"]
    assert result.lookups == ["SITES"]
    assert result.indexes == ["site_bin", "admitted_on_int"]
    # every scalar as the text written (YAML 1.1 would read the key `on` as true)
    data = yaml.load(result.mapping.read_text(), Loader=yaml.BaseLoader)
    doc = data["documents"]["admission"]
    assert doc["table"] == "ADMISSIONS" and doc["bucket"] == "admissions"
    assert doc["key"] == "{SITE}/{ADMISSION_NO}"
    fields = doc["fields"]
    assert fields["on"] == "ON" and fields["firstName"] == "FIRST NAME"  # quoted, read back
    notes = fields["notes"]
    assert notes["embed"] == "ADMISSION_NOTES"
    assert notes["on"] == {"SITE": "SITE", "ADMISSION_NO": "ADMISSION_NO"}
    assert notes["order_by"] == ["NOTE_ID"]
    assert set(notes["fields"]) == {"noteId", "body", "tags"}  # the link is not repeated
    assert notes["fields"]["tags"]["order_by"] == ["TAG"]
    discharges = fields["discharges"]
    assert discharges["single"] == "true" and "order_by" not in discharges
    assert fields["site2"] == {
        "lookup": "SITES",
        "on": {"SITE_CODE": "SITE"},
        "fields": {"siteCode": "SITE_CODE", "name": "NAME"},
    }
    assert doc["indexes"] == {
        "site_bin": "SITE",
        "admitted_on_int": {"column": "ADMITTED_ON", "as": "yyyymmdd"},
    }
    mapping = load_mapping(result.mapping)
    assert validate_mapping(mapping, project.schema()) == []
    assert project.config.path.read_text().endswith(
        '"sqlite:///state.db"\n\n[services.pas]\nmapping = "mappings/pas.yaml"\n'
    )


def test_every_guess_says_why(make: Make) -> None:
    project = make(CLINIC)
    text = scaffold_service(project, "pas", "ADMISSIONS").mapping.read_text()
    lines = text.splitlines()
    for word in ("embed:", "lookup:", "single:", "order_by:", "key:", "_bin:", "_int:"):
        for i, line in enumerate(lines):
            if word in line:
                # on the line itself, or on the line naming the field just above
                assert "#" in line or "#" in lines[i - 1], line


def test_a_cycle_of_foreign_keys_ends(make: Make) -> None:
    project = make(CLINIC)
    result = scaffold_service(project, "ring", "A")
    assert result.embeds == ["B"]
    assert result.lookups == ["B"]


def test_a_table_nothing_refers_to_gets_lookups_only(make: Make, tmp_path: Path) -> None:
    project = make(CLINIC)
    output = tmp_path / "elsewhere" / "tags.yaml"
    result = scaffold_service(project, "tags", "NOTE_TAGS", output=output)
    assert result.mapping == output and result.embeds == []
    data = yaml.load(output.read_text(), Loader=yaml.BaseLoader)
    assert data["documents"]["note_tag"]["fields"] == {
        "noteId": "NOTE_ID",
        "tag": "TAG",
        "note": {
            "lookup": "ADMISSION_NOTES",
            "on": {"NOTE_ID": "NOTE_ID"},
            "fields": {
                "noteId": "NOTE_ID",
                "site": "SITE",
                "admissionNo": "ADMISSION_NO",
                "body": "BODY",
            },
        },
    }
    assert 'mapping = "elsewhere/tags.yaml"' in project.config.path.read_text()


def test_refusals_write_nothing(make: Make, tmp_path: Path) -> None:
    project = make(CLINIC)
    config = project.config.path.read_text()
    with pytest.raises(UsageError, match="no table ADMISSION in the source") as missing:
        scaffold_service(project, "pas", "ADMISSION")
    assert "did you mean `ADMISSIONS`?" in str(missing.value)
    with pytest.raises(UsageError, match="has no primary key"):
        scaffold_service(project, "pas", "LOOSE")
    with pytest.raises(UsageError, match="is not allowed"):
        scaffold_service(project, "PAS", "ADMISSIONS")
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "pas.yaml").write_text("mine\n")
    with pytest.raises(UsageError, match="scaffold never overwrites a file"):
        scaffold_service(project, "pas", "ADMISSIONS")
    assert (tmp_path / "mappings" / "pas.yaml").read_text() == "mine\n"
    assert project.config.path.read_text() == config


def test_a_service_already_in_the_config_is_refused(make: Make, tmp_path: Path) -> None:
    project = make(CLINIC)
    scaffold_service(project, "pas", "ADMISSIONS")
    again = Project.load(project.config.path)
    try:
        with pytest.raises(UsageError, match="service pas is already in"):
            scaffold_service(again, "pas", "ADMISSIONS", output=tmp_path / "other.yaml")
    finally:
        again.close()
    assert not (tmp_path / "other.yaml").exists()


def test_a_mapping_that_cannot_be_written_says_where(make: Make, tmp_path: Path) -> None:
    project = make(CLINIC)
    (tmp_path / "blocker").write_text("")
    with pytest.raises(MigrateError, match="cannot write the mapping") as failed:
        scaffold_service(project, "pas", "ADMISSIONS", output=tmp_path / "blocker" / "pas.yaml")
    assert failed.value.exit_code == 3
    assert str(tmp_path / "blocker" / "pas.yaml") in str(failed.value)
    assert "[services.pas]" not in project.config.path.read_text()
