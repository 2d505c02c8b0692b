"""A shared budget of calls per second: :class:`RateLimit`."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque

from .alarm import Alarm, alarms

GUARD = 0.01  # starts are spaced (1 + GUARD) / rate apart: see RateLimit
LEAD_MAX = 200e-6  # the most an alarm rings before its slot, so the longest spin, seconds
LEAD_SHARE = 0.25  # nor more than this share of the interval (the loop spins no longer)
LEAD_STEP = 2e-6  # how far one measured wake-up lag moves the lead, seconds
# An alarm already set serves a new deadline if it rings up to REUSE early (the head
# spins that out) or up to two LEAD_STEPs late (the lead moved since it was set).
REUSE = 20e-6


def _seconds(value: object, what: str, *, positive: bool) -> float:
    """``value`` as a finite float (> 0 when ``positive``, else >= 0), or TypeError/ValueError."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{what} must be a finite number {bound}, got {value!r}")
    return float(value)


class RateLimit:
    """Let at most ``rate`` calls per second start, evenly spaced, across every user.

    ``await limit.acquire()`` (or ``async with limit:``) waits until one call may start.
    Calls start at least ``1/rate`` seconds apart, so in any interval of ``T`` seconds at
    most ``rate * T + 1`` start: no bursts, and an idle period banks nothing. Waiters are
    served first come, first served; a cancelled waiter leaves at once, takes no slot and
    delays no one. ``pause(seconds)`` (what a ``RetryAfter`` does) holds every waiter and
    every later call until the pause ends. Example, one budget for two tasks and a call
    made before the run::

        limit = RateLimit(50)  # the API allows 50 requests per second, all endpoints
        pipeline.add_task("list", list_pages, rate_limit=limit)
        pipeline.add_task("fetch", fetch_item, rate_limit=limit)

        async with limit:
            first_page = await fetch(client, url)

    One ``RateLimit`` is one budget wherever it is used on one event loop: several tasks,
    several concurrent runs. It binds to no loop when built (it may be created at import
    time), and may be used by one loop after another; waiting on it from two loops at
    once raises ``RuntimeError``. It is not thread-safe.

    Starts are spaced 1% more than ``1/rate`` apart, so that a handler reading the clock
    a few microseconds after its start still sees the bound. The spacing is never
    shortened to make up for a late start, so every wake-up must be on time: the loop's
    own timers wake up to a millisecond late when it sleeps (asyncio rounds each wait up
    to a whole millisecond), so the waiter first in line is also woken by the shared
    alarm thread of :mod:`.alarm`, a little early, and spins out the last tens of
    microseconds. With a core to spare, about 95% of ``rate`` calls per second start
    at 1,000/s; a machine too loaded to schedule the process on time gets fewer
    (``python -m bench --only ratelimit`` measures it). With no one waiting, nothing runs.

    It pickles as its rate alone: each worker process of the subprocess runners gets an
    independent copy with its own full budget, so ``n`` processes together may start up
    to ``n * rate`` calls per second. Divide the rate by the process count when the
    remote limit is global.
    """

    __slots__ = (
        "_alarm",
        "_interval",
        "_lead",
        "_loop",
        "_next",
        "_paused_until",
        "_rang",
        "_rate",
        "_spare",
        "_timer",
        "_waiters",
    )

    def __init__(self, rate: float) -> None:
        self._rate = _seconds(rate, "rate", positive=True)
        self._interval = (1.0 + GUARD) / self._rate  # between two starts
        self._next = -math.inf  # earliest time.monotonic() the next call may start
        self._paused_until = -math.inf
        self._waiters: deque[asyncio.Future[None]] = deque()  # FIFO, the head first
        self._timer: asyncio.TimerHandle | None = None  # wakes the head, when it waits
        self._loop: asyncio.AbstractEventLoop | None = None  # set while someone waits
        # The head waiter is woken twice over: by an alarm of the shared thread (see
        # .alarm), on time while the loop sleeps, and by the loop timer above, on time
        # while the loop is busy (the thread then waits for the GIL). The alarm rings
        # ``_lead`` seconds before the slot and the head spins out what is left; the
        # lead follows the median of how late the head resumes after its alarm.
        self._alarm: Alarm | None = None
        self._spare: Alarm | None = None  # rings a slot after the head's: see _arm
        self._lead = min(LEAD_MAX, LEAD_SHARE * self._interval) / 2
        self._rang = 0.0  # the deadline of the alarm that woke the head, 0 if none did

    @property
    def rate(self) -> float:
        """Calls per second (read-only: one budget keeps its rate)."""
        return self._rate

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self._rate,))

    def __repr__(self) -> str:
        state = ""
        if self._waiters:
            state += f", {len(self._waiters)} waiting"
        pause = self._paused_until - time.monotonic()
        if pause > 0:
            state += f", paused {pause:.1f} s"
        return f"<RateLimit {self._rate:g}/s{state}>"

    async def __aenter__(self) -> RateLimit:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def pause(self, seconds: float) -> None:
        """Start no call before ``seconds`` from now; a pause only ever extends, never shortens."""
        until = time.monotonic() + _seconds(seconds, "seconds", positive=False)
        if until > self._paused_until:
            self._paused_until = until
            if self._waiters and self._loop is not None and not self._loop.is_closed():
                self._arm()

    async def acquire(self) -> float:
        """Wait until one call may start, take its slot, and return the seconds waited."""
        now = time.monotonic()
        if not self._waiters and now >= max(self._next, self._paused_until):
            self._next = now + self._interval  # the fast path: no one waits, no need to
            return 0.0
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._waiters and self._loop is not None and not self._loop.is_closed():
                raise RuntimeError(
                    f"{self!r} is being waited on from another event loop; use one "
                    "RateLimit per event loop"
                )
            self._waiters.clear()  # left behind by a closed loop
            self._disarm()
            self._loop = loop
        start = now
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            self._arm()
        try:
            while True:
                await waiter
                now = time.monotonic()
                if self._rang:
                    self._learn(now - self._rang)
                due = max(self._next, self._paused_until)
                if now >= due - LEAD_MAX:  # on time, or a spin away: the slot is ours
                    break
                # woken early (a pause came in): wait again
                waiter = loop.create_future()
                self._waiters[0] = waiter
                self._arm()
        except asyncio.CancelledError:
            self._leave(waiter)
            raise
        self._waiters.popleft()
        self._next = max(now, due) + self._interval  # for the new head, until the reading
        self._arm()
        while time.monotonic() < due:  # the alarm's lead, some tens of microseconds
            pass
        # The call starts now: read the clock last, after anything that allocates (and so
        # may run the garbage collector), so that no pause falls between this reading and
        # the caller's start. The new head may then wake a hair early: it spins that out.
        now = time.monotonic()
        self._next = now + self._interval
        return now - start

    def _arm(self) -> None:
        """(Re)set the alarms and the timer that wake the head waiter when its slot comes.

        Besides the head's alarm, a spare one rings a slot later, for the waiter behind:
        when that one becomes the head on time, it keeps the spare, and the alarm thread,
        already told of that deadline, need not be woken to learn of it.
        """
        self._rang = 0.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        old = (self._alarm, self._spare)
        self._alarm = self._spare = None
        if self._waiters:
            loop = self._loop
            assert loop is not None
            due = max(self._next, self._paused_until)
            self._alarm = self._alarm_at(due - self._lead, old)
            if len(self._waiters) > 1:
                self._spare = self._alarm_at(due + self._interval - self._lead, old)
            self._timer = loop.call_at(loop.time() + max(due - time.monotonic(), 0.0), self._wake)
        else:
            self._loop = None
        for alarm in old:
            if alarm is not None and alarm is not self._alarm and alarm is not self._spare:
                alarms.cancel(alarm)

    def _alarm_at(self, deadline: float, old: tuple[Alarm | None, ...]) -> Alarm:
        """An alarm ringing at about ``deadline`` (see REUSE): one of ``old`` still to
        ring, or a new one."""
        for alarm in old:
            if (
                alarm is not None
                and alarm.loop is not None
                and deadline - REUSE <= alarm.deadline <= deadline + 2 * LEAD_STEP
            ):
                return alarm
        assert self._loop is not None
        return alarms.set(deadline, self._loop, self._ring)

    def _disarm(self) -> None:
        """Cancel the alarms and the loop timer, if set."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for alarm in (self._alarm, self._spare):
            if alarm is not None:
                alarms.cancel(alarm)
        self._alarm = self._spare = None

    def _ring(self, alarm: Alarm) -> None:
        """Alarm callback, on the loop: wake the head, unless this alarm is out of date."""
        if alarm is self._alarm:
            self._alarm = None
            self._rang = alarm.deadline
            self._wake()

    def _wake(self) -> None:
        """Wake the head waiter: its slot has come (or is a spin away)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._alarm is not None:
            alarms.cancel(self._alarm)
            self._alarm = None
        if self._waiters and not self._waiters[0].done():
            self._waiters[0].set_result(None)

    def _learn(self, lag: float) -> None:
        """Move the lead a step towards the median of the measured wake-up lags."""
        self._rang = 0.0
        step = LEAD_STEP if lag > self._lead else -LEAD_STEP
        self._lead = min(max(self._lead + step, 0.0), LEAD_MAX, LEAD_SHARE * self._interval)

    def _leave(self, waiter: asyncio.Future[None]) -> None:
        """A cancelled waiter goes, taking no slot; a new head gets the timer."""
        if self._waiters and self._waiters[0] is waiter:
            self._waiters.popleft()
            self._arm()
        else:
            with contextlib.suppress(ValueError):  # already gone (its loop closed under it)
                self._waiters.remove(waiter)
