"""The recorded exchanges with a real Riak node (`tests/riak_recordings/`), parsed: each a request
and the answer the node gave, or an action done to the node between two exchanges."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

RECORDINGS = Path(
    os.environ.get("RIAK_RECORDINGS", Path(__file__).resolve().parent / "riak_recordings")
)


@dataclass
class Action:
    title: str
    command: str


@dataclass
class Exchange:
    title: str
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes | None
    piped: bool
    status: int
    response_headers: list[tuple[str, str]]
    response_body: bytes


def parse(path: Path) -> list[Exchange | Action]:
    blocks = re.split(r"\n(?=# [^\n]*\n\$ )", path.read_text(encoding="utf-8"))
    exchanges: list[Exchange | Action] = []
    for block in blocks:
        lines = block.strip("\n").split("\n")
        title, command, response = lines[0], lines[1], lines[2:]
        if not command.startswith("$ curl "):
            exchanges.append(Action(title, command[2:]))
            continue
        command = command[len("$ curl ") :]
        piped = " | " in command
        command = command.split(" | ")[0]
        options, url = command.rsplit(" ", 1)
        marks = list(re.finditer(r"(?:^| )-([iXHds])(?= |$)", options))
        method, headers, body = "GET", [], None
        for mark, following in zip(marks, [*marks[1:], None], strict=True):
            value = options[mark.end() : following.start() if following else None].strip()
            if mark.group(1) == "X":
                method = value
            elif mark.group(1) == "H":
                name, _, header_value = value.partition(": ")
                headers.append((name, header_value))
            elif mark.group(1) == "d":
                body = value.encode("utf-8")
                if method == "GET":
                    method = "POST"
        if body is not None and not any(n.lower() == "content-type" for n, _ in headers):
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        target = "/" + url.split("/", 3)[3]
        if piped:
            exchanges.append(
                Exchange(
                    title,
                    method,
                    target,
                    headers,
                    body,
                    True,
                    200,
                    [],
                    "\n".join(response).encode(),
                )
            )
            continue
        status = int(response[0].split(" ")[1])
        blank = response.index("") if "" in response else len(response)
        response_headers = [tuple(line.split(": ", 1)) for line in response[1:blank]]
        text = "\n".join(response[blank + 1 :]) + "\n"
        length = next((int(v) for n, v in response_headers if n.lower() == "content-length"), 0)
        raw = text.encode("utf-8")
        exchanges.append(
            Exchange(
                title,
                method,
                target,
                headers,
                body,
                False,
                status,
                response_headers,  # type: ignore[arg-type]
                raw[:length] if method != "HEAD" else b"",
            )
        )
    return exchanges


def recording(name: str) -> list[Exchange | Action]:
    """The exchanges of one recording, by file name."""
    return parse(RECORDINGS / name)
