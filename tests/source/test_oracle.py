"""Oracle without a server: every statement the toolkit sends, compiled by SQLAlchemy's Oracle
dialect set up as a connection to Oracle 19 sets it up, checked against Oracle's rules; the
reads run against a test double of the oracledb connection (ORA-01555 raised as oracledb's own
exception); type resolution on the type objects SQLAlchemy's Oracle reflection produces.

What this cannot show, and no test here claims: that a live Oracle server plans, runs and
returns these statements as expected (see the README's Sources section).
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import oracledb
import pytest
from oracle_double import OracleDouble, ora_error
from sqlalchemy.dialects import oracle
from sqlalchemy.sql import sqltypes

from migrate.errors import SourceError
from migrate.schema import ColumnInfo, ColumnType, TableInfo, ValueKind
from migrate.source import ChunkRange, Source
from migrate.source.dialects import OracleDialect, dialect_for
from migrate.source.dialects.oracle import output_type
from migrate.source.sql import Queries
from migrate.source.types import resolve_type
from migrate.spec import ExtractSpec, NodeKind, NodeSpec

SCN = 81234567


def _col(name: str, declared: str) -> ColumnInfo:
    return ColumnInfo(name, resolve_type(declared))


TABLES = {
    "PATIENTS": TableInfo(
        "PATIENTS",
        (_col("NHS_NUMBER", "VARCHAR2(10)"), _col("SENSITIVE_FLAG", "CHAR(1)"),
         _col("CREATED_AT", "TIMESTAMP WITH TIME ZONE"), _col("NOTE", "CLOB")),
        ("NHS_NUMBER",),
    ),
    "PATIENT_ADDRESSES": TableInfo(
        "PATIENT_ADDRESSES",
        (_col("ADDRESS_ID", "NUMBER(12)"), _col("NHS_NUMBER", "VARCHAR2(10)"),
         _col("FROM_DATE", "DATE")),
        ("ADDRESS_ID",),
    ),
    "PRESCRIPTIONS": TableInfo(
        "PRESCRIPTIONS",
        (_col("PRESCRIBER", "VARCHAR2(10)"), _col("PRESCRIPTION_NO", "NUMBER(10)"),
         _col("ISSUED_AT", "TIMESTAMP(6)"), _col("STATUS", "VARCHAR2(4)")),
        ("PRESCRIBER", "PRESCRIPTION_NO"),
    ),
    "PRESCRIPTION_ITEMS": TableInfo(
        "PRESCRIPTION_ITEMS",
        (_col("PRESCRIBER", "VARCHAR2(10)"), _col("PRESCRIPTION_NO", "NUMBER(10)"),
         _col("ITEM_NO", "NUMBER(3)"), _col("ITEM_ID", "NUMBER(12)"),
         _col("PRICE", "NUMBER(10,2)")),
        ("PRESCRIBER", "PRESCRIPTION_NO", "ITEM_NO"),
    ),
    "DISPENSE_EVENTS": TableInfo(
        "DISPENSE_EVENTS",
        (_col("EVENT_ID", "NUMBER(12)"), _col("ITEM_ID", "NUMBER(12)"),
         _col("SIGNATURE", "BLOB")),
        ("EVENT_ID",),
    ),
    "lower_case": TableInfo("lower_case", (_col("Id", "NUMBER(5)"),), ("Id",)),
}  # fmt: skip

PATIENT = ExtractSpec(
    "pds", "patient", "PATIENTS", ("NHS_NUMBER",), "COALESCE(SENSITIVE_FLAG, 'N') <> 'S'",
    (
        NodeSpec("p", NodeKind.ROOT, "PATIENTS", ("NHS_NUMBER", "CREATED_AT", "NOTE")),
        NodeSpec("p.addresses", NodeKind.EMBED, "PATIENT_ADDRESSES", ("NHS_NUMBER", "FROM_DATE"),
                 "p", (("NHS_NUMBER", "NHS_NUMBER"),)),
    ),
)  # fmt: skip
PRESCRIPTION = ExtractSpec(
    "eps", "prescription", "PRESCRIPTIONS", ("PRESCRIBER", "PRESCRIPTION_NO"), "STATUS <> '0005'",
    (
        NodeSpec("rx", NodeKind.ROOT, "PRESCRIPTIONS",
                 ("PRESCRIBER", "PRESCRIPTION_NO", "ISSUED_AT")),
        NodeSpec("rx.items", NodeKind.EMBED, "PRESCRIPTION_ITEMS", ("ITEM_ID", "PRICE"), "rx",
                 (("PRESCRIBER", "PRESCRIBER"), ("PRESCRIPTION_NO", "PRESCRIPTION_NO"))),
        NodeSpec("rx.items.dispenses", NodeKind.EMBED, "DISPENSE_EVENTS",
                 ("EVENT_ID", "ITEM_ID", "SIGNATURE"), "rx.items", (("ITEM_ID", "ITEM_ID"),)),
    ),
)  # fmt: skip
LOWER = ExtractSpec(
    "x", "x", "lower_case", ("Id",), None, (NodeSpec("x", NodeKind.ROOT, "lower_case", ("Id",)),)
)


@pytest.fixture
def double() -> OracleDouble:
    return OracleDouble()


@pytest.fixture
def rules(double: OracleDouble) -> Iterator[OracleDialect]:
    engine = double.engine()
    with engine.connect():  # SQLAlchemy sets its dialect up from the connection, as for real
        pass
    found = dialect_for(engine)
    assert isinstance(found, OracleDialect)
    yield found
    engine.dispose()


def _source(double: OracleDouble, *, schema: str | None = None) -> Source:
    """A Source whose engine connects to the double instead of a server."""
    source = Source(double.engine().url.render_as_string(), schema=schema)
    source.engine.dispose()
    source.engine = double.engine()
    source.rules = dialect_for(source.engine)
    source.remember(TABLES.values())
    return source


def test_the_dialect_is_set_up_as_a_connection_to_oracle_19(rules: OracleDialect) -> None:
    assert rules.sa.server_version_info == (19, 3, 0, 0, 0)
    assert rules.sa.supports_native_boolean is False  # 23ai has booleans; 19 does not
    assert rules.sa.paramstyle == "named"
    assert rules.sa.requires_name_normalize


def _statements(rules: OracleDialect, spec: ExtractSpec, schema: str | None = None) -> list[str]:
    """Every statement one document type sends: planning, counting, and each node's rows for
    a first, a middle and a last chunk (each shape of bounds)."""
    queries = Queries(spec, TABLES, dialect=rules, scn=SCN, schema=schema)
    width = len(spec.primary_key)
    lo, hi = ("A",) * width, ("M",) * width
    chunks = [ChunkRange(0, None, hi), ChunkRange(1, lo, hi), ChunkRange(2, lo, None)]
    sql = [
        str(queries.boundaries(500).compile(dialect=rules.sa)),
        str(queries.null_keys().compile(dialect=rules.sa)),
    ]
    for chunk in chunks:
        sql.append(queries.count(chunk)[0])
        sql += [queries.rows(node, chunk)[0] for node in spec.nodes]
    return sql


TABLE_REFERENCE = re.compile(r'(?:FROM|JOIN)\s+((?:"\w+"\.)?"\w+")(?!\.)(\s+AS OF SCN \d+)?', re.I)


@pytest.mark.parametrize("spec", [PATIENT, PRESCRIPTION, LOWER], ids=lambda s: s.doc_type)
def test_every_statement_follows_oracles_rules(rules: OracleDialect, spec: ExtractSpec) -> None:
    for sql in _statements(rules, spec):
        references = TABLE_REFERENCE.findall(sql)
        assert references, sql
        assert all(scn == f" AS OF SCN {SCN}" for _, scn in references), sql
        assert not re.search(r"\?|%s|%\(", sql), sql  # named binds only
        assert all(re.fullmatch(r"[a-z]\w*", b) for b in re.findall(r":(\w+)", sql)), sql
        assert not re.search(r"\bLIMIT\b|\bOFFSET\b|\bTOP\b", sql, re.I), sql
        assert not re.search(r"\)\s*(?:<=|>=|<|>)\s*\(", sql), sql  # no row-value comparison
        assert not re.search(r"\bIN\s*\(\s*:", sql, re.I), sql  # no IN list of bound values
        assert not re.search(r"\bTRUE\b|\bFALSE\b|\)\s*=\s*1\b", sql, re.I), sql
        assert not re.search(r"'\d{4}-\d\d-\d\d", sql), sql  # no date literal: bounds are binds
        assert "%" not in sql, sql  # Oracle's modulo is MOD()
        assert not re.search(r'(?:"|\))\s+AS\s+mig_(?:k|n\d)\b', sql), sql  # no AS before an alias


def test_the_mapping_where_is_its_own_condition(rules: OracleDialect) -> None:
    """Rendered as `AND (<where>) = 1` (a boolean without native booleans) Oracle before 23ai
    cannot parse it: every service with a `where` failed at its first planning statement."""
    for sql in _statements(rules, PATIENT):
        if '"PATIENTS"' in sql.split("WHERE")[0] or "WHERE" in sql:
            assert "(COALESCE(SENSITIVE_FLAG, 'N') <> 'S')" in sql or '"PATIENTS"' not in sql
        assert ") = 1" not in sql


def test_names_are_quoted_as_the_catalog_spells_them(rules: OracleDialect) -> None:
    sql = "\n".join(_statements(rules, LOWER) + _statements(rules, PATIENT))
    assert '"lower_case"' in sql and '"Id"' in sql  # unquoted, Oracle would read LOWER_CASE
    assert '"PATIENTS"' in sql and '"NHS_NUMBER"' in sql


def test_another_schemas_tables_are_named_in_every_statement(rules: OracleDialect) -> None:
    for sql in _statements(rules, PRESCRIPTION, schema="SPINE_OWNER"):
        references = TABLE_REFERENCE.findall(sql)
        assert references and all(t.startswith('"SPINE_OWNER".') for t, _ in references), sql


def test_zoned_timestamps_are_read_as_utc(rules: OracleDialect) -> None:
    queries = Queries(PATIENT, TABLES, dialect=rules, scn=SCN)
    sql = queries.rows(PATIENT.nodes[0], ChunkRange(0, None, None))[0]
    assert 'sys_extract_utc("PATIENTS"."CREATED_AT")' in sql


def _read_chunks(double: OracleDouble, source: Source) -> list[dict[str, Any]]:
    boundaries = [("9000000001", 1), ("9000000500", 2)]
    double.answer(r'c0.*FROM "PATIENTS"', [("9000000009", dt.datetime(2020, 1, 1, 6, 30), "note")])
    double.answer(r'c0.*FROM "PATIENT_ADDRESSES"', [("9000000009", dt.datetime(2001, 2, 3))])
    double.answer(r"current_scn", [(SCN,)])
    double.answer(r"mig_rn", [(b,) for b, _ in boundaries])
    double.answer(r"count\(\*\)", [(0,)])
    results = []
    with source.snapshot() as snapshot:
        assert snapshot.marker == f"scn:{SCN}" and snapshot.token is None
        for chunk in snapshot.plan_chunks(PATIENT, 500):
            tables = snapshot.extract(PATIENT, chunk)
            results.append({k: t.to_pylist() for k, t in tables.items()})
        results.append({"reread": dict(snapshot.reread)})
    return results


def test_chunks_read_through_the_double_at_the_runs_scn(double: OracleDouble) -> None:
    source = _source(double)
    results = _read_chunks(double, source)
    source.close()
    assert results[-1] == {"reread": {}}
    assert results[0]["p"] == [
        {"NHS_NUMBER": "9000000009", "CREATED_AT": dt.datetime(2020, 1, 1, 6, 30, tzinfo=dt.UTC),
         "NOTE": "note"}
    ]  # fmt: skip
    reads = double.statements(r'c0.*FROM "PATIENTS"|c0.*FROM "PATIENT_ADDRESSES"')
    assert reads and all(f"AS OF SCN {SCN}" in r.sql for r in reads)


def test_a_datetime_bound_is_bound_as_a_timestamp(
    double: OracleDouble, rules: OracleDialect
) -> None:
    """oracledb binds a datetime as DATE unless told otherwise, which drops its fraction."""
    keyed = TableInfo("PRESCRIPTIONS", TABLES["PRESCRIPTIONS"].columns, ("ISSUED_AT",))
    spec = ExtractSpec("e", "rx", "PRESCRIPTIONS", ("ISSUED_AT",), None, PRESCRIPTION.nodes[:1])
    queries = Queries(spec, {"PRESCRIPTIONS": keyed}, dialect=rules, scn=SCN)
    bound = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    sql, params = queries.rows(spec.nodes[0], ChunkRange(1, (bound,), None))
    assert params == {"lo0": bound}
    double.answer(r"PRESCRIPTIONS", [])
    with rules.engine.connect() as connection:
        rules.execute(rules.cursor(connection), sql, params)
    assert double.executed[-1].input_sizes == {"lo0": oracledb.DB_TYPE_TIMESTAMP}
    assert double.executed[-1].params == {"lo0": bound}  # the fraction kept


def test_ora_01555_rereads_that_chunk_alone_at_a_fresh_scn(double: OracleDouble) -> None:
    later = SCN + 5000
    failed: list[int] = []

    def once() -> Exception | None:
        if failed:
            return None
        failed.append(1)
        return ora_error(1555, 'snapshot too old: rollback segment number 9 with name "_SYSSMU9$"')

    double.fail(rf'c0.*FROM "PATIENT_ADDRESSES" AS OF SCN {SCN}', once)
    scns = iter([SCN, later])
    double.answer(r"current_scn", lambda _sql, _params: [(next(scns),)])
    source = _source(double)
    with source.snapshot() as snapshot:
        double.answer(r'c0.*FROM "PATIENTS"', [("9000000009", dt.datetime(2020, 1, 1), None)])
        double.answer(r'c0.*FROM "PATIENT_ADDRESSES"', [("9000000009", dt.datetime(2001, 2, 3))])
        double.answer(r"mig_rn", [("9000000001",), ("9000000500",)])
        double.answer(r"count\(\*\)", [(0,)])
        chunks = snapshot.plan_chunks(PATIENT, 500)
        first = snapshot.extract(PATIENT, chunks[0])
        rest = [snapshot.extract(PATIENT, c) for c in chunks[1:]]
        assert snapshot.reread == {("pds", "patient", 0): f"scn:{later}"}
    source.close()
    assert first["p.addresses"].num_rows == 1 and all(r["p"].num_rows == 1 for r in rest)
    reread = [e.sql for e in double.statements(rf"AS OF SCN {later}")]
    assert len(reread) == 2  # the chunk's two nodes, again, at the fresh SCN; nothing else
    assert len(chunks) == 2
    next_chunk = double.statements(r'c0.*FROM "PATIENTS"')[-1]
    assert f"AS OF SCN {SCN}" in next_chunk.sql  # the run's SCN goes on for the next chunk


def test_ora_01555_again_at_the_fresh_scn_stops_with_a_message(double: OracleDouble) -> None:
    double.fail(r'c0.*FROM "PATIENTS"', lambda: ora_error(1555, "snapshot too old"))
    double.answer(r"current_scn", [(SCN,)])
    source = _source(double)
    with source.snapshot() as snapshot, pytest.raises(SourceError) as caught:
        snapshot.extract(PATIENT, ChunkRange(0, None, None))
    source.close()
    assert caught.value.exit_code == 3
    assert "too old" in str(caught.value) and "UNDO_RETENTION" in str(caught.value)


def test_bulk_fetch_settings_and_exact_fetch_types(rules: OracleDialect) -> None:
    with rules.engine.connect() as connection:
        cursor = rules.cursor(connection)
    assert cursor.arraysize >= 1000 and cursor.prefetchrows == cursor.arraysize
    assert cursor.outputtypehandler is output_type

    def meta(kind: Any, precision: int = 0, scale: int = 0) -> Any:
        return SimpleNamespace(type_code=kind, precision=precision, scale=scale)

    assert output_type(cursor, meta(oracledb.DB_TYPE_NUMBER, 10, 0)) is None  # int, exact
    for precision, scale in ((10, 2), (0, -127), (38, 5)):  # NUMBER(10,2), bare NUMBER
        var = output_type(cursor, meta(oracledb.DB_TYPE_NUMBER, precision, scale))
        assert var.args == (decimal.Decimal,)
    for lob, whole in (
        (oracledb.DB_TYPE_CLOB, oracledb.DB_TYPE_LONG),
        (oracledb.DB_TYPE_NCLOB, oracledb.DB_TYPE_LONG_NVARCHAR),
        (oracledb.DB_TYPE_BLOB, oracledb.DB_TYPE_LONG_RAW),
    ):
        assert output_type(cursor, meta(lob)).args == (whole,)  # whole, never a locator
    assert output_type(cursor, meta(oracledb.DB_TYPE_BINARY_DOUBLE)) is None


# The type objects SQLAlchemy's Oracle reflection builds from ALL_TAB_COLS (data_type,
# precision, scale, length), as its get_columns does: NUMBER with no precision and scale 0 is
# INTEGER, FLOAT(126) DOUBLE PRECISION, and the rest come from the dialect's `ischema_names`.
REFLECTED = [
    (sqltypes.INTEGER(), ValueKind.INTEGER),  # what get_columns makes of NUMBER(*,0)
    (oracle.NUMBER(10, 0), ValueKind.INTEGER),
    (oracle.NUMBER(10, 2), ValueKind.DECIMAL),
    (oracle.NUMBER(None, None), ValueKind.NUMBER),
    (oracle.NUMBER(None, 2), ValueKind.DECIMAL),
    (oracle.DOUBLE_PRECISION(), ValueKind.FLOAT),
    (oracle.REAL(), ValueKind.FLOAT),
    (oracle.FLOAT(binary_precision=53), ValueKind.FLOAT),
    (oracle.BINARY_DOUBLE(), ValueKind.FLOAT),
    (oracle.BINARY_FLOAT(), ValueKind.FLOAT),
    (oracle.VARCHAR2(10), ValueKind.STRING),
    (oracle.NVARCHAR2(100), ValueKind.STRING),
    (oracle.CHAR(1), ValueKind.STRING),
    (oracle.NCHAR(2), ValueKind.STRING),
    (oracle.CLOB(), ValueKind.STRING),
    (oracle.NCLOB(), ValueKind.STRING),
    (oracle.LONG(), ValueKind.STRING),
    (oracle.ROWID(), ValueKind.STRING),
    (oracle.DATE(), ValueKind.DATE),
    (oracle.TIMESTAMP(), ValueKind.TIMESTAMP),
    (oracle.TIMESTAMP(timezone=True), ValueKind.TIMESTAMP_TZ),
    (oracle.TIMESTAMP(local_timezone=True), ValueKind.TIMESTAMP_TZ),
    (oracle.RAW(16), ValueKind.BINARY),
    (oracle.BLOB(), ValueKind.BINARY),
]


@pytest.mark.parametrize(("type_", "kind"), REFLECTED, ids=lambda v: repr(v))
def test_reflected_oracle_types_resolve(rules: OracleDialect, type_: Any, kind: ValueKind) -> None:
    resolved = rules.resolve({"name": "c", "type": type_, "nullable": True, "default": None})
    assert isinstance(resolved, ColumnType) and resolved.kind is kind
    if isinstance(type_, oracle.NUMBER) and type_.scale:
        assert resolved.scale == type_.scale


def test_the_reflected_names_are_the_ones_oracles_reflection_uses(rules: OracleDialect) -> None:
    names = rules.sa.ischema_names
    for data_type in ("DATE", "CLOB", "NCLOB", "BLOB", "LONG", "BINARY_DOUBLE", "ROWID"):
        assert isinstance(names[data_type](), tuple(type(t) for t, _ in REFLECTED)), data_type


@pytest.mark.parametrize("type_", [oracle.INTERVAL(), oracle.BFILE()], ids=repr)
def test_types_no_rule_covers_are_left_out(rules: OracleDialect, type_: Any) -> None:
    resolved = rules.resolve({"name": "c", "type": type_, "nullable": True, "default": None})
    assert isinstance(resolved, str)
