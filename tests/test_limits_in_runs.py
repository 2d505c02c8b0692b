"""Rate limits, RetryAfter and back-off as options of tasks and function pipelines."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from async_dag import PipelineBuilder, RateLimit, RetryAfter, run_function_pipeline


def spacing_ok(stamps: list[float], rate: float) -> bool:
    """In any window of T seconds at most rate * T + 1 starts (a small clock slack)."""
    stamps = sorted(stamps)
    return all(b - a >= 1 / rate - 2e-3 for a, b in itertools.pairwise(stamps))


async def test_a_task_rate_limit_spaces_every_call_retries_included():
    """rate_limit=R: starts at least 1/R apart across workers, retries counted."""
    stamps: list[float] = []

    async def call(ctx, x):
        stamps.append(time.monotonic())
        if ctx.attempt == 0 and x % 4 == 0:
            raise ConnectionError("flaky")
        return x

    pipeline = (
        PipelineBuilder().add_task("api", call, concurrency=8, rate_limit=50, retries=1).build()
    )
    result = await pipeline.run_stream(range(20))
    assert sorted(result) == list(range(20))
    assert len(stamps) == 25 and spacing_ok(stamps, 50)
    assert result.stats.nodes["api"].throttled > 0.2


async def test_one_rate_limit_is_one_budget_across_tasks_and_runs():
    """A shared RateLimit spaces the calls of two tasks and of a concurrent function run."""
    stamps: list[float] = []
    limit = RateLimit(40)

    async def call(ctx, x):
        stamps.append(time.monotonic())
        return x

    pipeline = (
        PipelineBuilder()
        .add_task("a", call, concurrency=4, rate_limit=limit)
        .add_task("b", call, concurrency=4, rate_limit=limit)
        .add_edge("a", "b")
        .build()
    )
    await asyncio.gather(
        pipeline.run_stream(range(6)),
        run_function_pipeline(range(6), call, concurrency=4, rate_limit=limit),
    )
    assert len(stamps) == 18 and spacing_ok(stamps, 40)


async def test_retry_after_pauses_the_task_and_retries_the_item():
    """RetryAfter(s): no call of the task starts before s has passed; the item is retried."""
    stamps: list[tuple[float, int, int]] = []
    hit = asyncio.Event()

    async def api(ctx, x):
        stamps.append((time.monotonic(), x, ctx.attempt))
        if x == 0 and ctx.attempt == 0:
            hit.set()
            raise RetryAfter(0.3)
        return x

    result = await run_function_pipeline(range(6), api, concurrency=1, retries=1, rate_limit=1000)
    assert list(result) == list(range(6))
    first = stamps[0][0]
    assert all(t - first >= 0.29 for t, x, attempt in stamps[1:])
    assert (stamps[1][1], stamps[1][2]) == (0, 1)


async def test_retry_after_with_no_retry_left_fails_with_it():
    """Without retries the item fails with the RetryAfter itself."""

    async def api(ctx, x):
        raise RetryAfter(5)

    result = await run_function_pipeline([1], api, on_error="collect")
    assert isinstance(result.errors[0].exception, RetryAfter)


async def test_retry_after_ignores_retry_on_and_the_cap():
    """RetryAfter is retried whatever retry_on says, its delay uncapped by retry_max_delay."""
    stamps: list[float] = []

    async def api(ctx, x):
        stamps.append(time.monotonic())
        if ctx.attempt == 0:
            raise RetryAfter(0.2)
        return x

    await run_function_pipeline(
        [1], api, retries=1, retry_on=KeyError, retry_max_delay=0.01, retry_delay=0.0
    )
    assert stamps[1] - stamps[0] >= 0.19


async def test_back_off_grows_and_is_capped_after_jitter():
    """delay * backoff**(k-1), with jitter, never above retry_max_delay."""
    stamps: list[float] = []

    async def api(ctx, x):
        stamps.append(time.monotonic())
        raise OSError("down")

    await run_function_pipeline(
        [1],
        api,
        retries=4,
        retry_delay=0.02,
        retry_backoff=2,
        retry_max_delay=0.1,
        retry_jitter=0.5,
        on_error="collect",
    )
    waits = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(waits) == 4
    assert 0.01 - 2e-3 <= waits[0] <= 0.03 + 0.05
    assert all(w <= 0.1 + 0.05 for w in waits)


async def test_retry_on_makes_other_failures_final():
    """A failure retry_on does not accept is final at once."""
    calls = []

    async def api(ctx, x):
        calls.append(ctx.attempt)
        raise ValueError("bad input: retrying will not help")

    result = await run_function_pipeline(
        [1], api, retries=3, retry_on=ConnectionError, on_error="collect"
    )
    assert calls == [0] and result.stats.nodes["api"].retried == 0


async def test_a_raising_retry_on_is_the_items_failure():
    """A retry_on predicate that raises fails the item with that exception."""

    def judge(exc):
        raise RuntimeError("judge broke")

    async def api(ctx, x):
        raise ValueError("x")

    result = await run_function_pipeline([1], api, retries=2, retry_on=judge, on_error="collect")
    assert isinstance(result.errors[0].exception, RuntimeError)
    assert "retry_on" in " ".join(result.errors[0].exception.__notes__)


async def test_waiting_for_a_rate_limit_cancels_at_once():
    """A run waiting on a slow rate limit stops as soon as it is cancelled."""

    async def api(ctx, x):
        return x

    runner = asyncio.ensure_future(run_function_pipeline(range(100), api, rate_limit=0.5))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("retry_backoff", 0.5, ValueError),
        ("retry_jitter", 1.5, ValueError),
        ("retry_delay", -1, ValueError),
        ("retry_on", "ValueError", TypeError),
        ("rate_limit", 0, ValueError),
        ("rate_limit", "fast", TypeError),
    ],
)
async def test_function_pipeline_options_are_checked(option, value, error):
    """Bad values raise ValueError/TypeError naming the option, before anything runs."""

    async def api(ctx, x):
        raise AssertionError("never called")

    with pytest.raises(error, match=option):
        await run_function_pipeline([1], api, **{option: value})
