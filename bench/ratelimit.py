"""Rate-limit accuracy: how much of ``RateLimit(R)`` 32 eager tasks get, and any burst.

Each round, 32 tasks share one ``RateLimit(R)``; each takes a slot, then makes a
simulated call (``asyncio.sleep(CALL)``), and again, for a few seconds. The row shows the
achieved rate (starts per second between the first and the last start, median over the
rounds) against R, and the worst overshoot over every window of the starts against the
contract's bound ``R * T + 1`` (0 means the bound held everywhere), on the limit's own
clock: the time it let each call start, read just before ``acquire`` returns. The note
also gives the overshoot of ``time.monotonic()`` read by the caller right after the
return, which adds whatever the operating system did in between (a process paused for a
millisecond on a busy machine shows up there as an overshoot below one call). It also
shows the CPU time the process spent per second of the run (all threads: the limit's
alarm thread included), and the ceiling of a limiter woken by the event loop's timer
alone: one slot per ``1/R + lateness`` seconds, where ``lateness`` is how late that
timer fires (the median of ``asyncio.sleep(1/R)`` overshoots). ``RateLimit`` is not
bound by it: its alarm thread wakes the loop on time (see ``async_dag/core/alarm.py``).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time

from async_dag import PipelineContext, run_function_pipeline
from async_dag.core.ratelimit import RateLimit

from .harness import Row

RATES = (100, 1000)
TASKS = 32
CALL = 0.005  # seconds one simulated call takes, after its start
TARGET = 0.90


def worst_overshoot(stamps: list[float], rate: float) -> float:
    """The largest excess, over all windows, of starts beyond ``rate * T + 1``; 0 if none.

    For a window from start i to start j: ``(j - i + 1) - (rate * (t_j - t_i) + 1)``,
    maximised in one pass by keeping the minimum of ``i - rate * t_i`` seen so far.
    """
    worst, lowest = 0.0, math.inf
    for j, t in enumerate(stamps):
        here = j - rate * t
        worst = max(worst, here - lowest)
        lowest = min(lowest, here)
    return worst


async def _hammer(rate: float, seconds: float) -> tuple[list[float], list[float]]:
    """TASKS tasks start calls under one RateLimit for ``seconds``.

    Returns the start times on the limit's clock, and as the callers saw them.
    """
    limit = RateLimit(rate)
    starts: list[float] = []
    seen: list[float] = []
    stop = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop:
            await limit.acquire()
            seen.append(time.monotonic())
            starts.append(limit._next - limit._interval)  # its reading of this start
            await asyncio.sleep(CALL)

    await asyncio.gather(*(worker() for _ in range(TASKS)))
    return starts, seen


async def _through_run(rate: float, seconds: float) -> tuple[list[float], list[float]]:
    """A function pipeline with ``rate_limit=RateLimit(rate)`` and concurrency 32 over
    ``rate x seconds`` inputs; each call makes a simulated call of CALL seconds.

    Returns the start times on the limit's clock (its reading of the slot it granted,
    read in the handler, which the engine calls right after the slot) and as the
    handlers saw them (``time.monotonic()`` on entry).
    """
    limit = RateLimit(rate)
    starts: list[float] = []
    seen: list[float] = []

    async def call(ctx: PipelineContext, x: int) -> int:
        seen.append(time.monotonic())
        starts.append(limit._next - limit._interval)
        await asyncio.sleep(CALL)
        return x

    await run_function_pipeline(
        range(int(rate * seconds)), call, concurrency=TASKS, ordered=False, rate_limit=limit
    )
    return sorted(starts), sorted(seen)


async def _timer_lateness(interval: float, samples: int) -> float:
    """The median of how late ``asyncio.sleep(interval)`` returns, in seconds."""
    late = []
    for _ in range(samples):
        start = time.monotonic()
        await asyncio.sleep(interval)
        late.append(time.monotonic() - start - interval)
    return statistics.median(late)


def workload_ratelimit(scale: float, rounds: int) -> list[Row]:
    """Achieved rate / R and worst window overshoot at R = 100 and 1000, 32 tasks, on
    the bare limit and through a run with ``rate_limit=``."""
    seconds = max(0.2, 3.0 * scale)
    rows = []
    cases = [(rate, False) for rate in RATES] + [(rate, True) for rate in RATES]
    for rate, in_run in cases:
        ratios, overshoots, observed, counts, times, cpu = [], [], [], [], [], []
        for _ in range(rounds if not in_run else max(1, min(rounds, 3))):
            measure = _through_run if in_run else _hammer
            wall, processor = time.monotonic(), time.process_time()
            starts, seen = asyncio.run(measure(rate, seconds))
            cpu.append((time.process_time() - processor) / (time.monotonic() - wall))
            span = starts[-1] - starts[0]
            ratios.append((len(starts) - 1) / span / rate)
            # 1e-9 s per start: start times are read back as (start + 1/R) - 1/R
            overshoots.append(max(0.0, worst_overshoot(starts, rate) - rate * 1e-9))
            observed.append(worst_overshoot(seen, rate))
            counts.append(len(starts))
            times.append(span)
        lateness = asyncio.run(_timer_lateness(1 / rate, max(20, int(200 * min(scale, 1)))))
        ceiling = (1 / rate) / (1 / rate + lateness)
        ratio = statistics.median(ratios)
        overshoot = max(overshoots)
        met = ratio >= TARGET and overshoot == 0
        rows.append(
            Row(
                workload="ratelimit",
                impl=(
                    f"run_function_pipeline(rate_limit={rate}, concurrency={TASKS})"
                    if in_run
                    else f"RateLimit({rate}), {TASKS} tasks"
                ),
                items=sum(counts),
                outputs=sum(counts),
                expected=sum(counts),
                value=f"{ratio * rate:.1f}/s",
                seconds=times,
                target=f"rate >= {TARGET:.2f}x R, overshoot 0",
                verdict="PASS" if met else "FAIL",
                extra={
                    "ratio_text": f"{ratio:.3f}x R",
                    "rate": rate,
                    "ratios": ratios,
                    "overshoots": overshoots,
                    "observed_overshoots": observed,
                    "timer_lateness_s": lateness,
                    "ceiling": ceiling,
                    "cpu_per_second": cpu,
                    "note_bound": (
                        f"worst window overshoot {overshoot:.2f} calls (as seen by the "
                        f"callers {max(observed):.2f}); rounds "
                        f"{min(ratios):.3f}-{max(ratios):.3f}x R; CPU "
                        f"{statistics.median(cpu):.2f} s per s"
                    ),
                    "note_ceiling": (
                        f"loop timer {lateness * 1e6:.0f} us late: woken by it alone, "
                        f"at most {ceiling:.3f}x R"
                    ),
                },
            )
        )
    return rows
