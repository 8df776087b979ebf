"""wrk, a C HTTP load generator, as the baseline of issue 5 goal 3: "the load into a node should
reach >= 0.9x what a C client (wrk with a Lua PUT script, same documents and headers, 16
connections) gets from the same node".

The caller hands over whole HTTP requests (`benchmarks.riak.raw_put` builds them), which reach
wrk's Lua script in a file. Every wrk thread sends its share of them once, counts the
answers, and stops once only its connections' last requests can still be unanswered; the script
clocks the first request and the last answer of each thread (CLOCK_MONOTONIC through LuaJIT's
FFI), so the rate is answers over that span and wrk's own `-d` is only an upper bound.
"""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from migrate.errors import MigrateError

CONNECTIONS = 16  # as the issue asks
THREADS = 2  # one per core of the machine the issue describes
MARK = "migrate-wrk"

SCRIPT = """\
-- migrate's wrk baseline (benchmarks/wrk.py): args are the requests file, their lengths file,
-- the thread count and the connections per thread.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } migrate_timespec;
int clock_gettime(int clock, migrate_timespec *now);
]]
local clock = ffi.new("migrate_timespec")
local function now()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  local data = assert(io.open(args[1], "rb")):read("*a")
  local count, connections = tonumber(args[3]), tonumber(args[4])
  prebuilt, sent, answered, ok, first, last = {}, 0, 0, 0, 0, 0
  local offset, index = 1, 0
  for line in assert(io.open(args[2], "r")):lines() do
    local length = tonumber(line)
    if index % count == id - 1 then
      table.insert(prebuilt, data:sub(offset, offset + length - 1))
    end
    offset, index = offset + length, index + 1
  end
  wanted = math.max(1, #prebuilt - connections)
end

function request()
  sent = sent + 1
  if first == 0 then first = now() end
  return prebuilt[math.min(sent, #prebuilt)]
end

function response(status, headers, body)
  answered = answered + 1
  if status == 200 or status == 204 then ok = ok + 1 end
  last = now()
  if answered == wanted then
    io.write(string.format("MARK stopped %d\\n", id))
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    io.write(string.format("MARK thread=%d sent=%d answered=%d ok=%d first=%.6f last=%.6f\\n",
      thread:get("id"), thread:get("sent"), thread:get("answered"), thread:get("ok"),
      thread:get("first"), thread:get("last")))
  end
  io.flush()
end
""".replace("MARK", MARK)


class WrkError(MigrateError):
    """wrk failed, or its load went wrong (the figure would not mean what it says)."""


def wrk_path() -> str | None:
    """The `wrk` command, or None when it is not installed (Debian: `apt-get install wrk`)."""
    return shutil.which("wrk")


@dataclass(frozen=True, slots=True)
class WrkLoad:
    """What wrk's threads counted: requests sent, answers, 2xx answers, and their span."""

    sent: int
    answered: int
    ok: int
    seconds: float


def wrk_load(
    wrk: str,
    base_url: str,
    requests: Sequence[bytes],
    *,
    budget: float,
    where: str,
    connections: int = CONNECTIONS,
    threads: int = THREADS,
) -> WrkLoad:
    """Send every request once with wrk (`threads` threads, `connections` connections in all)
    to `base_url` (http://host:port/); `where` names the server in errors. A load of fewer than
    twice `connections` requests uses fewer connections, so that no connection can run out of
    requests of its own (a thread's share must outnumber its connections)."""
    if len(requests) < 2 * threads:
        raise WrkError(f"wrk needs at least {2 * threads} requests, got {len(requests)}")
    connections = max(threads, min(connections, len(requests) // 2))
    with tempfile.TemporaryDirectory(prefix="migrate-wrk-") as tmp:
        folder = Path(tmp)
        (folder / "requests.bin").write_bytes(b"".join(requests))
        (folder / "lengths.txt").write_text("".join(f"{len(r)}\n" for r in requests))
        (folder / "put.lua").write_text(SCRIPT)
        command = [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{math.ceil(budget)}s",
            "-s",
            str(folder / "put.lua"),
            base_url,
            "--",
            str(folder / "requests.bin"),
            str(folder / "lengths.txt"),
            str(threads),
            str(max(1, connections // threads)),
        ]
        lines = _run(command, threads, timeout=budget + 60)
    return _parse(lines, threads, where)


def _run(command: list[str], threads: int, *, timeout: float) -> list[str]:
    """wrk's output lines; wrk is interrupted (it then reports) once every thread stopped."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    assert process.stdout is not None
    lines: list[str] = []
    stopped = 0
    try:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(f"{MARK} stopped"):
                stopped += 1
                if stopped == threads:
                    process.send_signal(signal.SIGINT)
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    if process.returncode != 0:
        last = next((line for line in reversed(lines) if line.strip()), "(no output)")
        raise WrkError(f"wrk exited with {process.returncode}: {last[:300]}")
    return lines


def _parse(lines: Sequence[str], threads: int, where: str) -> WrkLoad:
    rows = []
    for line in lines:
        if line.startswith(f"{MARK} thread="):
            fields = dict(part.split("=", 1) for part in line.split()[1:])
            rows.append(fields)
    if len(rows) != threads:
        raise WrkError(f"wrk reported {len(rows)} of {threads} threads loading {where}")
    sent = sum(int(r["sent"]) for r in rows)
    answered = sum(int(r["answered"]) for r in rows)
    ok = sum(int(r["ok"]) for r in rows)
    if ok != answered:
        raise WrkError(
            f"wrk: {where} refused {answered - ok} of {answered} PUTs (not 200 or 204)",
            hint="load into new buckets: a create-only PUT of a stored key is refused",
        )
    started = min(float(r["first"]) for r in rows)
    ended = max(float(r["last"]) for r in rows)
    return WrkLoad(sent, answered, ok, ended - started)
