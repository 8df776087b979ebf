"""Document build rate (issue 5, goal 2): DocPlan.build on staged chunks of the demo's pds and eps,
on one core, against the plain way of building the same document trees in the same run: rows as
dicts, children grouped by their link columns and nested under their parents, `json.dumps` with
sorted keys and sha256 (no value rules: the baseline only does less).

Both run with cyclic garbage collection as a worker process has it (`as_in_the_toolkit`).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from benchmarks.harness import Figure, Goal, Settings, as_in_the_toolkit, repeat
from migrate.demo import create_demo
from migrate.mapping.plan import DocPlan
from migrate.pipeline import run_services
from migrate.project import Project
from migrate.source import read_staged
from migrate.spec import ExtractSpec, NodeSpec

CASE = "build"
BASELINE = "dict + json.dumps + sha256"
SERVICES = (("pds", "patient"), ("eps", "prescription"))


def _chunks(project: Project, service: str, doc_type: str, count: int) -> list[dict[str, pa.Table]]:
    folders = sorted((project.config.work_dir / service).glob(f"*/staged/{doc_type}/*"))
    return [read_staged(folder) for folder in folders[:count]]


def _rate(plan: DocPlan, chunks: list[dict[str, pa.Table]]) -> float:
    started = time.perf_counter()
    built = sum(len(plan.build(tables).documents) for tables in chunks)
    return built / (time.perf_counter() - started)


def _naive(spec: ExtractSpec, chunks: list[dict[str, pa.Table]]) -> float:
    """The plain way: each node's rows as dicts, grouped by their link columns, nested under the
    parent rows they link to, every document dumped with json.dumps and hashed with sha256."""
    started = time.perf_counter()
    built = 0
    below: dict[str, list[NodeSpec]] = {}
    for node in spec.nodes[1:]:
        below.setdefault(node.parent_id or "", []).append(node)
    for tables in chunks:
        rows = {n.node_id: tables[n.node_id].to_pylist() for n in spec.nodes}
        groups: dict[str, dict[tuple[Any, ...], list[dict[str, Any]]]] = {}
        for node in spec.nodes[1:]:
            grouped: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
            for row in rows[node.node_id]:
                grouped.setdefault(tuple(row[c] for c, _ in node.link), []).append(row)
            groups[node.node_id] = grouped

        for row in rows[spec.root.node_id]:
            text = json.dumps(
                _nest(spec.root, row, below, groups),
                sort_keys=True,
                ensure_ascii=False,
                separators=(",", ":"),
                default=str,
            )
            hashlib.sha256(text.encode("utf-8")).hexdigest()
            built += 1
    return built / (time.perf_counter() - started)


def _nest(
    node: NodeSpec,
    row: dict[str, Any],
    below: dict[str, list[NodeSpec]],
    groups: dict[str, dict[tuple[Any, ...], list[dict[str, Any]]]],
) -> dict[str, Any]:
    document = dict(row)
    for child in below.get(node.node_id, []):
        found = groups[child.node_id].get(tuple(row[p] for _, p in child.link), [])
        document[child.node_id] = [_nest(child, r, below, groups) for r in found]
    return document


def run(settings: Settings) -> list[Figure]:
    patients = settings.documents or (5_000 if settings.quick else 20_000)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "demo"
        create_demo(folder, patients=patients, seed=1)
        project = Project.load(folder / "migrate.toml")
        try:
            run_services(project, [service for service, _ in SERVICES], workers=1)
            for service, doc_type in SERVICES:
                plan = project.plan(project.config.service(service)).doc_type(doc_type)
                chunks = _chunks(project, service, doc_type, 3)
                with as_in_the_toolkit():
                    fast, naive = repeat(
                        settings.repeats,
                        partial(_rate, plan, chunks),
                        partial(_naive, plan.extract, chunks),
                    )
                rows = sum(t["root"].num_rows for t in chunks)
                figures.append(
                    Figure(
                        CASE,
                        f"build {service} documents/s, 1 core",
                        "docs/s",
                        tuple(fast),
                        BASELINE,
                        tuple(naive),
                        goal=Goal(">=", 150_000),
                        note=f"{len(chunks)} staged chunks ({rows:,} roots) of a "
                        f"{patients:,}-patient demo, canonical bytes and xxh3 included",
                    )
                )
        finally:
            project.close()
    return figures
