"""Error policies, retries, timeouts, loop limits and cancellation."""

from __future__ import annotations

import asyncio
import threading
import traceback

import pytest
from _util import other_tasks, settle

from async_dag import ItemError, LoopLimitExceeded, PipelineBuilder, run_function_pipeline


class Boom(Exception):
    pass


async def ident(ctx, x):
    return x


async def fail_on_three(ctx, x):
    if x == 3:
        raise Boom(f"bad item {x}")
    return x


async def test_raise_policy_reraises_the_original_exception_with_a_note():
    """The first failure stops the run and propagates as itself, with node, data_id and run_id."""
    p = (
        PipelineBuilder()
        .add_task("src", ident)
        .add_task("check", fail_on_three)
        .add_edge("src", "check")
        .build()
    )
    with pytest.raises(Boom) as info:
        await p.run_stream(range(10), run_id="r-42")
    exc = info.value
    assert str(exc) == "bad item 3"
    note = " ".join(exc.__notes__)
    assert "'check'" in note and "'3'" in note and "'r-42'" in note
    frames = [f.name for f in traceback.extract_tb(exc.__traceback__)]
    assert "fail_on_three" in frames  # the original traceback is kept


async def test_raise_policy_leaves_no_task_behind():
    """After a failure under on_error='raise', every worker is gone."""
    p = PipelineBuilder().add_task("a", fail_on_three, concurrency=4).build()
    with pytest.raises(Boom):
        await p.run_stream(range(100))
    await settle()
    assert not [t for t in other_tasks() if t.get_name().startswith("async_dag")]


async def test_collect_policy_records_item_errors_and_goes_on():
    """on_error='collect' keeps an ItemError per failed payload and finishes the others."""
    p = (
        PipelineBuilder()
        .add_task("src", ident)
        .add_task("check", fail_on_three)
        .add_edge("src", "check")
        .build()
    )
    result = await p.run_stream([1, 3, 5, 3], on_error="collect")
    assert sorted(result) == [1, 5]
    assert len(result.errors) == 2
    err = result.errors[0]
    assert isinstance(err, ItemError)
    assert err.node == "check" and isinstance(err.exception, Boom)
    assert {e.ctx.data_id for e in result.errors} == {"1", "3"}
    assert err.ctx.path == ("src", "check")
    assert result.stats.nodes["check"].failed == 2
    assert result.stats.errors == 2


async def test_retries_count_attempts_and_succeed():
    """A failing call is retried; ctx.attempt counts up; stats count the retries."""
    attempts = []

    async def flaky(ctx, x):
        attempts.append(ctx.attempt)
        if ctx.attempt < 2:
            raise ConnectionError("try again")
        return x

    p = PipelineBuilder().add_task("f", flaky, retries=2, retry_delay=0.001).build()
    result = await p.run_stream([7])
    assert list(result) == [7]
    assert attempts == [0, 1, 2]
    assert result.records[0].ctx.attempt == 2  # the output carries the attempt that worked
    assert result.stats.nodes["f"].retried == 2


async def test_retries_exhausted_is_a_failure_with_last_attempt():
    """When every try fails, the item fails with the last attempt's context."""

    async def always(ctx, x):
        raise ConnectionError(f"attempt {ctx.attempt}")

    p = PipelineBuilder().add_task("f", always, retries=3).build()
    result = await p.run_stream([1], on_error="collect")
    (err,) = result.errors
    assert err.ctx.attempt == 3 and str(err.exception) == "attempt 3"
    assert result.stats.nodes["f"].retried == 3 and result.stats.nodes["f"].failed == 1


async def test_timeout_fails_a_slow_call_and_can_be_retried():
    """A call over its timeout fails with TimeoutError, and the retry can succeed."""

    async def slow_first(ctx, x):
        if ctx.attempt == 0:
            await asyncio.sleep(10)
        return x

    p = PipelineBuilder().add_task("s", slow_first, timeout=0.05, retries=1).build()
    assert await p.run_stream([1]) == [1]
    p2 = PipelineBuilder().add_task("s", slow_first, timeout=0.05).build()
    with pytest.raises(TimeoutError):
        await p2.run_stream([1])


async def test_sync_handler_retries_and_timeout_in_threads():
    """Threaded sync handlers get retries too."""
    calls = []

    def flaky(ctx, x):
        calls.append(threading.get_ident())
        if ctx.attempt == 0:
            raise OSError("first")
        return x * 10

    p = PipelineBuilder().add_task("f", flaky, retries=1).build()
    assert await p.run_stream([2]) == [20]
    assert len(calls) == 2


async def test_generator_failing_before_first_output_is_retried():
    """A generator that fails before yielding is retried like any call."""

    async def gen(ctx, x):
        if ctx.attempt == 0:
            raise ConnectionError("not yet")
        yield x
        yield x + 1

    p = PipelineBuilder().add_task("g", gen, retries=1).build()
    assert await p.run_stream([1]) == [1, 2]


async def test_generator_failing_after_output_is_not_retried():
    """A generator that fails after yielding counts as failed; its outputs went on."""
    attempts = []

    async def gen(ctx, x):
        attempts.append(ctx.attempt)
        yield x
        raise Boom("midway")

    p = PipelineBuilder().add_task("g", gen, retries=3).build()
    result = await p.run_stream([1], on_error="collect")
    assert list(result) == [1]
    assert attempts == [0]
    assert isinstance(result.errors[0].exception, Boom)
    assert result.stats.nodes["g"].failed == 1 and result.stats.nodes["g"].retried == 0


async def test_generator_timeout_bounds_each_step():
    """For a generator, timeout bounds the wait for each next output."""

    async def gen(ctx, x):
        yield 1
        await asyncio.sleep(0.02)
        yield 2
        await asyncio.sleep(5)
        yield 3

    p = PipelineBuilder().add_task("g", gen, timeout=0.5).build()
    result = await p.run_stream([0], on_error="collect")
    assert list(result) == [1, 2]
    assert isinstance(result.errors[0].exception, TimeoutError)


async def test_exhausted_loop_edge_raises_loop_limit_exceeded():
    """An output whose loop edge is used up fails with LoopLimitExceeded and goes nowhere."""
    p = (
        PipelineBuilder()
        .add_task("a", ident)
        .add_task("b", ident)
        .add_task("sink", ident)
        .add_edge("a", "b")
        .add_edge("b", "a", when=lambda ctx, x: True, max_loops=2)
        .add_edge("b", "sink")
        .build()
    )
    result = await p.run_stream([1], on_error="collect")
    # the sink got the output of each of the 3 passes except the last, which failed whole
    assert [r.ctx.path for r in result.records] == [
        ("a", "b", "sink"),
        ("a", "b", "a", "b", "sink"),
    ]
    (err,) = result.errors
    assert isinstance(err.exception, LoopLimitExceeded)
    assert err.node == "b" and err.ctx.path == ("a", "b", "a", "b", "a", "b")
    assert "b -> a" in str(err.exception)
    with pytest.raises(LoopLimitExceeded):
        await p.run_stream([1])


async def test_predicate_error_is_an_item_failure():
    """A predicate that raises fails the item at the source node, with a note."""

    def picky(ctx, x):
        raise KeyError("field")

    p = (
        PipelineBuilder()
        .add_task("a", ident)
        .add_task("b", ident)
        .add_edge("a", "b", when=picky)
        .build()
    )
    result = await p.run_stream([1], on_error="collect")
    assert result.errors[0].node == "a"
    assert "predicate of edge a -> b" in " ".join(result.errors[0].exception.__notes__)


async def test_result_handler_error_follows_the_policy():
    """An exception in result_handler is a failure of the sink's output."""

    def bad_handler(ctx, value):
        raise Boom("handler")

    p = PipelineBuilder().add_task("a", ident).build()
    with pytest.raises(Boom):
        await p.run_stream([1], result_handler=bad_handler)
    result = await p.run_stream([1, 2], result_handler=bad_handler, on_error="collect")
    assert len(result.errors) == 2


async def test_error_in_input_iterator_propagates_with_a_note():
    """An exception raised by the input stream stops the run and says where it came from."""

    def inputs():
        yield 1
        raise Boom("input broke")

    p = PipelineBuilder().add_task("a", ident).build()
    with pytest.raises(Boom) as info:
        await p.run_stream(inputs(), on_error="collect")
    assert "reading input #1" in " ".join(info.value.__notes__)


async def test_cancelling_the_awaiting_task_stops_every_worker():
    """Cancelling a run (a notebook interrupt) stops it promptly with no task left."""
    started = asyncio.Event()

    async def forever(ctx, x):
        started.set()
        await asyncio.sleep(3600)
        return x

    p = (
        PipelineBuilder()
        .add_task("a", ident)
        .add_task("b", forever, concurrency=8)
        .add_edge("a", "b")
        .build()
    )
    task = asyncio.ensure_future(p.run_stream(range(1000)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    assert other_tasks() == set()


async def test_asyncio_timeout_around_a_run_cancels_it():
    """asyncio.timeout around a run ends it with TimeoutError and no task left."""

    async def slow(ctx, x):
        await asyncio.sleep(3600)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await run_function_pipeline(range(10), slow, concurrency=4)
    await settle()
    assert other_tasks() == set()


async def test_cancelling_closes_an_async_input_generator():
    """An async input generator is closed when the run is cancelled, so its cleanup runs."""
    closed = asyncio.Event()

    async def source():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    started = asyncio.Event()

    async def slow(ctx, x):
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.ensure_future(run_function_pipeline(source(), slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()


async def test_threaded_sync_generator_step_timeout():
    """A blocking sync generator step over its timeout fails the item cleanly."""
    import time

    def slow_gen(ctx, x):
        yield x
        time.sleep(0.5)
        yield x + 1

    p = PipelineBuilder().add_task("g", slow_gen, timeout=0.1).build()
    result = await p.run_stream([1], on_error="collect")
    assert list(result) == [1]
    assert isinstance(result.errors[0].exception, TimeoutError)
