"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from click.testing import Result

DEMO_PATIENTS = 1500
DEMO_SEED = 7
DEMO_CHUNK_SIZE = 200

Invoke = Callable[..., Result]


def set_run_option(project: Path, key: str, value: int) -> None:
    """Rewrite one `[run]` option of a project's migrate.toml."""
    config = project / "migrate.toml"
    text = config.read_text()
    pattern = re.compile(rf"^{key} = .*$", re.M)
    if pattern.search(text):
        text = pattern.sub(f"{key} = {value}", text)
    else:
        text = text.replace("[run]\n", f"[run]\n{key} = {value}\n")
    config.write_text(text)


class WaitingWriter:
    """A SQLite writer that starts to commit at once and waits, holding PENDING (so no new
    reader gets in), until the readers already in leave. `finish` (after they left) returns once
    it committed."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.failed: list[BaseException] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        self._until_readers_are_kept_out()

    def _until_readers_are_kept_out(self) -> None:
        """Return once a new reader is refused: the writer is in COMMIT, holding PENDING (polled,
        not slept on, so a slow machine cannot start the test's readers before the writer)."""
        deadline = time.monotonic() + 30
        while not self.failed and time.monotonic() < deadline:
            probe = sqlite3.connect(self.database, timeout=0, isolation_level=None)
            try:
                probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:  # database is locked
                return
            finally:
                probe.close()
            time.sleep(0.01)
        raise AssertionError(f"the writer never started to commit: {self.failed}")

    def _write(self) -> None:
        db = sqlite3.connect(self.database, timeout=60, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("CREATE TABLE WRITER_WAS_HERE (X INTEGER)")
            self._ready.set()
            db.execute("COMMIT")  # waits for every SHARED lock to go
        except BaseException as exc:
            self.failed.append(exc)
            self._ready.set()
        finally:
            db.close()

    def finish(self) -> None:
        self._thread.join(60)
        assert not self._thread.is_alive() and not self.failed, self.failed
        with sqlite3.connect(self.database) as db:
            assert db.execute("SELECT count(*) FROM WRITER_WAS_HERE").fetchone() == (0,)


def share_then_block(database: Path, writers: list[WaitingWriter]) -> Callable[..., Any]:
    """A stand-in for `share_view` that shares the snapshot, then starts a `WaitingWriter` (kept
    in `writers`) and hands out a view whose readers wait only 50 ms for a lock."""
    from migrate.source.shared import share_view

    def share(source: Any, snapshot: Any, specs: Any) -> Any:
        view = share_view(source, snapshot, specs)
        writers.append(WaitingWriter(database))
        return replace(view, busy_seconds=0.05)

    return share


def dump_by_key(invoke: Invoke, service: str, **kwargs: Any) -> dict[tuple[str, str, str], Any]:
    """`migrate dump SERVICE` as {identity: (indexes, value text)}."""
    import json

    dump = invoke("dump", service, **kwargs)
    assert dump.exit_code == 0, dump.output
    got = {}
    for line in dump.stdout.splitlines():
        record = json.loads(line)
        value_text = line.split(',"value":', 1)[1][:-1]
        got[(record["bucket_type"], record["bucket"], record["key"])] = (
            record["indexes"],
            value_text,
        )
    return got


def assert_matches_reference(invoke: Invoke, project: Path, service: str, **kwargs: Any) -> int:
    """The target's documents of SERVICE equal, byte for byte, what the plain reference builder
    makes of the source as it is now. Returns how many documents there are."""
    from reference_builder import build_reference

    got = dump_by_key(invoke, service, **kwargs)
    expected, _rejects = build_reference(
        project / "legacy.db", project / "mappings" / f"{service}.yaml"
    )
    want = {(d["bucket_type"], d["bucket"], d["key"]): d for d in expected}
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    assert not missing and not extra, f"missing {missing}, extra {extra}"
    for identity, doc in want.items():
        indexes, value_text = got[identity]
        assert value_text == doc["canonical"], f"{service} {identity}: value differs"
        assert indexes == doc["indexes"], f"{service} {identity}: indexes differ"
    return len(want)


def use_capture(project: Path, service: str = "pds") -> None:
    """Give a demo project's service change capture by triggers."""
    config = project / "migrate.toml"
    line = f'mapping = "mappings/{service}.yaml"\n'
    text = config.read_text()
    assert line in text
    config.write_text(text.replace(line, line + 'capture = "triggers"\n'))


def use_watermark(project: Path, service: str = "pds") -> None:
    """Give a demo project's service change capture by watermark: every table of its legacy
    database gets an UPDATED_AT column that the "application" keeps (SQLite triggers of the
    test's own, standing in for an application that sets it on every insert and update)."""
    from benchmarks.delta import add_last_modified

    add_last_modified(project / "legacy.db")
    config = project / "migrate.toml"
    line = f'mapping = "mappings/{service}.yaml"\n'
    text = config.read_text()
    assert line in text
    config.write_text(
        text.replace(line, line + 'capture = "watermark"\nwatermark = "UPDATED_AT"\n')
    )


def use_mode(project: Path, mode: str, service: str = "pds") -> None:
    """Change capture of `mode` ("triggers" or "watermark") for a demo project's service."""
    (use_capture if mode == "triggers" else use_watermark)(project, service)


VISIBLE = "COALESCE(SENSITIVE_FLAG, 'N') <> 'S'"  # the demo pds mapping's `where`


def load_under_capture(project: Path, invoke: Invoke, mode: str = "triggers") -> Path:
    """The demo's pds under change capture of `mode`, installed and bulk-loaded."""
    use_mode(project, mode)
    installed = invoke("capture", "install", "pds")
    assert installed.exit_code == 0, installed.output
    result = invoke("run", "pds")
    assert result.exit_code == 0, result.output
    return project


def visible_patients(db: sqlite3.Connection, count: int, offset: int = 0) -> list[str]:
    """`count` keys of demo patients the pds mapping reads, in key order from `offset`."""
    rows = db.execute(
        f"SELECT NHS_NUMBER FROM PATIENTS WHERE {VISIBLE} ORDER BY NHS_NUMBER LIMIT ? OFFSET ?",
        (count, offset),
    )
    return [r[0] for r in rows]


# A chunk phase's evidence: the chunk columns that phase sets (`migrate.ledger.states`).
PHASES = ("planned", "extracted", "transformed", "loaded")
EVIDENCE = {
    "extracted": ("staged_path", "staged_checksum", "snapshot"),
    "transformed": ("transform_fingerprint", "documents", "rejects", "doc_checksum"),
    "loaded": ("written", "unchanged"),
}


def ledger_evidence_problems(url: str) -> list[str]:
    """Every way the ledger at `url` shows a phase without its evidence: a chunk in a phase
    lacking a column that phase or an earlier one sets, keeping one a later phase sets, or with
    no checkpoint of its phase whose checksum is the chunk's; a complete run with a chunk not
    loaded. Empty when the ledger is consistent."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            chunks = [dict(r) for r in conn.execute(sa.text("SELECT * FROM chunks")).mappings()]
            checkpoints = [
                dict(r)
                for r in conn.execute(
                    sa.text(
                        "SELECT run_id, chunk_id, phase, checksum, note FROM checkpoints "
                        "WHERE chunk_id IS NOT NULL ORDER BY id"
                    )
                ).mappings()
            ]
            runs = {r[0]: r[1] for r in conn.execute(sa.text("SELECT run_id, status FROM runs"))}
    finally:
        engine.dispose()
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for point in checkpoints:
        if point["phase"] == "amended":  # documents withdrawn in place: the phase's checksum
            for phase in ("transformed", "loaded"):
                key = (point["run_id"], point["chunk_id"], phase)
                if key in latest:
                    latest[key] = point
        else:
            latest[(point["run_id"], point["chunk_id"], point["phase"])] = point
    problems = []
    for chunk in chunks:
        name = f"run {chunk['run_id']} chunk {chunk['chunk_id']} ({chunk['state']})"
        rank = PHASES.index(chunk["state"])
        for phase, columns in EVIDENCE.items():
            reached = PHASES.index(phase) <= rank
            for column in columns:
                if reached and chunk[column] is None:
                    problems.append(f"{name}: no {column}")
                if not reached and chunk[column] is not None:
                    problems.append(f"{name}: keeps {column} of the later phase {phase}")
        if rank >= 1 and chunk["rows"] in ("{}", None):
            problems.append(f"{name}: no staged row counts")
        point = latest.get((chunk["run_id"], chunk["chunk_id"], chunk["state"]))
        if point is None:
            problems.append(f"{name}: no checkpoint of its phase")
        elif rank >= 1:
            want = chunk["staged_checksum"] if rank == 1 else chunk["doc_checksum"]
            if point["checksum"] != want:
                problems.append(f"{name}: its last checkpoint has checksum {point['checksum']}")
        if runs.get(chunk["run_id"]) == "complete" and chunk["state"] != "loaded":
            problems.append(f"{name}: its run is complete")
    return problems
