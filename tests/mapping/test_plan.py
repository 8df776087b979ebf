"""Compilation: the extract spec each document type reads, and fingerprints that track meaning."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.errors import MappingError
from migrate.mapping import ServicePlan, compile_mapping, load_mapping, parse_mapping
from migrate.schema import ColumnInfo, ColumnType, SchemaInfo, TableInfo, ValueKind
from migrate.spec import NodeKind, NodeSpec

K = ValueKind


def col(name: str, kind: ValueKind, declared: str, scale: int | None = None) -> ColumnInfo:
    return ColumnInfo(name, ColumnType(kind, declared, None, scale))


def schema(amount_scale: int = 2) -> SchemaInfo:
    return SchemaInfo(
        {
            "ORDERS": TableInfo(
                "ORDERS",
                (
                    col("SHOP", K.STRING, "VARCHAR2(8)"),
                    col("ORDER_NO", K.INTEGER, "NUMBER(10)"),
                    col("CUSTOMER", K.STRING, "VARCHAR2(8)"),
                    col("PLACED", K.DATE, "DATE"),
                    col("AMOUNT", K.DECIMAL, f"NUMBER(10,{amount_scale})", amount_scale),
                    col("NOTE", K.STRING, "VARCHAR2(99)"),
                    col("STATUS", K.STRING, "CHAR(1)"),
                ),
                ("SHOP", "ORDER_NO"),
            ),
            "LINES": TableInfo(
                "LINES",
                (
                    col("LINE_ID", K.INTEGER, "NUMBER(10)"),
                    col("QTY", K.INTEGER, "NUMBER(5)"),
                    col("ORDER_NO", K.INTEGER, "NUMBER(10)"),
                    col("SEQ", K.INTEGER, "NUMBER(3)"),
                    col("SHOP", K.STRING, "VARCHAR2(8)"),
                    col("PRODUCT", K.STRING, "VARCHAR2(8)"),
                    col("UNUSED", K.STRING, "VARCHAR2(8)"),
                ),
                ("LINE_ID",),
            ),
            "PRODUCTS": TableInfo(
                "PRODUCTS",
                (col("CODE", K.STRING, "VARCHAR2(8)"), col("TITLE", K.STRING, "VARCHAR2(80)")),
                ("CODE",),
            ),
            "CUSTOMERS": TableInfo(
                "CUSTOMERS",
                (col("NAME", K.STRING, "VARCHAR2(80)"), col("CUST_ID", K.STRING, "VARCHAR2(8)")),
            ),
        }
    )


MAPPING = """\
service: shop
documents:
  order:
    table: orders
    bucket: orders
    key: "{shop}/{order_no}"
    where: "STATUS <> 'X'"
    fields:
      placed: PLACED
      customer:
        id: CUSTOMER
        name: {lookup: customers, on: {cust_id: customer}, field: name}
      lines:
        embed: LINES
        on: {ORDER_NO: ORDER_NO, SHOP: SHOP}
        order_by: [SEQ]
        fields:
          qty: QTY
          product: {lookup: PRODUCTS, on: {CODE: PRODUCT}, fields: {title: TITLE}}
      status: {column: STATUS, values: {A: active, C: closed}}
    indexes:
      amount_bin: AMOUNT
      product_bin: lines.product.title
  product:
    table: PRODUCTS
    bucket: products
    fields: {title: TITLE}
"""


def compile_text(text: str, source: SchemaInfo | None = None) -> ServicePlan:
    return compile_mapping(parse_mapping(text, Path("shop.yaml")), source or schema())


def test_extract_spec_lists_nodes_parents_first_with_the_columns_needed() -> None:
    order = compile_text(MAPPING).doc_type("order")
    spec = order.extract
    assert (spec.service, spec.doc_type, spec.root_table) == ("shop", "order", "ORDERS")
    assert spec.primary_key == ("SHOP", "ORDER_NO")
    assert spec.where == "STATUS <> 'X'"
    assert spec.nodes == (
        NodeSpec(
            "root",
            NodeKind.ROOT,
            "ORDERS",
            ("SHOP", "ORDER_NO", "CUSTOMER", "PLACED", "AMOUNT", "STATUS"),
        ),
        NodeSpec(
            "root.customer.name",
            NodeKind.LOOKUP,
            "CUSTOMERS",
            ("NAME", "CUST_ID"),
            "root",
            (("CUST_ID", "CUSTOMER"),),
        ),
        NodeSpec(
            "root.lines",
            NodeKind.EMBED,
            "LINES",
            ("LINE_ID", "QTY", "ORDER_NO", "SEQ", "SHOP", "PRODUCT"),
            "root",
            (("ORDER_NO", "ORDER_NO"), ("SHOP", "SHOP")),
        ),
        NodeSpec(
            "root.lines.product",
            NodeKind.LOOKUP,
            "PRODUCTS",
            ("CODE", "TITLE"),
            "root.lines",
            (("CODE", "PRODUCT"),),
        ),
    )
    assert (order.name, order.bucket_type, order.bucket) == ("order", "default", "orders")


def test_service_plan_holds_every_document_type() -> None:
    plan = compile_text(MAPPING)
    assert plan.service == "shop"
    assert [d.name for d in plan.doc_types] == ["order", "product"]
    product = plan.doc_type("product").extract
    assert product.nodes == (NodeSpec("root", NodeKind.ROOT, "PRODUCTS", ("CODE", "TITLE")),)
    with pytest.raises(KeyError):
        plan.doc_type("nope")


def test_compile_refuses_a_mapping_with_problems() -> None:
    with pytest.raises(MappingError) as caught:
        compile_text(MAPPING.replace("qty: QTY", "qty: QTTY"))
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.field) == (
        "shop.yaml",
        18,
        "documents.order.fields.lines.fields.qty",
    )


def test_fingerprint_ignores_layout_comments_order_and_case(tmp_path: Path) -> None:
    base = compile_text(MAPPING)
    reordered = MAPPING.replace("      placed: PLACED\n", "      # when it was placed\n").replace(
        "      status: {column", "      placed: placed\n      status: {column"
    )
    assert reordered != MAPPING
    same = compile_text("# a comment\n\n" + reordered.replace("table: orders", "table: ORDERS"))
    assert same.fingerprint == base.fingerprint
    assert [d.fingerprint for d in same.doc_types] == [d.fingerprint for d in base.doc_types]
    path = tmp_path / "shop.yaml"
    path.write_text(MAPPING)
    assert compile_mapping(load_mapping(path), schema()).fingerprint == base.fingerprint


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("{A: active, C: closed}", "{A: active, C: done}"),
        ("{A: active, C: closed}", "{A: active, C: closed}, default: other"),
        ("order_by: [SEQ]", "order_by: [QTY]"),
        ("bucket: orders", "bucket: orders2"),
        ('key: "{shop}/{order_no}"', 'key: "{shop}:{order_no}"'),
        ("    fields:\n      placed", "    nulls: keep\n    fields:\n      placed"),
        ("amount_bin: AMOUNT", "amount_bin: {column: AMOUNT, as: number}"),
        ("placed: PLACED", "placed: {column: PLACED, as: datetime}"),
        ("qty: QTY", "qty: {literal: 1}"),
        ("where: \"STATUS <> 'X'\"", "where: \"STATUS <> 'Y'\""),
    ],
)
def test_fingerprint_changes_when_the_output_could(old: str, new: str) -> None:
    assert old in MAPPING
    base = compile_text(MAPPING)
    changed = compile_text(MAPPING.replace(old, new))
    assert changed.fingerprint != base.fingerprint
    assert changed.doc_type("order").fingerprint != base.doc_type("order").fingerprint
    assert changed.doc_type("product").fingerprint == base.doc_type("product").fingerprint


def test_fingerprint_changes_with_a_column_type_used() -> None:
    base = compile_text(MAPPING)
    assert compile_text(MAPPING, schema(amount_scale=3)).fingerprint != base.fingerprint


def test_literal_types_are_part_of_the_fingerprint() -> None:
    one = compile_text(MAPPING.replace("qty: QTY", "qty: {literal: 1}"))
    text = compile_text(MAPPING.replace("qty: QTY", 'qty: {literal: "1"}'))
    boolean = compile_text(MAPPING.replace("qty: QTY", "qty: {literal: true}"))
    assert len({one.fingerprint, text.fingerprint, boolean.fingerprint}) == 3


def test_the_public_api_is_exactly_all() -> None:
    import migrate.mapping as package

    assert sorted(package.__all__) == [
        "DocPlan",
        "DocTypeModel",
        "DocumentBuilder",
        "Mapping",
        "ServicePlan",
        "cached_plan",
        "compile_mapping",
        "load_mapping",
        "parse_mapping",
        "validate_mapping",
    ]
    public = {name for name in vars(package) if not name.startswith("_")}
    modules = {"builder", "canonical", "indexes", "keys", "loader", "model", "plan", "validate"}
    modules |= {"collisions", "columnar", "columns"}
    assert public - modules - {"values"} == set(package.__all__)
