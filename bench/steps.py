"""The steps the workloads run, in the two calling conventions, and async_dag builders.

The baselines call ``step(x)``; async_dag calls ``handler(ctx, x)``. Both do the same
work, so any difference in time is the cost of the pipeline around them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from async_dag import DagPipeline, PipelineBuilder, PipelineContext

# -- plain steps (baselines and peers) -------------------------------------------------


async def inc(x: int) -> int:
    """The cheapest async step: ``x + 1``."""
    return x + 1


async def inc_yield(x: int) -> int:
    """``x + 1`` after giving the loop one turn (``asyncio.sleep(0)``)."""
    await asyncio.sleep(0)
    return x + 1


async def inc_io(x: int) -> int:
    """``x + 1`` after 1 ms of simulated I/O."""
    await asyncio.sleep(0.001)
    return x + 1


# -- handlers (async_dag) --------------------------------------------------------------


async def h_inc(ctx: PipelineContext, x: int) -> int:
    """The cheapest handler: ``x + 1``."""
    return x + 1


async def h_inc_yield(ctx: PipelineContext, x: int) -> int:
    """``x + 1`` after one loop turn."""
    await asyncio.sleep(0)
    return x + 1


async def h_inc_io(ctx: PipelineContext, x: int) -> int:
    """``x + 1`` after 1 ms of simulated I/O."""
    await asyncio.sleep(0.001)
    return x + 1


def h_inc_sync(ctx: PipelineContext, x: int) -> int:
    """A cheap sync handler (run inline, for fusion-style chains)."""
    return x + 1


Handler = Callable[[PipelineContext, Any], Awaitable[Any]] | Callable[[PipelineContext, Any], Any]


def chain(
    handlers: Sequence[tuple[Handler, int]],
    *,
    queue_size: int | None = None,
    inline: bool = False,
    name: str = "chain",
) -> DagPipeline:
    """A straight line of tasks ``s0 -> s1 -> ...`` from (handler, concurrency) pairs."""
    builder = PipelineBuilder(name)
    for i, (handler, workers) in enumerate(handlers):
        builder.add_task(
            f"s{i}", handler, concurrency=workers, queue_size=queue_size, inline=inline
        )
        if i:
            builder.add_edge(f"s{i - 1}", f"s{i}")
    return builder.build()


def fan(branches: int, *, queue_size: int | None = None) -> DagPipeline:
    """``source -> b0..bN -> sink``: every input goes down every branch, merging after."""
    builder = PipelineBuilder("fan").add_task("source", h_inc, queue_size=queue_size)
    builder.add_task("sink", h_inc, queue_size=queue_size)
    for b in range(branches):
        builder.add_task(f"b{b}", h_inc, queue_size=queue_size)
        builder.add_edge("source", f"b{b}").add_edge(f"b{b}", "sink")
    return builder.build()


class Counter:
    """A ``result_handler`` that only counts what reaches it."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, ctx: PipelineContext, value: Any) -> None:
        self.count += 1


async def run_counted(pipeline: DagPipeline, items: int, **options: Any) -> int:
    """Run ``range(items)`` through ``pipeline`` with a counting result handler."""
    counter = Counter()
    await pipeline.run_stream(range(items), result_handler=counter, **options)
    return counter.count
