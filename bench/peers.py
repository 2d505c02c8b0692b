"""The same chains on other streaming libraries, when they are installed.

Optional (``pip install -e '.[bench]'``): aiostream, pypeln and streamz run the async
steps; Bytewax (a Rust dataflow engine with no async steps) runs the same ``x + 1`` as
plain functions, item by item and in batches of 100. A peer that is not installed
gets a row saying so.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Awaitable, Callable
from typing import Any

from .baseline import QUEUE_SIZE, Step
from .harness import Impl

BYTEWAX_BATCH = 100


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def aiostream_chain(step: Step, workers: int, stages: int) -> Callable[[int], Awaitable[int]]:
    """``stages`` times ``pipe.map(step, task_limit=workers)`` over ``range(items)``."""

    async def run(items: int) -> int:
        from aiostream import pipe, stream

        xs = stream.iterate(range(items))
        for _ in range(stages):
            xs = xs | pipe.map(step, task_limit=workers)
        count = 0
        async with xs.stream() as outputs:
            async for _ in outputs:
                count += 1
        return count

    return run


def pypeln_chain(step: Step, workers: int, stages: int) -> Callable[[int], Awaitable[int]]:
    """``stages`` times ``pl.task.map(step, workers=workers, maxsize=100)``."""

    async def run(items: int) -> int:
        import pypeln as pl

        stage = range(items)
        for _ in range(stages):
            stage = pl.task.map(step, stage, workers=workers, maxsize=QUEUE_SIZE)
        count = 0
        async for _ in stage:
            count += 1
        return count

    return run


def streamz_chain(step: Step, workers: int, stages: int) -> Callable[[int], Awaitable[int]]:
    """``stages`` times ``.map_async(step, parallelism=workers)`` on an asynchronous
    ``Stream``, a counting ``sink`` at the end; ``await source.emit(x)`` per input."""

    async def run(items: int) -> int:
        from streamz import Stream

        source = Stream(asynchronous=True)
        node: Any = source
        for _ in range(stages):
            node = node.map_async(step, parallelism=workers)
        count = 0

        def tally(_: object) -> None:
            nonlocal count
            count += 1

        node.sink(tally)
        for i in range(items):
            await source.emit(i)
        while count < items:  # emit returns once the first stage took the item
            await asyncio.sleep(0.001)
        return count

    return run


def bytewax_chain(stages: int, batch: int) -> Callable[[int], int]:
    """``stages`` times ``op.map(x + 1)`` from a ``TestingSource`` giving ``batch``
    items at a time, into a counting sink, run with ``run_main`` (one worker)."""

    def run(items: int) -> int:
        import bytewax.operators as op
        from bytewax.dataflow import Dataflow
        from bytewax.outputs import DynamicSink, StatelessSinkPartition
        from bytewax.testing import TestingSource, run_main

        counted = [0]

        class Partition(StatelessSinkPartition[Any]):
            def write_batch(self, items: list[Any]) -> None:
                counted[0] += len(items)

        class Counting(DynamicSink[Any]):
            def build(self, step_id: str, worker_index: int, worker_count: int) -> Partition:
                return Partition()

        flow = Dataflow("chain")
        xs: Any = op.input("in", flow, TestingSource(range(items), batch_size=batch))
        for i in range(stages):
            xs = op.map(f"inc{i}", xs, _inc)
        op.output("out", xs, Counting())
        run_main(flow)
        return counted[0]

    return run


def _inc(x: int) -> int:
    return x + 1


def peer_impls(step: Step, workers: int, stages: int, items: int) -> list[Impl]:
    """Rows for each peer, run on ``items`` inputs (they are much slower); a peer that
    is not installed gets a row saying so."""
    missing = "not installed (pip install -e '.[bench]')"
    impls = [
        Impl("aiostream", aiostream_chain(step, workers, stages), items=items, note="peer"),
        Impl("pypeln", pypeln_chain(step, workers, stages), items=items, note="peer"),
        Impl("streamz", streamz_chain(step, workers, stages), items=items, note="peer"),
    ]
    for impl, module in zip(impls, ("aiostream", "pypeln", "streamz"), strict=True):
        if not available(module):
            impl.missing = missing
    if workers == 1:  # Bytewax steps cannot await: only the chain of cheap steps compares
        for batch in (1, BYTEWAX_BATCH):
            how = "item by item" if batch == 1 else f"batches of {batch}"
            impls.append(
                Impl(
                    f"Bytewax, {how}",
                    bytewax_chain(stages, batch),
                    items=items,
                    note="peer; plain def x + 1 (no async steps), run_main",
                    missing="" if available("bytewax") else missing,
                )
            )
    return impls
