"""Threaded calls of plain ``def`` handlers: one thread per call in progress, never a shared pool.

Each call runs on an idle :class:`Lane` of its node (a thread waiting for work), so it
starts at once and its timeout clock runs only while it runs. A call that outlives its
timeout, or its run, is abandoned: the caller gives up on it, the thread is left to
finish on its own and then ends, and the next call gets a fresh lane, so no other item
waits or times out because of it. What a call raises, of any type (``StopIteration``
included, which an asyncio future cannot carry), comes back as a value, never as an
exception crossing the future.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

Outcome = tuple[bool, Any]  # (True, value) or (False, the exception raised)


class Lane:
    """A daemon thread that runs one call at a time for the event loop."""

    __slots__ = ("_jobs", "abandoned")

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.abandoned = False
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def submit(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Outcome]:
        """Start ``fn(*args)`` in this lane's thread; the future gets its outcome."""
        future: asyncio.Future[Outcome] = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return future

    def abandon(self) -> None:
        """Give up on the call in progress: the thread ends once it returns."""
        self.abandoned = True
        self._jobs.put(None)

    def stop(self) -> None:
        """End an idle lane's thread."""
        self._jobs.put(None)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, fn, args = job
            try:
                outcome: Outcome = (True, fn(*args))
            except BaseException as exc:  # every exception is the item's, StopIteration too
                outcome = (False, exc)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_deliver, future, outcome)
            del job, future, outcome
            if self.abandoned:
                return


def _deliver(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():
        future.set_result(outcome)


class Lanes:
    """The idle lanes of one node in one run, and the count of abandoned calls."""

    __slots__ = ("abandoned", "idle", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.idle: list[Lane] = []
        self.abandoned = 0

    async def call(self, timeout: float | None, fn: Callable[..., Any], *args: Any) -> Outcome:
        """Run ``fn(*args)`` in a thread; raise TimeoutError (abandoning it) after
        ``timeout`` seconds of running. A cancelled caller abandons the call too."""
        lane = self.idle.pop() if self.idle else Lane(self.name)
        future = lane.submit(asyncio.get_running_loop(), fn, *args)
        try:
            if timeout is None:
                outcome = await future
            else:
                async with asyncio.timeout(timeout):
                    outcome = await future
        except BaseException:
            lane.abandon()
            self.abandoned += 1
            raise
        self.idle.append(lane)
        return outcome

    def close(self) -> None:
        """End the idle threads (busy ones were abandoned and end on their own)."""
        for lane in self.idle:
            lane.stop()
        self.idle.clear()
