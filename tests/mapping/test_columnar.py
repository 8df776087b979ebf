"""The column-wise build gives exactly what the row builder gives: same documents, same bytes,
same index entries, same rejects in the same order, on random rows full of awkward values and on
every staged chunk of the demo. The column-wise side runs with no fallback for Arrow errors, so a
gap in it fails here instead of hiding behind the row builder."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate.document import BuildResult
from migrate.mapping import DocPlan, compile_mapping, parse_mapping
from migrate.schema import ColumnInfo, ColumnType, SchemaInfo, TableInfo, ValueKind

K = ValueKind


def col(name: str, kind: ValueKind, declared: str, scale: int | None = None) -> ColumnInfo:
    return ColumnInfo(name, ColumnType(kind, declared, None, scale))


SCHEMA = SchemaInfo(
    {
        t.name: t
        for t in [
            TableInfo(
                "ROOTS",
                (
                    col("ID", K.STRING, "VARCHAR2(10)"),
                    col("NAME", K.STRING, "VARCHAR2(50)"),
                    col("BORN", K.DATE, "DATE"),
                    col("SEEN", K.TIMESTAMP, "TIMESTAMP"),
                    col("CHANGED", K.TIMESTAMP_TZ, "TIMESTAMP WITH TIME ZONE"),
                    col("COST", K.DECIMAL, "NUMBER(8,2)", 2),
                    col("RATE", K.FLOAT, "BINARY_DOUBLE"),
                    col("COUNT", K.INTEGER, "NUMBER(10)"),
                    col("UID", K.BINARY, "RAW(16)"),
                    col("ATTRS", K.STRING, "CLOB"),
                    col("CODE", K.STRING, "CHAR(1)"),
                    col("ORG", K.STRING, "VARCHAR2(8)"),
                ),
                ("ID",),
            ),
            TableInfo(
                "KIDS",
                (
                    col("KID_ID", K.INTEGER, "NUMBER(10)"),
                    col("ID", K.STRING, "VARCHAR2(10)"),
                    col("AT", K.DATE, "DATE"),
                    col("NOTE", K.STRING, "VARCHAR2(50)"),
                    col("QTY", K.INTEGER, "NUMBER(10)"),
                ),
                ("KID_ID",),
            ),
            TableInfo(
                "ORGS",
                (col("ORG", K.STRING, "VARCHAR2(8)"), col("NAME", K.STRING, "VARCHAR2(50)")),
                ("ORG",),
            ),
        ]
    }
)

MAPPING = """
service: test
documents:
  doc:
    table: ROOTS
    bucket: roots
    key: "r/{ID}"
    nulls: {nulls}
    fields:
      id: ID
      kind: {literal: root}
      name: NAME
      born: BORN
      bornOn: {column: BORN, as: date}
      seen: SEEN
      changed: CHANGED
      cost: COST
      costNumber: {column: COST, as: number}
      rate: RATE
      count: COUNT
      countText: {column: COUNT, as: string}
      uid: UID
      attrs: {column: ATTRS, as: json}
      code: {column: CODE, values: {"A": alpha, "B": 2, "N": null}, default: other}
      strict: {column: CODE, values: {"A": alpha, "B": beta}}
      names: [NAME, ATTRS, CODE]
      texts: [NAME, CODE, ORG]      # text only: quoted in the list's own join
      oneText: [ORG]
      meta:
        seenDay: {column: SEEN, as: yyyymmdd}
        inner: {name: NAME}
      org: {lookup: ORGS, on: {ORG: ORG}, fields: {code: ORG, name: NAME}}
      orgName: {lookup: ORGS, on: {ORG: ORG}, field: NAME}
      kids:
        embed: KIDS
        on: {ID: ID}
        order_by: [AT, NOTE]
        fields:
          at: AT
          note: NOTE
          qty: QTY
      firstKid:
        embed: KIDS
        on: {ID: ID}
        single: true
        fields: {note: NOTE}
    indexes:
      name_bin: NAME
      count_int: COUNT
      seen_int: {column: SEEN, as: yyyymmdd}
      note_bin: kids.note
      qty_int: kids.qty
      org_bin: orgName
"""

TEXT = st.one_of(
    st.sampled_from(
        ["", "a", "Ann", 'quote " here', "back\\slash", "new\nline", "tab\t", "é ü 漢"]
    ),
    st.text(max_size=6),
)
MOMENT = st.one_of(
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    st.sampled_from(
        [
            dt.datetime(2020, 1, 2),
            dt.datetime(1969, 12, 31, 23, 59, 59, 500_000),
            dt.datetime(999, 1, 1),
            dt.datetime(2000, 2, 29, 12, 0, 0, 1),
        ]
    ),
)
JSON_TEXT = st.sampled_from(['{"b": 1, "a": [1.50, null]}', "[]", "null", "1E+400", "{oops", "3"])


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


ROOT = st.fixed_dictionaries(
    {
        "ID": st.sampled_from(["1", "2", "3", "10", "x", ""]),
        "NAME": _maybe(TEXT),
        "BORN": _maybe(MOMENT),
        "SEEN": _maybe(MOMENT),
        "CHANGED": _maybe(MOMENT),
        "COST": _maybe(st.decimals(min_value=-(10**6), max_value=10**6, places=2, allow_nan=False)),
        "RATE": _maybe(st.floats(allow_nan=True, allow_infinity=True)),
        "COUNT": _maybe(st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        "UID": _maybe(st.binary(max_size=4)),
        "ATTRS": _maybe(JSON_TEXT),
        "CODE": _maybe(st.sampled_from(["A", "B", "N", "Z"])),
        "ORG": _maybe(st.sampled_from(["O1", "O2", "O3"])),
    }
)
KID = st.fixed_dictionaries(
    {
        "KID_ID": st.integers(min_value=1, max_value=8),
        "ID": _maybe(st.sampled_from(["1", "2", "3", "10", "x"])),
        "AT": _maybe(st.sampled_from([dt.datetime(2020, 1, 1), dt.datetime(2019, 5, 5, 10)])),
        "NOTE": _maybe(TEXT),
        "QTY": _maybe(st.integers(min_value=-5, max_value=5)),
    }
)
ORG = st.fixed_dictionaries({"ORG": st.sampled_from(["O1", "O2", "O3"]), "NAME": _maybe(TEXT)})
TYPES = {
    "ID": pa.string(),
    "NAME": pa.string(),
    "BORN": pa.timestamp("us"),
    "SEEN": pa.timestamp("us"),
    "CHANGED": pa.timestamp("us", tz="UTC"),
    "COST": pa.decimal128(38, 2),
    "RATE": pa.float64(),
    "COUNT": pa.int64(),
    "UID": pa.binary(),
    "ATTRS": pa.string(),
    "CODE": pa.string(),
    "ORG": pa.string(),
    "KID_ID": pa.int64(),
    "AT": pa.timestamp("us"),
    "NOTE": pa.string(),
    "QTY": pa.int64(),
}


def plan_for(nulls: str) -> DocPlan:
    text = MAPPING.replace("{nulls}", nulls)
    return compile_mapping(parse_mapping(text, Path("test.yaml")), SCHEMA).doc_types[0]


PLANS = {nulls: plan_for(nulls) for nulls in ("omit", "keep")}


def tables_of(plan: DocPlan, rows: dict[str, list[dict[str, Any]]]) -> dict[str, pa.Table]:
    tables = {}
    for node in plan.extract.nodes:
        given = rows[node.table]
        tables[node.node_id] = pa.table(
            {c: pa.array([r[c] for r in given], TYPES[c]) for c in node.columns}
        )
    return tables


def both_ways(plan: DocPlan, tables: dict[str, pa.Table]) -> tuple[BuildResult, BuildResult]:
    builder = plan.builder
    assert builder._columnar is not None, "the column-wise build must cover this mapping"
    return builder._columnar._build(tables, 4_000), builder.build_rows_result(tables, 4_000)


def same(columns: BuildResult, rows: BuildResult) -> None:
    assert [d.key for d in columns.documents] == [d.key for d in rows.documents]
    for a, b in zip(columns.documents, rows.documents, strict=True):
        assert a.value == b.value, a.key
        assert a == b
    assert columns.rejects == rows.rejects


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    roots=st.lists(ROOT, max_size=8, unique_by=lambda r: r["ID"]),
    kids=st.lists(KID, max_size=10),
    orgs=st.lists(ORG, max_size=4),
    nulls=st.sampled_from(["omit", "keep"]),
)
def test_random_rows_build_the_same_both_ways(
    roots: list[dict[str, Any]],
    kids: list[dict[str, Any]],
    orgs: list[dict[str, Any]],
    nulls: str,
) -> None:
    plan = PLANS[nulls]
    tables = tables_of(plan, {"ROOTS": roots, "KIDS": kids, "ORGS": orgs})
    same(*both_ways(plan, tables))


def test_awkward_rows_reject_exactly_as_the_row_builder_does() -> None:
    """One row per broken rule, next to clean rows: each comes back from the row builder."""
    base = {
        "NAME": "Ann",
        "BORN": dt.datetime(1980, 5, 17),
        "SEEN": dt.datetime(2020, 1, 2, 3, 4, 5, 6),
        "CHANGED": dt.datetime(2021, 6, 1, 12),
        "COST": Decimal("12.50"),
        "RATE": 0.1,
        "COUNT": 7,
        "UID": b"\x00\x01",
        "ATTRS": '{"z": 1, "a": 2}',
        "CODE": "A",
        "ORG": "O1",
    }
    roots = [
        {**base, "ID": "1"},
        {**base, "ID": "2", "CODE": "Z"},  # `strict` has no entry and no default
        {**base, "ID": "3", "ORG": "O2"},  # two ORGS rows of one primary key: one match
        {**base, "ID": "4", "ATTRS": "{oops"},  # not JSON
        {**base, "ID": "5", "RATE": float("nan")},  # not finite
        {**base, "ID": "6"},  # two kids: `single` embed breaks
        {**base, "ID": "7", "NAME": "x" * 3_000, "ATTRS": None},  # over 4,000 bytes
        {**base, "ID": "8"},
    ]
    kids = [
        {"KID_ID": 1, "ID": "6", "AT": None, "NOTE": "a", "QTY": 1},
        {"KID_ID": 2, "ID": "6", "AT": None, "NOTE": "b", "QTY": 2},
        {"KID_ID": 3, "ID": "8", "AT": None, "NOTE": "c", "QTY": 3},
    ]
    orgs = [{"ORG": "O1", "NAME": "One"}, {"ORG": "O2", "NAME": "Two"}]
    orgs.append({"ORG": "O2", "NAME": "Two"})  # read twice (as a join can): still one row
    plan = PLANS["omit"]
    columns, rows = both_ways(plan, tables_of(plan, {"ROOTS": roots, "KIDS": kids, "ORGS": orgs}))
    same(columns, rows)
    assert [d.key for d in columns.documents] == ["r/1", "r/3", "r/8"]
    assert [r.source_key for r in columns.rejects] == [{"ID": str(i)} for i in (2, 4, 5, 6, 7)]


def test_every_staged_chunk_of_the_demo_builds_the_same_both_ways(tmp_path: Path) -> None:
    from migrate.demo import SERVICES, create_demo
    from migrate.pipeline import run_services
    from migrate.project import Project
    from migrate.source import read_staged

    create_demo(tmp_path / "demo", patients=400, seed=3)
    project = Project.load(tmp_path / "demo" / "migrate.toml")
    try:
        run_services(project, list(SERVICES), workers=1)
        checked = 0
        for service in SERVICES:
            for plan in project.plan(project.config.service(service)).doc_types:
                folders = (project.config.work_dir / service).glob(f"*/staged/{plan.name}/*")
                for folder in sorted(folders):
                    columns, rows = both_ways(plan, read_staged(folder))
                    same(columns, rows)
                    checked += len(rows.documents)
        assert checked > 400
    finally:
        project.close()
