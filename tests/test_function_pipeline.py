"""Plain async function pipelines: order, laziness, options, errors, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import pytest
from _util import Endless, other_tasks, settle

from async_dag import RunResult, iter_function_pipeline, run_function_pipeline


async def add_one(ctx, x):
    return x + 1


async def test_coroutine_function_gives_one_output_per_input_none_included():
    """An async def gives exactly one output per input; None is a value."""

    async def maybe(ctx, x):
        return None if x % 2 else x

    result = await run_function_pipeline(range(4), maybe)
    assert isinstance(result, RunResult)
    assert result == [0, None, 2, None]
    assert result.stats.nodes["maybe"].received == 4
    assert [r.node for r in result.records] == ["maybe"] * 4


async def test_async_generator_streams_zero_or_more_outputs_in_order():
    """An async generator yields any number of outputs per input, kept in yield order."""

    async def spread(ctx, n):
        for i in range(n):
            await asyncio.sleep(random.random() / 1000)
            yield (n, i)

    result = await run_function_pipeline([2, 0, 3], spread, concurrency=3)
    assert result == [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    assert [r.ctx.data_id for r in result.records] == ["0", "0", "2", "2", "2"]
    assert result.stats.nodes["spread"].filtered == 1


@pytest.mark.parametrize("concurrency", [1, 4, 16])
async def test_ordered_output_follows_input_order_under_random_delays(concurrency):
    """ordered=True: outputs in input order whatever the completion order."""
    rng = random.Random(concurrency)
    delays = [rng.random() / 500 for _ in range(80)]

    async def jitter(ctx, i):
        await asyncio.sleep(delays[i])
        return i

    assert await run_function_pipeline(range(80), jitter, concurrency=concurrency) == list(
        range(80)
    )


async def test_unordered_output_never_waits_on_a_slow_item():
    """ordered=False: completion order; a slow first item comes out last."""
    release = asyncio.Event()

    async def first_is_slow(ctx, i):
        if i == 0:
            await release.wait()
        return i

    got = []
    async for _ctx, v in iter_function_pipeline(
        range(10), first_is_slow, concurrency=4, ordered=False
    ):
        got.append(v)
        if len(got) == 9:
            release.set()
    assert got[:9] == list(range(1, 10)) and got[-1] == 0


@pytest.mark.parametrize("source", ["sync", "async"])
async def test_ordered_mode_pulls_only_a_window_of_inputs_ahead(source):
    """A slow head item holds back only a bounded window of inputs, not the whole stream,
    whether the inputs come in chunks (a sync iterable) or one at a time (async)."""
    pulled = 0
    release = asyncio.Event()

    def endless():
        nonlocal pulled
        for i in itertools.count():
            pulled = i + 1
            yield i

    async def endless_async():
        for i in endless():
            yield i

    async def head_is_slow(ctx, i):
        if i == 0:
            await release.wait()
        return i

    outputs = []
    inputs = endless() if source == "sync" else endless_async()

    async def consume():
        async for _ctx, v in iter_function_pipeline(inputs, head_is_slow, concurrency=4):
            outputs.append(v)
            if v >= 50:
                break

    task = asyncio.ensure_future(consume())
    await settle(200)  # many loop turns: all the feeder could pull by now, it has
    assert outputs == []
    assert pulled <= 2 * 4 + 2  # window of 2 x concurrency, plus the feeder's look-ahead
    release.set()
    await task
    assert outputs == list(range(51))


async def test_ordered_retries_keep_input_order():
    """With retries (the general path) inputs that finish late still come out in order."""
    rng = random.Random(7)
    delays = [rng.random() / 500 for _ in range(40)]

    async def flaky(ctx, i):
        await asyncio.sleep(delays[i])
        if i % 3 == 0 and ctx.attempt == 0:
            raise ConnectionError("first try")
        return i

    result = await run_function_pipeline(range(40), flaky, concurrency=4, retries=1)
    assert result == list(range(40))
    assert result.stats.nodes["flaky"].retried == 14


async def test_endless_generator_is_consumed_lazily_and_break_stops(no_leftover_tasks):
    """Inputs are pulled lazily; breaking out of iteration stops the run."""
    inputs = Endless()

    async for _ctx, v in iter_function_pipeline(inputs, add_one, concurrency=2):
        if v == 20:
            break
    await settle()
    assert inputs.pulled < 40


async def test_async_iterable_inputs():
    """Async iterables work as inputs."""

    async def source():
        for i in range(5):
            yield i

    assert await run_function_pipeline(source(), add_one, concurrency=2) == [1, 2, 3, 4, 5]


async def test_result_handler_sync_and_async():
    """result_handler receives every output with its context; nothing is kept."""
    got = []

    def keep(ctx, v):
        got.append((ctx.data_id, v))

    result = await run_function_pipeline([1, 2], add_one, result_handler=keep)
    assert got == [("0", 2), ("1", 3)] and len(result) == 0

    agot = []

    async def akeep(ctx, v):
        await asyncio.sleep(0)
        agot.append(v)

    await run_function_pipeline(range(5), add_one, result_handler=akeep, concurrency=3)
    assert agot == [1, 2, 3, 4, 5]


async def test_key_run_id_and_metadata():
    """key=, run_id= and metadata= reach the context."""
    seen = []

    async def look(ctx, item):
        seen.append((ctx.data_id, ctx.run_id, ctx.metadata["source"], ctx.path))
        return item

    await run_function_pipeline(
        [{"sku": "A1"}, {"sku": "B2"}],
        look,
        key=lambda r: r["sku"],
        run_id="nightly",
        metadata={"source": "db"},
    )
    assert seen == [("A1", "nightly", "db", ("look",)), ("B2", "nightly", "db", ("look",))]


async def test_error_policies():
    """raise: propagates with a note; collect: ItemErrors, others go on."""

    async def picky(ctx, x):
        if x == 2:
            raise ValueError("two")
        return x

    with pytest.raises(ValueError, match="two") as info:
        await run_function_pipeline(range(5), picky, concurrency=2, run_id="r9")
    assert "'picky'" in info.value.__notes__[0] and "'r9'" in info.value.__notes__[0]
    result = await run_function_pipeline(range(5), picky, concurrency=2, on_error="collect")
    assert result == [0, 1, 3, 4]
    assert [(e.node, e.ctx.data_id) for e in result.errors] == [("picky", "2")]


async def test_retries_count_ctx_attempt():
    """retries= tries a failing call again, ctx.attempt counting up."""
    seen = {}

    async def flaky(ctx, x):
        seen.setdefault(x, []).append(ctx.attempt)
        if ctx.attempt < x:
            raise ConnectionError("flaky")
        return x

    result = await run_function_pipeline([0, 1, 2], flaky, retries=2)
    assert result == [0, 1, 2]
    assert seen == {0: [0], 1: [0, 1], 2: [0, 1, 2]}
    assert result.stats.nodes["flaky"].retried == 3


async def test_timeout_bounds_each_call():
    """timeout= fails a slow call with TimeoutError (collectable)."""

    async def slow(ctx, x):
        await asyncio.sleep(10 if x else 0)
        return x

    result = await run_function_pipeline([0, 1], slow, timeout=0.05, on_error="collect")
    assert result == [0]
    assert isinstance(result.errors[0].exception, TimeoutError)


async def test_cancelling_a_function_run_leaves_no_task():
    """Cancelling the awaiting task stops the run and its workers."""
    started = asyncio.Event()

    async def hang(ctx, x):
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.ensure_future(run_function_pipeline(range(100), hang, concurrency=8))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    assert other_tasks() == set()


async def test_cancelling_the_consumer_of_an_iterator_stops_the_run():
    """Cancelling a task that iterates iter_function_pipeline stops the run too."""
    got = []

    async def consume():
        async for _ctx, v in iter_function_pipeline(itertools.count(), add_one):
            got.append(v)
            await asyncio.sleep(0)

    task = asyncio.ensure_future(consume())
    while len(got) < 10 and not task.done():
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    assert other_tasks() == set()


async def test_iterator_can_be_closed_explicitly():
    """aclose() and `async with` stop an iterator's run."""
    it = iter_function_pipeline(itertools.count(), add_one)
    async with it:
        first = await it.__anext__()
        assert first[1] == 1
    await settle()
    assert other_tasks() == set()


async def test_high_concurrency_overlaps_io_bound_calls():
    """concurrency=64 overlaps sleeping handlers: far faster than one at a time."""

    async def io_call(ctx, x):
        await asyncio.sleep(0.02)
        return x

    start = time.perf_counter()
    result = await run_function_pipeline(range(256), io_call, concurrency=64)
    elapsed = time.perf_counter() - start
    assert result == list(range(256))
    # 256 sequential calls take 5.1 s; 64 at a time about 0.08 s. A generous bound.
    assert elapsed < 2.0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"concurrency": 0}, ValueError, "concurrency"),
        ({"concurrency": "2"}, TypeError, "concurrency"),
        ({"retries": -1}, ValueError, "retries"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"on_error": "maybe"}, ValueError, "on_error"),
        ({"ordered": "yes"}, TypeError, "ordered"),
    ],
)
async def test_bad_arguments_raise_before_running(kwargs, exc, match):
    """Invalid options raise at once, naming the option."""
    with pytest.raises(exc, match=match):
        await run_function_pipeline([1], add_one, **kwargs)
    with pytest.raises(exc, match=match):
        iter_function_pipeline([1], add_one, **kwargs)


async def test_pipeline_must_be_async():
    """A plain function is refused with a message that says what to use."""

    def plain(ctx, x):
        return x

    with pytest.raises(TypeError, match="async"):
        await run_function_pipeline([1], plain)
    with pytest.raises(TypeError, match="iterable"):
        await run_function_pipeline(5, add_one)
