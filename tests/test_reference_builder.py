"""The reference builder against documents written out by hand from the mapping rules."""

from __future__ import annotations

import sqlite3
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_builder import ReferenceBuildError, build_reference, resolve_type

PDS_DDL = """
CREATE TABLE ORGANISATIONS (
    ODS_CODE VARCHAR2(10) PRIMARY KEY, NAME VARCHAR2(100), REGION VARCHAR2(10));
CREATE TABLE PATIENTS (
    NHS_NUMBER VARCHAR2(10) PRIMARY KEY, GIVEN_NAME NVARCHAR2(40), FAMILY_NAME VARCHAR2(40),
    DATE_OF_BIRTH DATE, GENDER CHAR(1), COUNTRY CHAR(2), GP_PRACTICE_CODE VARCHAR2(10),
    BALANCE NUMBER(10,2), WEIGHT BINARY_DOUBLE, SCORE NUMBER,
    UPDATED_AT TIMESTAMP WITH TIME ZONE, CREATED_AT TIMESTAMP(6), TOKEN RAW(4),
    SENSITIVE_FLAG CHAR(1));
CREATE TABLE PATIENT_ADDRESSES (
    ADDRESS_ID NUMBER(10) PRIMARY KEY, NHS_NUMBER VARCHAR2(10), ADDRESS_USE VARCHAR2(10),
    LINE1 VARCHAR2(40), LINE2 VARCHAR2(40), POSTCODE VARCHAR2(8), FROM_DATE DATE, TO_DATE DATE);
CREATE TABLE EPISODES (
    NHS_NUMBER VARCHAR2(10), EPISODE_NO NUMBER(5), OPENED DATE,
    PRIMARY KEY (NHS_NUMBER, EPISODE_NO));
CREATE TABLE EPISODE_ITEMS (
    NHS_NUMBER VARCHAR2(10), EPISODE_NO NUMBER(5), ITEM_NO NUMBER(5), DRUG VARCHAR2(40),
    PRIMARY KEY (NHS_NUMBER, EPISODE_NO, ITEM_NO));
"""

PDS_ROWS: dict[str, list[tuple[Any, ...]]] = {
    "ORGANISATIONS": [("A1", "Leeds Practice", "Y62")],
    "PATIENTS": [
        # physical order differs from key order on purpose
        (
            "9000000003",
            "Bob",
            None,
            "1990-12-31 00:00:00",
            "M",
            "SE",
            "A1",
            1,
            1.5,
            1,
            None,
            None,
            None,
            "N",
        ),
        (
            "9000000001",
            "Zoë",
            "Smith",
            "1980-02-29",
            "F",
            "NO",
            "A1",
            12.5,
            70.25,
            2.5,
            "2020-01-31T13:45:00+05:30",
            "2020-01-31 00:00:00",
            b"\x00\xff\x10\x20",
            "N",
        ),
        (
            "9000000002",
            None,
            None,
            None,
            "X",
            "GB",
            "ZZ",
            7,
            3,
            3.0,
            "2020-03-01T01:00:00+02:00",
            "2020-01-31T13:45:00.123456",
            None,
            "N",
        ),
        (
            "9000000004",
            "Sam",
            "Hidden",
            None,
            "M",
            "GB",
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            "S",
        ),
    ],
    "PATIENT_ADDRESSES": [
        (3, "9000000001", "old", "c", None, "LS1 4AP", None, None),
        (10, "9000000001", "work", "b1", None, "LS1 1AA", "2020-01-01", None),
        (4, "9000000001", "temp", "d", None, None, "2019-06-30 10:30:00", None),
        (9, "9000000001", "home", "a1", "a2", "LS1 1AA", "2020-01-01", "2021-05-05"),
        (5, "9000000004", "hidden", "h", None, "ZZ9 9ZZ", None, None),
    ],
    "EPISODES": [
        ("9000000001", 1, "2021-01-01"),
        ("9000000001", 2, "2020-01-01"),
        ("9000000002", 1, "2022-02-02"),
    ],
    "EPISODE_ITEMS": [
        ("9000000001", 2, 2, "Aspirin"),
        ("9000000001", 2, 1, "Ibuprofen"),
        ("9000000001", 1, 1, "Aspirin"),
        ("9000000001", 3, 1, "Orphan"),
        ("9000000002", 1, 1, "Codeine"),
    ],
}

PDS_MAPPING = """
service: pds
documents:
  patient:
    table: PATIENTS
    bucket: patients
    key: "pds/{{v1}}/{NHS_NUMBER}"
    where: "SENSITIVE_FLAG <> 'S'"
    fields:
      nhsNumber: NHS_NUMBER
      name: {given: GIVEN_NAME, family: FAMILY_NAME}
      birthDate: DATE_OF_BIRTH
      gender: {column: GENDER, values: {M: male, F: female, U: unknown}, default: unknown}
      country: {column: COUNTRY, values: {NO: Norway, GB: United Kingdom}}
      active: {literal: true}
      balance: BALANCE
      weight: WEIGHT
      score: SCORE
      updated: UPDATED_AT
      created: CREATED_AT
      token: TOKEN
      gp:
        lookup: ORGANISATIONS
        on: {ODS_CODE: GP_PRACTICE_CODE}
        fields: {code: ODS_CODE, name: NAME}
      gpRegion: {lookup: organisations, on: {ods_code: gp_practice_code}, field: region}
      addresses:
        embed: PATIENT_ADDRESSES
        on: {NHS_NUMBER: NHS_NUMBER}
        order_by: [FROM_DATE]
        fields:
          use: ADDRESS_USE
          lines: [LINE1, LINE2]
          postcode: POSTCODE
          period: {from: FROM_DATE, to: TO_DATE}
      episodes:
        embed: EPISODES
        on: {NHS_NUMBER: NHS_NUMBER}
        order_by: [OPENED]
        fields:
          no: EPISODE_NO
          opened: OPENED
          items:
            embed: EPISODE_ITEMS
            on: {NHS_NUMBER: NHS_NUMBER, EPISODE_NO: EPISODE_NO}
            order_by: [ITEM_NO]
            fields: {drug: DRUG}
    indexes:
      gp_bin: GP_PRACTICE_CODE
      birth_int: {column: DATE_OF_BIRTH, as: yyyymmdd}
      postcode_bin: addresses.postcode
      drug_bin: episodes.items.drug
      episode_int: episodes.no
      balance_bin: balance
      country_bin: country
      active_bin: active
"""

# Written by hand from the rules: keys sorted, 12.5 in NUMBER(10,2) is 12.50, +05:30 to UTC,
# addresses by FROM_DATE with NULL last and the tie broken by ADDRESS_ID numerically (9 < 10).
P1_CANONICAL = (
    '{"active":true,'
    '"addresses":['
    '{"lines":["d"],"period":{"from":"2019-06-30T10:30:00"},"use":"temp"},'
    '{"lines":["a1","a2"],"period":{"from":"2020-01-01","to":"2021-05-05"},'
    '"postcode":"LS1 1AA","use":"home"},'
    '{"lines":["b1"],"period":{"from":"2020-01-01"},"postcode":"LS1 1AA","use":"work"},'
    '{"lines":["c"],"postcode":"LS1 4AP","use":"old"}],'
    '"balance":12.50,"birthDate":"1980-02-29","country":"Norway",'
    '"created":"2020-01-31T00:00:00",'
    '"episodes":['
    '{"items":[{"drug":"Ibuprofen"},{"drug":"Aspirin"}],"no":2,"opened":"2020-01-01"},'
    '{"items":[{"drug":"Aspirin"}],"no":1,"opened":"2021-01-01"}],'
    '"gender":"female","gp":{"code":"A1","name":"Leeds Practice"},"gpRegion":"Y62",'
    '"name":{"family":"Smith","given":"Zoë"},"nhsNumber":"9000000001","score":2.5,'
    '"token":"AP8QIA==","updated":"2020-01-31T08:15:00Z","weight":70.25}'
)

P2_CANONICAL = (
    '{"active":true,"addresses":[],"balance":7.00,"country":"United Kingdom",'
    '"created":"2020-01-31T13:45:00.123456",'
    '"episodes":[{"items":[{"drug":"Codeine"}],"no":1,"opened":"2022-02-02"}],'
    '"gender":"unknown","nhsNumber":"9000000002","score":3,'
    '"updated":"2020-02-29T23:00:00Z","weight":3.0}'
)


def make_db(path: Path, ddl: str, rows: dict[str, list[tuple[Any, ...]]]) -> Path:
    with sqlite3.connect(path) as conn:
        conn.executescript(ddl)
        for table, values in rows.items():
            marks = ",".join("?" * len(values[0]))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
    conn.close()
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def pds_db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "pds.db", PDS_DDL, PDS_ROWS)


def test_patients_match_hand_written_documents(pds_db: Path, tmp_path: Path) -> None:
    docs, rejects = build_reference(pds_db, write(tmp_path / "pds.yaml", PDS_MAPPING))

    assert [d["key"] for d in docs] == ["pds/{v1}/9000000001", "pds/{v1}/9000000002"]
    p1, p2 = docs
    assert p1["canonical"] == P1_CANONICAL
    assert p2["canonical"] == P2_CANONICAL
    assert (p1["bucket_type"], p1["bucket"]) == ("default", "patients")
    assert p1["value"]["balance"] == Decimal("12.50")
    assert str(p1["value"]["balance"]) == "12.50"
    assert p1["value"]["addresses"][0] == {
        "lines": ["d"],
        "period": {"from": "2019-06-30T10:30:00"},
        "use": "temp",
    }
    assert p2["value"]["score"] == 3
    # `balance` and `country` name root columns (any case): the column wins over the field
    assert p1["indexes"] == {
        "active_bin": ["true"],
        "balance_bin": ["12.50"],
        "country_bin": ["NO"],
        "birth_int": [19800229],
        "drug_bin": ["Aspirin", "Ibuprofen"],
        "episode_int": [1, 2],
        "gp_bin": ["A1"],
        "postcode_bin": ["LS1 1AA", "LS1 4AP"],
    }
    assert p2["indexes"] == {
        "active_bin": ["true"],
        "balance_bin": ["7.00"],
        "country_bin": ["GB"],
        "drug_bin": ["Codeine"],
        "episode_int": [1],
        "gp_bin": ["ZZ"],
    }
    assert [(r["doc_type"], r["source_key"], r["field"]) for r in rejects] == [
        ("patient", {"NHS_NUMBER": "9000000003"}, "country")
    ]
    assert "SE" not in rejects[0]["reason"]


KEEP_MAPPING = """
service: pds
documents:
  patient:
    table: patients
    bucket: people
    bucket_type: pds
    nulls: keep
    where: "SENSITIVE_FLAG <> 'S'"
    fields:
      name: {given: GIVEN_NAME, family: FAMILY_NAME}
      born: DATE_OF_BIRTH
      lines: [GIVEN_NAME, FAMILY_NAME]
      gp: {lookup: ORGANISATIONS, on: {ODS_CODE: GP_PRACTICE_CODE}, fields: {code: ODS_CODE}}
      gpRegion: {lookup: ORGANISATIONS, on: {ODS_CODE: GP_PRACTICE_CODE}, field: REGION}
      firstEpisode:
        embed: EPISODES
        on: {NHS_NUMBER: NHS_NUMBER}
        single: true
        fields: {no: EPISODE_NO}
      addresses: {embed: PATIENT_ADDRESSES, on: {NHS_NUMBER: NHS_NUMBER}, fields: {p: POSTCODE}}
"""


def test_nulls_keep_and_single_embeds(pds_db: Path, tmp_path: Path) -> None:
    docs, rejects = build_reference(pds_db, write(tmp_path / "keep.yaml", KEEP_MAPPING))

    assert [(d["bucket_type"], d["bucket"], d["key"]) for d in docs] == [
        ("pds", "people", "9000000002"),
        ("pds", "people", "9000000003"),
    ]
    assert docs[0]["canonical"] == (
        '{"addresses":[],"born":null,"firstEpisode":{"no":1},"gp":null,"gpRegion":null,'
        '"lines":[],"name":{"family":null,"given":null}}'
    )
    assert docs[1]["canonical"] == (
        '{"addresses":[],"born":"1990-12-31","firstEpisode":null,"gp":{"code":"A1"},'
        '"gpRegion":"Y62","lines":["Bob"],"name":{"family":null,"given":"Bob"}}'
    )
    assert docs[0]["indexes"] == {}
    # patient 1 has two episodes: single: true rejects the row
    assert [(r["source_key"], r["field"]) for r in rejects] == [
        ({"NHS_NUMBER": "9000000001"}, "firstEpisode")
    ]


def test_nulls_omit_drops_empty_single_embed_and_nested_object(
    pds_db: Path, tmp_path: Path
) -> None:
    mapping = """
documents:
  patient:
    table: PATIENTS
    bucket: p
    where: "NHS_NUMBER = '9000000002'"
    fields:
      name: {given: GIVEN_NAME, inner: {family: FAMILY_NAME}}
      firstAddress: {embed: PATIENT_ADDRESSES, on: {NHS_NUMBER: NHS_NUMBER}, single: true,
                     fields: {p: POSTCODE}}
      gp: {lookup: ORGANISATIONS, on: {ODS_CODE: GP_PRACTICE_CODE}, field: NAME}
      id: NHS_NUMBER
"""
    docs, rejects = build_reference(pds_db, write(tmp_path / "omit.yaml", mapping))
    assert rejects == []
    assert [d["canonical"] for d in docs] == ['{"id":"9000000002"}']


VISITS_DDL = """
CREATE TABLE VISITS (
    SITE VARCHAR2(5), VISIT_NO NUMBER(6), CODE VARCHAR2(5), AMOUNT NUMBER(8,3),
    FLAG VARCHAR2(5), WHEN_TEXT VARCHAR2(40), PAYLOAD CLOB, PRIMARY KEY (SITE, VISIT_NO));
CREATE TABLE CODES (CODE VARCHAR2(5), LABEL VARCHAR2(20));
"""

VISITS_ROWS: dict[str, list[tuple[Any, ...]]] = {
    "VISITS": [
        ("S1", 1, "A", 2, "Yes", "2020-01-31T13:45:00+01:00", '{"b": [1, 2.5], "a": "x"}'),
        ("S1", 2, "B", 2, "n", "2020-01-31", "[]"),
        ("S2", 1, "A", 1.5, "T", "2020-01-31", "[]"),
        ("S2", 2, "A", 2, "maybe", "2020-01-31", "[]"),
        ("S/3", 3, "C", 3, "f", "2020-02-01 10:00:00", "[]"),
    ],
    "CODES": [("A", "alpha"), ("B", "beta"), ("B", "beta again")],
}

VISITS_MAPPING = """
service: clinic
documents:
  visit:
    table: visits
    bucket: visits
    fields:
      amountText: {column: amount, as: string}
      amountNumber: {column: AMOUNT, as: number}
      flag: {column: FLAG, as: boolean}
      when: {column: WHEN_TEXT, as: datetime}
      whenDay: {column: WHEN_TEXT, as: yyyymmdd}
      payload: {column: PAYLOAD, as: json}
      label: {lookup: codes, on: {code: code}, field: label}
    indexes:
      visit_int: VISIT_NO
      amount_int: amountNumber
"""


def test_as_overrides_lookup_rejects_and_default_key(tmp_path: Path) -> None:
    db = make_db(tmp_path / "visits.db", VISITS_DDL, VISITS_ROWS)
    docs, rejects = build_reference(db, write(tmp_path / "visits.yaml", VISITS_MAPPING))

    assert [d["key"] for d in docs] == ["S/3:3", "S1:1"]
    assert docs[1]["canonical"] == (
        '{"amountNumber":2,"amountText":"2.000","flag":true,"label":"alpha",'
        '"payload":{"a":"x","b":[1,2.5]},"when":"2020-01-31T12:45:00Z","whenDay":20200131}'
    )
    assert docs[0]["canonical"] == (
        '{"amountNumber":3,"amountText":"3.000","flag":false,'
        '"payload":[],"when":"2020-02-01T10:00:00","whenDay":20200201}'
    )
    assert docs[1]["indexes"] == {"amount_int": [2], "visit_int": [1]}
    found = sorted(
        (r["source_key"]["SITE"], r["source_key"]["VISIT_NO"], r["field"]) for r in rejects
    )
    assert found == [
        ("S1", "2", "label"),  # two CODES rows for B
        ("S2", "1", "amount_int"),  # 1.5 is not an integer
        ("S2", "2", "flag"),  # "maybe" is not a boolean
    ]


def test_max_docs_reads_first_root_rows_in_key_order(tmp_path: Path) -> None:
    db = make_db(tmp_path / "visits.db", VISITS_DDL, VISITS_ROWS)
    mapping = write(
        tmp_path / "m.yaml", "documents:\n  v: {table: VISITS, bucket: v, fields: {}}\n"
    )
    docs, _ = build_reference(db, mapping, max_docs=2)
    # primary-key order: ('S/3', 3) < ('S1', 1) < ('S1', 2) by code point
    assert [(d["key"], d["canonical"]) for d in docs] == [("S/3:3", "{}"), ("S1:1", "{}")]


def test_unknown_column_is_a_setup_error(pds_db: Path, tmp_path: Path) -> None:
    mapping = "documents:\n  p: {table: PATIENTS, bucket: p, fields: {x: NO_SUCH}}\n"
    with pytest.raises(ReferenceBuildError, match="NO_SUCH"):
        build_reference(pds_db, write(tmp_path / "bad.yaml", mapping))


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("VARCHAR2(40 CHAR)", ("string", None)),
        ("CLOB", ("string", None)),
        ("NUMBER(10)", ("integer", 0)),
        ("NUMBER(10,0)", ("integer", 0)),
        ("NUMBER(10, 2)", ("decimal", 2)),
        ("NUMBER", ("number", None)),
        ("INTEGER", ("integer", None)),
        ("BINARY_DOUBLE", ("float", None)),
        ("FLOAT", ("float", None)),
        ("DATE", ("date", None)),
        ("TIMESTAMP(6)", ("timestamp", None)),
        ("timestamp(3) with time zone", ("timestamp_tz", None)),
        ("TIMESTAMP WITH LOCAL TIME ZONE", ("timestamp_tz", None)),
        ("RAW(16)", ("binary", None)),
        ("LONG RAW", ("binary", None)),
        ("LONG", ("string", None)),
        ("BOOLEAN", ("boolean", None)),
    ],
)
def test_declared_types_resolve_to_kinds(declared: str, expected: tuple[str, int | None]) -> None:
    assert resolve_type(declared) == expected


@settings(max_examples=25, deadline=None)
@given(cents=st.integers(min_value=-(10**8), max_value=10**8))
def test_two_place_decimals_keep_both_places(cents: int) -> None:
    sign = "-" if cents < 0 else ""
    expected = f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"
    with tempfile.TemporaryDirectory() as folder:
        db = make_db(
            Path(folder) / "d.db",
            "CREATE TABLE T (ID INTEGER PRIMARY KEY, AMOUNT NUMBER(10,2));",
            {"T": [(1, float(Decimal(expected)))]},
        )
        text = "documents:\n  t: {table: T, bucket: t, fields: {a: AMOUNT}}\n"
        mapping = write(Path(folder) / "m.yaml", text)
        docs, _ = build_reference(db, mapping)
    assert docs[0]["canonical"] == '{"a":' + expected + "}"
