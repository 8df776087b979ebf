"""Unix manners for every command's outputs, handled once here rather than in each command.

- A reader that goes away (`migrate dump pds | head -1`) is not an error: what is still written to
  that stream is dropped, and the command ends with the exit code its work earned (0 when it
  succeeded). The process's standard output and error are swapped for streams whose every write
  goes through `_Guard`: on EPIPE it points the descriptor at /dev/null, so nothing written later,
  by rich, click or Python's own flush at exit, fails again.
- Any other write error on standard output (`> /dev/full`) is an `OutputError` (exit 3) naming the
  stream and the path it goes to; on standard error there is nowhere to say so, so it is dropped.
- A file named with `--output` is opened and written through `output_file`, whose errors say the
  path and what to do.

Under click's CliRunner the streams have no descriptor, and nothing is swapped.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from migrate.errors import EXIT_RUNTIME, MigrateError
from migrate.files import open_private


class OutputError(MigrateError):
    """An output (standard output or an --output file) cannot be written."""

    exit_code = EXIT_RUNTIME


class ReaderGone(Exception):
    """Raised by `until_reader_leaves` streams once standard output's reader has closed it."""


def _describe(fd: int, name: str) -> str:
    """`standard output (/dev/full)`: the stream and, where the system says, where it goes."""
    try:
        where = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return name
    return f"{name} ({where})"


class _Guard(io.RawIOBase):
    """Writes to one descriptor; a closed pipe is dropped quietly, any other failure raised once
    as an `OutputError` (`strict`) or dropped (standard error: nowhere left to tell)."""

    def __init__(self, fd: int, name: str, *, strict: bool) -> None:
        super().__init__()
        self.fd = fd
        self.name_ = name
        self.strict = strict
        self.reader_gone = False
        self.failed = False
        self.owned = False  # a descriptor opened here (on /dev/null), closed at the end

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def write(self, data: Any) -> int:
        size = len(memoryview(data))
        if self.reader_gone or self.failed:
            return size
        try:
            while True:
                try:
                    return os.write(self.fd, data)
                except BlockingIOError:  # a non-blocking descriptor: wait until it takes more
                    select.select([], [self.fd], [])
        except BrokenPipeError:
            self.reader_gone = True
            self._silence()
            return size
        except OSError as exc:
            self.failed = True
            where = _describe(self.fd, self.name_)
            self._silence()
            if not self.strict:
                return size
            raise OutputError(
                f"cannot write to {where}: {exc.strerror or exc}",
                hint="make room or write elsewhere (--output FILE where the command has it)",
            ) from None

    def _silence(self) -> None:
        """Point the descriptor at /dev/null: later writes, Python's own at exit included, land
        nowhere instead of failing again."""
        with contextlib.suppress(OSError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.fd)
            os.close(null)


_guards: dict[str, _Guard] = {}


def _swap(name: str, label: str, *, strict: bool) -> tuple[IO[str] | None, _Guard] | None:
    stream: IO[str] | None = getattr(sys, name)
    if stream is None:  # started with the descriptor closed (`>&-`): nobody reads it
        guard = _Guard(os.open(os.devnull, os.O_WRONLY), label, strict=strict)
        guard.reader_gone = guard.owned = True
        encoding, errors, lines = "utf-8", "strict", False
    else:
        try:
            fd = stream.fileno()
        except (OSError, ValueError, io.UnsupportedOperation):
            return None  # CliRunner's captured streams
        stream.flush()
        guard = _Guard(fd, label, strict=strict)
        encoding = getattr(stream, "encoding", None) or "utf-8"
        errors = getattr(stream, "errors", None) or "strict"
        lines = bool(getattr(stream, "line_buffering", False))
    wrapper = io.TextIOWrapper(
        io.BufferedWriter(guard), encoding=encoding, errors=errors, line_buffering=lines
    )
    setattr(sys, name, wrapper)
    _guards[name] = guard
    return stream, guard


@contextlib.contextmanager
def guarded_streams() -> Iterator[None]:
    """Standard output and error through `_Guard` for the block, restored at its end. What is
    still buffered is flushed first: a write error then is reported, and the exit code is 3."""
    swapped = {
        name: found
        for name, label, strict in (
            ("stdout", "standard output", True),
            ("stderr", "standard error", False),
        )
        if (found := _swap(name, label, strict=strict)) is not None
    }
    try:
        yield
    finally:
        failure: OutputError | None = None
        for name, (original, guard) in swapped.items():
            try:
                getattr(sys, name).flush()
            except OutputError as exc:
                failure = exc
            except (OSError, ValueError):
                pass
            setattr(sys, name, original)
            _guards.pop(name, None)
            if guard.owned:
                with contextlib.suppress(OSError):
                    os.close(guard.fd)
        if failure is not None and sys.stderr is not None:
            with contextlib.suppress(OSError):
                print(f"error: {failure.render()}", file=sys.stderr, flush=True)
        if failure is not None:
            raise SystemExit(EXIT_RUNTIME)


def reader_gone() -> bool:
    """True once the reader of standard output has closed it (a pipe into `head`)."""
    guard = _guards.get("stdout")
    return guard is not None and guard.reader_gone


class _UntilReaderLeaves:
    """A binary stream that raises `ReaderGone` once standard output's reader has left, so a
    command whose work is its output (`dump`) stops instead of producing it for nobody."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def write(self, data: bytes) -> int:
        written = self.out.write(data)
        if reader_gone():
            raise ReaderGone
        return written

    def flush(self) -> None:
        self.out.flush()
        if reader_gone():
            raise ReaderGone


def until_reader_leaves(out: IO[bytes]) -> IO[bytes]:
    """`out` (standard output's bytes), stopping the writer with `ReaderGone` when nobody reads."""
    return _UntilReaderLeaves(out)  # type: ignore[return-value]


class _FileOutput:
    """An --output file whose write errors name the path."""

    def __init__(self, path: Path, handle: IO[bytes]) -> None:
        self.path = path
        self.handle = handle

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            raise _file_error(self.path, exc) from None

    def flush(self) -> None:
        try:
            self.handle.flush()
        except OSError as exc:
            raise _file_error(self.path, exc) from None


def _file_error(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError) and not path.parent.is_dir():
        hint = f"the folder {path.parent} does not exist: create it, or name a file elsewhere"
    elif isinstance(exc, IsADirectoryError):
        hint = "name a file, not a folder"
    else:
        hint = "check the path's folder is writable and has room, or name a file elsewhere"
    return OutputError(f"cannot write the output file {path}: {reason}", hint=hint)


@contextlib.contextmanager
def output_file(path: Path) -> Iterator[IO[bytes]]:
    """`path` opened owner-only for writing (it holds personal data), closed at the block's end;
    opening, writing and closing errors are `OutputError`s naming it."""
    try:
        handle = open_private(path)
    except OSError as exc:
        raise _file_error(path, exc) from None
    try:
        yield _FileOutput(path, handle)  # type: ignore[misc]
    except BaseException:
        with contextlib.suppress(OSError):
            handle.close()
        raise
    try:
        handle.close()
    except OSError as exc:
        raise _file_error(path, exc) from None
