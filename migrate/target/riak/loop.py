"""The event loop of a target's writes, in a thread of its own, and how often it wakes.

Each write is a PUT whose answer takes tens of milliseconds while the node works through the
other requests in flight. Woken for every answer, the loop paid about 150 us of CPU per PUT
against a real node on two cores (its code and data gone cold in the cache by then) where it paid
25 us against a sink answering at once; and on a machine the node shares, that CPU is the node's.
So while a write keeps its window at least half full, the loop lets answers gather before it
asks for them (`Pacing`): for about a quarter window at the recent answer rate, at most 25 ms.
The node still has a quarter window queued, so it never waits for the client, and the loop
handles several answers per wake-up. Measured on the same node: a 5 ms pause cut the CPU per PUT
to about 70 us, 10 ms to 60 us, with no loss of throughput; a fast server (the bench's sink)
answers a quarter window in well under a millisecond, so it is hardly paused (22-29k PUT/s with
and without pacing).
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

PACE = 0.025  # seconds at most the loop lets answers gather (see Pacing.pause)
_T = TypeVar("_T")


class Pacing:
    """What the loop's selector asks before it waits: how long to let answers gather now."""

    def __init__(self, pace: float = PACE) -> None:
        self.pace = pace
        self.in_flight = 0  # requests sent and not yet answered (the event loop's thread only)
        self.window = 1  # how many requests a write keeps in flight
        self.rate = 0.0  # answers a second, lately (a moving average over wake-ups)

    def pause(self) -> float:
        """The pause before the next wait for events: none unless at least half the window is
        in flight (the node has plenty queued); then long enough for about a quarter of the
        window to be answered at the recent rate, at most `pace`. A fast server (a sink, a big
        cluster) answers a quarter window in well under a millisecond: it is hardly paused."""
        if self.pace <= 0 or self.in_flight * 2 < self.window or self.rate <= 0:
            return 0.0
        return min(self.pace, self.window / 4 / self.rate)

    def woke(self, events: int, seconds: float) -> None:
        """`events` answered (or other events) over the `seconds` since the last wake-up."""
        if seconds > 0:
            self.rate = 0.8 * self.rate + 0.2 * (events / seconds)


class PacedSelector(selectors.DefaultSelector):
    """The platform's selector, which waits out `Pacing.pause` since its last wake-up first."""

    def __init__(self, pacing: Pacing) -> None:
        super().__init__()
        self.pacing = pacing
        self._woke = time.monotonic()
        self._events = 0  # since the last wake-up, polls included

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        waits = timeout is None or timeout > 0  # a poll (timeout 0) between two waits is no wake-up
        if waits:
            pause = self.pacing.pause() - (time.monotonic() - self._woke)
            if pause > 0:
                if timeout is not None:
                    pause = min(pause, timeout)
                    timeout -= pause
                time.sleep(pause)
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(timeout)
        self._events += len(ready)
        if waits:
            now = time.monotonic()
            self.pacing.woke(self._events, now - self._woke)
            self._woke, self._events = now, 0
        return ready


class LoopThread:
    """An event loop in a daemon thread, started on first use; `run` waits for a coroutine."""

    def __init__(self, name: str, pacing: Pacing | None = None) -> None:
        self.name = name
        self.pacing = pacing or Pacing()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self._started())
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the caller: stop the work too
            raise

    def stop(self, last: Coroutine[Any, Any, None] | None = None) -> None:
        """Run `last` (cleanup) on the loop, then stop and close it."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            if last is not None:
                last.close()
            return
        if last is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(last, loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.SelectorEventLoop(PacedSelector(self.pacing))
                ready = threading.Event()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=main, name=self.name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop
