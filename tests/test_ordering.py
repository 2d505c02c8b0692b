"""Ordered function pipelines: the window, releases that refill it, failures, waits."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from _util import Endless, settle

from async_dag import iter_function_pipeline, run_function_pipeline


def turns(x: int, seed: int) -> int:
    """How many loop turns input ``x`` takes: 0-4, out of input order."""
    return random.Random(x * 7919 + seed).randrange(5)


@pytest.mark.parametrize("concurrency", [2, 5, 16])
async def test_pulled_and_unreleased_inputs_stay_within_the_window(concurrency):
    """While releases keep entering new inputs, no more than 2 x concurrency inputs are
    ever pulled and not yet passed on, and everything comes out in input order."""
    pulled = released = widest = 0

    def inputs():
        nonlocal pulled, widest
        for i in range(600):
            pulled += 1
            widest = max(widest, pulled - released)
            yield i

    async def uneven(ctx, x):
        for _ in range(turns(x, concurrency)):
            await asyncio.sleep(0)
        return x

    seen = []

    def handler(ctx, value):
        nonlocal released
        released += 1
        seen.append(value)

    await run_function_pipeline(inputs(), uneven, concurrency=concurrency, result_handler=handler)
    assert seen == list(range(600))
    assert widest <= 2 * concurrency


async def test_a_handler_that_never_waits_still_lets_the_loop_run():
    """Releases enter new inputs themselves; a handler that never suspends must not turn
    that into one endless step: other tasks run every few windows of outputs."""
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def instant(ctx, x):
        return x

    at_tick = []
    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    try:
        await run_function_pipeline(
            range(5000),
            instant,
            concurrency=4,
            result_handler=lambda ctx, value: at_tick.append(ticks),
        )
    finally:
        ticking.cancel()
    assert len(at_tick) == 5000
    longest = max(len(list(run)) for _, run in itertools.groupby(at_tick))
    assert longest < 200  # without a per-turn budget: all 5000 in one step


async def test_an_endless_input_with_an_instant_handler_can_be_left(no_leftover_tasks):
    """Breaking out of an ordered iteration over an endless input stops the run, even
    when the handler never waits, and leaves no task behind."""
    inputs = Endless()

    async def instant(ctx, x):
        return x

    got = []
    async for _ctx, value in iter_function_pipeline(inputs, instant, concurrency=3):
        got.append(value)
        if value == 500:
            break
    await settle()
    assert got == list(range(501))
    assert inputs.pulled < 501 + 64 + 4 * 3  # the stream's buffer and a few windows, not more


@pytest.mark.parametrize("kind", ["async def", "async generator"])
@pytest.mark.parametrize("handler_kind", ["sync", "async"])
@pytest.mark.parametrize("source", ["sync", "async", "key"])
async def test_failures_and_waiting_result_handlers_keep_input_order(kind, handler_kind, source):
    """Failed inputs (at the head of the window or behind it) leave gaps that releases
    step over; a result handler that waits holds releases back without losing order;
    for plain, async and key= inputs alike."""
    seed = hash((kind, handler_kind, source)) % 1000
    failing = {x for x in range(300) if random.Random(seed + x).random() < 0.15}

    async def one(ctx, x):
        for _ in range(turns(x, seed)):
            await asyncio.sleep(0)
        if x in failing:
            raise ValueError(x)
        return x

    async def spread(ctx, x):
        for i in range(x % 3):
            for _ in range(turns(x + i, seed)):
                await asyncio.sleep(0)
            yield (x, i)
        if x in failing:
            raise ValueError(x)

    seen = []

    def take(ctx, value):
        seen.append(value)

    async def take_slowly(ctx, value):
        for _ in range(turns(len(seen), seed) // 2):
            await asyncio.sleep(0)
        seen.append(value)

    async def arange(n):
        for i in range(n):
            if i % 7 == 0:
                await asyncio.sleep(0)
            yield i

    inputs = arange(300) if source == "async" else range(300)
    result = await run_function_pipeline(
        inputs,
        one if kind == "async def" else spread,
        concurrency=6,
        on_error="collect",
        key=(lambda x: f"k{x}") if source == "key" else None,
        result_handler=take if handler_kind == "sync" else take_slowly,
    )
    if kind == "async def":
        assert seen == [x for x in range(300) if x not in failing]
    else:  # a generator's outputs before its failure are passed on
        assert seen == [(x, i) for x in range(300) for i in range(x % 3)]
    assert sorted(int(e.ctx.data_id.lstrip("k")) for e in result.errors) == sorted(failing)
    assert result.stats.nodes[next(iter(result.stats.nodes))].in_flight == 0


async def test_an_input_that_raises_after_the_window_filled_fails_the_run():
    """An input stream that raises while a release is pulling from it: what it gave
    before comes out in order, then the run fails with its error and a note."""

    def inputs():
        yield from range(50)
        raise OSError("disk gone")

    async def uneven(ctx, x):
        for _ in range(turns(x, 3)):
            await asyncio.sleep(0)
        return x

    got = []
    with pytest.raises(OSError, match="disk gone") as info:
        await run_function_pipeline(
            inputs(), uneven, concurrency=4, result_handler=lambda c, v: got.append(v)
        )
    assert "raised while reading input #50" in info.value.__notes__[0]
    assert got == list(range(len(got)))


async def test_an_input_that_ends_after_the_window_filled_ends_the_run():
    """The input running out while a release pulls from it ends the run normally."""

    async def uneven(ctx, x):
        for _ in range(turns(x, 4)):
            await asyncio.sleep(0)
        return x

    for n in (9, 10, 11, 64, 65):  # around multiples of the window (2 x 4)
        assert await run_function_pipeline(range(n), uneven, concurrency=4) == list(range(n))


async def test_cancelling_a_run_while_releases_refill_leaves_no_task(no_leftover_tasks):
    """Cancelled mid-run, with the feeder's step lent to the releases: nothing is left."""
    started = 0

    async def uneven(ctx, x):
        nonlocal started
        started += 1
        for _ in range(turns(x, 5)):
            await asyncio.sleep(0)
        return x

    task = asyncio.ensure_future(
        run_function_pipeline(
            itertools.count(), uneven, concurrency=4, result_handler=lambda c, v: None
        )
    )
    while started < 300:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
