"""Run core v2: threaded calls, timeouts, cancellation and input failures, tried as a
hostile user would (each case reproduced a hang or a wrong result before)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time

import pytest
from _util import settle

from async_dag import (
    DagTask,
    Monitor,
    PipelineBuilder,
    PipelineDefinitionError,
    run_function_pipeline,
)


def threaded(handler, **options):
    """A one-task pipeline around a plain def (run in a thread)."""
    return PipelineBuilder("t").add_task("t", handler, **options).build()


async def test_threaded_stop_iteration_is_the_items_failure():
    """A threaded def raising StopIteration fails that item, recorded as itself; no hang."""

    def step(ctx, x):
        if x == 1:
            raise StopIteration("done too early")
        return x

    result = await asyncio.wait_for(threaded(step).run_stream([0, 1, 2], on_error="collect"), 10)
    assert sorted(result) == [0, 2]
    [error] = result.errors
    assert type(error.exception) is StopIteration and error.ctx.data_id == "1"


async def test_a_blocked_threaded_call_fails_only_its_own_item():
    """One call blocked 2 s under timeout=0.1 fails alone; the other items never wait for it."""
    release = threading.Event()

    def step(ctx, x):
        if x == 0:
            release.wait(2)
        return x

    pipeline = threaded(step, timeout=0.5, concurrency=2)
    try:
        result = await pipeline.run_stream(range(10), on_error="collect")
    finally:
        release.set()
    assert sorted(result) == list(range(1, 10))
    [error] = result.errors
    assert isinstance(error.exception, TimeoutError) and error.ctx.data_id == "0"
    assert "timeout=0.5" in str(error.exception)
    assert result.stats.nodes["t"].abandoned == 1


async def test_threaded_retries_never_overlap_live_calls():
    """concurrency=1 with timeouts and retries: calls not abandoned never run at once."""
    spans: list[tuple[float, float, int, int]] = []
    lock = threading.Lock()

    def step(ctx, x):
        start = time.monotonic()
        if x % 3 == 0 and ctx.attempt == 0:
            time.sleep(0.4)  # outlives the timeout: abandoned, then retried
        with lock:
            spans.append((start, time.monotonic(), x, ctx.attempt))
        return x

    result = await threaded(step, timeout=0.2, retries=1).run_stream(range(6))
    assert sorted(result) == list(range(6))
    live = sorted((s, e) for s, e, x, attempt in spans if not (x % 3 == 0 and attempt == 0))
    for (_, end), (start, _) in itertools.pairwise(live):
        assert start >= end - 1e-3
    assert result.stats.nodes["t"].abandoned == 2
    assert result.stats.nodes["t"].retried == 2


async def test_the_timeout_clock_starts_when_the_call_starts():
    """Calls queued behind a slow one are not charged for the wait (concurrency=1)."""

    def step(ctx, x):
        time.sleep(0.15)
        return x

    result = await threaded(step, timeout=1.0).run_stream(range(8), on_error="collect")
    assert sorted(result) == list(range(8)) and result.errors == []


async def test_swallowing_the_timeouts_cancellation_is_still_a_timeout():
    """A handler that swallows the CancelledError of its timeout and returns is a TimeoutError."""

    async def stubborn(ctx, x):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)
        return "pretended success"

    result = await run_function_pipeline([1], stubborn, timeout=0.05, on_error="collect")
    assert list(result) == []
    assert isinstance(result.errors[0].exception, TimeoutError)


async def test_a_handler_that_swallows_every_cancel_delays_the_end_only_until_it_returns(
    no_leftover_tasks,
):
    """Cancelling twice while a handler swallows each cancel: the run ends when it
    returns, its worker takes no further payload, and no task is left."""
    started = asyncio.Event()
    calls: list[int] = []

    async def stubborn(ctx, x):
        calls.append(x)
        started.set()
        for _ in range(3):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.2)
        return x

    runner = asyncio.ensure_future(run_function_pipeline(range(100), stubborn))
    await started.wait()
    runner.cancel()
    await asyncio.sleep(0.05)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert calls == [0]


class Recorder(Monitor):
    """Counts the hooks it sees."""

    def __init__(self) -> None:
        self.finished: list[BaseException | None] = []
        self.states: list[str] = []

    def finish(self, stats, error):
        self.finished.append(error)
        self.states.append(stats.state)


async def test_a_second_cancel_while_winding_down_still_finishes_everything(no_leftover_tasks):
    """A repeated cancel skips neither the monitor's finish nor the threads' release."""
    entered = threading.Event()
    release = threading.Event()

    def blocking(ctx, x):
        entered.set()
        release.wait(5)
        return x

    async def slow_async(ctx, x):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # winds down slowly
            raise
        return x

    monitor = Recorder()
    pipeline = PipelineBuilder("p").add_task("a", slow_async).add_task("b", blocking).build()
    runner = asyncio.ensure_future(pipeline.run_stream(range(3), monitor=monitor))
    await asyncio.to_thread(entered.wait, 5)
    runner.cancel()
    await asyncio.sleep(0.05)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert len(monitor.finished) == 1
    assert isinstance(monitor.finished[0], asyncio.CancelledError)
    assert monitor.states == ["cancelled"]
    release.set()
    deadline = time.monotonic() + 5
    while engine_threads() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert engine_threads() == []


def engine_threads() -> list[threading.Thread]:
    """The engine's threads still alive."""
    return [t for t in threading.enumerate() if t.name.startswith("async_dag")]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0, -1, "1", True])
def test_bad_timeouts_are_refused_at_definition(bad):
    """timeout must be a positive finite number of seconds."""
    with pytest.raises(PipelineDefinitionError, match="task 't': timeout"):
        threaded(lambda ctx, x: x, timeout=bad)


def test_timeout_with_inline_is_refused():
    """An inline call cannot be interrupted, so a timeout on it is refused."""
    with pytest.raises(PipelineDefinitionError, match="inline"):
        threaded(lambda ctx, x: x, timeout=1, inline=True)


async def test_function_pipeline_refuses_a_nan_timeout():
    """A function pipeline's timeout=nan is a ValueError naming the option."""

    async def f(ctx, x):
        return x

    with pytest.raises(ValueError, match="timeout"):
        await run_function_pipeline([1], f, timeout=float("nan"))


@pytest.mark.parametrize("inline", [False, True])
async def test_a_def_returning_a_coroutine_fails_its_item(inline):
    """A plain def that returns a coroutine fails with a TypeError saying async def."""

    async def helper(x):
        return x

    def wrong(ctx, x):
        return helper(x)

    result = await threaded(wrong, inline=inline).run_stream([1, 2], on_error="collect")
    assert list(result) == []
    assert len(result.errors) == 2
    assert all(isinstance(e.exception, TypeError) for e in result.errors)
    assert "async def" in str(result.errors[0].exception)


async def test_a_raising_key_fails_that_input_under_collect():
    """key= raising fails its input with a note naming key= and the position; the rest go on."""

    async def f(ctx, x):
        return x["id"]

    items = [{"id": "a"}, {}, {"id": "c"}]
    result = await run_function_pipeline(items, f, key=lambda item: item["id"], on_error="collect")
    assert list(result) == ["a", "c"]
    [error] = result.errors
    assert isinstance(error.exception, KeyError) and error.payload == {}
    assert any("key=" in n and "#1" in n for n in error.exception.__notes__)
    assert result.stats.errors == 1


async def test_a_raising_key_under_raise_stops_the_run():
    """Under on_error="raise" a key= failure propagates with its note."""

    async def f(ctx, x):
        return x

    with pytest.raises(KeyError) as info:
        await run_function_pipeline([{}], f, key=lambda item: item["id"])
    assert any("key=" in n for n in info.value.__notes__)


async def test_retries_are_logged_at_info_and_collected_failures_at_warning(caplog):
    """Each retry logs at INFO and a final collected failure at WARNING, with the context."""

    async def flaky(ctx, x):
        raise RuntimeError(f"nope {ctx.attempt}")

    with caplog.at_level(logging.INFO, logger="async_dag"):
        await run_function_pipeline([7], flaky, retries=2, on_error="collect", run_id="r1")
    retries = [r for r in caplog.records if r.levelno == logging.INFO and "retry" in r.message]
    failures = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 2 and len(failures) == 1
    for record in [*retries, *failures]:
        assert (record.run_id, record.data_id, record.node) == ("r1", "0", "flaky")


async def test_the_default_queue_is_large_enough_for_cheap_steps():
    """Without queue_size a task's queue holds max(64, 2 x concurrency) payloads."""
    assert DagTask("a", lambda ctx, x: x).bound == 64
    assert DagTask("a", lambda ctx, x: x, concurrency=50).bound == 100


async def test_a_fan_in_gets_the_default_room_for_each_edge_into_it():
    """A task fed by k forward edges defaults to k times the room (loop-backs and error
    edges do not count: they never wait on the bound); an explicit queue_size is the whole
    queue. The stats and the queues of a run show the same figures."""

    async def step(ctx, x):
        return x

    async def dead(ctx, err):
        return None

    builder = PipelineBuilder("fan").add_task("src", step).add_task("sink", step)
    for b in ("b0", "b1", "b2"):
        builder.add_task(b, step).add_edge("src", b).add_edge(b, "sink")
    builder.add_task("capped", step, queue_size=5).add_edge("b0", "capped").add_edge("b1", "capped")
    builder.add_task("dead", dead).add_edge("b2", "dead", on_error=True)
    builder.add_edge("sink", "src", when=lambda ctx, x: False, max_loops=1)
    pipeline = builder.build()
    expected = {"src": 64, "b0": 64, "b1": 64, "b2": 64, "sink": 192, "capped": 5, "dead": 64}
    assert pipeline.queue_sizes == expected
    result = await pipeline.run_stream(range(10))
    assert {n: s.queue_size for n, s in result.stats.nodes.items()} == expected
    assert result.stats.nodes["capped"].emitted == 20 and result.stats.nodes["sink"].unrouted == 30


async def test_a_batch_tasks_default_queue_holds_a_whole_batch():
    """A batch task's default queue holds at least batch_size payloads; queue_size rules."""

    async def write(ctx, rows):
        return None

    assert DagTask("a", write, batch_size=500).bound == 500
    assert DagTask("a", write, batch_size=10).bound == 64
    assert DagTask("a", write, batch_size=500, queue_size=8).bound == 8


async def test_cancelled_runs_show_empty_queues(no_leftover_tasks):
    """After a cancel the stats show no queued and no in-flight payloads."""
    stats = []

    class Last(Monitor):
        def finish(self, s, error):
            stats.append(s)

    async def slow(ctx, x):
        await asyncio.sleep(1)
        return x

    pipeline = (
        PipelineBuilder()
        .add_task("a", slow, concurrency=2)
        .add_task("b", slow)
        .add_edge("a", "b")
        .build()
    )
    runner = asyncio.ensure_future(pipeline.run_stream(range(100), monitor=Last()))
    await asyncio.sleep(0.1)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    await settle()
    [final] = stats
    assert final.state == "cancelled"
    assert all(n.queue_depth == 0 and n.in_flight == 0 for n in final.nodes.values())
    assert final.nodes["a"].emitted == 0


@pytest.mark.parametrize("timeout", [None, 5])
async def test_a_handlers_own_timeout_error_is_its_failure(timeout):
    """A TimeoutError the handler raises itself is kept as it is, with or without timeout=."""

    async def f(ctx, x):
        raise TimeoutError("the service did not answer")

    async def gen(ctx, x):
        raise TimeoutError("the service did not answer")
        yield x

    for fn in (f, gen):
        result = await run_function_pipeline(
            [1], fn, on_error="collect", retries=1, timeout=timeout
        )
        [error] = result.errors
        assert str(error.exception) == "the service did not answer"


# -- the feeder: plain inputs go in a queueful at a time ----------------------------------


async def test_plain_inputs_reach_every_source_in_order_through_unequal_queues():
    """Two sources with different queue sizes each see every input once, in order, with
    data_ids numbered as the inputs came; the feeder never pulls more than both can take."""
    seen: dict[str, list[str]] = {"a": [], "b": []}
    pulled = 0
    most_ahead = 0

    def inputs():
        nonlocal pulled
        for i in range(500):
            pulled = i + 1
            yield i

    def record(name):
        async def handler(ctx, x):
            nonlocal most_ahead
            seen[name].append(ctx.data_id)
            assert ctx.path == (name,)
            most_ahead = max(most_ahead, pulled - x)
            await asyncio.sleep(0)
            return x

        return handler

    p = (
        PipelineBuilder()
        .add_task("a", record("a"), queue_size=3)
        .add_task("b", record("b"), queue_size=7)
        .build()
    )
    result = await p.run_stream(inputs())
    assert seen["a"] == seen["b"] == [str(i) for i in range(500)]
    assert result.stats.inputs == 500
    assert sorted(result) == sorted(list(range(500)) * 2)
    # the input a handler works on, plus a full queue of 3 behind it, at most
    assert most_ahead <= 4


@pytest.mark.parametrize("broken_at", [0, 1, 63, 64, 150])
async def test_an_input_stream_raising_mid_chunk_names_the_input(broken_at):
    """Whatever the queue has room for, the note names the input the stream broke at,
    and the inputs it gave before are counted as pulled."""

    def inputs():
        yield from range(broken_at)
        raise ValueError("the source broke")

    async def ident(ctx, x):
        return x

    p = PipelineBuilder().add_task("a", ident, queue_size=64).build()
    with pytest.raises(ValueError, match="the source broke") as info:
        await p.run_stream(inputs(), on_error="collect")
    assert f"reading input #{broken_at} " in " ".join(info.value.__notes__)


async def test_the_feeder_refills_a_source_half_a_queue_at_a_time():
    """The feeder waits for a source queue to drain to half before pulling more, then
    pulls what fits: it never runs more than a queueful ahead, nor wakes for every slot."""
    pulled = 0
    seen: list[int] = []

    def inputs():
        nonlocal pulled
        for i in range(200):
            pulled = i + 1
            yield i

    async def handler(ctx, x):
        seen.append(pulled)
        await asyncio.sleep(0)
        return x

    p = PipelineBuilder().add_task("a", handler, queue_size=10).build()
    result = await p.run_stream(inputs())
    assert len(result) == 200
    assert all(count - x <= 11 for x, count in enumerate(seen))  # the one in hand + 10
    steps = [b - a for a, b in itertools.pairwise(sorted(set(seen)))]
    assert steps and all(step >= 5 for step in steps[:-1]), steps
