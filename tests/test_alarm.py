"""The alarm thread: rings on the right loop, never early, in order; cancels; survives
closed loops; one lazily started daemon thread for all."""

from __future__ import annotations

import asyncio
import threading
import time

from async_dag.core.alarm import Alarm, AlarmClock


def rung_on(loop: asyncio.AbstractEventLoop, log: list[tuple[Alarm, float, bool]]):
    """A callback that logs the alarm, the time, and whether it ran on ``loop``'s thread."""

    def callback(alarm: Alarm) -> None:
        running = asyncio.get_running_loop()
        log.append((alarm, time.monotonic(), running is loop))

    return callback


def test_no_thread_runs_before_the_first_alarm() -> None:
    """A new clock starts no thread; the first alarm starts one daemon thread."""
    clock = AlarmClock()
    assert clock._thread is None

    async def main() -> None:
        done = asyncio.Event()
        clock.set(time.monotonic(), asyncio.get_running_loop(), lambda _: done.set())
        await asyncio.wait_for(done.wait(), 5)

    asyncio.run(main())
    assert clock._thread is not None and clock._thread.daemon and clock._thread.is_alive()


async def test_alarms_ring_on_their_loop_in_order_and_never_early() -> None:
    """Alarms set in any order ring in deadline order, each at or after its deadline,
    as a callback on the loop that set it, which gets the alarm itself."""
    clock = AlarmClock()
    loop = asyncio.get_running_loop()
    log: list[tuple[Alarm, float, bool]] = []
    now = time.monotonic()
    offsets = [0.03, 0.01, 0.05, 0.0, 0.02, 0.04]
    set_ = [clock.set(now + d, loop, rung_on(loop, log)) for d in offsets]
    while len(log) < len(set_):
        await asyncio.sleep(0.01)
    order = [alarm for alarm, _, _ in log]
    assert order == sorted(set_, key=lambda a: a.deadline)
    assert all(at >= alarm.deadline and on_loop for alarm, at, on_loop in log)
    assert clock.pending() == 0


async def test_an_earlier_alarm_wakes_the_sleeping_thread() -> None:
    """While the thread sleeps towards a far deadline, a nearer one set later rings first."""
    clock = AlarmClock()
    loop = asyncio.get_running_loop()
    log: list[tuple[Alarm, float, bool]] = []
    far = clock.set(time.monotonic() + 60, loop, rung_on(loop, log))
    await asyncio.sleep(0.01)  # the thread now sleeps until the far deadline
    near = clock.set(time.monotonic() + 0.01, loop, rung_on(loop, log))
    while not log:
        await asyncio.sleep(0.01)
    assert [alarm for alarm, _, _ in log] == [near]
    clock.cancel(far)
    assert clock.pending() == 0


async def test_a_cancelled_alarm_never_rings_and_leaves_nothing_pending() -> None:
    """Cancelling alarms (head or not, twice over) takes them off; the rest still ring."""
    clock = AlarmClock()
    loop = asyncio.get_running_loop()
    log: list[tuple[Alarm, float, bool]] = []
    now = time.monotonic()
    a, b, c, d = (clock.set(now + x, loop, rung_on(loop, log)) for x in (0.02, 0.03, 0.04, 0.05))
    clock.cancel(a)
    clock.cancel(c)
    clock.cancel(c)
    assert clock.pending() == 2
    while len(log) < 2:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert [alarm for alarm, _, _ in log] == [b, d]
    assert clock.pending() == 0


def test_a_closed_loop_under_a_pending_alarm_does_not_stop_the_thread() -> None:
    """An alarm whose loop closed before it rang is dropped; the thread serves the next."""
    clock = AlarmClock()
    gone = asyncio.new_event_loop()
    clock.set(time.monotonic() + 0.02, gone, lambda _: None)
    gone.close()
    time.sleep(0.05)  # the thread rings it: call_soon_threadsafe raises, and is caught
    assert clock.pending() == 0

    async def main() -> None:
        done = asyncio.Event()
        clock.set(time.monotonic(), asyncio.get_running_loop(), lambda _: done.set())
        await asyncio.wait_for(done.wait(), 5)

    asyncio.run(main())
    assert clock._thread is not None and clock._thread.is_alive()


def test_one_thread_serves_many_loops_and_alarms_then_ends() -> None:
    """Loops one after another and many alarms share one thread at a time, which ends
    once nothing has been set for LINGER seconds; the next alarm starts another."""
    clock = AlarmClock()
    seen: set[threading.Thread] = set()

    async def many() -> None:
        loop = asyncio.get_running_loop()
        log: list[tuple[Alarm, float, bool]] = []
        now = time.monotonic()
        for i in range(50):
            clock.set(now + i * 1e-4, loop, rung_on(loop, log))
            assert clock._thread is not None
            seen.add(clock._thread)
        while len(log) < 50:
            await asyncio.sleep(0.01)

    for _ in range(3):
        asyncio.run(many())
    first = clock._thread
    assert first is not None and len(seen) <= 3
    deadline = time.monotonic() + 10
    while first.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not first.is_alive() and clock._thread is None
    asyncio.run(many())
    assert clock._thread is not None and clock._thread is not first
    assert not any(
        t.name == "async_dag-alarms" for t in seen if t is not clock._thread and t.is_alive()
    )


def test_cancelling_a_far_alarm_lets_the_idle_thread_end() -> None:
    """With its only alarm an hour away cancelled, the thread ends after lingering."""
    clock = AlarmClock()
    loop = asyncio.new_event_loop()
    try:
        far = clock.set(time.monotonic() + 3600, loop, lambda _: None)
        thread = clock._thread
        assert thread is not None
        clock.cancel(far)
        thread.join(10)
        assert not thread.is_alive() and clock._thread is None and clock.pending() == 0
    finally:
        loop.close()
