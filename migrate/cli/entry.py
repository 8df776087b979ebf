"""The `migrate` console script's entry point, kept free of heavy imports.

A command that runs worker pools (`run`, `reconcile`) starts the workers' forkserver here, before
the CLI imports SQLAlchemy, Arrow and the mapping compiler, so the server's imports and this
process's run side by side on two cores instead of one after the other (about 0.4 s of a demo run).
Every other command, and any command asked for its help or for one worker, starts nothing.

Cyclic garbage collection is made rare from the start (the imports alone ran a hundred
collections), and what the imports built is frozen once they are done: see
`migrate.processes.quiet_gc`.

The worker processes import the console script again as `__mp_main__`; that import reaches only
this module, which does nothing on import.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

from migrate.processes import QUIET_GC_THRESHOLD, quiet_gc, warm_up

_POOL_COMMANDS = frozenset({"run", "reconcile"})
_GROUP_OPTIONS_WITH_VALUE = frozenset({"--config"})
_HELP = frozenset({"-h", "--help", "--version"})


def runs_worker_pools(args: Sequence[str]) -> bool:
    """Whether the command line `args` (without the program name) names a command that starts
    worker processes. A guess from the words alone (the project's `[run] workers` is not read
    here): a wrong guess costs a forkserver started for nothing, or started later."""
    words = iter(args)
    command = None
    for word in words:
        if word in _GROUP_OPTIONS_WITH_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            command = word
            break
    if command not in _POOL_COMMANDS:
        return False
    rest = list(words)
    if any(word in _HELP for word in rest):
        return False
    for index, word in enumerate(rest):
        if word == "--workers":
            value = rest[index + 1] if index + 1 < len(rest) else ""
        elif word.startswith("--workers="):
            value = word.removeprefix("--workers=")
        else:
            continue
        if value.strip() == "1":
            return False
    return True


def main() -> None:
    """Entry point of the `migrate` console script and of `python -m migrate`."""
    gc.set_threshold(*QUIET_GC_THRESHOLD)
    if runs_worker_pools(sys.argv[1:]):
        warm_up()
    from migrate.cli.main import main as cli_main

    quiet_gc()
    cli_main()
