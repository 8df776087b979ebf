"""One exception hierarchy for everything a user can be told.

Every error carries what happened, where (file:line, service, chunk, key) and what to do next, and
knows its exit code, so the CLI maps errors to exit codes in one place. `transient` decides retries:
a transient error may succeed when tried again, a terminal one never will.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

EXIT_OK = 0
EXIT_VERIFY = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3


class MigrateError(Exception):
    """Base of every error the toolkit raises on purpose."""

    exit_code = EXIT_RUNTIME
    transient = False

    def __init__(self, message: str, *, hint: str | None = None, where: str | None = None) -> None:
        self.message = mask_secrets(message)
        self.hint = mask_secrets(hint) if hint else None
        self.where = where
        super().__init__(self.render())

    def render(self) -> str:
        parts = [f"{self.where}: {self.message}" if self.where else self.message]
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled whole (a worker process's error reaches the command as it was raised, with
        its kind, hint and context), without calling a subclass's own constructor again."""
        return (_restored, (type(self), dict(self.__dict__)))


def _restored(kind: type[MigrateError], state: dict[str, Any]) -> MigrateError:
    error = kind.__new__(kind)
    error.__dict__.update(state)
    Exception.__init__(error, error.render())
    return error


class UsageError(MigrateError):
    """Bad command-line usage."""

    exit_code = EXIT_USAGE


class ConfigError(MigrateError):
    """migrate.toml is missing, malformed or inconsistent."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Problem:
    """One mistake in a mapping file: file, line, field path, what is wrong and how to fix it."""

    file: str
    line: int
    field: str
    message: str
    hint: str | None = None

    def render(self) -> str:
        text = f"{self.file}:{self.line}: {self.field}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class MappingError(MigrateError):
    """One or more problems in mapping files; all of them are reported at once."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in mapping files"
        body = "\n".join(p.render() for p in self.problems)
        super().__init__(f"{head}:\n{body}")


class SourceError(MigrateError):
    """The source database failed or is unreachable."""

    exit_code = EXIT_RUNTIME


class TargetError(MigrateError):
    """The target store failed or is unreachable."""

    exit_code = EXIT_RUNTIME


class TransientTargetError(TargetError):
    """A target failure worth retrying (timeout, dropped connection, 5xx)."""

    transient = True


class LedgerError(MigrateError):
    """The state database failed, or holds something inconsistent with the request."""

    exit_code = EXIT_RUNTIME


class DiskError(MigrateError):
    """A file of the project could not be written (full disk, read-only or missing folder)."""

    exit_code = EXIT_RUNTIME


def disk_error(path: object, exc: OSError, what: str) -> DiskError:
    """`exc` from writing `what` at `path`, as a message that names the path and what to do."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = f"free space on the disk holding {path} (or move [run] work_dir), then run again"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = f"make {path} writable for this user, or point migrate.toml elsewhere"
    else:
        hint = "check the path and the disk, then run again: the command resumes"
    return DiskError(f"cannot write {what} {path}: {reason}", hint=hint)


class ExecutorError(MigrateError):
    """The executor failed: its scheduler cannot be reached or was lost, or a worker kept dying
    on a chunk. What the ledger records as loaded stays loaded; a run again resumes."""

    exit_code = EXIT_RUNTIME


class StagingError(MigrateError):
    """A staged chunk file is missing, unreadable or does not match its ledger record."""

    exit_code = EXIT_RUNTIME


class RejectLimitError(MigrateError):
    """More rows broke a rule than `[run] max_rejects` allows; the rejects file names them."""

    exit_code = EXIT_VERIFY


class VerificationError(MigrateError):
    """A verification failed or a gate refused a step."""

    exit_code = EXIT_VERIFY


_URL_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?=@)", re.I
)
# A password passed as a URL query parameter (`?password=...`, libpq's too).
QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|pass|secret|sslpassword|token|api_?key)=)"
    r"(?P<secret>[^&;#\s]+)",
    re.I,
)
_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret (from the environment) so every message masks it."""
    if value and len(value) >= 3:
        _registered.add(value)


def mask_secrets(text: str) -> str:
    """Mask passwords in URLs and every registered secret."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}***", text)
    text = QUERY_SECRET.sub(lambda m: f"{m.group('head')}***", text)
    for secret in _registered:
        text = text.replace(secret, "***")
    return text
