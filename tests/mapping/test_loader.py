"""Loading mapping files: the model, and structural problems with the right line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.errors import MappingError, Problem
from migrate.mapping import load_mapping
from migrate.mapping.model import (
    ColumnField,
    EmbedField,
    ListField,
    LiteralField,
    LookupField,
    ObjectField,
)

EXAMPLE = """\
service: pds
description: Personal Demographics Service, one document per patient
documents:
  patient:                            # document type name, unique within the service
    table: PATIENTS                   # root table: one document per root row
    bucket: patients
    bucket_type: default              # optional; default "default"
    key: "{NHS_NUMBER}"
    where: "SENSITIVE_FLAG <> 'S'"
    nulls: omit
    fields:
      nhsNumber: NHS_NUMBER           # a column
      name:                           # a nested object
        given: GIVEN_NAME
        family: FAMILY_NAME
      birthDate: {column: DATE_OF_BIRTH, as: date}
      gender: {column: GENDER, values: {M: male, F: female, U: unknown}, default: unknown}
      active: {literal: true}
      gp:
        lookup: ORGANISATIONS
        on: {ODS_CODE: GP_PRACTICE_CODE}
        fields: {code: ODS_CODE, name: NAME}
      addresses:
        embed: PATIENT_ADDRESSES
        on: {NHS_NUMBER: NHS_NUMBER}
        order_by: [FROM_DATE, ADDRESS_ID]
        fields:
          use: ADDRESS_USE
          lines: [LINE1, LINE2, LINE3, LINE4, LINE5]
          postcode: POSTCODE
          period: {from: FROM_DATE, to: TO_DATE}
    indexes:
      gp_bin: GP_PRACTICE_CODE
      birthdate_int: {column: DATE_OF_BIRTH, as: yyyymmdd}
      postcode_bin: addresses.postcode
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "service.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[Problem]:
    with pytest.raises(MappingError) as caught:
        load_mapping(write(tmp_path, text))
    return caught.value.problems


def where(problems: list[Problem]) -> list[tuple[int, str]]:
    return [(p.line, p.field) for p in problems]


def test_the_documented_example_loads(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, EXAMPLE))
    assert mapping.service == "pds"
    [doc] = mapping.documents
    assert (doc.name, doc.table.text, doc.bucket, doc.bucket_type) == (
        "patient",
        "PATIENTS",
        "patients",
        "default",
    )
    assert doc.key is not None and doc.key.text == "{NHS_NUMBER}"
    assert doc.where == "SENSITIVE_FLAG <> 'S'"
    fields = {f.name: f for f in doc.fields}
    assert isinstance(fields["nhsNumber"], ColumnField)
    assert isinstance(fields["name"], ObjectField)
    assert [f.name for f in fields["name"].fields] == ["given", "family"]
    birth = fields["birthDate"]
    assert isinstance(birth, ColumnField) and birth.as_ is not None and birth.as_.text == "date"
    gender = fields["gender"]
    assert isinstance(gender, ColumnField) and gender.values is not None
    assert [(e.code, e.value) for e in gender.values] == [
        ("M", "male"),
        ("F", "female"),
        ("U", "unknown"),
    ]
    assert gender.has_default and gender.default == "unknown"
    assert isinstance(fields["active"], LiteralField) and fields["active"].value is True
    gp = fields["gp"]
    assert isinstance(gp, LookupField) and gp.field is None and gp.fields is not None
    assert [(p.their.text, p.our.text) for p in gp.on] == [("ODS_CODE", "GP_PRACTICE_CODE")]
    addresses = fields["addresses"]
    assert isinstance(addresses, EmbedField) and not addresses.single
    assert [n.text for n in addresses.order_by] == ["FROM_DATE", "ADDRESS_ID"]
    lines = next(f for f in addresses.fields if f.name == "lines")
    assert isinstance(lines, ListField) and len(lines.columns) == 5
    assert [(i.name, i.source.text, i.column_form) for i in doc.indexes] == [
        ("gp_bin", "GP_PRACTICE_CODE", False),
        ("birthdate_int", "DATE_OF_BIRTH", True),
        ("postcode_bin", "addresses.postcode", False),
    ]


def test_locations_point_at_the_lines_written(tmp_path: Path) -> None:
    doc = load_mapping(write(tmp_path, EXAMPLE)).documents[0]
    fields = {f.name: f for f in doc.fields}
    assert (doc.loc.line, doc.loc.path) == (4, "documents.patient")
    assert (fields["gender"].loc.line, fields["gender"].loc.path) == (
        17,
        "documents.patient.fields.gender",
    )
    addresses = fields["addresses"]
    assert isinstance(addresses, EmbedField)
    assert addresses.loc.at("order_by").line == 26
    assert addresses.order_by[1].loc.line == 26
    assert doc.indexes[2].loc.line == 35


def test_codes_keep_their_raw_text_and_constants_their_yaml_type(tmp_path: Path) -> None:
    text = """\
service: s
documents:
  d:
    table: T
    bucket: b
    fields:
      flag: {column: F, values: {NO: "no", Y: yes, 01: 1.5, null: nothing}, default: null}
      born: {literal: 2020-01-01}
"""
    fields = load_mapping(write(tmp_path, text)).documents[0].fields
    flag = fields[0]
    assert isinstance(flag, ColumnField) and flag.values is not None
    assert [(e.code, e.value) for e in flag.values] == [
        ("NO", "no"),
        ("Y", True),
        ("01", 1.5),
        ("null", "nothing"),
    ]
    assert flag.has_default and flag.default is None
    born = fields[1]
    assert isinstance(born, LiteralField) and born.value == "2020-01-01"


def test_missing_table_bucket_and_fields(tmp_path: Path) -> None:
    text = """\
service: s
documents:
  d:
    where: "1 = 1"
"""
    assert where(problems_of(tmp_path, text)) == [
        (3, "documents.d.table"),
        (3, "documents.d.bucket"),
        (3, "documents.d.fields"),
    ]


def test_key_escape_takes_only_percent(tmp_path: Path) -> None:
    text = """\
service: s
documents:
  d:
    table: T
    bucket: b
    key: "{A}/{B}"
    key_escape: url
    fields: {a: A}
"""
    problems = problems_of(tmp_path, text)
    assert where(problems) == [(7, "documents.d.key_escape")]
    assert "`percent`" in problems[0].message and problems[0].hint


@pytest.mark.parametrize("depth", [70, 2000])
def test_a_mapping_nested_too_deep_is_a_problem_not_a_crash(tmp_path: Path, depth: int) -> None:
    text = (
        "service: s\ndocuments:\n  d:\n    table: T\n    bucket: b\n    fields:\n      a: "
        + "{x: " * depth
        + "A"
        + "}" * depth
        + "\n"
    )
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1 and "nests deeper than 64 levels" in problems[0].message


@pytest.mark.parametrize("levels", [6])
def test_a_mapping_whose_aliases_expand_past_a_limit_is_a_problem(
    tmp_path: Path, levels: int
) -> None:
    """Nested anchors each used nine times ("billion laughs"): 9**6 values once expanded, which
    the loader and the plan walked one by one (4 s here; each level more takes nine times the
    time and the memory)."""
    anchors = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    anchors += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    text = "service: s\ndocuments:\n  d:\n    table: T\n    bucket: b\n    fields:\n"
    text += "      x:\n        literal:\n" + "".join(f"          {a}\n" for a in anchors)
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1
    assert "more than 100,000 values once its aliases are expanded" in problems[0].message
    assert problems[0].line == 9 + 5  # the anchor whose uses first pass the limit


def test_a_recursive_alias_is_not_counted_forever(tmp_path: Path) -> None:
    text = "service: s\ndocuments:\n  d:\n    table: T\n    bucket: b\n    fields:\n"
    text += "      x: {literal: &y [*y, *y]}\n"
    assert "recursive" in problems_of(tmp_path, text)[0].message


def test_not_a_mapping(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "- one\n- two\n")
    assert where(problems) == [(1, "")]
    assert "must be a YAML mapping" in problems[0].message


def test_empty_file(tmp_path: Path) -> None:
    assert "empty" in problems_of(tmp_path, "# nothing\n")[0].message


def test_missing_file_is_a_mapping_error(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(tmp_path / "absent.yaml")


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    text = "service: s\ndocuments:\n  d:\n    table: [T\n    bucket: b\n"
    [problem] = problems_of(tmp_path, text)
    assert problem.line in (5, 6)
    assert "not valid YAML" in problem.message


def test_unknown_keys_at_each_level(tmp_path: Path) -> None:
    text = """\
service: s
colour: blue
documents:
  d:
    table: T
    bucket: b
    buckt: c
    fields:
      a: {column: A, format: x}
    indexes:
      a_bin: {column: A, path: x}
"""
    assert where(problems_of(tmp_path, text)) == [
        (2, "colour"),
        (7, "documents.d.buckt"),
        (9, "documents.d.fields.a.format"),
        (11, "documents.d.indexes.a_bin.path"),
    ]


def test_reserved_key_without_a_form(tmp_path: Path) -> None:
    text = """\
service: s
documents:
  d:
    table: T
    bucket: b
    fields:
      ok: A
      born: {as: date}
      both: {column: A, literal: 1}
"""
    problems = problems_of(tmp_path, text)
    assert where(problems) == [(8, "documents.d.fields.born"), (9, "documents.d.fields.both")]
    assert "`as`" in problems[0].message
    assert "`column`" in problems[1].message and "`literal`" in problems[1].message


def test_wrong_types(tmp_path: Path) -> None:
    text = """\
service: s
version: 2
documents:
  d:
    table: [T]
    bucket: b
    nulls: sometimes
    fields:
      n: 12
      e: {embed: C, on: {A: B}, single: maybe, fields: {x: X}}
      g: {column: G, values: [M, F]}
      l: {lookup: O, on: {A: B}, field: N, fields: {x: X}}
      m: {lookup: O, fields: {x: X}}
      o: {}
"""
    assert where(problems_of(tmp_path, text)) == [
        (2, "version"),
        (5, "documents.d.table"),
        (7, "documents.d.nulls"),
        (9, "documents.d.fields.n"),
        (10, "documents.d.fields.e.single"),
        (11, "documents.d.fields.g.values"),
        (12, "documents.d.fields.l"),
        (13, "documents.d.fields.m.on"),
        (14, "documents.d.fields.o"),
    ]


def test_duplicate_keys_are_reported(tmp_path: Path) -> None:
    text = """\
service: s
documents:
  d:
    table: T
    bucket: b
    fields:
      a: A
      a: B
"""
    [problem] = problems_of(tmp_path, text)
    assert (problem.line, problem.field) == (8, "documents.d.fields.a")
    assert "line 7" in problem.message


def test_duplicate_document_types_are_kept_for_validation(tmp_path: Path) -> None:
    text = "service: s\ndocuments:\n  d: {table: T, bucket: b, fields: {a: A}}\n"
    text += "  d: {table: T, bucket: c, fields: {a: A}}\n"
    mapping = load_mapping(write(tmp_path, text))
    assert [d.loc.line for d in mapping.documents] == [3, 4]


def test_field_names_with_dots_are_refused(tmp_path: Path) -> None:
    text = "service: s\ndocuments:\n  d:\n    table: T\n    bucket: b\n    fields:\n      a.b: A\n"
    assert where(problems_of(tmp_path, text)) == [(7, "documents.d.fields.a.b")]


def test_constants_that_json_cannot_hold(tmp_path: Path) -> None:
    text = "service: s\ndocuments:\n  d:\n    table: T\n    bucket: b\n    fields:\n"
    text += "      x: {literal: .nan}\n"
    [problem] = problems_of(tmp_path, text)
    assert (problem.line, problem.field) == (7, "documents.d.fields.x.literal")


@pytest.mark.parametrize(
    ("constant", "message"),
    [  # found by tests/mapping/test_fuzz.py: each crashed the loader with a Python exception
        ("2024-02-30", "`2024-02-30` is not a valid date or date-time (day is out of range"),
        ("!!timestamp foo", "`foo` is not a valid date or date-time"),
        ("2001-12-14 21:59:43.10 -25:00", "is not a valid date or date-time (offset must be"),
        ("!!int abc", "`abc` is not a valid integer"),
        ("!!float abc", "`abc` is not a valid number"),
        ("!!bool maybe", "`maybe` is not a valid boolean"),
    ],
)
def test_constants_yaml_cannot_read_are_problems(
    tmp_path: Path, constant: str, message: str
) -> None:
    text = "service: s\ndocuments:\n  d:\n    table: T\n    bucket: b\n    fields:\n"
    text += f"      x: {{literal: {constant}}}\n"
    [problem] = problems_of(tmp_path, text)
    assert (problem.line, problem.field) == (7, "documents.d.fields.x.literal")
    assert message in problem.message
    assert problem.hint == "correct it, or quote it to make it a string"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = """\
documents:
  a:
    bucket: b
    fields: {x: X}
  b:
    table: T
    fields: {y: {as: integer}}
"""
    assert where(problems_of(tmp_path, text)) == [
        (1, "service"),
        (2, "documents.a.table"),
        (5, "documents.b.bucket"),
        (7, "documents.b.fields.y"),
    ]
    rendered = MappingError(problems_of(tmp_path, text)).render()
    assert f"{tmp_path / 'service.yaml'}:2: documents.a.table: missing `table`" in rendered


def test_merge_keys_work_and_bad_yaml_structures_are_problems(tmp_path: Path) -> None:
    text = """\
service: s
shared: &base {table: T, bucket: b}
documents:
  d:
    <<: *base
    fields: {a: A}
"""
    assert where(problems_of(tmp_path, text)) == [(2, "shared")]
    merged = text.replace("shared: &base {table: T, bucket: b}\n", "").replace(
        "<<: *base", "<<: {table: T, bucket: b}"
    )
    doc = load_mapping(write(tmp_path, merged)).documents[0]
    assert (doc.table.text, doc.bucket) == ("T", "b")
    recursive = "service: s\ndocuments:\n  d:\n    table: T\n    bucket: b\n    fields:\n"
    recursive += "      x: {literal: &y [*y]}\n"
    assert "recursive" in problems_of(tmp_path, recursive)[0].message
