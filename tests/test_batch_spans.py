"""Batch sources fed plain inputs as spans: contexts made only when needed, yet exact.

A batch task that is a source takes a chunk of plain inputs as one queue entry (an
``InputSpan``); these tests check that nothing a handler, a result or a failure can see
differs from one context per payload: data_ids, paths, ``ctx.batch``, stats, equality,
pickling and repr.
"""

from __future__ import annotations

import asyncio
import pickle

import pytest

from async_dag import ItemError, PipelineBuilder, PipelineContext
from async_dag.core.context import BatchContext, InputSpan, LazyContexts, input_contexts
from async_dag.core.queue import BatchQueue

FORMS = ["async", "thread", "inline"]


def sink(handler_body, form, **options):
    """A pipeline of one batch task, ``sink``, whose handler calls ``handler_body``."""
    if form == "async":

        async def handler(ctx, rows):
            return handler_body(ctx, rows)

    else:

        def handler(ctx, rows):
            return handler_body(ctx, rows)

    if form == "inline":
        options["inline"] = True
    return PipelineBuilder("spans").add_task("sink", handler, **options).build()


def expected(run_id, ids, path=("sink",), metadata=None):
    """The contexts an eager feeder would have made."""
    return tuple(PipelineContext(run_id, i, path, 0, metadata) for i in ids)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    ("size", "queue_size", "concurrency"), [(7, 20, 1), (7, 5, 2), (500, None, 1), (3, 64, 3)]
)
async def test_every_payload_keeps_its_exact_context(form, size, queue_size, concurrency):
    """Batches that cut across chunks, chunks that split batches, concurrent workers:
    ctx.batch[i] is payload i's context and ctx is the first payload's."""
    calls = []

    def body(ctx, rows):
        calls.append((list(rows), ctx))

    n = 53
    result = await sink(
        body, form, batch_size=size, queue_size=queue_size, concurrency=concurrency
    ).run_stream(range(n), run_id="r", metadata={"k": 1})
    seen = sorted(x for rows, _ in calls for x in rows)
    assert seen == list(range(n))
    for rows, ctx in calls:
        assert 1 <= len(rows) <= size
        assert type(ctx) is BatchContext
        assert ctx.batch == expected("r", [str(x) for x in rows], metadata={"k": 1})
        assert all(isinstance(c, PipelineContext) and c.batch == () for c in ctx.batch)
        assert (ctx.data_id, ctx.path, ctx.node, ctx.attempt) == (
            str(rows[0]),
            ("sink",),
            "sink",
            0,
        )
        assert ctx.metadata == {"k": 1} and ctx.batch[0].metadata == {"k": 1}
    stats = result.stats.nodes["sink"]
    assert (stats.received, stats.filtered, stats.emitted, stats.batches) == (n, n, 0, len(calls))
    assert stats.max_queue_depth <= (queue_size or size)


@pytest.mark.parametrize("form", FORMS)
async def test_results_go_on_with_their_own_contexts(form):
    """A batch source returning one result per payload: each record has its payload's context."""
    result = await sink(lambda ctx, rows: [x * 10 for x in rows], form, batch_size=4).run_stream(
        range(10), run_id="r", _id_prefix="b:"
    )
    assert sorted((r.ctx, r.value) for r in result.records) == [
        (PipelineContext("r", f"b:{i}", ("sink",)), 10 * i) for i in range(10)
    ]


async def test_a_failed_batch_fails_each_payload_with_its_context():
    """Under collect: one ItemError per payload, its own context, the same exception."""
    boom = ValueError("boom")

    def body(ctx, rows):
        if 5 in rows:
            raise boom

    result = await sink(body, "inline", batch_size=4).run_stream(
        range(10), run_id="r", on_error="collect"
    )
    errors = sorted(result.errors, key=lambda e: int(e.ctx.data_id))
    assert [e.ctx for e in errors] == list(expected("r", ["4", "5", "6", "7"]))
    assert all(isinstance(e, ItemError) and e.exception is boom for e in errors)
    assert [e.payload for e in errors] == [4, 5, 6, 7]
    stats = result.stats.nodes["sink"]
    assert (stats.failed, stats.filtered) == (4, 6)


async def test_a_failed_batch_under_raise_names_its_first_data_ids():
    def body(ctx, rows):
        raise RuntimeError("down")

    with pytest.raises(RuntimeError) as info:
        await sink(body, "async", batch_size=5).run_stream(range(12), run_id="r")
    assert "'0', '1', '2' and 2 more" in "".join(info.value.__notes__)


async def test_a_retried_batch_keeps_its_contexts():
    """A retry's ctx has attempt 1 and the same batch of contexts."""
    calls = []

    def body(ctx, rows):
        calls.append((ctx.attempt, [c.data_id for c in ctx.batch], list(rows)))
        if ctx.attempt == 0:
            raise OSError("busy")

    await sink(body, "async", batch_size=3, retries=1).run_stream(range(4))
    assert calls == [
        (0, ["0", "1", "2"], [0, 1, 2]),
        (1, ["0", "1", "2"], [0, 1, 2]),
        (0, ["3"], [3]),
        (1, ["3"], [3]),
    ]


async def test_a_batch_source_beside_a_plain_source():
    """Each of two sources gets every input: spans for the batch task, items for the other."""
    batches = []
    pipeline = (
        PipelineBuilder("two")
        .add_task("sink", lambda ctx, rows: batches.append(ctx.batch), batch_size=4, inline=True)
        .add_task("plain", lambda ctx, x: (ctx.data_id, ctx.path, x), inline=True)
        .build()
    )
    result = await pipeline.run_stream(range(9), run_id="r")
    assert [c for batch in batches for c in batch] == list(
        expected("r", [str(i) for i in range(9)])
    )
    assert sorted(result, key=lambda v: v[2]) == [(str(i), ("plain",), i) for i in range(9)]


async def test_the_handler_may_mutate_its_list():
    """The list handed over is the call's own: changing it changes nothing else."""
    seen = []

    def body(ctx, rows):
        seen.append(list(rows))
        rows.clear()

    pipeline = (
        PipelineBuilder("two")
        .add_task("a", body, batch_size=3, inline=True)
        .add_task("b", body, batch_size=3, inline=True)
        .build()
    )
    await pipeline.run_stream(range(7))
    assert sorted(seen) == sorted([[0, 1, 2], [3, 4, 5], [6]] * 2)


async def test_a_cancelled_run_with_spans_queued_stops():
    """Cancelled while a batch call waits, with spans still queued: the run stops at once."""
    started = asyncio.Event()

    async def slow(ctx, rows):
        started.set()
        await asyncio.Event().wait()

    pipeline = PipelineBuilder("c").add_task("sink", slow, batch_size=3, queue_size=10).build()
    run = asyncio.create_task(pipeline.run_stream(range(100)))
    await started.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run


def lazy_and_eager(meta=None):
    """The same batch context, lazy (from a span and an item) and eager."""
    span = InputSpan("r", "", 3, 4, "sink", meta)
    item = PipelineContext("r", "x", ("a", "sink"), 0, meta)
    eager_batch = (*input_contexts("r", "", 3, 4, "sink", meta), item)
    lazy = BatchContext(span.head(), LazyContexts([span, item]))
    eager = BatchContext(eager_batch[0], eager_batch)
    return lazy, eager, eager_batch


def test_lazy_batch_contexts_behave_as_eager_ones():
    """Equality both ways, hash, repr, pickling, _replace: a lazy batch shows nothing lazy."""
    plain, plain_eager, _ = lazy_and_eager()  # no metadata: hashable, as contexts are
    assert hash(plain) == hash(plain_eager) and plain == plain_eager
    lazy, eager, eager_batch = lazy_and_eager({"m": 1})
    assert lazy.batch == eager_batch and lazy.batch is lazy.batch
    assert lazy == eager and eager == lazy
    assert repr(lazy) == repr(eager)
    assert lazy.data_id == "3" and lazy.path == ("sink",) and lazy.metadata == {"m": 1}
    for ctx in (lazy, lazy_and_eager({"m": 1})[0]):  # pickled before and after the batch is read
        back = pickle.loads(pickle.dumps(ctx))
        assert type(back) is BatchContext and back == eager and back.batch == eager_batch
        assert type(back._batch) is tuple
    retried = lazy._replace(attempt=2)
    assert type(retried) is BatchContext and retried.attempt == 2 and retried.batch == eager_batch
    other = BatchContext(eager_batch[0], LazyContexts([InputSpan("r", "", 3, 5, "sink", None)]))
    assert other != lazy and lazy != other


def test_a_span_splits_and_builds_the_feeders_contexts():
    span = InputSpan("r", "p:", 10, 5, "n", None)
    head, rest = span.split(2)
    assert [c.data_id for c in head.contexts()] == ["p:10", "p:11"]
    assert [c.data_id for c in rest.contexts()] == ["p:12", "p:13", "p:14"]
    assert span.contexts() == input_contexts("r", "p:", 10, 5, "n", None)
    assert span.head() == span.contexts()[0] and "10..14" in repr(span)


async def test_a_batch_queue_counts_payloads_and_splits_spans():
    """Length, room and depth count payloads; take_many splits a span to fit; a put
    waits for room and is woken by a take."""
    queue = BatchQueue(6)
    queue.offer_span(InputSpan("r", "", 0, 4, "n", None), [0, 1, 2, 3])
    assert queue.offer(("c", "x"))
    assert (len(queue), queue.room(), queue.max_depth, queue.spans) == (5, 1, 5, 1)
    queue.offer_span(InputSpan("r", "", 4, 1, "n", None), [4])
    assert not queue.offer(("c", "y")) and queue.room() == 0
    put = asyncio.create_task(queue.put(("c", "y")))
    await asyncio.sleep(0)
    assert not put.done()
    taken, weight = queue.take_many(3)
    assert weight == 3 and len(taken) == 1 and taken[0][1] == [0, 1, 2]
    assert [c.data_id for c in taken[0][0].contexts()] == ["0", "1", "2"]
    await asyncio.wait_for(put, 1)
    assert len(queue) == 4
    taken, weight = queue.take_many(10)
    assert weight == 4 and [value for _, value in taken] == [[3], "x", [4], "y"]
    assert (len(queue), queue.spans) == (0, 0)
    queue.offer_span(InputSpan("r", "", 5, 2, "n", None), [5, 6])
    span, payloads = queue.take()
    assert payloads == [5, 6] and len(queue) == 0
    queue.put_back(span, payloads)
    queue.force_put(("c", "z"))
    assert (len(queue), queue.close()) == (3, 3)
    assert len(queue) == 0


async def test_the_rest_of_a_split_span_is_handled_concurrently():
    """One span split across two batches: the second worker handles the rest while the
    first call still waits (concurrency holds across the split)."""
    running, both = [], asyncio.Event()

    async def write(ctx, rows):
        running.append([c.data_id for c in ctx.batch])
        if len(running) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 5)

    pipeline = (
        PipelineBuilder("c")
        .add_task("sink", write, batch_size=2, concurrency=2, queue_size=4)
        .build()
    )
    await pipeline.run_stream(range(4))
    assert sorted(running) == [["0", "1"], ["2", "3"]]


@pytest.mark.parametrize("size", [2, 3, 5])
async def test_a_batch_source_mixes_spans_and_looped_back_payloads(size):
    """Inputs arrive as spans, loop-backs as single payloads, in the same queue and the
    same batches: every context is still the payload's own."""
    calls = []

    def step(ctx, rows):
        calls.append((list(rows), ctx.batch))
        return [x + 100 for x in rows]

    pipeline = (
        PipelineBuilder("loop")
        .add_task("b", step, batch_size=size, queue_size=4, inline=True)
        .add_task("back", lambda ctx, x: x, inline=True)
        .add_task("out", lambda ctx, x: x, inline=True)
        .add_edge("b", "out")
        .add_edge("b", "back", when=lambda ctx, x: x < 200)
        .add_edge("back", "b", max_loops=1)
        .build()
    )
    result = await asyncio.wait_for(pipeline.run_stream(range(9), run_id="r"), 5)
    assert sorted(x for rows, _ in calls for x in rows) == [*range(9), *range(100, 109)]
    for rows, batch in calls:
        for x, c in zip(rows, batch, strict=True):
            assert c.data_id == str(x % 100)
            assert c.path == (("b", "back", "b") if x >= 100 else ("b",))
    assert sorted((r.value, r.ctx.data_id, r.ctx.path) for r in result.records) == [
        *((100 + i, str(i), ("b", "out")) for i in range(9)),
        *((200 + i, str(i), ("b", "back", "b", "out")) for i in range(9)),
    ]
    assert result.stats.nodes["b"].received == 18
