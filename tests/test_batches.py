"""Batch tasks: lists of payloads, flushed by size, by time and when nothing else can join."""

from __future__ import annotations

import asyncio
import time

import pytest

from async_dag import ItemError, PipelineBuilder, PipelineDefinitionError
from async_dag.core.queue import BatchQueue


def pipeline_with(handler, **options):
    """source -> batch task."""
    return (
        PipelineBuilder("b")
        .add_task("src", lambda ctx, x: x, inline=True)
        .add_task("sink", handler, **options)
        .add_edge("src", "sink")
        .build()
    )


async def test_batches_by_size_and_a_final_partial_batch():
    """Full batches as they fill, the rest at once at the end (no timeout to wait for)."""
    calls = []

    async def write(ctx, rows):
        calls.append((list(rows), [c.data_id for c in ctx.batch], ctx.data_id, ctx.path))

    started = time.monotonic()
    result = await pipeline_with(write, batch_size=4).run_stream(range(10))
    assert time.monotonic() - started < 1
    assert [rows for rows, *_ in calls] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert calls[0][1] == ["0", "1", "2", "3"] and calls[0][2] == "0"
    assert calls[0][3] == ("src", "sink")
    stats = result.stats.nodes["sink"]
    assert (stats.batches, stats.received, stats.filtered, stats.emitted) == (3, 10, 10, 0)
    assert list(result) == []


async def test_results_per_payload_go_on_with_their_own_context():
    """A returned sequence gives payload i its result i, with payload i's context."""

    async def double(ctx, rows):
        return [x * 2 for x in rows]

    result = await pipeline_with(double, batch_size=3).run_stream(range(7))
    assert sorted(result) == [0, 2, 4, 6, 8, 10, 12]
    assert {(r.ctx.data_id, r.value) for r in result.records} == {(str(i), 2 * i) for i in range(7)}


async def test_batch_timeout_flushes_while_input_remains():
    """A batch not full is handled batch_timeout after its first payload, mid-stream."""
    flushed = asyncio.Event()
    sizes = []

    async def write(ctx, rows):
        sizes.append(len(rows))
        flushed.set()

    async def trickle():
        yield 1
        yield 2
        await asyncio.wait_for(flushed.wait(), 5)  # only a timeout can flush now
        yield 3

    await pipeline_with(write, batch_size=100, batch_timeout=0.05).run_stream(trickle())
    assert sizes == [2, 1]


async def test_without_timeout_a_batch_waits_to_be_full_while_input_remains():
    """No batch_timeout: nothing is handled before the input ends or the batch fills."""
    sizes = []

    async def write(ctx, rows):
        sizes.append(len(rows))

    async def slow_input():
        yield 1
        await asyncio.sleep(0.1)
        assert sizes == []
        yield 2

    await pipeline_with(write, batch_size=10).run_stream(slow_input())
    assert sizes == [2]


async def test_a_wrong_length_fails_every_payload_of_the_batch():
    """A sequence of another length fails each payload with a ValueError naming both lengths."""

    async def short(ctx, rows):
        return rows[:-1]

    result = await pipeline_with(short, batch_size=3).run_stream(range(3), on_error="collect")
    assert list(result) == []
    assert [e.ctx.data_id for e in result.errors] == ["0", "1", "2"]
    assert len({id(e.exception) for e in result.errors}) == 1
    message = str(result.errors[0].exception)
    assert "'sink'" in message and "2 results" in message and "3 payloads" in message


async def test_a_failed_flush_fails_every_row_not_one():
    """Under collect, one ItemError per payload, each with its own context and payload."""

    async def broken(ctx, rows):
        raise ConnectionError("database went away")

    result = await pipeline_with(broken, batch_size=500, retries=2).run_stream(
        range(1200), on_error="collect"
    )
    assert len(result.errors) == 1200
    assert sorted(e.payload for e in result.errors) == list(range(1200))
    assert all(isinstance(e, ItemError) and e.node == "sink" for e in result.errors)
    stats = result.stats.nodes["sink"]
    assert (stats.failed, stats.batches, stats.retried) == (1200, 3, 6)


async def test_a_failed_batch_under_raise_names_the_batch():
    """Under raise the note names the node, the first data_ids and the run_id."""

    async def broken(ctx, rows):
        raise ConnectionError("no")

    with pytest.raises(ConnectionError) as info:
        await pipeline_with(broken, batch_size=5).run_stream(range(5), run_id="r9")
    note = " ".join(info.value.__notes__)
    assert "'sink'" in note and "'0', '1', '2'" in note and "r9" in note


def test_sync_batch_handlers_run_in_threads():
    """A plain def works as a batch handler; a generator is refused at definition."""

    def gen(ctx, rows):
        yield from rows

    with pytest.raises(PipelineDefinitionError, match="generator"):
        pipeline_with(gen, batch_size=2)
    with pytest.raises(PipelineDefinitionError, match="batch_timeout needs batch_size"):
        pipeline_with(lambda ctx, x: x, batch_timeout=1)
    with pytest.raises(PipelineDefinitionError, match="batch_size"):
        pipeline_with(lambda ctx, x: x, batch_size=0)


async def test_a_threaded_batch_handler():
    """A plain def batch handler gets the list and its results go on."""

    def total(ctx, rows):
        return [sum(rows)] * len(rows)

    result = await pipeline_with(total, batch_size=2).run_stream([1, 2, 3])
    assert sorted(result) == [3, 3, 3]


async def test_concurrent_batches_stay_within_concurrency():
    """concurrency=2 handles at most two batches at once."""
    running = 0
    most = 0

    async def write(ctx, rows):
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1

    result = await pipeline_with(write, batch_size=5, concurrency=2).run_stream(range(100))
    assert most == 2 and result.stats.nodes["sink"].batches == 20


async def test_batches_after_a_loop_and_behind_another_batch_task():
    """Two batch tasks in a row and a loop upstream still end with nothing left."""

    async def first(ctx, rows):
        return [x + 1 for x in rows]

    async def second(ctx, rows):
        return [x * 10 for x in rows]

    async def bump(ctx, x):
        return x + 100 if x % 2 else x

    pipeline = (
        PipelineBuilder()
        .add_task("bump", bump)
        .add_task("first", first, batch_size=3)
        .add_task("second", second, batch_size=4)
        .add_edge("bump", "first")
        .add_edge("first", "second")
        .add_edge("first", "bump", when=lambda ctx, x: x < 3, max_loops=2)
        .build()
    )
    result = await asyncio.wait_for(pipeline.run_stream(range(7)), 5)
    # 0 -> 1 goes on and loops back once (1 -> 101 -> 102); odd inputs gain 100 first
    assert sorted(result) == [10, 30, 50, 70, 1020, 1020, 1040, 1060]
    assert result.stats.nodes["second"].received == 8


async def test_a_batch_fills_from_a_full_queue_in_arrival_order():
    """Payloads waiting in the queue join the batch together: sizes, order and counts exact."""
    calls = []

    def write(ctx, rows):
        calls.append((list(rows), [c.data_id for c in ctx.batch]))

    result = await (
        PipelineBuilder("b")
        .add_task("sink", write, batch_size=7, queue_size=20)
        .build()
        .run_stream(range(30))
    )
    assert [rows for rows, _ in calls] == [list(range(i, min(i + 7, 30))) for i in range(0, 30, 7)]
    assert all(ids == [str(x) for x in rows] for rows, ids in calls)
    stats = result.stats.nodes["sink"]
    assert (stats.batches, stats.received, stats.filtered) == (5, 30, 30)


async def test_a_queue_gives_up_to_n_items_at_once_and_wakes_a_waiting_put():
    """take_many: the oldest items first, never more than asked, room made for putters."""
    queue = BatchQueue(3)
    for item in (1, 2, 3):
        assert queue.offer(("c", item))
    put = asyncio.create_task(queue.put(("c", 4)))
    await asyncio.sleep(0)  # the put now waits: the queue is full
    assert not put.done()
    assert queue.take_many(2) == ([("c", 1), ("c", 2)], 2)
    await asyncio.wait_for(put, 1)
    assert queue.take_many(5) == ([("c", 3), ("c", 4)], 2)
    assert queue.take_many(5) == ([], 0) and len(queue) == 0
