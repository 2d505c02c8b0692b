"""Cancellation at random points of every kind of run: nothing is left behind.

Every kind of run (a DAG's run_stream, its stream(), a function pipeline, its iterator,
a background run from start(), and the awaitable subprocess runner) is cancelled at
seeded random moments, sometimes twice, sometimes while a handler swallows the cancel.
After each: no task or thread named "async_dag..." is alive, no child process is left,
and the monitor's finish ran exactly once. The slowest cancel-to-end latency seen is
kept in LATENCIES (GUARANTEES.md quotes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.resource_tracker
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest
from _util import settle

from async_dag import (
    Monitor,
    PipelineBuilder,
    iter_function_pipeline,
    run_function_pipeline,
    start_function_pipeline,
)
from async_dag.execution import arun_function_pipeline_in_subprocess

POINTS = 12  # random cancel points per kind of run
RNG = random.Random(20261201)
LATENCIES: list[float] = []


class Finishes(Monitor):
    """Counts finish calls."""

    interval = 0.005

    def __init__(self) -> None:
        self.starts = 0
        self.finishes: list[BaseException | None] = []

    def start(self, stats):
        self.starts += 1

    def finish(self, stats, error):
        self.finishes.append(error)


async def step(ctx, x):
    await asyncio.sleep(0.001)
    return x + 1


def blocking(ctx, x):
    time.sleep(0.001)
    return x * 2


async def fan(ctx, x):
    await asyncio.sleep(0)
    yield x  # one output: the join downstream takes one per source per input


async def flaky(ctx, x):
    if ctx.attempt == 0 and x % 5 == 0:
        raise OSError("transient")
    return x


async def stubborn(ctx, x):
    """Swallows the first cancel it gets (a handler a user should not write)."""
    try:
        await asyncio.sleep(0.002)
    except asyncio.CancelledError:
        await asyncio.sleep(0.01)
    return x


async def write(ctx, batch):
    await asyncio.sleep(0)
    return [len(batch)] * len(batch)


async def merge(ctx, parts):
    return sorted(parts.items())


def everything(swallow: bool):
    """A DAG with a thread, a generator, retries, a rate limit, a batch and a join."""
    return (
        PipelineBuilder("cancel-me")
        .add_task("step", stubborn if swallow else step, concurrency=3)
        .add_task("block", blocking, concurrency=2)
        .add_task("fan", fan)
        .add_task("flaky", flaky, retries=2, retry_delay=0.001, rate_limit=5000)
        .add_task("batch", write, batch_size=4)
        .add_task("join", merge, join=True)
        .add_edge("step", "block")
        .add_edge("step", "fan")
        .add_edge("fan", "flaky")
        .add_edge("flaky", "batch")
        .add_edge("block", "join")
        .add_edge("batch", "join")
        .build()
    )


@pytest.fixture(scope="module", autouse=True)
def report_latencies():
    """Print the cancel-to-end latencies seen (shown with -s; GUARANTEES.md quotes them)."""
    yield
    if LATENCIES:
        ordered = sorted(LATENCIES)
        print(
            f"\ncancel latency over {len(ordered)} cancels: median "
            f"{ordered[len(ordered) // 2] * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
        )


def points() -> list[tuple[float, bool, bool]]:
    """(delay before the cancel, cancel twice?, a handler swallows cancels?)"""
    return [(RNG.uniform(0, 0.04), RNG.random() < 0.5, RNG.random() < 0.3) for _ in range(POINTS)]


def async_dag_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("async_dag")]


async def nothing_left() -> None:
    """No async_dag task now; no async_dag thread within a second (busy lanes were
    abandoned and end when their call returns)."""
    await settle()
    tasks = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("async_dag")]
    assert tasks == []
    deadline = time.monotonic() + 1.0
    while async_dag_threads() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert async_dag_threads() == []


async def cancel_at(task: asyncio.Future[Any], delay: float, twice: bool) -> None:
    """Cancel ``task`` after ``delay`` (again 1 ms later if ``twice``); await its end."""
    await asyncio.sleep(delay)
    started = time.perf_counter()
    task.cancel()
    if twice:
        await asyncio.sleep(0.001)
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    LATENCIES.append(time.perf_counter() - started)


def consume(agen_factory: Callable[[], Any]) -> Any:
    async def drain():
        async for _ in agen_factory():
            pass

    return drain()


RUNS: dict[str, Callable[[bool, Monitor], Any]] = {
    "run_stream": lambda swallow, m: everything(swallow).run_stream(
        range(10_000), monitor=m, on_error="collect"
    ),
    "stream": lambda swallow, m: consume(
        lambda: everything(swallow).stream(range(10_000), monitor=m)
    ),
    "function": lambda swallow, m: run_function_pipeline(
        range(10_000), stubborn if swallow else step, concurrency=4, monitor=m, retries=1
    ),
    "iterator": lambda swallow, m: consume(
        lambda: iter_function_pipeline(
            range(10_000), stubborn if swallow else fan, concurrency=3, monitor=m, ordered=False
        )
    ),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", list(RUNS))
async def test_cancel_at_random_points_leaves_nothing(kind):
    """A run cancelled at any point (once or twice, with a handler swallowing the cancel)
    ends with CancelledError, its monitor finished once, and no task or thread left."""
    for delay, twice, swallow in points():
        monitor = Finishes()
        task = asyncio.ensure_future(RUNS[kind](swallow, monitor))
        await cancel_at(task, delay, twice)
        assert task.cancelled()
        assert monitor.starts == 1
        assert len(monitor.finishes) == 1
        assert isinstance(monitor.finishes[0], asyncio.CancelledError)
        await nothing_left()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("function", [False, True])
async def test_cancel_background_runs_at_random_points(function):
    """A background run cancelled through run.cancel() at any point (once or twice):
    awaiting it raises CancelledError, its results so far stay readable, nothing is left."""
    for delay, twice, swallow in points():
        monitor = Finishes()
        if function:
            run = start_function_pipeline(range(10_000), step, concurrency=4, monitor=monitor)
        else:
            run = everything(swallow).start(range(10_000), monitor=monitor, on_error="collect")
        await asyncio.sleep(delay)
        started = time.perf_counter()
        run.cancel()
        if twice:
            await asyncio.sleep(0.001)
            run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        LATENCIES.append(time.perf_counter() - started)
        assert run.done()
        assert len(run.results) == run.results.stats.outputs
        assert len(monitor.finishes) == 1
        await nothing_left()


async def test_cancel_latency_without_swallowing_handlers_is_small():
    """Without handlers that swallow it, a cancel ends a busy run promptly (well under 250 ms;
    the figure measured is printed by report_latencies)."""
    worst = 0.0
    for delay, twice, _ in points():
        task = asyncio.ensure_future(everything(False).run_stream(range(10_000)))
        await asyncio.sleep(delay)
        started = time.perf_counter()
        task.cancel()
        if twice:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        worst = max(worst, time.perf_counter() - started)
        await nothing_left()
    assert worst < 0.25, f"slowest cancel took {worst * 1000:.1f} ms"


async def nap(ctx, seconds):
    await asyncio.sleep(seconds)
    return seconds


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_cancel_subprocess_runs_at_random_points():
    """The awaitable subprocess runner cancelled at random points (once or twice) ends
    within 3 s and leaves no child process behind."""
    multiprocessing.resource_tracker.ensure_running()  # a long-lived helper, started once
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    rng = random.Random(17)
    for _ in range(3):
        delay, twice = rng.uniform(0.0, 1.5), rng.random() < 0.5
        batches = [[0.2, 0.2], [5.0], [0.1], [5.0, 0.1]]
        task = asyncio.ensure_future(
            arun_function_pipeline_in_subprocess(nap, batches, processes=2)
        )
        started = time.perf_counter()
        await cancel_at(task, delay, twice)
        assert time.perf_counter() - started - delay < 3.0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            left = [p for p in me.children(recursive=True) if p.pid not in before]
            left = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            if not left:
                break
            await asyncio.sleep(0.05)
        assert left == []
        await nothing_left()


async def test_cancelling_a_stream_consumer_twice_still_waits_for_the_run(no_leftover_tasks):
    """A second cancel of a stream() consumer while the run winds down: the consumer still
    ends only after the run did, its monitor finished."""

    async def slow(ctx, x):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # winds down slowly
            raise

    monitor = Finishes()
    pipeline = PipelineBuilder("p").add_task("a", slow).build()
    task = asyncio.ensure_future(consume(lambda: pipeline.stream(range(3), monitor=monitor)))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(monitor.finishes) == 1


async def test_a_cancelled_checkpointed_run_records_exactly_what_it_delivered(tmp_path):
    """A background run with a checkpoint cancelled at random points: the file then lists
    exactly the inputs whose outputs the run delivered (committed at the cancel), and a
    rerun delivers every other input, once."""
    import sqlite3

    from async_dag import Checkpoint

    rng = random.Random(5)
    for i in range(6):
        path = tmp_path / f"ckpt{i}.db"
        pipeline = (
            PipelineBuilder(f"ckpt{i}")
            .add_task("step", step, concurrency=3)
            .add_task("batch", write, batch_size=4)
            .add_edge("step", "batch")
            .build()
        )
        run = pipeline.start(range(300), key=lambda x: x, checkpoint=path)
        await asyncio.sleep(rng.uniform(0.0, 0.08))
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        delivered = {r.ctx.data_id for r in run.results.records}
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            recorded = {d for (d,) in db.execute("SELECT data_id FROM async_dag_checkpoint")}
        assert recorded == delivered
        rerun = await pipeline.run_stream(range(300), key=lambda x: x, checkpoint=path)
        again = [r.ctx.data_id for r in rerun.records]
        assert sorted(again) == sorted(set(map(str, range(300))) - delivered)
        assert len(Checkpoint(path, name=f"ckpt{i}")) == 300
        await nothing_left()
