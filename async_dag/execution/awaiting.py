"""The awaitable forms: batches collected on the running loop, stopped when cancelled.

Our own pool (:class:`~.pool.SpawnPool`) is driven from a helper thread, which hands
results to the loop; cancelling the awaiting task aborts the pool (every process is
terminated at once, then killed if it lingers) and waits for that to finish, however many
more cancellations arrive meanwhile, before ``CancelledError`` propagates. On a caller's
executor the futures are awaited on the loop; cancelling cancels every future (dask
cancels its tasks; a batch already running in a caller's thread or process pool runs to
its end, as it is not ours to stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from ..core.results import RunResult
from .outcomes import in_batch_order
from .pool import OnResult, SpawnPool, executor_outcome

log = logging.getLogger("async_dag")

# After an abort, how long the terminated processes get before they are killed, and how
# long the killed ones get before the wind-down gives up waiting (and says so).
KILL_AFTER = 1.5
GIVE_UP_AFTER = 10.0

# While waiting, the loop wakes this often. ipykernel 7.4 turns the interrupt button's
# SIGINT into a cancellation by completing a future from another thread without waking
# the loop, so a loop with nothing else to do would only see the interrupt when it next
# wakes (seen: never, for a cell awaiting a long batch).
WAKE_EVERY = 0.25


async def await_spawn_pool(pool: SpawnPool, on_result: OnResult) -> list[RunResult]:
    """``pool.run()`` in a helper thread; ``on_result`` is called on this loop."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[list[RunResult]] = loop.create_future()
    ended = asyncio.Event()
    cancelled = False

    def deliver(result: RunResult) -> None:
        if on_result is not None and not cancelled:
            on_result(result)

    def settle(value: list[RunResult] | None, error: BaseException | None) -> None:
        if not outcome.done():
            if error is not None:
                outcome.set_exception(error)
            else:
                assert value is not None
                outcome.set_result(value)
        ended.set()

    def collect() -> None:
        value: list[RunResult] | None = None
        error: BaseException | None = None
        try:
            value = pool.run(lambda result: _call_soon(loop, deliver, result))
        except BaseException as exc:  # handed to the loop, raised there
            error = exc
        _call_soon(loop, settle, value, error)

    threading.Thread(target=collect, name="async_dag-batches", daemon=True).start()
    try:
        while not outcome.done():
            await asyncio.wait({outcome}, timeout=WAKE_EVERY)
        return outcome.result()
    except asyncio.CancelledError:
        cancelled = True
        pool.abort()
        await _wind_down(loop, ended, pool)
        if outcome.done() and not outcome.cancelled():
            outcome.exception()  # seen: what the aborted pool raised does not matter now
        raise


async def await_executor(
    executor: Executor,
    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]],
    *,
    shipped: bool,
    on_result: OnResult,
) -> list[RunResult]:
    """Submit one call per batch to the caller's executor and await them on this loop."""
    count = len(calls)
    results: list[RunResult | None] = [None] * count
    submitted: list[Future[Any]] = []
    waiting: dict[asyncio.Future[Any], int] = {}
    try:
        for index, (fn, args) in enumerate(calls):
            future = executor.submit(fn, *args)
            submitted.append(future)
            awaitable = asyncio.wrap_future(future)
            awaitable.add_done_callback(_seen)
            waiting[awaitable] = index
        while waiting:
            done, _ = await asyncio.wait(
                waiting, timeout=WAKE_EVERY, return_when=asyncio.FIRST_COMPLETED
            )
            for awaitable in sorted(done, key=waiting.__getitem__):
                index = waiting.pop(awaitable)
                unfinished = [i for i, r in enumerate(results) if r is None]
                result = executor_outcome(
                    index, count, awaitable, shipped=shipped, unfinished=unfinished
                )
                results[index] = result
                if on_result is not None:
                    on_result(result)
    except BaseException:
        for future in submitted:
            future.cancel()  # on dask, this cancels the task on the cluster too
        raise
    return in_batch_order(results)


async def _wind_down(
    loop: asyncio.AbstractEventLoop, ended: asyncio.Event, pool: SpawnPool
) -> None:
    """Wait until the aborted pool's processes are gone; further cancels change nothing."""
    waiter = asyncio.ensure_future(ended.wait())
    started = loop.time()
    killed = False
    while not waiter.done():
        elapsed = loop.time() - started
        limit = (KILL_AFTER if not killed else GIVE_UP_AFTER) - elapsed
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({waiter}, timeout=max(limit, 0.0))
        if waiter.done():
            break
        elapsed = loop.time() - started
        if not killed and elapsed >= KILL_AFTER:
            pool.kill()
            killed = True
        elif killed and elapsed >= GIVE_UP_AFTER:
            waiter.cancel()
            log.warning(
                "cancelled batched run: worker processes %s were killed but the pool "
                "did not report their end within %.0f s",
                pool.pids(),
                GIVE_UP_AFTER,
            )
            return


def _seen(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as retrieved (a cancelled call's late failure is moot)."""
    if not future.cancelled():
        future.exception()


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
        loop.call_soon_threadsafe(fn, *args)
