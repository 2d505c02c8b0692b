"""Wake-ups to the microsecond: one shared daemon thread rings event loops on time.

An event loop's own timers fire late when the loop sleeps: asyncio rounds every wait
up to a whole millisecond, and the kernel adds its slack. :data:`alarms` keeps a heap of
deadlines in one daemon thread, started on first use, that sleeps until the earliest,
then hands the alarm's callback to its loop with ``call_soon_threadsafe`` (the loop
wakes through its self-pipe, some tens of microseconds later). The thread needs the GIL
to do so: while the loop thread runs Python without pause it may wait up to
``sys.getswitchinterval()``, which is why :class:`~.ratelimit.RateLimit` also arms a
loop timer (a busy loop checks its timers between callbacks). With no alarm set the
thread blocks and costs nothing, and after LINGER seconds of that it ends (the next
alarm starts another), so that nothing outlives a run for long; being a daemon thread,
it never keeps a process alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import os
import threading
import time
from collections.abc import Callable

LINGER = 0.25  # seconds the thread waits with no alarm set before it ends


class Alarm:
    """One wake-up: ``callback(alarm)`` is called on ``loop`` once ``deadline`` passes."""

    __slots__ = ("callback", "deadline", "loop")

    def __init__(
        self,
        deadline: float,
        loop: asyncio.AbstractEventLoop,
        callback: Callable[[Alarm], object],
    ) -> None:
        self.deadline = deadline  # on the time.monotonic() clock
        self.loop: asyncio.AbstractEventLoop | None = loop  # None once cancelled or rung
        self.callback = callback


class AlarmClock:
    """A heap of :class:`Alarm` deadlines served by one lazily started daemon thread."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """Start empty, with no thread (also in a forked child, where none survives)."""
        self._lock = threading.Lock()  # guards the heap
        self._bell = threading.Lock()  # held while nobody rings; released to wake the thread
        self._bell.acquire()
        self._heap: list[tuple[float, int, Alarm]] = []
        self._order = itertools.count()  # breaks ties between equal deadlines
        self._thread: threading.Thread | None = None

    def pending(self) -> int:
        """How many alarms wait to ring."""
        with self._lock:
            return len(self._heap)

    def set(
        self,
        deadline: float,
        loop: asyncio.AbstractEventLoop,
        callback: Callable[[Alarm], object],
    ) -> Alarm:
        """Have ``callback(alarm)`` called on ``loop`` at ``deadline`` (time.monotonic())."""
        alarm = Alarm(deadline, loop, callback)
        entry = (deadline, next(self._order), alarm)
        with self._lock:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="async_dag-alarms", daemon=True
                )
                self._thread.start()
            elif self._heap[0] is entry:  # it sleeps until a later deadline, or for good
                with contextlib.suppress(RuntimeError):  # rung already: it will look
                    self._bell.release()
        return alarm

    def cancel(self, alarm: Alarm) -> None:
        """Take ``alarm`` off the heap; a callback already on its way is the caller's to
        ignore (the callback gets the alarm, to check that it is still the one wanted)."""
        if alarm.loop is None:
            return
        alarm.loop = None
        with self._lock:
            heap = self._heap
            for i, entry in enumerate(heap):
                if entry[2] is alarm:
                    heap[i] = heap[-1]
                    heap.pop()
                    heapq.heapify(heap)
                    break
            if not heap and alarm.deadline - time.monotonic() > LINGER:
                # the thread would sleep on until that deadline: let it end sooner
                with contextlib.suppress(RuntimeError):
                    self._bell.release()

    def _serve(self) -> None:
        """The thread: ring what is due, then sleep until the next deadline or a ring;
        end after LINGER seconds with nothing to do.

        Ringing is the last thing before sleeping, so that the woken loop thread rarely
        finds the GIL still held by this one.
        """
        lock, bell, heap = self._lock, self._bell, self._heap
        while True:
            due: list[Alarm] = []
            with lock:
                now = time.monotonic()
                while heap and heap[0][0] <= now:
                    due.append(heapq.heappop(heap)[2])
                wake_at = heap[0][0] if heap else math.inf
            for alarm in due:
                loop, alarm.loop = alarm.loop, None
                if loop is not None:
                    # RuntimeError: its loop closed under it, and nobody is left to wake
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(alarm.callback, alarm)
            if wake_at < math.inf:
                delay = wake_at - time.monotonic()
                if delay > 0:
                    bell.acquire(timeout=delay)
            elif not bell.acquire(timeout=LINGER):
                with lock:
                    if not heap:  # idle for LINGER seconds: end (set() starts another)
                        self._thread = None
                        return


alarms = AlarmClock()
if hasattr(os, "register_at_fork"):  # a forked child has no thread: it starts afresh
    os.register_at_fork(after_in_child=alarms._reset)
