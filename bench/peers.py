"""The same chains on other asyncio streaming libraries, when they are installed.

Optional (``pip install -e '.[bench]'``): without aiostream or pypeln their rows are
left out and the suite runs as usual.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable

from .baseline import QUEUE_SIZE, Step
from .harness import Impl


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


def peer_impls(step: Step, workers: int, stages: int, items: int) -> list[Impl]:
    """Rows for each installed peer, run on ``items`` inputs (they are much slower)."""
    impls = []
    if available("aiostream"):
        impls.append(
            Impl("aiostream", aiostream_chain(step, workers, stages), items=items, note="peer")
        )
    if available("pypeln"):
        impls.append(Impl("pypeln", pypeln_chain(step, workers, stages), items=items, note="peer"))
    return impls
