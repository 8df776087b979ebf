"""Validation against the source schema: one test per kind of mistake, each with line and field."""

from __future__ import annotations

from pathlib import Path

from migrate.errors import Problem
from migrate.mapping import parse_mapping, validate_mapping
from migrate.schema import ColumnInfo, ColumnType, SchemaInfo, TableInfo, ValueKind

K = ValueKind


def col(name: str, kind: ValueKind, declared: str) -> ColumnInfo:
    return ColumnInfo(name, ColumnType(kind, declared))


SCHEMA = SchemaInfo(
    {
        "PATIENTS": TableInfo(
            "PATIENTS",
            (
                col("NHS_NUMBER", K.STRING, "VARCHAR2(10)"),
                col("GIVEN_NAME", K.STRING, "VARCHAR2(50)"),
                col("DATE_OF_BIRTH", K.DATE, "DATE"),
                col("GP_CODE", K.STRING, "VARCHAR2(8)"),
                col("RECORD_NO", K.INTEGER, "NUMBER(10)"),
                col("EMAIL", K.STRING, "VARCHAR2(80)"),
            ),
            ("NHS_NUMBER",),
            (("EMAIL",), ("GP_CODE", "RECORD_NO")),
        ),
        "ADDRESSES": TableInfo(
            "ADDRESSES",
            (
                col("ADDRESS_ID", K.INTEGER, "NUMBER(10)"),
                col("NHS_NUMBER", K.STRING, "VARCHAR2(10)"),
                col("POSTCODE", K.STRING, "VARCHAR2(8)"),
                col("FROM_DATE", K.DATE, "DATE"),
            ),
            ("ADDRESS_ID",),
        ),
        "ORGS": TableInfo(
            "ORGS",
            (col("ODS_CODE", K.STRING, "VARCHAR2(8)"), col("NAME", K.STRING, "VARCHAR2(80)")),
            ("ODS_CODE",),
        ),
        "AUDIT": TableInfo("AUDIT", (col("AT", K.TIMESTAMP, "TIMESTAMP"),)),
    }
)


def check(doc: str, *, more: str = "", schema: SchemaInfo = SCHEMA) -> list[Problem]:
    """Problems of a mapping with one document type `d` (lines: `d:` is line 3)."""
    body = "\n".join("    " + line for line in doc.strip("\n").splitlines())
    text = f"service: s\ndocuments:\n  d:\n{body}\n{more}"
    return validate_mapping(parse_mapping(text, Path("m.yaml")), schema)


def where(problems: list[Problem]) -> list[tuple[int, str]]:
    return [(p.line, p.field) for p in problems]


BASE = "table: PATIENTS\nbucket: patients\n"


def test_a_valid_mapping_has_no_problem_and_names_ignore_case() -> None:
    doc = """
table: patients
bucket: patients
key: "nhs/{nhs_number}"
fields:
  n: nhs_number
  gp: {lookup: orgs, on: {ods_code: gp_code}, field: name}
  addresses:
    embed: addresses
    on: {nhs_number: NHS_Number}
    order_by: [from_date]
    fields: {pc: postcode}
indexes:
  gp_bin: GP_CODE
  pc_bin: addresses.pc
  n_bin: n
  born_int: {column: date_of_birth, as: yyyymmdd}
  record_int: record_no
"""
    assert check(doc) == []


def test_unknown_table_suggests_a_close_name() -> None:
    problems = check("table: PATIENT\nbucket: p\nfields: {a: A}\n")
    assert where(problems) == [(4, "documents.d.table")]
    assert problems[0].hint == "did you mean `PATIENTS`?"


def test_unknown_embed_table_without_a_close_name() -> None:
    doc = BASE + "fields:\n  x: {embed: ZZZ, on: {A: NHS_NUMBER}, fields: {b: B}}\n"
    problems = check(doc)
    assert where(problems) == [(7, "documents.d.fields.x.embed")]
    assert problems[0].hint is not None and "did you mean" not in problems[0].hint


def test_unknown_column_suggests_a_close_name() -> None:
    problems = check(BASE + "fields:\n  a: NHS_NUMBR\n  b: [GIVEN_NAME, GIVEN_NAM]\n")
    assert where(problems) == [(7, "documents.d.fields.a"), (8, "documents.d.fields.b[1]")]
    assert problems[0].hint == "did you mean `NHS_NUMBER`?"
    assert problems[1].hint == "did you mean `GIVEN_NAME`?"


def test_join_columns_must_exist_on_both_sides() -> None:
    doc = BASE + "fields:\n  gp:\n    lookup: ORGS\n    on: {ODS: GP_CODE, ODS_CODE: GP}\n"
    doc += "    field: NAME\n"
    problems = check(doc)
    assert where(problems) == [
        (9, "documents.d.fields.gp.on.ODS"),
        (9, "documents.d.fields.gp.on.ODS_CODE"),
    ]
    assert "ORGS" in problems[0].message and "PATIENTS" in problems[1].message


def test_join_columns_of_different_kinds_never_match() -> None:
    doc = BASE + "fields:\n  gp: {lookup: ORGS, on: {ODS_CODE: RECORD_NO}, field: NAME}\n"
    assert where(check(doc)) == [(7, "documents.d.fields.gp.on.ODS_CODE")]


def test_key_placeholder_naming_an_unknown_column() -> None:
    problems = check(BASE + 'key: "{NHS_NUMBER}:{NOPE}"\nfields: {a: NHS_NUMBER}\n')
    assert where(problems) == [(6, "documents.d.key")]
    assert "NOPE" in problems[0].message


def test_key_must_cover_the_primary_key_or_a_unique_constraint() -> None:
    problems = check(BASE + 'key: "{GP_CODE}"\nfields: {a: NHS_NUMBER}\n')
    assert where(problems) == [(6, "documents.d.key")]
    assert "NHS_NUMBER" in (problems[0].hint or "")
    assert check(BASE + 'key: "e/{email}"\nfields: {a: NHS_NUMBER}\n') == []
    assert check(BASE + 'key: "{GP_CODE}-{RECORD_NO}"\nfields: {a: NHS_NUMBER}\n') == []
    assert where(check(BASE + 'key: "fixed"\nfields: {a: NHS_NUMBER}\n')) == [
        (6, "documents.d.key")
    ]


def test_key_placeholders_must_not_touch() -> None:
    problems = check(BASE + 'key: "{GP_CODE}{RECORD_NO}"\nfields: {a: NHS_NUMBER}\n')
    assert where(problems) == [(6, "documents.d.key")]
    assert "touch" in problems[0].message


def test_key_braces_must_balance_and_escapes_are_literal() -> None:
    assert len(check(BASE + 'key: "{NHS_NUMBER"\nfields: {a: NHS_NUMBER}\n')) == 1
    assert len(check(BASE + 'key: "a}{NHS_NUMBER}"\nfields: {a: NHS_NUMBER}\n')) == 1
    assert len(check(BASE + 'key: "{}:{NHS_NUMBER}"\nfields: {a: NHS_NUMBER}\n')) == 1
    assert check(BASE + 'key: "{{x}}{NHS_NUMBER}}}"\nfields: {a: NHS_NUMBER}\n') == []


def test_root_table_without_primary_key() -> None:
    problems = check("table: AUDIT\nbucket: a\nfields: {at: AT}\n")
    assert where(problems) == [(4, "documents.d.table")]
    assert "primary key" in problems[0].message


def test_bad_and_reserved_index_names() -> None:
    doc = BASE + "fields: {a: NHS_NUMBER}\nindexes:\n"
    doc += "  Gp_bin: GP_CODE\n  gp: GP_CODE\n  migrate_gp_bin: GP_CODE\n  $gp_bin: GP_CODE\n"
    doc += "  gp_bin: GP_CODE\n"
    problems = check(doc)
    assert where(problems) == [
        (8, "documents.d.indexes.Gp_bin"),
        (9, "documents.d.indexes.gp"),
        (10, "documents.d.indexes.migrate_gp_bin"),
        (11, "documents.d.indexes.$gp_bin"),
    ]
    assert "reserved" in problems[2].message and "reserved" in problems[3].message


def test_index_path_that_names_no_field() -> None:
    doc = BASE + "fields:\n  name: {given: GIVEN_NAME}\nindexes:\n"
    doc += "  a_bin: name.family\n  b_bin: nothing\n  c_bin: name\n  d_bin: name.given.x\n"
    doc += "  e_bin: {column: name}\n"
    problems = check(doc)
    assert where(problems) == [
        (9, "documents.d.indexes.a_bin"),
        (10, "documents.d.indexes.b_bin"),
        (11, "documents.d.indexes.c_bin"),
        (12, "documents.d.indexes.d_bin"),
        (13, "documents.d.indexes.e_bin.column"),
    ]


def test_unknown_as() -> None:
    problems = check(BASE + "fields:\n  a: {column: DATE_OF_BIRTH, as: dates}\n")
    assert where(problems) == [(7, "documents.d.fields.a.as")]
    assert "did you mean `date`?" in (problems[0].hint or "")


def test_as_that_cannot_apply_to_the_column_kind() -> None:
    problems = check(BASE + "fields:\n  a: {column: DATE_OF_BIRTH, as: boolean}\n")
    assert where(problems) == [(7, "documents.d.fields.a.as")]


def test_values_with_as_and_default_without_values() -> None:
    doc = BASE + "fields:\n  a: {column: GP_CODE, as: string, values: {A: b}}\n"
    doc += "  b: {column: GP_CODE, default: x}\n"
    assert where(check(doc)) == [
        (7, "documents.d.fields.a.values"),
        (8, "documents.d.fields.b.default"),
    ]


def test_order_by_unknown_column() -> None:
    doc = BASE + "fields:\n  x:\n    embed: ADDRESSES\n    on: {NHS_NUMBER: NHS_NUMBER}\n"
    doc += "    order_by: [FROM_DATE, TO_DATE]\n    fields: {pc: POSTCODE}\n"
    assert where(check(doc)) == [(10, "documents.d.fields.x.order_by[1]")]


def test_duplicate_document_type_names() -> None:
    more = "  d:\n    table: ORGS\n    bucket: orgs\n    fields: {a: NAME}\n"
    problems = check(BASE + "fields: {a: NHS_NUMBER}\n", more=more)
    assert where(problems) == [(7, "documents.d")]
    assert "line 3" in problems[0].message


def test_duplicate_bucket_across_document_types() -> None:
    more = "  e:\n    table: ORGS\n    bucket: patients\n    fields: {a: NAME}\n"
    more += "  f:\n    table: ORGS\n    bucket: patients\n    bucket_type: other\n"
    more += "    fields: {a: NAME}\n"
    problems = check(BASE + "fields: {a: NHS_NUMBER}\n", more=more)
    assert where(problems) == [(9, "documents.e.bucket")]
    assert "`d`" in problems[0].message


def test_int_index_on_a_string_column_needs_as() -> None:
    doc = BASE + "fields: {a: NHS_NUMBER}\nindexes:\n  nhs_int: NHS_NUMBER\n"
    doc += "  nhs2_int: {column: NHS_NUMBER, as: integer}\n  born_int: DATE_OF_BIRTH\n"
    doc += "  born2_int: {column: DATE_OF_BIRTH, as: string}\n"
    assert where(check(doc)) == [
        (8, "documents.d.indexes.nhs_int"),
        (10, "documents.d.indexes.born_int"),
        (11, "documents.d.indexes.born2_int"),
    ]


def test_every_problem_of_every_document_type_at_once() -> None:
    more = "  e:\n    table: ORGZ\n    bucket: o\n    fields: {a: NAME}\n"
    problems = check("table: PATIENTS\nbucket: p\nfields: {a: NOPE, b: ALSO_NOPE}\n", more=more)
    assert where(problems) == [
        (6, "documents.d.fields.a"),
        (6, "documents.d.fields.b"),
        (8, "documents.e.table"),
    ]
    assert all(p.file == "m.yaml" for p in problems)
