"""Batch tasks: payloads gathered into lists, handled ``batch_size`` at a time.

A batch task's worker puts a payload into the open batch together with the payloads
queued behind it that fit (``NodeQueue.take_many``: list operations, no step per
payload), unless a flush marker is among them; the worker that fills it handles it.
A batch that is not full is handled when ``batch_timeout`` seconds have passed since
its first payload, or at once when the input is exhausted and every payload still alive
is waiting in a batch or a join (the run asks through ``flush_soon``): both send a
flush marker through the task's own queue, so a batch is always handled by one of the
task's workers, within its concurrency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .context import BatchContext, PipelineContext

if TYPE_CHECKING:
    from .node import NodeRuntime
    from .run import Run

FLUSH: Any = object()  # the marker item's context: (FLUSH, generation or None)


class Batcher:
    """The open batch of one batch task in one run."""

    def __init__(self, node: NodeRuntime, run: Run) -> None:
        assert node.task.batch_size is not None
        self.node = node
        self.run = run
        self.size = node.task.batch_size
        self.timeout = node.task.batch_timeout
        self.queue = node.queue
        self.open: list[tuple[PipelineContext, Any]] = []
        self.markers = 0  # flush markers queued and not yet handled
        self.generation = 0
        self.flush_queued = False
        self._timer: asyncio.TimerHandle | None = None

    async def invoke(self, ctx: Any, payload: Any) -> None:
        """The batch task's worker step: a payload joins the batch, with every payload
        queued behind it that fits (taken at once), or a marker flushes it."""
        run = self.run
        if ctx is FLUSH:
            self.flush_queued = False
            self.markers -= 1
            if (payload is None or payload == self.generation) and self.open:
                await self.handle(self.take())
            run.end_marker()
            return
        batch = self.open
        before = len(batch)
        batch.append((ctx, payload))
        if not self.markers:  # no marker among the queued items: take them as they are
            batch.extend(self.queue.take_many(self.size - len(batch)))
        joined = len(batch) - before
        self.node.received += joined
        run.parked += joined
        if not before and self.timeout is not None:
            self._timer = asyncio.get_running_loop().call_later(
                self.timeout, self._expire, self.generation
            )
        if len(batch) >= self.size:
            await self.handle(self.take())
        elif run.active == run.parked:
            run.idle()

    def take(self) -> list[tuple[PipelineContext, Any]]:
        """Close the open batch and return it."""
        batch, self.open = self.open, []
        self.generation += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.run.parked -= len(batch)
        return batch

    def flush_soon(self) -> None:
        """Have a worker handle the open batch now (nothing else can join it)."""
        if self.open and not self.flush_queued:
            self.flush_queued = True
            self.markers += 1
            self.run.send_marker(self.node, (FLUSH, None))

    def _expire(self, generation: int) -> None:
        self._timer = None
        if generation == self.generation and self.open and not self.run.closing:
            self.markers += 1
            self.run.send_marker(self.node, (FLUSH, generation))

    async def handle(self, batch: list[tuple[PipelineContext, Any]]) -> None:
        """One call of the handler on ``batch``; route results, fail or filter payloads."""
        node, run = self.node, self.run
        count = len(batch)
        node.in_flight += count
        node.batches += 1
        contexts, values = zip(*batch, strict=True)
        payloads = list(values)
        ok, _, result = await node.call(BatchContext(contexts[0], contexts), payloads)
        if ok and result is not None:
            if isinstance(result, str | bytes) or not isinstance(result, Sequence):
                ok, result = (
                    False,
                    TypeError(
                        f"batch task {node.id!r} must return None or a sequence of one result "
                        f"per payload, got {type(result).__name__}"
                    ),
                )
            elif len(result) != count:
                ok, result = (
                    False,
                    ValueError(
                        f"batch task {node.id!r} returned {len(result)} results for a batch of "
                        f"{count} payloads (it must return None or one result per payload)"
                    ),
                )
        if not ok:
            run.fail_batch(node, batch, result)
        elif result is None:
            node.filtered += count
        else:
            emit = node.emit
            for (ctx, _), value in zip(batch, result, strict=True):
                node.emitted += 1
                pending = emit(ctx, value)
                if pending is not None:
                    await pending
        node.in_flight -= count
        if run.tracker is not None:
            for ctx in contexts:
                run.finish(ctx, node)
        else:  # the batch's payloads end together: one check of the count, not one each
            run.active -= count
            if run.active == run.parked:
                run.idle()

    def close(self) -> None:
        """The run is over: drop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
