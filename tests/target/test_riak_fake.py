"""The fake Riak node answers every recorded exchange of a real Riak 3.2 node the way it did.

Each file in the recordings folder is replayed in order against a fresh fake (after the few writes
that the recording assumes were made before it). Vclocks, vtags and continuations are opaque: the
ones the fake hands out replace the recorded ones in later requests, and are compared by presence.
What was done to the node between two exchanges (`$ sleep 4`, `$ riak stop`...) is done to the
fake (`ACTIONS`).
"""

from __future__ import annotations

import http.client
import json
import random
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from recordings import RECORDINGS, Action, Exchange, parse
from riak_fake import RiakFake, decode_continuation, encode_continuation

SHARED = Path(__file__).resolve().parents[3] / "shared" / "riak-http"
FILES = sorted(RECORDINGS.glob("*.txt")) if RECORDINGS.is_dir() else []
OPAQUE = {"x-riak-vclock", "etag", "last-modified", "content-length", "date", "server"}

# What each recording assumes the node held before its first exchange.
PEOPLE = "/types/default/buckets/people/keys/"
SETUP: dict[str, list[tuple[str, dict[str, str]]]] = {
    "02-missing.txt": [(PEOPLE + "p1", {})],
    "03-2i.txt": [
        (
            PEOPLE + f"p{n}",
            {
                "X-Riak-Index-postcode_bin": "LS6 2AB",
                "X-Riak-Index-born_int": f"1980022{n}",
                "X-Riak-Index-gp_bin": f"A8100{n}",
            },
        )
        for n in range(1, 6)
    ],
    "05-conditional.txt": [(PEOPLE + "c1", {})],
}


def _primary_down(fake: RiakFake) -> None:
    fake.primaries_up = 2


# What the recordings did to the node between exchanges, done to the fake.
ACTIONS = {
    "sleep 4": lambda fake: fake.advance(4),
    "riak stop": lambda fake: setattr(fake, "state", "stopping"),
    "riak start": lambda fake: setattr(fake, "state", "starting"),
    "riak-local admin DIR node2 stop": _primary_down,
}


def send(
    fake: RiakFake, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.putrequest(method, target, skip_accept_encoding=True)
    for name, value in headers:
        conn.putheader(name, value.encode("utf-8"))
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    response = conn.getresponse()
    response.read_body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def multipart(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """(Etag, body) of each part of a multipart/mixed body, whatever its line endings."""
    boundary = content_type.split("boundary=")[1].encode()
    text = body.replace(b"\r\n", b"\n")
    parts = []
    for chunk in text.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, value = chunk.strip(b"\n").partition(b"\n\n")
        etag = next(
            line.split(b": ", 1)[1].decode()
            for line in head.split(b"\n")
            if line.lower().startswith(b"etag:")
        )
        parts.append((etag, value))
    return parts


def unordered(payload: dict[str, Any]) -> dict[str, Any]:
    out = dict(payload)
    for field in ("keys", "results"):
        if field in out:
            out[field] = sorted(out[field], key=lambda item: json.dumps(item, sort_keys=True))
    return out


def check(exchange: Exchange, fake: RiakFake, tokens: dict[str, str]) -> None:
    def swap(text: str) -> str:
        for recorded, actual in tokens.items():
            text = text.replace(recorded, actual)
        return text

    headers = [(name, swap(value)) for name, value in exchange.headers]
    response = send(fake, exchange.method, swap(exchange.target), headers, exchange.body)
    body: bytes = response.read_body  # type: ignore[attr-defined]
    where = exchange.title
    if exchange.piped:
        stats = json.loads(body)
        for line in exchange.response_body.decode().splitlines():
            ((name, value),) = json.loads(line).items()
            assert type(stats[name]) is type(value), (where, name)
        return
    assert response.status == exchange.status, (where, response.status, body)
    actual_headers = {name.lower(): value for name, value in response.getheaders()}
    recorded_headers = {name.lower(): value for name, value in exchange.response_headers}
    for name, value in recorded_headers.items():
        assert name in actual_headers, (where, name)
        if name in OPAQUE:
            continue
        actual = actual_headers[name].encode("latin-1").decode("utf-8")
        if name == "content-type" and value.startswith("multipart/"):
            assert actual.split(";")[0] == value.split(";")[0], where
        else:
            assert actual == value, (where, name)
    if "x-riak-vclock" in recorded_headers:
        tokens[recorded_headers["x-riak-vclock"]] = actual_headers["x-riak-vclock"]
    content_type = recorded_headers.get("content-type", "")
    if content_type.startswith("multipart/mixed"):
        recorded_parts = multipart(content_type, exchange.response_body)
        actual_parts = multipart(actual_headers["content-type"], body)
        assert sorted(v for _, v in actual_parts) == sorted(v for _, v in recorded_parts), where
        for etag, value in recorded_parts:
            tokens[etag] = next(e for e, v in actual_parts if v == value)
    elif exchange.response_body.startswith(b"Siblings:\n"):
        assert body.startswith(b"Siblings:\n"), where
        assert len(body.splitlines()) == len(exchange.response_body.splitlines()), where
    elif content_type == "application/json" and exchange.response_body.startswith(b"{"):
        recorded, actual_json = json.loads(exchange.response_body), json.loads(body)
        assert ("continuation" in actual_json) == ("continuation" in recorded), where
        if "continuation" in recorded:
            tokens[recorded.pop("continuation")] = actual_json.pop("continuation")
        if "max_results" in exchange.target:
            assert actual_json == recorded, where
        else:
            assert unordered(actual_json) == unordered(recorded), where
    else:
        assert body == exchange.response_body, (where, body)


def test_recordings_are_present() -> None:
    assert len(FILES) == 10, f"expected the ten recordings in {RECORDINGS}"
    listed = (RECORDINGS / "README.md").read_text(encoding="utf-8")
    assert all(f"| {path.name} |" in listed for path in FILES)


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared/ folder beside this checkout")
def test_the_copied_recordings_are_the_shared_ones() -> None:
    """tests/riak_recordings holds a copy of shared/riak-http's recordings (and the ones recorded
    here since, by tests/record_riak.py), so the suite runs anywhere; the copies must not drift
    from the recordings of the real node."""
    shared = {p.name: p.read_bytes() for p in SHARED.glob("*.txt")}
    copied = {p.name: p.read_bytes() for p in RECORDINGS.glob("*.txt") if p.name in shared}
    assert copied == shared


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_replay_recording(path: Path, riak_fake: RiakFake) -> None:
    for target, headers in SETUP.get(path.name, []):
        setup = [("Content-Type", "application/json"), *headers.items()]
        assert send(riak_fake, "PUT", target, setup, b"{}").status == 204
    tokens: dict[str, str] = {}
    exchanges = parse(path)
    assert exchanges
    for exchange in exchanges:
        if isinstance(exchange, Action):
            assert exchange.command in ACTIONS, f"{path.name}: no action for {exchange.command!r}"
            ACTIONS[exchange.command](riak_fake)
        else:
            check(exchange, riak_fake, tokens)


def test_continuation_matches_the_recorded_encoding() -> None:
    """Riak's continuation is term_to_binary({Term, Key}) in base64; the recorded one decodes."""
    assert decode_continuation("g2gCbQAAAAZBODEwMDJtAAAAAnAy") == ("A81002", "p2")
    assert encode_continuation("A81002", "p2") == "g2gCbQAAAAZBODEwMDJtAAAAAnAy"
    for term in (0, 255, 256, -1, 2**31, -(2**40), 19800229):
        assert decode_continuation(encode_continuation(term, "k/é")) == (term, "k/é")


def test_faults_are_injected_at_the_configured_rates(riak_fake: RiakFake) -> None:
    riak_fake.faults.error_rate = 0.5
    statuses = [send(riak_fake, "GET", "/ping", [], None).status for _ in range(200)]
    assert 60 < statuses.count(503) < 140
    assert set(statuses) == {200, 503}
    assert riak_fake.requests["GET"] == 200


def test_dropped_connection_gets_no_answer(riak_fake: RiakFake) -> None:
    riak_fake.faults.drop_rate = 1.0
    with pytest.raises(http.client.RemoteDisconnected):
        send(riak_fake, "GET", "/ping", [], None)


def test_stall_applies_the_write_then_never_answers(riak_fake: RiakFake) -> None:
    riak_fake.faults.stall_rate, riak_fake.faults.stall_seconds = 1.0, 0.3
    headers = [("Content-Type", "application/json")]
    with pytest.raises(http.client.RemoteDisconnected):
        send(riak_fake, "PUT", PEOPLE + "stalled", headers, b"{}")
    assert riak_fake.siblings("default", "people", "stalled") == [b"{}"]


def test_stale_vclock_on_allow_mult_type_keeps_newer_sibling(riak_fake: RiakFake) -> None:
    url = "/types/siblings/buckets/b/keys/k"
    headers = [("Content-Type", "application/json")]
    assert send(riak_fake, "PUT", url, headers, b"1").status == 204
    first = send(riak_fake, "GET", url, [], None).getheader("X-Riak-Vclock")
    assert send(riak_fake, "PUT", url, [*headers, ("X-Riak-Vclock", first)], b"2").status == 204
    # a writer still holding the first vclock: its write and the second one are concurrent
    assert send(riak_fake, "PUT", url, [*headers, ("X-Riak-Vclock", first)], b"3").status == 204
    assert sorted(riak_fake.siblings("siblings", "b", "k")) == [b"2", b"3"]
    # on the default type (allow_mult=false) the last write wins, whatever the vclock
    assert send(riak_fake, "PUT", PEOPLE + "k", headers, b"1").status == 204
    assert send(riak_fake, "PUT", PEOPLE + "k", headers, b"2").status == 204
    assert riak_fake.siblings("default", "people", "k") == [b"2"]


# ---- secondary indexes: sorted, paginated, stateless continuations ------------------------------

INDEX = "/types/default/buckets/people/index/"


def put_indexed(fake: RiakFake, key: str, indexes: dict[str, list[str | int]]) -> None:
    headers = [("Content-Type", "application/json")]
    headers += [(f"X-Riak-Index-{n}", ", ".join(map(str, t))) for n, t in indexes.items() if t]
    assert send(fake, "PUT", PEOPLE + quote(key, safe=""), headers, b"{}").status == 204


def query(fake: RiakFake, path: str, **params: str) -> dict[str, Any]:
    target = INDEX + path + ("?" + urlencode(params) if params else "")
    response = send(fake, "GET", target, [], None)
    assert response.status == 200, response.read_body  # type: ignore[attr-defined]
    payload: dict[str, Any] = json.loads(response.read_body)  # type: ignore[attr-defined]
    return payload


def pairs(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return [next(iter(item.items())) for item in payload["results"]]


def walk(fake: RiakFake, path: str, page: int) -> tuple[list[tuple[str, str]], int]:
    """Every (term, key) of a range with return_terms, page by page; and the number of pages."""
    found: list[tuple[str, str]] = []
    params = {"return_terms": "true", "max_results": str(page)}
    pages = 0
    while True:
        payload = query(fake, path, **params)
        pages += 1
        found += pairs(payload)
        assert ("continuation" in payload) == (len(payload["results"]) == page)
        if "continuation" not in payload:
            return found, pages
        params["continuation"] = payload["continuation"]


def test_range_pages_come_sorted_by_term_then_key_bytes(riak_fake: RiakFake) -> None:
    model: dict[str, set[str]] = {}
    for n in range(120):
        key = f"k{(n * 37) % 120:03d}" + ("é" if n % 11 == 0 else "")
        terms = {f"{n % 9:08d}:{n:04x}", f"{(n * 5) % 9:08d}:{n:04x}"}
        model[key] = terms
        put_indexed(riak_fake, key, {"migrate_chunk_bin": sorted(terms)})
    wanted = sorted(
        ((t, k) for k, terms in model.items() for t in terms if "00000002:" <= t <= "00000006:~"),
        key=lambda e: (e[0].encode(), e[1].encode()),
    )
    for page in (1, 7, len(wanted), 1000):
        found, pages = walk(riak_fake, "migrate_chunk_bin/00000002:/00000006:~", page)
        assert found == wanted
        # a full page always carries a continuation, so an exact multiple costs one empty page
        assert pages == len(wanted) // page + 1
    unpaged = query(riak_fake, "migrate_chunk_bin/00000002:/00000006:~", return_terms="true")
    assert sorted(pairs(unpaged)) == sorted(wanted)
    assert "continuation" not in unpaged


def test_exact_integer_key_and_bucket_queries(riak_fake: RiakFake) -> None:
    for n in range(30):
        put_indexed(riak_fake, f"p{n:02d}", {"born_int": [n % 4, -n], "gp_bin": [f"G{n % 3}"]})
    assert sorted(query(riak_fake, "born_int/2")["keys"]) == [f"p{n:02d}" for n in range(2, 30, 4)]
    assert query(riak_fake, "born_int/-3/1", max_results="100")["keys"] == [
        "p03",
        "p02",
        "p01",
        *[f"p{n:02d}" for n in range(0, 30, 4)],  # -0 and 0 are one term
        *[f"p{n:02d}" for n in range(1, 30, 4)],
    ]
    assert query(riak_fake, "gp_bin/G1", max_results="3")["keys"] == ["p01", "p04", "p07"]
    assert query(riak_fake, "$key/p05/p08", max_results="10", return_terms="true")["results"] == [
        {f"p0{n}": f"p0{n}"} for n in range(5, 9)
    ]
    first = query(riak_fake, "$bucket/_", max_results="20")
    rest = query(riak_fake, "$bucket/_", continuation=first["continuation"])
    assert first["keys"] + rest["keys"] == [f"p{n:02d}" for n in range(30)]
    assert "continuation" not in rest  # a continuation alone gives the rest, sorted
    assert query(riak_fake, "born_int/5/4") == {"keys": []}


def test_overwritten_deleted_and_sibling_terms_are_reindexed(riak_fake: RiakFake) -> None:
    put_indexed(riak_fake, "a", {"gp_bin": ["X1", "X2"]})
    put_indexed(riak_fake, "b", {"gp_bin": ["X1"]})
    put_indexed(riak_fake, "a", {"gp_bin": ["X3"]})  # the old terms leave with the old value
    assert query(riak_fake, "gp_bin/X1/X9", return_terms="true", max_results="9")["results"] == [
        {"X1": "b"},
        {"X3": "a"},
    ]
    assert send(riak_fake, "DELETE", PEOPLE + "b", [], None).status == 204
    assert query(riak_fake, "gp_bin/X1/X9", max_results="9")["keys"] == ["a"]
    assert riak_fake.keys("default", "people") == ["a"]
    put_indexed(riak_fake, "b", {"gp_bin": ["X0"]})  # back after its tombstone
    assert query(riak_fake, "gp_bin/X0", max_results="9")["keys"] == ["b"]
    # concurrent writes on an allow_mult type: the key is indexed under every sibling's terms
    url = "/types/siblings/buckets/people/keys/s"
    for term in ("S1", "S2"):
        headers = [("Content-Type", "application/json"), ("X-Riak-Index-gp_bin", term)]
        assert send(riak_fake, "PUT", url, headers, b"{}").status == 204
    sibling_index = "/types/siblings/buckets/people/index/gp_bin/S0/S9?max_results=5"
    answer = json.loads(send(riak_fake, "GET", sibling_index, [], None).read_body)  # type: ignore[attr-defined]
    assert answer == {"keys": ["s", "s"]}


def test_continuations_are_stateless_while_keys_come_and_go(riak_fake: RiakFake) -> None:
    """Between pages, writes and deletes land as on Riak: the next page is the first entries after
    the continuation's (term, key) in the index as it is now. Checked against a model, at random."""
    rng = random.Random(5)
    model: dict[str, set[str]] = {}

    def entries() -> list[tuple[str, str]]:
        found = [(t, k) for k, terms in model.items() for t in terms if "c" <= t <= "f"]
        return sorted(found, key=lambda e: (e[0].encode(), e[1].encode()))

    def mutate() -> None:
        key = f"k{rng.randrange(60):02d}"
        if key in model and rng.random() < 0.3:
            assert send(riak_fake, "DELETE", PEOPLE + key, [], None).status == 204
            del model[key]
            return
        terms = {rng.choice("abcdefg") + str(rng.randrange(10)) for _ in range(rng.randrange(3))}
        put_indexed(riak_fake, key, {"t_bin": sorted(terms)})
        model[key] = terms

    for _ in range(80):
        mutate()
    for _ in range(12):
        after: tuple[str, str] | None = None
        continuation: str | None = None
        while True:
            for _ in range(rng.randrange(4)):
                mutate()
            params = {"return_terms": "true", "max_results": "5"}
            if continuation:
                params["continuation"] = continuation
            payload = query(riak_fake, "t_bin/c/f", **params)
            rest = [e for e in entries() if after is None or _after(e, after)]
            assert pairs(payload) == rest[:5]
            continuation = payload.get("continuation")
            if continuation is None:
                break
            after = decode_continuation(continuation)  # type: ignore[assignment]
            assert after == rest[4]


def _after(entry: tuple[str, str], point: tuple[str, str]) -> bool:
    return (entry[0].encode(), entry[1].encode()) > (point[0].encode(), point[1].encode())


@pytest.mark.parametrize(
    "params",
    [{"continuation": "bm90IGEgdGVybQ=="}, {"max_results": "0"}, {"max_results": "x"}],
)
def test_bad_pagination_is_refused(riak_fake: RiakFake, params: dict[str, str]) -> None:
    target = INDEX + "gp_bin/A/B?" + urlencode(params)
    response = send(riak_fake, "GET", target, [], None)
    assert response.status == 400
    assert response.read_body == b"Invalid query: {invalid_pagination}\n"  # type: ignore[attr-defined]


def test_an_integer_continuation_on_a_binary_index_is_refused(riak_fake: RiakFake) -> None:
    token = encode_continuation(7, "k")
    response = send(riak_fake, "GET", INDEX + f"gp_bin/A/B?continuation={token}", [], None)
    assert response.status == 400
