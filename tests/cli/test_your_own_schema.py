"""Issue 17's "done when": a new user, with only the README and docs/, goes from an unfamiliar
schema to a verified rehearsal, then to Riak. The schema is not the demo's: the PAS schema of
docs/mapping.md (sites; admissions keyed by site and number; observations keyed by site, number
and sequence), with a few hundred admissions so the work spans several chunks. Every step is the
installed `migrate` command, run in the project folder as the README's walk-through says, and
every output is asserted."""

from __future__ import annotations

import json
import random
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from riak_fake import RiakFake

ROOT = Path(__file__).resolve().parents[2]
MIGRATE = Path(sys.executable).parent / "migrate"
ADMISSIONS = 240  # besides the page's own three: chunks of 50 make five chunks


def _schema() -> str:
    text = (ROOT / "docs" / "mapping.md").read_text()
    (sql,) = re.findall(r"^```sql\n(.*?)^```$", text, re.M | re.S)
    return str(sql)


def _legacy(path: Path) -> int:
    rng = random.Random(17)
    with sqlite3.connect(path) as db:
        db.executescript(_schema())
        admissions = [
            (
                f"RX{1 + n % 2}",
                2000 + n,
                f"94{rng.randrange(10**8):08d}",
                f"2024-05-{1 + n % 28:02d} {n % 24:02d}:15:00",
                rng.choice(["EL", "EM", None, "ZZ"]),
                rng.choice(["W1", "W2", None]),
                None if n % 5 == 0 else f"2024-06-{1 + n % 28:02d}",
            )
            for n in range(ADMISSIONS)
        ]
        db.executemany("INSERT INTO ADMISSIONS VALUES (?, ?, ?, ?, ?, ?, ?)", admissions)
        observations = [
            (site, number, seq, f"2024-05-02 0{seq}:00:00", rng.choice(["temp", "pulse"]), 36.6)
            for site, number, *_ in admissions
            for seq in range(1, 1 + number % 4)
        ]
        db.executemany("INSERT INTO OBSERVATIONS VALUES (?, ?, ?, ?, ?, ?)", observations)
        (count,) = db.execute("SELECT count(*) FROM ADMISSIONS").fetchone()
    return int(count)


def _migrate(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`migrate ARGS` in the project folder, as a user types it."""
    return subprocess.run(
        [str(MIGRATE), *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _ok(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = _migrate(project, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done


def test_the_readme_walks_through_these_very_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    walk = readme[readme.index("## Your own schema") : readme.index("## Commands")]
    for command in (
        "migrate scaffold pas --root ADMISSIONS",
        "migrate check",
        "migrate preview pas --sample 3",
        "migrate preview pas RX1/1001",
        "migrate run pas",
        "migrate reconcile pas",
        "migrate dump pas --output pas.jsonl",
        '[target] url = "riak://',
        "loaded another target and starts a new run",
    ):
        assert command in walk, command


@pytest.mark.slow
def test_from_an_unfamiliar_schema_to_a_verified_rehearsal_then_riak(
    tmp_path: Path, riak_fake: RiakFake
) -> None:
    assert MIGRATE.exists(), "the package must be installed (make venv)"
    project = tmp_path / "pas"
    project.mkdir()
    admissions = _legacy(project / "legacy.db")
    # 1. a project (README: SQLite here instead of Oracle; chunks of 50 rows)
    (project / "migrate.toml").write_text(
        '[source]\nurl = "sqlite:///legacy.db"\n\n'
        '[target]\nurl = "local:///.migrate/target.db"\n\n'
        '[state]\nurl = "sqlite:///.migrate/state.db"\n\n'
        "[run]\nchunk_size = 50\n"
    )

    # 2. a first mapping
    scaffold = _ok(project, "scaffold", "pas", "--root", "ADMISSIONS")
    mapping = project / "mappings" / "pas.yaml"
    assert scaffold.stdout.splitlines() == [
        f"pas: wrote {mapping}",
        "  root ADMISSIONS",
        "  embeds: OBSERVATIONS",
        "  lookups: SITES",
        "  indexes: site_code_bin, admitted_at_int, discharged_on_int",
        f"  added [services.pas] to {project / 'migrate.toml'}",
        "next: review the mapping's comments, then `migrate check` and `migrate preview pas`",
    ]
    text = mapping.read_text()
    assert 'key: "{SITE_CODE}/{ADMISSION_NO}"' in text
    assert "on: {SITE_CODE: SITE_CODE, ADMISSION_NO: ADMISSION_NO}" in text
    assert _migrate(project, "scaffold", "pas", "--root", "ADMISSIONS").returncode == 2

    # 3. check it
    check = _ok(project, "check")
    assert check.stdout.splitlines()[0].startswith(f"pas: {mapping} ... ok (admission)")
    assert "1 mapping(s) valid against the source schema" in check.stdout
    # the scaffold reads every column, and the schema indexes every join
    for phrase in ("no field reads", "no index of the source leads", "document could reach"):
        assert phrase not in check.stderr
    assert all(line.startswith(("warning:", "    hint:")) for line in check.stderr.splitlines())

    # 4. documents before any run: three, the same every time; then the page's own admission
    sample = _ok(project, "preview", "pas", "--sample", "3")
    lines = [json.loads(line) for line in sample.stdout.splitlines()]
    assert len(lines) == 3
    assert _ok(project, "preview", "pas", "--sample", "3").stdout == sample.stdout
    for line in lines:
        assert line["bucket"] == "admissions" and line["rejects"] == []
        assert line["bytes"] > 0 and line["indexes"]["site_code_bin"] == [line["value"]["siteCode"]]
    assert not (project / ".migrate").exists()
    one = json.loads(_ok(project, "preview", "pas", "RX1/1001").stdout)
    assert one["key"] == "RX1/1001"
    assert one["value"]["site"] == {"siteCode": "RX1", "name": "Royal Infirmary"}
    assert [o["seq"] for o in one["value"]["observations"]] == [1, 2, 3]
    assert one["indexes"] == {
        "admitted_at_int": [20240301],
        "discharged_on_int": [20240304],
        "site_code_bin": ["RX1"],
    }
    pretty = _ok(project, "preview", "pas", "RX1/1001", "--format", "pretty").stdout
    assert pretty.splitlines()[0] == (
        f"pas · admission · RX1/1001  bucket admissions (type default)  {one['bytes']} bytes"
    )

    # 5. rehearse on the embedded target
    run = _ok(project, "run", "pas")
    assert f"equal ({admissions} documents)" in run.stdout
    assert "pas: run " in run.stderr and "... done: " in run.stderr
    reconcile = _ok(project, "reconcile", "pas")
    table = [line for line in reconcile.stdout.splitlines() if line.startswith("│ pas")]
    assert len(table) == 1 and re.search(
        rf"│ equal\s+│\s+{admissions} │\s+{admissions} │", table[0]
    )
    status = json.loads(_ok(project, "status", "--format", "json").stdout)
    assert status[0]["phase"] == "loaded" and status[0]["documents"] == admissions
    assert status[0]["last_verification"]["outcome"] == "equal"
    _ok(project, "dump", "pas", "--output", "pas.jsonl")
    dumped = (project / "pas.jsonl").read_text().splitlines()
    assert len(dumped) == admissions
    assert stat.S_IMODE((project / "pas.jsonl").stat().st_mode) == 0o600
    stored = next(json.loads(line) for line in dumped if json.loads(line)["key"] == "RX1/1001")
    assert stored["value"] == one["value"] and stored["indexes"] == one["indexes"]

    # 6. then Riak
    config = project / "migrate.toml"
    config.write_text(
        config.read_text().replace(
            'url = "local:///.migrate/target.db"', f'url = "riak://127.0.0.1:{riak_fake.port}"'
        )
    )
    _ok(project, "check")
    riak_run = _ok(project, "run", "pas", "--format", "json")  # a new run: another target
    report = json.loads(riak_run.stdout)
    assert report["outcome"] == "equal"
    assert report["services"][0]["written"] == admissions
    _ok(project, "reconcile", "pas", "--dry-run")
    riak_dump = _ok(project, "dump", "pas").stdout.splitlines()
    assert sorted(riak_dump) == sorted(dumped)
