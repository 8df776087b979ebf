"""A small project unlike the demo's, as a new user would write one: a shop's customers, each a
document with its orders embedded and a region looked up, three secondary indexes; SQLite, chunks
of 5,000 customers, every other setting left to its default.

The bench loads it into a real node with `migrate run` and compares that with wrk sending the same
documents' PUTs; `documents()` builds them exactly as `migrate run` does (the chunk index entry
included), so both send the same bytes.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from migrate.document import Document

SERVICE = "shop"
BUCKET = "customers"
CHUNK_SIZE = 5_000

MAPPING = """\
service: shop
description: customers with their orders
documents:
  customer:
    table: CUSTOMERS
    bucket: customers
    key: "C{CUSTOMER_ID}"
    fields:
      id: CUSTOMER_ID
      name: NAME
      email: EMAIL
      city: CITY
      region:
        lookup: REGIONS
        on: {REGION_CODE: REGION_CODE}
        field: NAME
      since: {column: CREATED_ON, as: date}
      vip: {column: VIP, as: boolean}
      orders:
        embed: ORDERS
        on: {CUSTOMER_ID: CUSTOMER_ID}
        order_by: [ORDER_ID]
        fields:
          id: ORDER_ID
          placed: {column: PLACED_ON, as: date}
          total: TOTAL
          status: STATUS
    indexes:
      email_bin: EMAIL
      city_bin: CITY
      since_int: {column: CREATED_ON, as: yyyymmdd}
"""

CONFIG = f"""\
[source]
url = "sqlite:///shop.db"

[target]
url = "TARGET_URL"

[state]
url = "sqlite:///.migrate/state.db"

[run]
chunk_size = {CHUNK_SIZE}

[services.shop]
mapping = "mappings/shop.yaml"
"""

CITIES = ["Leeds", "York", "Hull", "Bradford", "Sheffield", "Wakefield", "Harrogate", "Ripon"]
REGIONS = [("YH", "Yorkshire and the Humber"), ("NE", "North East"), ("NW", "North West")]
FIRST = ["Ada", "Ben", "Cara", "Dev", "Ema", "Finn", "Gita", "Hal", "Ines", "Jon", "Kofi", "Lea"]
LAST = ["Shaw", "Patel", "Okafor", "Nowak", "Murphy", "Lee", "Khan", "Jones", "Ito", "Hughes"]
STATUS = ["placed", "paid", "shipped", "delivered", "returned"]


def create_project(folder: Path, *, customers: int, seed: int = 1) -> Path:
    """A project folder with a SQLite shop of `customers` customers (one to four orders each);
    its migrate.toml's target URL is the placeholder TARGET_URL (`point_at` sets it)."""
    folder.mkdir(parents=True)
    (folder / "mappings").mkdir()
    (folder / "mappings" / "shop.yaml").write_text(MAPPING, encoding="utf-8")
    (folder / "migrate.toml").write_text(CONFIG, encoding="utf-8")
    rng = random.Random(seed)
    with sqlite3.connect(folder / "shop.db") as db:
        db.executescript(
            """
            CREATE TABLE REGIONS (REGION_CODE VARCHAR(2) PRIMARY KEY, NAME VARCHAR(60) NOT NULL);
            CREATE TABLE CUSTOMERS (
                CUSTOMER_ID INTEGER PRIMARY KEY, NAME VARCHAR(80) NOT NULL,
                EMAIL VARCHAR(120) NOT NULL, CITY VARCHAR(40), REGION_CODE VARCHAR(2),
                CREATED_ON DATE NOT NULL, VIP BOOLEAN NOT NULL);
            CREATE TABLE ORDERS (
                ORDER_ID INTEGER PRIMARY KEY, CUSTOMER_ID INTEGER NOT NULL
                    REFERENCES CUSTOMERS (CUSTOMER_ID),
                PLACED_ON DATE NOT NULL, TOTAL NUMERIC(10, 2) NOT NULL,
                STATUS VARCHAR(12) NOT NULL);
            CREATE INDEX ORDERS_CUSTOMER ON ORDERS (CUSTOMER_ID);
            """
        )
        db.executemany("INSERT INTO REGIONS VALUES (?, ?)", REGIONS)
        order_id = 0
        customer_rows, order_rows = [], []
        for customer in range(1, customers + 1):
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            created = (
                f"20{rng.randint(10, 24):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            )
            customer_rows.append(
                (
                    customer,
                    name,
                    f"{name.lower().replace(' ', '.')}.{customer}@example.com",
                    rng.choice(CITIES),
                    rng.choice(REGIONS)[0],
                    created,
                    rng.random() < 0.1,
                )
            )
            for _ in range(rng.randint(1, 4)):
                order_id += 1
                total = f"{rng.randint(100, 50_000) / 100:.2f}"
                order_rows.append((order_id, customer, created, total, rng.choice(STATUS)))
        db.executemany("INSERT INTO CUSTOMERS VALUES (?, ?, ?, ?, ?, ?, ?)", customer_rows)
        db.executemany("INSERT INTO ORDERS VALUES (?, ?, ?, ?, ?)", order_rows)
    db.close()
    return folder


def point_at(folder: Path, url: str, *, bucket_suffix: str) -> None:
    """Set the project's target URL, and rename its bucket (a node's buckets outlive a load)."""
    config = folder / "migrate.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("TARGET_URL", url))
    mapping = folder / "mappings" / "shop.yaml"
    text = mapping.read_text(encoding="utf-8")
    mapping.write_text(text.replace(f"bucket: {BUCKET}\n", f"bucket: {BUCKET}{bucket_suffix}\n"))


def documents(folder: Path) -> list[tuple[Document, str]]:
    """Every document `migrate run` of the project builds, with its chunk's id, in chunk order:
    the chunk index entry added as the pipeline adds it."""
    from migrate.project import Project
    from migrate.target.chunks import with_chunk_index

    project = Project.load(folder / "migrate.toml")
    out: list[tuple[Document, str]] = []
    try:
        plan = project.plan(project.config.service(SERVICE))
        with project.source.snapshot() as snapshot:
            for doc_plan in plan.doc_types:
                for chunk in snapshot.plan_chunks(doc_plan.extract, CHUNK_SIZE):
                    built = doc_plan.build(snapshot.extract(doc_plan.extract, chunk))
                    chunk_id = f"{doc_plan.name}:{chunk.index:05d}"  # as the ledger names it
                    out += [(with_chunk_index(d, chunk.index), chunk_id) for d in built.documents]
    finally:
        project.close()
    return out
