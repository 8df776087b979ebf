"""`preview` as a library: the document `run` would build, found by its key (however its
template's separators fall) or sampled deterministically, with its rejects; nothing written."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrate.errors import UsageError
from migrate.mapping.keys import parse_template
from migrate.preview import indent_json, json_line, preview_key, preview_sample, splits
from migrate.project import Project

DDL = """
CREATE TABLE WARDS (SITE VARCHAR(10) NOT NULL, CODE VARCHAR(10) NOT NULL, OPENED DATE NOT NULL,
    KIND CHAR(1), PRIMARY KEY (SITE, CODE), UNIQUE (OPENED));
CREATE TABLE BEDS (BED_ID INTEGER PRIMARY KEY, SITE VARCHAR(10), CODE VARCHAR(10),
    PRICE NUMBER(6,2));
"""
MAPPING = """service: wards
documents:
  ward:
    table: WARDS
    bucket: wards
    key: "{SITE}/{CODE}"
    where: "SITE <> 'hidden'"
    fields:
      site: SITE
      kind: {column: KIND, values: {"M": medical, "S": surgical}}
      beds:
        embed: BEDS
        on: {SITE: SITE, CODE: CODE}
        fields: {id: BED_ID, price: PRICE}
    indexes:
      opened_int: {column: OPENED, as: yyyymmdd}
  by_day:
    table: WARDS
    bucket: wards-by-day
    key: "{OPENED}"
    fields: {site: SITE}
  by_kind:
    table: WARDS
    bucket: wards-by-kind
    key: "{KIND}@{OPENED}"
    fields: {site: SITE}
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    db = sqlite3.connect(tmp_path / "legacy.db")
    db.executescript(DDL)
    wards = [
        ("a", "b/c", "2020-01-01", "M"),
        ("a/b", "d", "2020-01-02", "S"),
        ("x", "1", "2020-01-03", "Q"),  # a code with no translation: rejected
        ("hidden", "h", "2020-01-04", "M"),
    ] + [(f"s{n:02d}", "w", f"2021-02-{n:02d}", "M") for n in range(1, 21)]
    db.executemany("INSERT INTO WARDS VALUES (?, ?, ?, ?)", wards)
    db.executemany(
        "INSERT INTO BEDS VALUES (?, ?, ?, ?)",
        [(1, "a", "b/c", 12.5), (2, "a", "b/c", 3), (3, "a/b", "d", None)],
    )
    db.commit()
    db.close()
    (tmp_path / "wards.yaml").write_text(MAPPING)
    (tmp_path / "migrate.toml").write_text(
        '[source]\nurl = "sqlite:///legacy.db"\n[target]\nurl = "local:///.migrate/target.db"\n'
        '[state]\nurl = "sqlite:///.migrate/state.db"\n[run]\nchunk_size = 5\n'
        'work_dir = ".migrate/work"\n[services.wards]\nmapping = "wards.yaml"\n'
    )
    opened = Project.load(tmp_path / "migrate.toml")
    yield opened
    opened.close()
    assert not (tmp_path / ".migrate").exists(), "preview wrote something"


def test_splits_read_a_key_every_way_its_template_allows() -> None:
    two = parse_template("{SITE}/{CODE}")
    assert splits(two, "a/b/c") == [{"site": "a", "code": "b/c"}, {"site": "a/b", "code": "c"}]
    assert splits(two, "abc") == []
    framed = parse_template("w-{A}:{B}!")
    assert splits(framed, "w-1:2!") == [{"a": "1", "b": "2"}]
    assert splits(framed, "x-1:2!") == [] and splits(framed, "w-1:2") == []
    twice = parse_template("{A}-{A}")
    assert splits(twice, "1-1") == [{"a": "1"}] and splits(twice, "1-2") == []


def test_a_key_whose_separator_falls_inside_a_part_is_found(project: Project) -> None:
    (one,) = preview_key(project, "wards", "a/b/c", doc_type="ward")
    assert one.document is not None and one.rejects == ()
    assert json.loads(one.document.value) == {
        "site": "a",
        "kind": "medical",
        "beds": [{"id": 1, "price": 12.5}, {"id": 2, "price": 3}],
    }
    assert b'"price":12.50' in one.document.value  # NUMBER(6,2): exactly two decimals
    assert one.document.indexes == (("opened_int", (20200101,)),)
    assert one.size == len(one.document.value)
    (other,) = preview_key(project, "wards", "a/b/c")  # every document type is searched
    assert other == one
    (second,) = preview_key(project, "wards", "a/b/d")  # SITE `a/b`, CODE `d`
    assert second.document is not None
    assert json.loads(second.document.value)["beds"] == [{"id": 3}]


def test_a_template_of_dates_alone_is_searched_chunk_by_chunk(project: Project) -> None:
    (found,) = preview_key(project, "wards", "2021-02-07")
    assert found.doc_type == "by_day" and found.document is not None
    assert json.loads(found.document.value) == {"site": "s07"}


def test_a_part_that_matches_too_many_rows_is_searched_chunk_by_chunk(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import migrate.preview

    monkeypatch.setattr(migrate.preview, "CANDIDATES", 3)  # 21 wards of kind M
    (found,) = preview_key(project, "wards", "M@2021-02-15", doc_type="by_kind")
    assert found.document is not None
    assert json.loads(found.document.value) == {"site": "s15"}


def test_a_rejected_row_shows_its_rejects(project: Project) -> None:
    (rejected,) = preview_key(project, "wards", "x/1")
    assert rejected.document is None and rejected.size is None
    (reject,) = rejected.rejects
    assert reject.field == "documents.ward.fields.kind" or "kind" in reject.field
    assert reject.source_key == {"SITE": "x", "CODE": "1"}
    line = json.loads(json_line(rejected))
    assert line["value"] is None and line["bytes"] is None
    assert line["rejects"][0]["source_key"] == {"SITE": "x", "CODE": "1"}


def test_keys_that_render_no_document_are_a_usage_error(project: Project) -> None:
    for key in ("hidden/h", "a/zzz", "no-separator"):  # `where` leaves the first out
        with pytest.raises(UsageError, match="has no document with key"):
            preview_key(project, "wards", key, doc_type="ward")
    with pytest.raises(UsageError, match="no document type 'wardz'"):
        preview_key(project, "wards", "a/b/c", doc_type="wardz")


def test_a_sample_is_spread_deterministic_and_sized(project: Project) -> None:
    first = preview_sample(project, "wards", 3, doc_type="ward")
    assert preview_sample(project, "wards", 3, doc_type="ward") == first
    assert len(first) == 3
    keys = [p.key for p in first]
    assert len(set(keys)) == 3
    # 23 rows in chunks of 5: three chunks spread along the key, one document from each
    assert keys[0] is not None and keys[0] < "s"
    assert all(k is not None and k.startswith("s") for k in keys[1:])
    both = preview_sample(project, "wards", 2)
    assert [p.doc_type for p in both] == ["ward", "ward", "by_day", "by_day", "by_kind", "by_kind"]
    assert len(preview_sample(project, "wards", 500, doc_type="by_day")) == 24


def test_indent_json_keeps_every_token_as_written() -> None:
    text = b'{"a":[],"b":{},"c":[1.50,{"d":"x,\\"y:"}],"e":null}'
    pretty = indent_json(text)
    assert "1.50" in pretty and '"x,\\"y:"' in pretty
    assert json.loads(pretty) == json.loads(text)
    assert pretty.splitlines()[0] == "{" and '  "a": [],' in pretty
