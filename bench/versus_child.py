"""One measurement for ``bench.versus``, run in a fresh interpreter.

``python bench/versus_child.py ENGINE_DIR WORKLOAD ITEMS REPEATS`` imports async_dag
from ``ENGINE_DIR`` (a checkout of some revision), runs ``WORKLOAD`` over ``ITEMS``
inputs ``REPEATS`` times and prints the best throughput in items per second. Only the
API that every revision since the first has is used, so old engines run it unchanged.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def inc(ctx: Any, x: int) -> int:
    return x + 1


async def inc_yield(ctx: Any, x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


async def uneven(ctx: Any, x: int) -> int:
    """``x + 1`` after 0-3 loop turns, so that items finish out of input order."""
    for _ in range(x % 4):
        await asyncio.sleep(0)
    return x + 1


def inc_sync(ctx: Any, x: int) -> int:
    return x + 1


class Counter:
    """A sync result handler that counts."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, ctx: Any, value: Any) -> None:
        self.count += 1


def chain(handler: Any, workers: int = 1, **options: Any) -> Any:
    from async_dag import PipelineBuilder

    builder = PipelineBuilder("chain")
    for i in range(3):
        builder.add_task(f"s{i}", handler, concurrency=workers, **options)
        if i:
            builder.add_edge(f"s{i - 1}", f"s{i}")
    return builder.build()


def fan(branches: int = 4, **options: Any) -> Any:
    from async_dag import PipelineBuilder

    builder = PipelineBuilder("fan").add_task("source", inc, **options)
    builder.add_task("sink", inc, **options)
    for b in range(branches):
        builder.add_task(f"b{b}", inc, **options)
        builder.add_edge("source", f"b{b}").add_edge(f"b{b}", "sink")
    return builder.build()


def counted(pipeline: Any, per_input: int = 1) -> Callable[[int], Awaitable[int]]:
    async def run(n: int) -> int:
        counter = Counter()
        await pipeline.run_stream(range(n), result_handler=counter)
        assert counter.count == n * per_input, (counter.count, n)
        return n

    return run


async def hand_fan(n: int) -> int:
    from baseline import run_fan  # bench/ is this script's directory: no engine involved

    async def step(x: int) -> int:
        return x + 1

    assert await run_fan(n, step, 4) == n * 4
    return n


def collected(pipeline: Any) -> Callable[[int], Awaitable[int]]:
    async def run(n: int) -> int:
        return len(await pipeline.run_stream(range(n)))

    return run


async def function(n: int) -> int:
    from async_dag import run_function_pipeline

    counter = Counter()
    await run_function_pipeline(range(n), inc, result_handler=counter)
    return counter.count


def out_of_order(ordered: bool) -> Callable[[int], Awaitable[int]]:
    """The ``ordered`` bench row: 16 at a time, items finishing 0-3 loop turns apart."""

    async def run(n: int) -> int:
        from async_dag import run_function_pipeline

        counter = Counter()
        await run_function_pipeline(
            range(n), uneven, concurrency=16, ordered=ordered, result_handler=counter
        )
        return counter.count

    return run


def batch_sink(kind: str) -> Callable[[int], Awaitable[int]]:
    """A one-task DAG whose task takes batches of 500 and counts them (a no-op sink):
    what the engine adds per row to a batch sink such as the bench's SQLite writer."""
    from async_dag import PipelineBuilder

    seen = [0]

    async def count_async(ctx: Any, batch: list[Any]) -> None:
        seen[0] += len(batch)

    def count_sync(ctx: Any, batch: list[Any]) -> None:
        seen[0] += len(batch)

    handler = count_async if kind == "async" else count_sync
    options = {"inline": True} if kind == "inline" else {}
    pipeline = PipelineBuilder("sink").add_task("sink", handler, batch_size=500, **options).build()

    async def run(n: int) -> int:
        seen[0] = 0
        await pipeline.run_stream(range(n))
        return seen[0]

    return run


WORKLOADS: dict[str, Callable[[], Callable[[int], Awaitable[int]]]] = {
    "chain, queue_size=100": lambda: counted(chain(inc, queue_size=100)),
    "chain, default queues": lambda: counted(chain(inc)),
    "chain, inline sync handlers": lambda: counted(chain(inc_sync, queue_size=100, inline=True)),
    "chain, RunResult kept": lambda: collected(chain(inc, queue_size=100)),
    "chain, 8 workers, a loop turn each": lambda: counted(chain(inc_yield, 8, queue_size=100)),
    "function pipeline": lambda: function,
    "function, 16 out of order, unordered": lambda: out_of_order(False),
    "function, 16 out of order, ordered": lambda: out_of_order(True),
    "batch sink, async def": lambda: batch_sink("async"),
    "batch sink, def (threaded)": lambda: batch_sink("thread"),
    "batch sink, def inline": lambda: batch_sink("inline"),
    "fan-out/in, queue_size=100": lambda: counted(fan(queue_size=100), 4),
    "fan-out/in, default queues": lambda: counted(fan(), 4),
    "hand-written fan-out/in": lambda: hand_fan,
}


async def measure(name: str, items: int, repeats: int) -> float:
    run = WORKLOADS[name]()
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        count = await run(items)
        elapsed = time.perf_counter() - started
        assert count == items, (name, count)
        best = max(best, items / elapsed)
    return best


if __name__ == "__main__":
    _, engine, workload, items, repeats = sys.argv
    sys.path.insert(0, engine)
    print(asyncio.run(measure(workload, int(items), int(repeats))))
