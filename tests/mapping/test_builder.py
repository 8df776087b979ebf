"""The document builder: one chunk's rows in, documents and rejects out, per the semantics."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate.document import BuildResult
from migrate.errors import StagingError
from migrate.mapping import DocPlan, compile_mapping, parse_mapping
from migrate.schema import ColumnInfo, ColumnType, SchemaInfo, TableInfo, ValueKind
from migrate.spec import FLAWS_COLUMN

K = ValueKind


def col(name: str, kind: ValueKind, declared: str, scale: int | None = None) -> ColumnInfo:
    return ColumnInfo(name, ColumnType(kind, declared, None, scale))


def table(name: str, columns: list[ColumnInfo], pk: tuple[str, ...] = (), **kw: Any) -> TableInfo:
    return TableInfo(name, tuple(columns), pk, **kw)


SCHEMA = SchemaInfo(
    {
        t.name: t
        for t in [
            table(
                "PATIENTS",
                [
                    col("NHS_NUMBER", K.STRING, "VARCHAR2(10)"),
                    col("GIVEN_NAME", K.STRING, "VARCHAR2(50)"),
                    col("FAMILY_NAME", K.STRING, "VARCHAR2(50)"),
                    col("DATE_OF_BIRTH", K.DATE, "DATE"),
                    col("GENDER", K.STRING, "CHAR(1)"),
                    col("GP_CODE", K.STRING, "VARCHAR2(8)"),
                    col("SCORE", K.DECIMAL, "NUMBER(5,2)", 2),
                    col("AGE_TEXT", K.STRING, "VARCHAR2(5)"),
                ],
                ("NHS_NUMBER",),
            ),
            table(
                "ADDRESSES",
                [
                    col("ADDRESS_ID", K.INTEGER, "NUMBER(10)"),
                    col("NHS_NUMBER", K.STRING, "VARCHAR2(10)"),
                    col("FROM_DATE", K.DATE, "DATE"),
                    col("LINE1", K.STRING, "VARCHAR2(50)"),
                    col("LINE2", K.STRING, "VARCHAR2(50)"),
                    col("POSTCODE", K.STRING, "VARCHAR2(8)"),
                ],
                ("ADDRESS_ID",),
            ),
            table(
                "ORGS",
                [
                    col("ODS_CODE", K.STRING, "VARCHAR2(8)"),
                    col("NAME", K.STRING, "VARCHAR2(80)"),
                    col("REGION", K.STRING, "VARCHAR2(8)"),
                ],
                ("ODS_CODE",),
            ),
            table(
                "ORDERS",
                [
                    col("ORDER_ID", K.INTEGER, "NUMBER(10)"),
                    col("NHS_NUMBER", K.STRING, "VARCHAR2(10)"),
                    col("PLACED", K.DATE, "DATE"),
                ],
                ("ORDER_ID",),
            ),
            table(
                "ITEMS",
                [
                    col("ORDER_ID", K.INTEGER, "NUMBER(10)"),
                    col("LINE_NO", K.INTEGER, "NUMBER(3)"),
                    col("CODE", K.STRING, "VARCHAR2(8)"),
                ],
                ("ORDER_ID", "LINE_NO"),
            ),
            table(
                "EVENTS",
                [
                    col("EVENT_ID", K.INTEGER, "NUMBER(10)"),
                    col("ORDER_ID", K.INTEGER, "NUMBER(10)"),
                    col("LINE_NO", K.INTEGER, "NUMBER(3)"),
                    col("AT", K.TIMESTAMP, "TIMESTAMP"),
                    col("KIND", K.STRING, "VARCHAR2(8)"),
                ],
                ("EVENT_ID",),
            ),
            table(
                "NOTES",
                [
                    col("NHS_NUMBER", K.STRING, "VARCHAR2(10)"),
                    col("SEQ", K.INTEGER, "INTEGER"),
                    col("BODY", K.STRING, "VARCHAR2(100)"),
                ],
            ),
        ]
    }
)


def plan_of(doc_yaml: str, schema: SchemaInfo = SCHEMA) -> DocPlan:
    text = "service: test\ndocuments:\n  doc:\n" + "\n".join(
        "    " + line for line in doc_yaml.strip("\n").splitlines()
    )
    return compile_mapping(parse_mapping(text, Path("test.yaml")), schema).doc_types[0]


def build(
    plan: DocPlan,
    rows: dict[str, list[dict[str, Any]]],
    *,
    flaws: dict[str, list[str | None]] | None = None,
    **kw: Any,
) -> BuildResult:
    """Each node's rows as an Arrow table with exactly the node's columns, in order, and the
    flaws column where `flaws` gives one."""
    tables = {}
    for node in plan.extract.nodes:
        given = rows.get(node.node_id, [])
        columns = {c: [r.get(c) for r in given] for c in node.columns}
        if flaws and node.node_id in flaws:
            columns[FLAWS_COLUMN] = flaws[node.node_id]
        tables[node.node_id] = pa.table(columns)
    return plan.build(tables, **kw)


def docs(result: BuildResult) -> list[dict[str, Any]]:
    return [json.loads(d.value) for d in result.documents]


PATIENT_BASE = """
table: PATIENTS
bucket: patients
"""


def test_columns_nested_objects_literals_and_canonical_bytes() -> None:
    plan = plan_of(
        PATIENT_BASE
        + """
fields:
  nhsNumber: NHS_NUMBER
  name: {given: GIVEN_NAME, family: FAMILY_NAME}
  birthDate: DATE_OF_BIRTH
  score: SCORE
  active: {literal: true}
  meta: {literal: {version: 2, tags: [a, b]}}
"""
    )
    result = build(
        plan,
        {
            "root": [
                {
                    "NHS_NUMBER": "9000000009",
                    "GIVEN_NAME": "Zoë",
                    "FAMILY_NAME": "Smith",
                    "DATE_OF_BIRTH": dt.datetime(1980, 2, 29),
                    "SCORE": Decimal("12.5"),
                }
            ]
        },
    )
    assert result.rejects == []
    [doc] = result.documents
    expected = (
        '{"active":true,"birthDate":"1980-02-29","meta":{"tags":["a","b"],"version":2},'
        '"name":{"family":"Smith","given":"Zoë"},"nhsNumber":"9000000009","score":12.50}'
    ).encode()
    assert doc.value == expected
    assert doc.checksum == xxhash.xxh3_128_hexdigest(expected)
    assert (doc.bucket_type, doc.bucket, doc.key) == ("default", "patients", "9000000009")
    assert doc.indexes == ()


def test_nulls_omit_drops_fields_and_empty_objects() -> None:
    plan = plan_of(
        PATIENT_BASE
        + """
fields:
  nhsNumber: NHS_NUMBER
  name: {given: GIVEN_NAME, family: FAMILY_NAME}
  gp: {lookup: ORGS, on: {ODS_CODE: GP_CODE}, field: NAME}
  org: {lookup: ORGS, on: {ODS_CODE: GP_CODE}, fields: {name: NAME}}
  lines: [GIVEN_NAME, FAMILY_NAME]
"""
    )
    result = build(
        plan,
        {
            "root": [{"NHS_NUMBER": "1", "GP_CODE": "G1"}, {"NHS_NUMBER": "2", "GP_CODE": "NONE"}],
            "root.gp": [{"ODS_CODE": "G1", "NAME": None}],
            "root.org": [{"ODS_CODE": "G1", "NAME": None}],
        },
    )
    assert docs(result) == [{"nhsNumber": "1", "lines": []}, {"nhsNumber": "2", "lines": []}]


def test_nulls_keep_writes_null_everywhere() -> None:
    plan = plan_of(
        PATIENT_BASE
        + """
nulls: keep
fields:
  nhsNumber: NHS_NUMBER
  name: {given: GIVEN_NAME, family: FAMILY_NAME}
  gp: {lookup: ORGS, on: {ODS_CODE: GP_CODE}, field: NAME}
  org: {lookup: ORGS, on: {ODS_CODE: GP_CODE}, fields: {name: NAME, region: REGION}}
  lines: [GIVEN_NAME, FAMILY_NAME]
  home: {embed: ADDRESSES, on: {NHS_NUMBER: NHS_NUMBER}, single: true, fields: {pc: POSTCODE}}
  all: {embed: ADDRESSES, on: {NHS_NUMBER: NHS_NUMBER}, fields: {pc: POSTCODE}}
"""
    )
    result = build(
        plan,
        {
            "root": [{"NHS_NUMBER": "1", "GP_CODE": "G1"}, {"NHS_NUMBER": "2"}],
            "root.gp": [{"ODS_CODE": "G1", "NAME": None}],
            "root.org": [{"ODS_CODE": "G1", "NAME": None}],
            "root.home": [{"ADDRESS_ID": 1, "NHS_NUMBER": "1"}],
            "root.all": [{"ADDRESS_ID": 1, "NHS_NUMBER": "1"}],
        },
    )
    assert docs(result) == [
        {
            "nhsNumber": "1",
            "name": {"given": None, "family": None},
            "gp": None,
            "org": {"name": None, "region": None},
            "lines": [],
            "home": {"pc": None},
            "all": [{"pc": None}],
        },
        {
            "nhsNumber": "2",
            "name": {"given": None, "family": None},
            "gp": None,
            "org": None,
            "lines": [],
            "home": None,
            "all": [],
        },
    ]


def test_embed_order_by_nulls_last_then_primary_key() -> None:
    plan = plan_of(
        PATIENT_BASE
        + """
fields:
  addresses:
    embed: ADDRESSES
    on: {NHS_NUMBER: NHS_NUMBER}
    order_by: [FROM_DATE]
    fields: {id: ADDRESS_ID}
"""
    )
    day = dt.datetime(2001, 1, 1)
    children = [
        {"ADDRESS_ID": 7, "NHS_NUMBER": "1", "FROM_DATE": None},
        {"ADDRESS_ID": 5, "NHS_NUMBER": "1", "FROM_DATE": day},
        {"ADDRESS_ID": 3, "NHS_NUMBER": "1", "FROM_DATE": None},
        {"ADDRESS_ID": 9, "NHS_NUMBER": "1", "FROM_DATE": dt.datetime(2000, 6, 1)},
        {"ADDRESS_ID": 2, "NHS_NUMBER": "1", "FROM_DATE": day},
        {"ADDRESS_ID": 4, "NHS_NUMBER": "other", "FROM_DATE": day},  # unrelated: ignored
    ]
    result = build(plan, {"root": [{"NHS_NUMBER": "1"}], "root.addresses": children})
    assert docs(result) == [{"addresses": [{"id": 9}, {"id": 2}, {"id": 5}, {"id": 3}, {"id": 7}]}]


def test_embed_without_primary_key_orders_by_every_column_read() -> None:
    plan = plan_of(
        PATIENT_BASE
        + """
fields:
  notes: {embed: NOTES, on: {NHS_NUMBER: NHS_NUMBER}, fields: {seq: SEQ, body: BODY}}
"""
    )
    children = [
        {"NHS_NUMBER": "1", "SEQ": 2, "BODY": "b"},
        {"NHS_NUMBER": "1", "SEQ": None, "BODY": "a"},
        {"NHS_NUMBER": "1", "SEQ": 1, "BODY": "z"},
        {"NHS_NUMBER": "1", "SEQ": 1, "BODY": "c"},
    ]
    result = build(plan, {"root": [{"NHS_NUMBER": "1"}], "root.notes": children})
    assert docs(result) == [
        {
            "notes": [
                {"seq": 1, "body": "c"},
                {"seq": 1, "body": "z"},
                {"seq": 2, "body": "b"},
                {"body": "a"},
            ]
        }
    ]


THREE_DEEP = (
    PATIENT_BASE
    + """
fields:
  orders:
    embed: ORDERS
    on: {NHS_NUMBER: NHS_NUMBER}
    order_by: [PLACED]
    fields:
      id: ORDER_ID
      items:
        embed: ITEMS
        on: {ORDER_ID: ORDER_ID}
        fields:
          line: LINE_NO
          events:
            embed: EVENTS
            on: {ORDER_ID: ORDER_ID, LINE_NO: LINE_NO}
            order_by: [AT]
            fields: {kind: KIND}
"""
)


def three_deep_rows() -> dict[str, list[dict[str, Any]]]:
    t = dt.datetime
    return {
        "root": [{"NHS_NUMBER": "2"}, {"NHS_NUMBER": "1"}],
        "root.orders": [
            {"ORDER_ID": 11, "NHS_NUMBER": "1", "PLACED": t(2020, 5, 1)},
            {"ORDER_ID": 10, "NHS_NUMBER": "1", "PLACED": t(2021, 1, 1)},
            {"ORDER_ID": 20, "NHS_NUMBER": "2", "PLACED": None},
        ],
        "root.orders.items": [
            {"ORDER_ID": 10, "LINE_NO": 2, "CODE": "x"},
            {"ORDER_ID": 10, "LINE_NO": 1, "CODE": "y"},
            {"ORDER_ID": 11, "LINE_NO": 1, "CODE": "z"},
            {"ORDER_ID": 99, "LINE_NO": 1, "CODE": "stray"},
        ],
        "root.orders.items.events": [
            {"EVENT_ID": 1, "ORDER_ID": 10, "LINE_NO": 1, "AT": t(2021, 1, 3), "KIND": "late"},
            {"EVENT_ID": 2, "ORDER_ID": 10, "LINE_NO": 1, "AT": t(2021, 1, 2), "KIND": "early"},
            {"EVENT_ID": 3, "ORDER_ID": 10, "LINE_NO": 2, "AT": t(2021, 1, 2), "KIND": "other"},
            # same ORDER_ID, other LINE_NO: the composite `on` must keep it out of line 1
            {"EVENT_ID": 4, "ORDER_ID": 11, "LINE_NO": 2, "AT": t(2021, 1, 2), "KIND": "nope"},
            {"EVENT_ID": 5, "ORDER_ID": None, "LINE_NO": 1, "AT": None, "KIND": "null"},
        ],
    }


def test_three_level_embeds_with_composite_on() -> None:
    plan = plan_of(THREE_DEEP)
    result = build(plan, three_deep_rows())
    assert [d.key for d in result.documents] == ["1", "2"]  # root primary-key order
    assert docs(result) == [
        {
            "orders": [
                {"id": 11, "items": [{"line": 1, "events": []}]},
                {
                    "id": 10,
                    "items": [
                        {"line": 1, "events": [{"kind": "early"}, {"kind": "late"}]},
                        {"line": 2, "events": [{"kind": "other"}]},
                    ],
                },
            ]
        },
        {"orders": [{"id": 20, "items": []}]},
    ]


def test_shuffled_child_rows_give_identical_documents() -> None:
    plan = plan_of(THREE_DEEP)
    expected = build(plan, three_deep_rows())
    rng = random.Random(5)
    for _ in range(10):
        rows = {node: rng.sample(items, len(items)) for node, items in three_deep_rows().items()}
        assert build(plan, rows) == expected


def test_lookup_object_and_field_forms() -> None:
    plan = plan_of(
        PATIENT_BASE
        + """
fields:
  gp: {lookup: ORGS, on: {ODS_CODE: GP_CODE}, fields: {code: ODS_CODE, name: NAME}}
  gpName: {lookup: orgs, on: {ods_code: gp_code}, field: name}
"""
    )
    result = build(
        plan,
        {
            "root": [{"NHS_NUMBER": "1", "GP_CODE": "G1"}, {"NHS_NUMBER": "2", "GP_CODE": "G9"}],
            "root.gp": [{"ODS_CODE": "G1", "NAME": "Surgery"}, {"ODS_CODE": "G2", "NAME": "X"}],
            "root.gpName": [{"ODS_CODE": "G1", "NAME": "Surgery"}],
        },
    )
    assert docs(result) == [{"gp": {"code": "G1", "name": "Surgery"}, "gpName": "Surgery"}, {}]


def test_lookup_with_two_matches_rejects_the_row_only() -> None:
    schema = SchemaInfo(
        {
            **SCHEMA.tables,
            "ORGS_NOPK": table(
                "ORGS_NOPK",
                [col("ODS_CODE", K.STRING, "VARCHAR2(8)"), col("NAME", K.STRING, "VARCHAR2(9)")],
            ),
        }
    )
    plan = plan_of(
        PATIENT_BASE
        + """
fields:
  gp: {lookup: ORGS_NOPK, on: {ODS_CODE: GP_CODE}, field: NAME}
""",
        schema,
    )
    result = build(
        plan,
        {
            "root": [{"NHS_NUMBER": "1", "GP_CODE": "G1"}, {"NHS_NUMBER": "2", "GP_CODE": "G2"}],
            "root.gp": [
                {"ODS_CODE": "G1", "NAME": "A"},
                {"ODS_CODE": "G1", "NAME": "B"},
                {"ODS_CODE": "G2", "NAME": "C"},
            ],
        },
    )
    assert docs(result) == [{"gp": "C"}]
    [reject] = result.rejects
    assert reject.doc_type == "doc"
    assert reject.source_key == {"NHS_NUMBER": "1"}
    assert reject.key == "1"
    assert reject.field == "fields.gp"
    assert "ORGS_NOPK" in reject.reason
    assert "G1" not in reject.reason and "A" not in reject.reason.replace("ORGS_NOPK", "")


def test_single_embed_with_two_children_rejects() -> None:
    plan = plan_of(
        PATIENT_BASE
        + """
fields:
  home: {embed: ADDRESSES, on: {NHS_NUMBER: NHS_NUMBER}, single: true, fields: {pc: POSTCODE}}
"""
    )
    result = build(
        plan,
        {
            "root": [{"NHS_NUMBER": "1"}, {"NHS_NUMBER": "2"}, {"NHS_NUMBER": "3"}],
            "root.home": [
                {"ADDRESS_ID": 1, "NHS_NUMBER": "1", "POSTCODE": "A"},
                {"ADDRESS_ID": 2, "NHS_NUMBER": "1", "POSTCODE": "B"},
                {"ADDRESS_ID": 3, "NHS_NUMBER": "2", "POSTCODE": "C"},
            ],
        },
    )
    assert docs(result) == [{"home": {"pc": "C"}}, {}]
    assert [(r.source_key, r.field) for r in result.rejects] == [
        ({"NHS_NUMBER": "1"}, "fields.home")
    ]


GENDER = (
    PATIENT_BASE
    + """
fields:
  gender: {column: GENDER, values: {M: male, F: female, NO: none, "1": one}%s}
"""
)


def test_values_translate_codes_as_raw_text_with_default() -> None:
    plan = plan_of(GENDER % ", default: unknown")
    rows = [
        {"NHS_NUMBER": "1", "GENDER": "M"},
        {"NHS_NUMBER": "2", "GENDER": "NO"},  # YAML `NO:` is the code "NO", not false
        {"NHS_NUMBER": "3", "GENDER": "X"},
        {"NHS_NUMBER": "4", "GENDER": None},  # NULL is not a code: omitted, not defaulted
        {"NHS_NUMBER": "5", "GENDER": "1"},
    ]
    result = build(plan, {"root": rows})
    assert docs(result) == [
        {"gender": "male"},
        {"gender": "none"},
        {"gender": "unknown"},
        {},
        {"gender": "one"},
    ]


def test_values_code_with_no_entry_rejects_without_the_value() -> None:
    plan = plan_of(GENDER % "")
    rows = [{"NHS_NUMBER": "1", "GENDER": "Q"}, {"NHS_NUMBER": "2", "GENDER": "F"}]
    result = build(plan, {"root": rows})
    assert docs(result) == [{"gender": "female"}]
    [reject] = result.rejects
    assert (reject.key, reject.field) == ("1", "fields.gender")
    assert reject.reason == "code has no entry in `values` (column GENDER)"


def test_as_that_cannot_convert_rejects() -> None:
    plan = plan_of(
        PATIENT_BASE
        + """
fields:
  age: {column: AGE_TEXT, as: integer}
"""
    )
    rows = [{"NHS_NUMBER": "1", "AGE_TEXT": "4x"}, {"NHS_NUMBER": "2", "AGE_TEXT": "42"}]
    result = build(plan, {"root": rows})
    assert docs(result) == [{"age": 42}]
    [reject] = result.rejects
    assert reject.field == "fields.age"
    assert "AGE_TEXT" in reject.reason and "4x" not in reject.reason


def test_key_template_escapes_and_default_key() -> None:
    plan = plan_of(
        PATIENT_BASE
        + """
key: "{{p}}/{NHS_NUMBER}:{gp_code}}}"
fields: {n: NHS_NUMBER}
"""
    )
    result = build(plan, {"root": [{"NHS_NUMBER": "9 0", "GP_CODE": "é"}]})
    assert [d.key for d in result.documents] == ["{p}/9 0:é}"]
    items = plan_of(
        """
table: ITEMS
bucket: items
fields: {code: CODE}
"""
    )
    result = build(
        items, {"root": [{"ORDER_ID": 10, "LINE_NO": 2}, {"ORDER_ID": 9, "LINE_NO": 30}]}
    )
    assert [d.key for d in result.documents] == ["9:30", "10:2"]


def test_rows_that_render_one_key_are_all_rejected_naming_each_other() -> None:
    """Two spellings of one key ("a/b" + "c" and "a" + "b/c") never overwrite each other: every
    row of the collision is a reject naming the others, and none is written."""
    plan = plan_of(
        """
table: ITEMS
bucket: items
key: "{ORDER_ID}/{LINE_NO}"
fields: {code: CODE}
"""
    )
    # ORDER_ID is NUMBER(10) with text in it (a loosely typed source): "1" and 1 are one key
    rows = {
        "root": [
            {"ORDER_ID": 1, "LINE_NO": 1, "CODE": "a"},
            {"ORDER_ID": 2, "LINE_NO": 1, "CODE": "b"},
            {"ORDER_ID": 3, "LINE_NO": 1, "CODE": "c"},
            {"ORDER_ID": 3, "LINE_NO": 1, "CODE": "d"},
            {"ORDER_ID": 4, "LINE_NO": 2, "CODE": "e"},
        ]
    }
    result = build(plan, rows)
    assert [d.key for d in result.documents] == ["1/1", "2/1", "4/2"]
    assert result.source_keys == ['["1","1"]', '["2","1"]', '["4","2"]']
    assert [(r.key, r.source_key) for r in result.rejects] == [
        ("3/1", {"ORDER_ID": "3", "LINE_NO": "1"}),
        ("3/1", {"ORDER_ID": "3", "LINE_NO": "1"}),
    ]
    assert all(r.field == "key" and "2 rows render" in r.reason for r in result.rejects)
    assert [(c.key, c.source_key) for c in result.collided] == [("3/1", '["3","1"]')] * 2
    known = {"4/2": ["ORDER_ID=9, LINE_NO=9 (chunk doc:00007)"]}
    again = plan.build(
        {
            "root": pa.table(
                {c: [r.get(c) for r in rows["root"]] for c in plan.extract.root.columns}
            )
        },
        collided=known,
    )
    assert [d.key for d in again.documents] == ["1/1", "2/1"] and len(again.rejects) == 3
    [elsewhere] = [r for r in again.rejects if r.key == "4/2"]
    assert "ORDER_ID=9, LINE_NO=9 (chunk doc:00007)" in elsewhere.reason


def test_key_escape_percent_keeps_every_row_apart() -> None:
    """With `key_escape: percent` the template's separators (and `%`) inside a value are written
    %XX, so the rows that collide without it render distinct keys."""
    plan = plan_of(
        """
table: ORGS
bucket: orgs
key: "{REGION}/{ODS_CODE}"
key_escape: percent
fields: {name: NAME}
"""
    )
    rows = {
        "root": [
            {"ODS_CODE": "b/c", "REGION": "a", "NAME": "1"},
            {"ODS_CODE": "c", "REGION": "a/b", "NAME": "2"},
            {"ODS_CODE": "100%", "REGION": "é/", "NAME": "3"},
            {"ODS_CODE": "x", "REGION": "y", "NAME": "4"},
        ]
    }
    result = build(plan, rows)
    assert result.rejects == []
    assert sorted(d.key for d in result.documents) == ["a%2Fb/c", "a/b%2Fc", "y/x", "é%2F/100%25"]
    plain = plan_of(
        """
table: ORGS
bucket: orgs
key: "{REGION}/{ODS_CODE}"
fields: {name: NAME}
"""
    )
    assert len(build(plain, rows).rejects) == 2
    assert plan.fingerprint != plain.fingerprint


def test_null_or_empty_key_rejects_with_no_key() -> None:
    # GP_CODE is unique here, so the template covers a unique constraint
    schema = SchemaInfo(
        {
            "PATIENTS": table(
                "PATIENTS",
                list(SCHEMA.tables["PATIENTS"].columns),
                ("NHS_NUMBER",),
                unique=(("GP_CODE",),),
            )
        }
    )
    plan = plan_of(
        PATIENT_BASE
        + """
key: "{GP_CODE}"
fields: {n: NHS_NUMBER}
""",
        schema,
    )
    rows = [
        {"NHS_NUMBER": "1", "GP_CODE": None},
        {"NHS_NUMBER": "2", "GP_CODE": ""},
        {"NHS_NUMBER": "3", "GP_CODE": "G"},
    ]
    result = build(plan, {"root": rows})
    assert [d.key for d in result.documents] == ["G"]
    assert [(r.source_key, r.key, r.field) for r in result.rejects] == [
        ({"NHS_NUMBER": "1"}, None, "key"),
        ({"NHS_NUMBER": "2"}, None, "key"),
    ]
    assert "GP_CODE" in result.rejects[0].reason


def test_indexes_from_column_path_and_array_path() -> None:
    plan = plan_of(
        PATIENT_BASE
        + """
fields:
  gp: GP_CODE
  points: SCORE
  addresses:
    embed: ADDRESSES
    on: {NHS_NUMBER: NHS_NUMBER}
    fields: {postcode: POSTCODE, lines: [LINE1, LINE2]}
indexes:
  gp_bin: gp_code
  birth_int: {column: DATE_OF_BIRTH, as: yyyymmdd}
  postcode_bin: addresses.postcode
  line_bin: addresses.lines
  points_bin: points  # a top-level field: no root column has this name
  zzz_bin: GIVEN_NAME
"""
    )
    result = build(
        plan,
        {
            "root": [
                {
                    "NHS_NUMBER": "1",
                    "GP_CODE": "G1",
                    "DATE_OF_BIRTH": dt.datetime(1980, 2, 29),
                    "SCORE": Decimal("3"),
                    "GIVEN_NAME": "",
                }
            ],
            "root.addresses": [
                {"ADDRESS_ID": 1, "NHS_NUMBER": "1", "POSTCODE": "B2", "LINE1": "x", "LINE2": "y"},
                {"ADDRESS_ID": 2, "NHS_NUMBER": "1", "POSTCODE": "A1", "LINE1": "x", "LINE2": ""},
                {"ADDRESS_ID": 3, "NHS_NUMBER": "1", "POSTCODE": "B2"},
                {"ADDRESS_ID": 4, "NHS_NUMBER": "1", "POSTCODE": None},
            ],
        },
    )
    [doc] = result.documents
    assert doc.indexes == (
        ("birth_int", (19800229,)),
        ("gp_bin", ("G1",)),
        ("line_bin", ("x", "y")),
        ("points_bin", ("3.00",)),
        ("postcode_bin", ("A1", "B2")),
    )


def test_int_index_with_a_non_integer_rejects() -> None:
    plan = plan_of(
        PATIENT_BASE
        + """
fields:
  points: SCORE
indexes:
  points_int: points
"""
    )
    result = build(plan, {"root": [{"NHS_NUMBER": "1", "SCORE": Decimal("2.5")}]})
    assert result.documents == []
    [reject] = result.rejects
    assert (reject.key, reject.field) == ("1", "indexes.points_int")
    assert "2.5" not in reject.reason
    flag = plan_of(
        PATIENT_BASE
        + """
fields: {flag: {literal: true}}
indexes: {flag_int: flag}
"""
    )
    assert build(flag, {"root": [{"NHS_NUMBER": "1"}]}).rejects[0].field == "indexes.flag_int"


def test_rows_read_with_flaws_reject_every_document_they_go_into() -> None:
    """A value that broke its column's rule when read is staged as NULL with its row's flaw
    text (`FLAWS_COLUMN`): the root it belongs to, or that embeds or looks it up, is rejected
    naming the column and the rule; documents that do not take it are built as usual."""
    plan = plan_of(
        PATIENT_BASE
        + """
fields:
  name: FAMILY_NAME
  gp: {lookup: ORGS, on: {ODS_CODE: GP_CODE}, field: NAME}
  addresses:
    embed: ADDRESSES
    on: {NHS_NUMBER: NHS_NUMBER}
    fields: {line: LINE1}
"""
    )
    bad_date = "column DATE_OF_BIRTH (DATE) holds a value that is not date: expected ..."
    bad_line = "column LINE1 (VARCHAR2(50)) holds a value that is not string: expected text"
    bad_name = "column NAME (VARCHAR2(80)) holds a value that is not string: expected text"
    rows = {
        "root": [
            {"NHS_NUMBER": n, "FAMILY_NAME": f"F{n}", "GP_CODE": gp}
            for n, gp in (("1", "G1"), ("2", "G2"), ("3", "G1"), ("4", "G3"))
        ],
        "root.gp": [
            {"ODS_CODE": "G1", "NAME": "One"},
            {"ODS_CODE": "G2", "NAME": None},
            {"ODS_CODE": "G3", "NAME": "Three"},
        ],
        "root.addresses": [
            {"ADDRESS_ID": 1, "NHS_NUMBER": "1", "LINE1": "a"},
            {"ADDRESS_ID": 2, "NHS_NUMBER": "3", "LINE1": None},
            {"ADDRESS_ID": 3, "NHS_NUMBER": "4", "LINE1": "c"},
        ],
    }
    flaws = {"root": [None, None, None, bad_date], "root.gp": [None, bad_name, None]}
    flaws["root.addresses"] = [None, bad_line, None]
    result = build(plan, rows, flaws=flaws)
    assert docs(result) == [{"addresses": [{"line": "a"}], "gp": "One", "name": "F1"}]
    by_key = {r.key: r for r in result.rejects}
    assert sorted(by_key) == ["2", "3", "4"]
    assert by_key["2"].field == "fields.gp" and bad_name in by_key["2"].reason
    assert by_key["3"].field == "fields.addresses" and bad_line in by_key["3"].reason
    assert "ADDRESSES" in by_key["3"].reason
    assert by_key["4"].field == "PATIENTS" and by_key["4"].reason == bad_date
    assert by_key["4"].source_key == {"NHS_NUMBER": "4"}


def test_max_bytes_rejects_large_documents() -> None:
    plan = plan_of(PATIENT_BASE + "fields: {n: NHS_NUMBER, g: GIVEN_NAME}")
    rows = [{"NHS_NUMBER": "1", "GIVEN_NAME": "x" * 100}, {"NHS_NUMBER": "2", "GIVEN_NAME": "y"}]
    result = build(plan, {"root": rows}, max_bytes=50)
    assert [d.key for d in result.documents] == ["2"]
    assert [r.key for r in result.rejects] == ["1"]


def test_rows_with_other_columns_than_the_plan_are_refused() -> None:
    plan = plan_of(PATIENT_BASE + "fields: {n: NHS_NUMBER, g: GIVEN_NAME}")
    with pytest.raises(StagingError, match="columns"):
        plan.build({"root": pa.table({"NHS_NUMBER": ["1"]})})
    with pytest.raises(StagingError, match="no rows"):
        plan.build({})


def test_duplicate_lookup_rows_of_one_primary_key_are_one_match() -> None:
    plan = plan_of(
        PATIENT_BASE + "fields: {gp: {lookup: ORGS, on: {ODS_CODE: GP_CODE}, field: NAME}}"
    )
    org = {"ODS_CODE": "G1", "NAME": "S"}
    result = build(plan, {"root": [{"NHS_NUMBER": "1", "GP_CODE": "G1"}], "root.gp": [org, org]})
    assert docs(result) == [{"gp": "S"}]


def test_embed_inside_a_lookup() -> None:
    staff = table(
        "STAFF",
        [
            col("STAFF_ID", K.INTEGER, "NUMBER(5)"),
            col("ODS_CODE", K.STRING, "VARCHAR2(8)"),
            col("ROLE", K.STRING, "VARCHAR2(8)"),
        ],
        ("STAFF_ID",),
    )
    plan = plan_of(
        PATIENT_BASE
        + """
fields:
  gp:
    lookup: ORGS
    on: {ODS_CODE: GP_CODE}
    fields:
      name: NAME
      staff: {embed: STAFF, on: {ODS_CODE: ODS_CODE}, fields: {role: ROLE}}
""",
        SchemaInfo({**SCHEMA.tables, "STAFF": staff}),
    )
    result = build(
        plan,
        {
            "root": [{"NHS_NUMBER": "1", "GP_CODE": "G1"}, {"NHS_NUMBER": "2", "GP_CODE": "G2"}],
            "root.gp": [{"ODS_CODE": "G1", "NAME": "One"}, {"ODS_CODE": "G2", "NAME": "Two"}],
            "root.gp.staff": [
                {"STAFF_ID": 3, "ODS_CODE": "G1", "ROLE": "c"},
                {"STAFF_ID": 1, "ODS_CODE": "G1", "ROLE": "a"},
            ],
        },
    )
    assert docs(result) == [
        {"gp": {"name": "One", "staff": [{"role": "a"}, {"role": "c"}]}},
        {"gp": {"name": "Two", "staff": []}},
    ]


def test_number_staged_as_decimal_text_converts_sorts_and_joins_as_a_number() -> None:
    schema = SchemaInfo(
        {
            "PATIENTS": SCHEMA.tables["PATIENTS"],
            "READINGS": table(
                "READINGS",
                [
                    col("READING_ID", K.NUMBER, "NUMBER"),
                    col("NHS_NUMBER", K.STRING, "VARCHAR2(10)"),
                    col("VALUE", K.NUMBER, "NUMBER"),
                ],
                ("READING_ID",),
            ),
            "UNITS": table(
                "UNITS",
                [col("UNIT_ID", K.INTEGER, "NUMBER(5)"), col("LABEL", K.STRING, "VARCHAR2(9)")],
                ("UNIT_ID",),
            ),
        }
    )
    plan = plan_of(
        PATIENT_BASE
        + """
fields:
  readings:
    embed: READINGS
    on: {NHS_NUMBER: NHS_NUMBER}
    order_by: [VALUE]
    fields:
      value: VALUE
      unit: {lookup: UNITS, on: {UNIT_ID: READING_ID}, field: LABEL}
""",
        schema,
    )
    readings = [
        {"READING_ID": "10", "NHS_NUMBER": "1", "VALUE": "10.50"},
        {"READING_ID": "2", "NHS_NUMBER": "1", "VALUE": "9"},
        {"READING_ID": "3", "NHS_NUMBER": "1", "VALUE": "1E+2"},
    ]
    units = [{"UNIT_ID": 10, "LABEL": "ten"}, {"UNIT_ID": 2, "LABEL": "two"}]
    result = build(
        plan,
        {"root": [{"NHS_NUMBER": "1"}], "root.readings": readings, "root.readings.unit": units},
    )
    assert result.rejects == []
    assert result.documents[0].value == (
        b'{"readings":[{"unit":"two","value":9},{"unit":"ten","value":10.5},{"value":100}]}'
    )


def test_a_pickled_plan_builds_the_same_documents() -> None:
    plan = plan_of(THREE_DEEP)
    copy = pickle.loads(pickle.dumps(plan))
    assert copy.fingerprint == plan.fingerprint
    assert build(copy, three_deep_rows()) == build(plan, three_deep_rows())


# -- determinism property --------------------------------------------------------------------------

_days = st.one_of(st.none(), st.sampled_from([dt.datetime(2020, 1, d) for d in (1, 2)]))


@st.composite
def _chunks(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    patients = draw(st.lists(st.sampled_from("abcde"), unique=True, max_size=4))
    orders = [
        {"ORDER_ID": i, "NHS_NUMBER": draw(st.sampled_from("abcdez")), "PLACED": draw(_days)}
        for i in range(draw(st.integers(0, 6)))
    ]
    items = [
        {"ORDER_ID": o, "LINE_NO": line, "CODE": draw(st.sampled_from(["x", "y", None]))}
        for o in range(6)
        for line in range(draw(st.integers(0, 2)))
    ]
    events = [
        {
            "EVENT_ID": i,
            "ORDER_ID": draw(st.integers(0, 5)),
            "LINE_NO": draw(st.integers(0, 2)),
            "AT": draw(_days),
            "KIND": draw(st.sampled_from(["a", "b"])),
        }
        for i in range(draw(st.integers(0, 8)))
    ]
    notes = [
        {"NHS_NUMBER": draw(st.sampled_from("abc")), "SEQ": draw(st.sampled_from([1, 2, None]))}
        for _ in range(draw(st.integers(0, 5)))
    ]
    orgs = [{"ODS_CODE": code, "NAME": code.upper()} for code in ("abc")]
    return {
        "root": [{"NHS_NUMBER": p, "GP_CODE": draw(st.sampled_from("abq"))} for p in patients],
        "root.orders": orders,
        "root.orders.items": items,
        "root.orders.items.events": events,
        "root.notes": notes,
        "root.gp": orgs,
    }


PROPERTY = (
    THREE_DEEP
    + """
  notes: {embed: NOTES, on: {NHS_NUMBER: NHS_NUMBER}, fields: {seq: SEQ}}
  gp: {lookup: ORGS, on: {ODS_CODE: GP_CODE}, field: NAME}
indexes:
  kind_bin: orders.items.events.kind
  order_int: orders.id
"""
)
PROPERTY_PLAN = plan_of(PROPERTY)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk=_chunks(), seed=st.integers(0, 2**32 - 1))
def test_shuffling_any_node_never_changes_the_output(
    chunk: dict[str, list[dict[str, Any]]], seed: int
) -> None:
    expected = build(PROPERTY_PLAN, chunk)
    rng = random.Random(seed)
    shuffled = {node: rng.sample(rows, len(rows)) for node, rows in chunk.items()}
    assert build(PROPERTY_PLAN, shuffled) == expected


@pytest.fixture(autouse=True, params=["columns", "rows"])
def builder_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs against both builders: column-wise with no fallback for Arrow
    errors (so a gap in it fails the test rather than hiding), and row by row."""
    from migrate.mapping.builder import DocumentBuilder
    from migrate.mapping.columnar import ColumnarBuilder

    if request.param == "columns":
        monkeypatch.setattr(ColumnarBuilder, "build", ColumnarBuilder._build)
    else:
        monkeypatch.setattr(DocumentBuilder, "build", _rows_only)
    return str(request.param)


def _rows_only(self: Any, tables: Any, *, max_bytes: int | None = None) -> BuildResult:
    return self.build_rows_result(tables, max_bytes)  # type: ignore[no-any-return]
