"""Key collisions end to end: rows that render one document key are all rejected, inside a chunk
and across chunks, in the run and in reconciliation, and never written. (Two document types or
services writing one bucket are refused by the mapping check.)"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from migrate.cli.main import cli

SITES = """
CREATE TABLE SITES (SITE VARCHAR2(10) NOT NULL, CODE VARCHAR2(10) NOT NULL, NAME VARCHAR2(20),
                    PRIMARY KEY (SITE, CODE));
"""
ROWS = [("a", "b/c", "one"), ("a/b", "c", "two"), ("b", "x", "three"), ("c", "y", "four")]

MAPPING = """
service: sites
documents:
  site:
    table: SITES
    bucket: sites
    key: "{SITE}/{CODE}"
    fields:
      name: NAME
"""


def make_project(tmp_path: Path, *, max_rejects: int = 10, mapping: str = MAPPING) -> Path:
    project = tmp_path / "project"
    (project / "mappings").mkdir(parents=True)
    with sqlite3.connect(project / "legacy.db") as db:
        db.executescript(SITES)
        db.executemany("INSERT INTO SITES VALUES (?, ?, ?)", ROWS)
    (project / "mappings" / "sites.yaml").write_text(mapping)
    (project / "migrate.toml").write_text(
        '[source]\nurl = "sqlite:///legacy.db"\n'
        '[target]\nurl = "local:///.migrate/target.db"\n'
        '[state]\nurl = "sqlite:///.migrate/state.db"\n'
        f"[run]\nchunk_size = 1\nmax_rejects = {max_rejects}\nworkers = 1\n"
        '[services.sites]\nmapping = "mappings/sites.yaml"\n'
    )
    return project


def cli_in(project: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(project / "migrate.toml"), *args])


def dumped(project: Path) -> dict[str, dict[str, object]]:
    result = cli_in(project, "dump", "sites")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return {line["key"]: line["value"] for line in lines}


def rejects_of(project: Path) -> list[dict[str, object]]:
    (path,) = (project / ".migrate" / "work" / "sites").glob("*/rejects.jsonl")
    assert path.stat().st_mode & 0o777 == 0o600
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_chunks_match_the_register(project: Path) -> None:
    """Every chunk's recorded documents, rejects and checksum are what its register counts."""
    from migrate.ledger import Ledger
    from migrate.mapping.canonical import aggregate

    ledger = Ledger(f"sqlite:///{project / '.migrate' / 'state.db'}")
    try:
        run = ledger.latest_run("sites")
        assert run is not None
        for chunk in ledger.chunks(run.run_id):
            tally = ledger.tally(run.run_id, chunk.chunk_id)
            assert (chunk.documents, chunk.rejects, chunk.doc_checksum) == (
                len(tally.checksums),
                tally.rejects,
                aggregate(tally.checksums),
            ), chunk.chunk_id
    finally:
        ledger.close()


def reconciled(project: Path, *args: str) -> tuple[int, dict[str, object]]:
    result = cli_in(project, "reconcile", "--dry-run", "--format", "json", *args)
    return result.exit_code, json.loads(result.stdout)


def test_rows_of_two_chunks_that_render_one_key_are_both_rejected_and_none_written(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path)
    result = cli_in(project, "run")
    assert result.exit_code == 0, result.output
    assert sorted(dumped(project)) == ["b/x", "c/y"]  # chunk 0 loaded a/b/c before chunk 1 came
    rejects = rejects_of(project)
    assert sorted((r["chunk_id"], r["key"]) for r in rejects) == [
        ("site:00000", "a/b/c"),
        ("site:00001", "a/b/c"),
    ]
    by_row = {tuple(r["source_key"].values()): r["reason"] for r in rejects}  # type: ignore[union-attr]
    assert "SITE=a/b, CODE=c (chunk site:00001)" in by_row[("a", "b/c")]
    assert "SITE=a, CODE=b/c (chunk site:00000)" in by_row[("a/b", "c")]
    with sqlite3.connect(project / ".migrate" / "state.db") as db:
        counts = db.execute("SELECT chunk_id, documents, rejects FROM chunks ORDER BY 1").fetchall()
    assert counts[:2] == [("site:00000", 0, 1), ("site:00001", 0, 1)]

    code, report = reconciled(project)
    (service,) = report["services"]  # type: ignore[index]
    assert code == 1 and service["counts"]["rejected"] == 2 and service["counts"]["missing"] == 0
    code, report = reconciled(project, "--accept-rejects")
    assert code == 0 and report["outcome"] == "equal"

    assert_chunks_match_the_register(project)
    again = cli_in(project, "run")  # nothing left to do: no second withdrawal, no write
    assert again.exit_code == 0, again.output
    with sqlite3.connect(project / ".migrate" / "state.db") as db:
        assert db.execute("SELECT sum(rejects) FROM chunks").fetchone() == (2,)


def test_a_rejected_row_comes_in_once_the_source_is_fixed(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    assert cli_in(project, "run").exit_code == 0
    with sqlite3.connect(project / "legacy.db") as db:
        db.execute("DELETE FROM SITES WHERE SITE = 'a/b'")
    code, report = reconciled(project)
    assert code == 1  # the row still in the source is missing from the target
    assert report["services"][0]["counts"]["missing"] == 1  # type: ignore[index]
    assert cli_in(project, "run", "--fresh").exit_code == 0
    assert dumped(project)["a/b/c"] == {"name": "one"}
    assert reconciled(project)[0] == 0


def test_three_rows_in_three_chunks_each_name_the_other_two(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    with sqlite3.connect(project / "legacy.db") as db:
        db.execute("DELETE FROM SITES")
        db.executemany(
            "INSERT INTO SITES VALUES (?, ?, ?)",
            [("a", "b/c/d", "1"), ("a/b", "c/d", "2"), ("a/b/c", "d", "3"), ("a/b/c/d", "", "4")],
        )
    result = cli_in(project, "run")
    assert result.exit_code == 0, result.output
    assert sorted(dumped(project)) == ["a/b/c/d/"]
    rejects = rejects_of(project)
    assert len(rejects) == 3 and {r["key"] for r in rejects} == {"a/b/c/d"}
    last = next(r for r in rejects if r["chunk_id"] == "site:00002")
    assert "SITE=a, CODE=b/c/d" in str(last["reason"]) and "SITE=a/b, CODE=c/d" in str(
        last["reason"]
    )
    with sqlite3.connect(project / ".migrate" / "state.db") as db:
        assert db.execute("SELECT sum(rejects), sum(documents) FROM chunks").fetchone() == (3, 1)
    assert_chunks_match_the_register(project)
    code, report = reconciled(project)
    assert code == 1 and report["services"][0]["counts"]["rejected"] == 3  # type: ignore[index]
    assert report["services"][0]["counts"]["missing"] == 0  # type: ignore[index]


def test_with_max_rejects_0_the_run_stops_and_stays_stopped(tmp_path: Path) -> None:
    project = make_project(tmp_path, max_rejects=0)
    first = cli_in(project, "run")
    assert first.exit_code == 1
    assert "2 rows rejected, more than [run] max_rejects = 0" in first.output
    loaded = dumped(project)
    assert "a/b/c" not in loaded
    again = cli_in(project, "run")
    assert again.exit_code == 1 and "nothing more was loaded" in again.output
    assert dumped(project) == loaded
    with sqlite3.connect(project / ".migrate" / "state.db") as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("failed",)]


def test_a_mapping_that_no_longer_collides_takes_both_rows(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    assert cli_in(project, "run").exit_code == 0
    (project / "mappings" / "sites.yaml").write_text(
        MAPPING.replace("{SITE}/{CODE}", "{SITE}|{CODE}")
    )
    result = cli_in(project, "run")
    assert result.exit_code == 0, result.output
    assert {"a|b/c", "a/b|c"} <= set(dumped(project))
    code, report = reconciled(project)
    assert code == 0, report


@pytest.mark.parametrize("workers", [1, 2])
def test_a_collision_inside_one_chunk_is_rejected_by_the_build(
    tmp_path: Path, workers: int
) -> None:
    project = make_project(tmp_path)
    config = project / "migrate.toml"
    config.write_text(
        config.read_text()
        .replace("chunk_size = 1", "chunk_size = 100")
        .replace("workers = 1", f"workers = {workers}")
    )
    assert cli_in(project, "run").exit_code == 0
    assert sorted(dumped(project)) == ["b/x", "c/y"]
    assert {r["chunk_id"] for r in rejects_of(project)} == {"site:00000"}
    assert reconciled(project, "--accept-rejects")[0] == 0
