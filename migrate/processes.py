"""Worker processes: every pool of the toolkit starts its workers from one forkserver that has
already imported what they run, so a pool starts in milliseconds instead of each worker importing
Arrow, SQLAlchemy and the mapping compiler again (about half a second a pool).

The forkserver itself only imports: it runs no Arrow computation and opens no connection before
it forks, so its children inherit no threads or sockets.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

# What the workers run: the transform (stage and build) and the reconcile's expected side, which
# between them import the mapping compiler, the source readers and the column-wise builder.
_PRELOAD = ["migrate.transform", "migrate.reconcile.expected"]


def worker_context() -> BaseContext:
    """The multiprocessing context for the toolkit's process pools (forkserver, preloaded)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)  # takes effect when the server starts, once
    return context


def warm_up() -> None:
    """Start the forkserver now (it imports in the background), so the first pool's workers
    start without waiting for the imports."""
    worker_context()
    from multiprocessing import forkserver

    forkserver.ensure_running()
