"""`python -m benchmarks` works end to end on a tiny load. No timing is asserted here: benchmarks
are measured by `make bench`, never judged by the test suite."""

from __future__ import annotations

import gc
import http.client
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.__main__ import main  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    Figure,
    Goal,
    Settings,
    as_in_the_toolkit,
    compile_package,
    render_table,
    run_cases,
)
from benchmarks.riak import put_headers  # noqa: E402
from benchmarks.sink import ServerProcess  # noqa: E402
from benchmarks.wrk import wrk_path  # noqa: E402
from migrate.document import Document  # noqa: E402
from migrate.processes import QUIET_GC_THRESHOLD  # noqa: E402


def test_riak_case_runs_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RIAK_URL", raising=False)
    monkeypatch.setenv("MIGRATE_TEST_RIAK_DIR", str(tmp_path / "no-riak-here"))  # as a user's
    output = tmp_path / "out" / "bench.json"
    args = ["--only", "riak", "--documents", "30", "--repeats", "1", "--output", str(output)]
    assert main(args) == 0

    printed = capsys.readouterr().out
    assert "documents/s into the fake" in printed
    assert "skipped (no Riak test server at" in printed
    report = json.loads(output.read_text("utf-8"))
    figures = {f["name"]: f for f in report["figures"]}
    assert all(f["case"] == "riak" for f in figures.values())

    cpu = figures["client CPU per PUT (sink)"]
    assert cpu["value"] > 0 and cpu["baseline"] > 0
    assert cpu["ratio"] == pytest.approx(cpu["value"] / cpu["baseline"])
    assert cpu["goal"] == "<= 100" and cpu["met"] == (cpu["value"] <= 100)
    # The sink counted one create-only PUT per document and no HEAD: a first load reads nothing.
    assert "0.00 HEAD + 1.00 PUT per document; 30 documents per load" in cpu["note"]
    per_request = figures["client CPU per request (sink)"]
    assert per_request["value"] == pytest.approx(cpu["value"])
    threads = figures["client CPU per doc vs threads (sink)"]
    assert threads["value"] > 0 and threads["baseline"] > 0

    fake = figures["documents/s into the fake (max_in_flight 64)"]
    assert fake["value"] > 0 and fake["baseline"] > 0 and len(fake["samples"]) == 1

    for where in ("sink", "fake"):
        c_client = figures[f"documents/s into the {where} vs wrk"]
        if wrk_path() is None and not os.environ.get("CI"):  # `.ci/run` installs wrk
            assert c_client["note"] == "skipped (wrk not installed (Debian: apt-get install wrk))"
            continue
        assert c_client["baseline_name"] == "wrk (C), 16 connections"
        assert c_client["value"] > 0 and c_client["baseline"] > 0
        assert c_client["goal"] is None  # goal 3's 0.9x is judged against a real node only

    for name in (
        "documents/s into the node",
        "client CPU per PUT, node",
        "documents/s into the node vs wrk",
        "migrate run documents/s vs wrk, one node",
        "whole-run CPU per document, one node",
        "dry-run reconcile documents/s, node",
        "migrate run documents/s vs wrk, three-node cluster",
        "whole-run CPU per document, three-node cluster",
    ):
        assert figures[name]["value"] is None
        assert figures[name]["note"].startswith("skipped (no Riak test server at")
        assert "MIGRATE_TEST_RIAK_DIR" in figures[name]["note"]


def test_node_loads_use_riak_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With RIAK_URL at a node (the fake stands in), the node figures are measured, a whole
    `migrate run` among them; no cluster is started beside RIAK_URL's node."""
    with ServerProcess("fake") as fake:
        monkeypatch.setenv("RIAK_URL", fake.url)
        output = tmp_path / "bench.json"
        args = ["--only", "riak", "--documents", "12", "--repeats", "1", "--output", str(output)]
        assert main(args) == 0
        counts = fake.counts()
    capsys.readouterr()
    figures = {f["name"]: f for f in json.loads(output.read_text("utf-8"))["figures"]}
    node = figures["documents/s into the node"]
    assert node["value"] > 0 and node["baseline"] > 0
    assert "migrate-bench-" in node["note"]
    # 12 documents by RiakTarget (a create-only PUT each) and 12 by the baseline, plus the ping,
    # then wrk's PUTs: each document at most once, into a bucket of its own; then the whole
    # runs: 12 by `migrate run`, up to 12 by wrk, 12 by the run the reconcile figure reads.
    assert counts["HEAD"] == 0
    c_client = figures["documents/s into the node vs wrk"]
    cluster = figures["migrate run documents/s vs wrk, three-node cluster"]
    assert cluster["note"] == "skipped (RIAK_URL names the node: no cluster is started beside it)"
    if wrk_path() is None and not os.environ.get("CI"):
        assert counts["PUT"] == 24
        return
    assert 24 + 12 + 12 < counts["PUT"] <= 36 + 12 + 12 + 12
    assert c_client["value"] > 0 and c_client["baseline"] > 0
    assert c_client["goal"] == ">= 0.9x" and c_client["met"] == (c_client["ratio"] >= 0.9)
    whole = figures["migrate run documents/s vs wrk, one node"]
    assert whole["value"] > 0 and whole["baseline"] > 0 and whole["goal"] == ">= 0.9x"
    cpu = figures["whole-run CPU per document, one node"]
    assert cpu["value"] > 0 and cpu["goal"] == "<= 100"
    reconcile = figures["dry-run reconcile documents/s, node"]
    assert reconcile["value"] > 0 and reconcile["baseline"] > 0 and reconcile["goal"] == ">= 25x"


def test_unreachable_riak_url_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RIAK_URL", "riak://127.0.0.1:1")
    output = tmp_path / "bench.json"
    args = ["--only", "riak", "--documents", "5", "--repeats", "1", "--output", str(output)]
    assert main(args) == 0
    capsys.readouterr()
    figures = {f["name"]: f for f in json.loads(output.read_text("utf-8"))["figures"]}
    note = figures["documents/s into the node"]["note"]
    assert note.startswith("skipped (") and "127.0.0.1:1" in note


def test_sink_answers_keep_alive_and_counts() -> None:
    with ServerProcess("sink") as sink:
        conn = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=5)
        try:
            for _ in range(3):
                conn.request("PUT", "/types/t/buckets/b/keys/k", body=b"x" * 5000)
                put = conn.getresponse()
                assert (put.status, put.read()) == (204, b"")
            conn.request("HEAD", "/types/t/buckets/b/keys/k")
            head = conn.getresponse()
            assert head.status == 404
            head.read()
            conn.request("GET", "/ping")
            get = conn.getresponse()
            assert (get.status, get.read()) == (204, b"")
        finally:
            conn.close()
        counts = sink.counts()
        assert (counts["PUT"], counts["HEAD"], counts["GET"], counts["connections"]) == (3, 1, 1, 1)
        sink.reset()
        assert sink.counts()["PUT"] == 0


def test_sink_answers_pipelined_requests_in_order() -> None:
    import socket

    with ServerProcess("sink") as sink, socket.create_connection(("127.0.0.1", sink.port)) as s:
        s.settimeout(5)
        body = b'{"a":1}'
        put = b"PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        head = b"HEAD /k HTTP/1.1\r\nHost: x\r\n\r\n"
        # Split mid-body so the sink must wait for the rest before answering.
        data = put + head + put
        s.sendall(data[:30])
        s.sendall(data[30:])
        received = b""
        while received.count(b"HTTP/1.1") < 3:
            chunk = s.recv(4096)
            assert chunk, "the sink closed the connection"
            received += chunk
        statuses = [line.split()[1] for line in received.split(b"\r\n") if line.startswith(b"HTTP")]
        assert statuses == [b"204", b"404", b"204"]
        s.sendall(b"PUT /k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 501")


def test_put_headers_carry_indexes_meta_and_checksum() -> None:
    doc = Document(
        "default",
        "patients",
        "k/1",
        b"{}",
        (("empty_bin", ()), ("postcode_bin", ("M1 1AA", "S1 2BB")), ("serial_int", (7,))),
        "ab" * 16,
    )
    headers = put_headers(doc, {"migrate-run": "r1"})
    assert headers == [
        ("Content-Type", "application/json; charset=utf-8"),
        ("X-Riak-Index-postcode_bin", "M1 1AA, S1 2BB"),
        ("X-Riak-Index-serial_int", "7"),
        ("X-Riak-Meta-migrate-run", "r1"),
        ("X-Riak-Meta-Migrate-Checksum", "ab" * 16),
    ]


def test_table_shows_ratio_goal_and_skips() -> None:
    figures = [
        Figure("riak", "cost", "us/PUT", (90.0, 110.0, 130.0), "naive", (50.0,), Goal("<=", 100)),
        Figure("riak", "rate", "docs/s", (3000.0,), "naive", (1000.0,), Goal(">=", 2, "ratio")),
        Figure("riak", "node", "docs/s", (), note="skipped (RIAK_URL not set)"),
    ]
    assert figures[0].value == 110.0 and figures[0].ratio == pytest.approx(2.2)
    assert figures[0].met is False and figures[1].met is True and figures[2].met is None
    lines = render_table(figures).splitlines()
    assert lines[0].split() == [
        "case", "figure", "value", "unit", "baseline", "base", "value", "ratio", "goal", "met"
    ]  # fmt: skip
    assert lines[2].split()[-5:] == ["50.0", "2.20x", "<=", "100", "NO"]
    assert lines[3].split()[-4:] == ["3.00x", ">=", "2x", "yes"]
    assert "skipped (RIAK_URL not set)" in lines[4]


def test_make_bench_and_readme_agree() -> None:
    makefile = (ROOT / "Makefile").read_text("utf-8")
    assert "bench: venv ## " in makefile and "$(BIN)/python -m benchmarks" in makefile
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("## Benchmarks", 1)[1]
    assert "make bench" in section and "python -m benchmarks" in section


def test_the_bench_measures_the_package_byte_compiled(tmp_path: Path) -> None:
    """As an install leaves it, whatever PYTHONDONTWRITEBYTECODE says."""
    import migrate

    copy = tmp_path / "migrate"
    shutil.copytree(Path(migrate.__file__).parent, copy, ignore=shutil.ignore_patterns("*.pyc"))
    sources = sorted(copy.rglob("*.py"))
    assert len(sources) > 50
    assert compile_package(copy) == copy
    missing = [s for s in sources if not Path(importlib.util.cache_from_source(str(s))).is_file()]
    assert missing == []


def test_measurements_run_with_the_toolkits_collection_and_the_process_gets_its_own_back() -> None:
    original = gc.get_threshold()
    gc.set_threshold(701, 11, 12)
    try:
        with as_in_the_toolkit():
            assert gc.get_threshold() == QUIET_GC_THRESHOLD
            assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (701, 11, 12)
        assert gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*original)


def test_every_case_is_measured_with_the_toolkits_collection() -> None:
    seen: list[tuple[int, int, int]] = []

    def case(settings: Settings) -> list[Figure]:
        seen.append(gc.get_threshold())
        return []

    original = gc.get_threshold()
    gc.set_threshold(701, 11, 12)
    try:
        run_cases([("a", case), ("b", case)], Settings(quick=True, repeats=1), echo=lambda _: None)
        assert seen == [QUIET_GC_THRESHOLD, QUIET_GC_THRESHOLD]
        assert gc.get_threshold() == (701, 11, 12)
    finally:
        gc.set_threshold(*original)
