"""Iterating a run: ``pipeline.stream(...)`` and ``iter_function_pipeline(...)``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .context import PipelineContext
from .options import RunOptions
from .queue import NodeQueue
from .run import Run

if TYPE_CHECKING:
    from .definition import DagPipeline

_END: Any = object()


class RunIterator(AsyncIterator[tuple[PipelineContext, Any]]):
    """Drives a run in a background task and yields its sink outputs as they come.

    The run starts on the first ``__anext__``; a bounded buffer between the sinks and
    the consumer keeps back-pressure. ``aclose()``, ``async with``, cancelling the
    consumer, or dropping the iterator (``break`` out of ``async for``) stops the run.
    """

    def __init__(self, pipeline: DagPipeline, options: RunOptions, buffer: int = 64) -> None:
        self._out = NodeQueue(buffer)
        self._run = Run(pipeline, options, stream=self._out)
        self._task: asyncio.Task[None] | None = None
        self._exhausted = False

    def __aiter__(self) -> RunIterator:
        return self

    async def __anext__(self) -> tuple[PipelineContext, Any]:
        if self._exhausted:
            raise StopAsyncIteration
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                _drive(self._run, self._out), name=f"async_dag:{self._run.run_id}:stream"
            )
        try:
            first, second = await self._out.get()
        except BaseException:
            await self.aclose()
            raise
        if first is _END:
            self._exhausted = True
            await asyncio.wait([self._task])
            if second is not None:
                raise second
            raise StopAsyncIteration
        return first, second

    async def aclose(self) -> None:
        """Stop the run (if it is still going) and wait until its tasks are gone."""
        self._exhausted = True
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        cancelled = False
        while not task.done():  # as a TaskGroup does: a repeated cancel waits on
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    async def __aenter__(self) -> RunIterator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()


async def _drive(run: Run, out: NodeQueue) -> None:
    """The iterator's background task. It holds no reference to the iterator, so
    dropping the iterator (``break``) lets ``__del__`` cancel the run at once."""
    try:
        await run.execute()
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        out.force_put((_END, exc))
        return
    out.force_put((_END, None))
