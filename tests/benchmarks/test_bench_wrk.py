"""The C client baseline: wrk sends prebuilt first-load PUTs, each at most once, and says how many
were answered and how fast. No timing is asserted (benchmarks are measured by `make bench`)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import Settings  # noqa: E402
from benchmarks.riak import META, c_client_load, in_bucket, object_path, plan_for, raw_put  # noqa: E402
from benchmarks.sink import ServerProcess  # noqa: E402
from benchmarks.wrk import WrkError, _parse, wrk_load, wrk_path  # noqa: E402
from migrate.document import Document  # noqa: E402
from migrate.target.riak import parse_url  # noqa: E402

WRK = wrk_path()
# `.ci/run` installs wrk: in CI a missing wrk fails these tests instead of skipping them.
needs_wrk = pytest.mark.skipif(
    WRK is None and not os.environ.get("CI"), reason="wrk is not installed (apt-get install wrk)"
)


def _docs(count: int, bucket: str = "wrk") -> list[Document]:
    return [
        Document(
            "default",
            bucket,
            f"k{i:04d}",
            b'{"n":%d,"text":"%s"}' % (i, b"x" * 300),
            (("nhs_bin", (f"{i:010d}",)), ("seen_int", (i, i + 1))),
            f"{i:032x}",
        )
        for i in range(count)
    ]


def test_raw_put_is_the_first_load_request() -> None:
    url = parse_url("riak://127.0.0.1:8098")
    (doc,) = _docs(1)
    head, body = raw_put(doc, META, url).split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == f"PUT {object_path(doc)} HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert body == doc.value and headers["Content-Length"] == str(len(doc.value))
    assert headers["If-None-Match"] == "*" and headers["Host"] == "127.0.0.1:8098"
    assert headers["X-Riak-Index-nhs_bin"] == "0000000000"
    assert headers["X-Riak-Index-seen_int"] == "0, 1"
    assert headers["X-Riak-Meta-Migrate-Checksum"] == doc.checksum
    assert headers["X-Riak-Meta-migrate-run"] == META["migrate-run"]


def _settled(fake: ServerProcess, bucket: str) -> tuple[int, int]:
    """The fake's stored keys and PUTs received, once the two agree or 10 s have passed. wrk is
    interrupted while its last requests may still be in flight, and the fake counts a PUT before
    it stores it: right after the load, a PUT can be counted and not yet stored. A PUT the fake
    refused is never stored, so the two then never agree."""
    deadline = time.monotonic() + 10
    while True:
        stored = fake.stored_keys("default", bucket)
        puts = fake.counts()["PUT"]
        if stored == puts or time.monotonic() > deadline:
            return stored, puts
        time.sleep(0.01)


@needs_wrk
@pytest.mark.parametrize("count", [4, 41, 400])
def test_wrk_puts_every_document_at_most_once(count: int) -> None:
    """Into the fake, create-only: a repeated document would be refused (412) and fail the load;
    the fake stores exactly the PUTs it received."""
    assert WRK is not None, "CI installs wrk (.ci/run)"
    plan = plan_for(Settings(quick=True))
    with ServerProcess("fake") as fake:
        url = parse_url(fake.url.replace("http://", "riak://"))
        docs = in_bucket(_docs(count), f"wrk-{count}")
        load = c_client_load(WRK, url, docs, plan, fake)
        stored, puts = _settled(fake, f"wrk-{count}")
    assert 0 < load.documents <= stored == puts <= load.puts <= count
    assert load.docs_per_s > 0


@needs_wrk
def test_a_refused_put_fails_the_load() -> None:
    """A second load of the same keys is refused by create-only PUTs: not a figure, an error."""
    assert WRK is not None
    with ServerProcess("fake") as fake:
        url = parse_url(fake.url.replace("http://", "riak://"))
        requests = [raw_put(doc, META, url) for doc in _docs(20)]
        wrk_load(WRK, f"{fake.url}/", requests, budget=10, where="the fake")
        with pytest.raises(WrkError, match=r"the fake refused \d+ of \d+ PUTs"):
            wrk_load(WRK, f"{fake.url}/", requests, budget=10, where="the fake")


def test_a_thread_that_did_not_report_fails_the_load() -> None:
    lines = ["migrate-wrk thread=1 sent=5 answered=4 ok=4 first=1.0 last=2.0", "Requests/sec: 4"]
    with pytest.raises(WrkError, match="wrk reported 1 of 2 threads loading the node"):
        _parse(lines, 2, "the node")
    both = [*lines, "migrate-wrk thread=2 sent=6 answered=5 ok=5 first=0.5 last=1.5"]
    load = _parse(both, 2, "the node")
    assert (load.sent, load.answered, load.ok, load.seconds) == (11, 9, 9, 1.5)
