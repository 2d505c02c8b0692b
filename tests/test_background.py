"""Background runs: start, read while running, cancel, await, and nothing left behind."""

from __future__ import annotations

import asyncio
import logging

import pytest
from _util import settle

from async_dag import PipelineBuilder, PipelineRun, start_function_pipeline


async def slow(ctx, x):
    await asyncio.sleep(0.005)
    return x


async def test_start_returns_at_once_and_await_gives_the_result(no_leftover_tasks):
    """pipeline.start() returns a PipelineRun; awaiting it gives the RunResult."""
    pipeline = PipelineBuilder("bg").add_task("slow", slow, concurrency=4).build()
    run = pipeline.start(range(20), run_id="bg1")
    assert isinstance(run, PipelineRun) and not run.done() and run.run_id == "bg1"
    result = await run
    assert sorted(result) == list(range(20))
    assert run.done() and run.result() is not None and run.stats.state == "done"


async def test_results_so_far_survive_a_cancel(no_leftover_tasks):
    """run.results shows what came before a cancel; awaiting raises CancelledError."""
    run = start_function_pipeline(range(10_000), slow, concurrency=2)
    while len(run.results) < 10:
        await asyncio.sleep(0.01)
    with pytest.raises(asyncio.InvalidStateError):
        run.result()
    assert run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    partial = run.results
    assert 10 <= len(partial) < 10_000
    assert list(partial) == list(range(len(partial)))
    assert run.stats.state == "cancelled"
    assert all(n.queue_depth == 0 and n.in_flight == 0 for n in run.stats.nodes.values())


async def test_results_so_far_survive_a_failure():
    """A failed background run raises on await, and what finished is still there."""

    async def breaks(ctx, x):
        if x == 5:
            raise ValueError("five")
        return x

    run = start_function_pipeline(range(10), breaks)
    with pytest.raises(ValueError, match="five"):
        await run
    assert list(run.results) == [0, 1, 2, 3, 4]
    assert run.stats.state == "failed"


async def test_an_unawaited_failing_run_logs_its_error_once(caplog):
    """Nobody awaited it: the error is logged once at ERROR with its note."""

    async def breaks(ctx, x):
        raise KeyError("gone")

    with caplog.at_level(logging.ERROR, logger="async_dag"):
        run = start_function_pipeline([1], breaks)
        while not run.done():
            await asyncio.sleep(0.01)
        await settle()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "gone" in errors[0].getMessage()
    assert "data_id '0'" in errors[0].exc_text
    with pytest.raises(KeyError):
        await run


def test_start_without_a_running_loop_says_to_await():
    """start() outside a running loop raises RuntimeError telling what to do."""
    pipeline = PipelineBuilder().add_task("slow", slow).build()
    with pytest.raises(RuntimeError, match="await"):
        pipeline.start([1])
    with pytest.raises(RuntimeError, match="await"):
        start_function_pipeline([1], slow)


async def test_a_cancelled_run_reports_what_it_cut_off(no_leftover_tasks):
    """After a cancel, inputs minus cut_off is what really finished: the monitor's done."""
    from async_dag import Monitor
    from async_dag.observe.rates import Progress

    final = []

    class Last(Monitor):
        def finish(self, stats, error):
            final.append(stats)

    run = start_function_pipeline(range(1000), slow, concurrency=2, monitor=Last())
    while len(run.results) < 20:
        await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    [stats] = final
    progress = Progress()
    progress.sample(stats, state="cancelled")
    assert progress.done == len(run.results) == stats.inputs - stats.cut_off
