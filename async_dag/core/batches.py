"""Batch tasks: payloads gathered into lists, handled ``batch_size`` at a time.

A batch task's worker puts a payload into the open batch together with the payloads
queued behind it that fit (``BatchQueue.take_many``: list operations, no step per
payload), unless a flush marker is among them; the worker that fills it handles it.
Plain inputs reach a batch source as spans, a chunk of inputs in one queue entry whose
contexts are built only if the handler reads ``ctx.batch`` (or outputs or failures need
them): a sink costs the engine a few list operations per payload.
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

from .context import BatchContext, InputSpan, LazyContexts, PipelineContext
from .queue import BatchQueue

if TYPE_CHECKING:
    from .node import NodeRuntime
    from .run import Run

FLUSH: Any = object()  # the marker item's context: (FLUSH, generation or None)


class Batcher:
    """The open batch of one batch task in one run.

    The open batch is a list of queue entries: ``(ctx, payload)`` items and spans
    ``(InputSpan, payloads)``, with ``count`` payloads in all; a batch with spans has its
    contexts built only when something needs them (``ctx.batch``, outputs, failures)."""

    def __init__(self, node: NodeRuntime, run: Run) -> None:
        assert node.task.batch_size is not None
        assert isinstance(node.queue, BatchQueue)
        self.node = node
        self.run = run
        self.size = node.task.batch_size
        self.timeout = node.task.batch_timeout
        self.queue: BatchQueue = node.queue
        self.open: list[tuple[Any, Any]] = []
        self.count = 0  # payloads in the open batch
        self.spanned = False  # whether spans may be among its entries
        self.markers = 0  # flush markers queued and not yet handled
        self.generation = 0
        self.flush_queued = False
        self._timer: asyncio.TimerHandle | None = None

    async def invoke(self, ctx: Any, payload: Any) -> None:
        """The batch task's worker step: a payload (or a span of them) joins the batch,
        with every payload queued behind it that fits (taken at once), or a marker
        flushes it."""
        run = self.run
        if ctx is FLUSH:
            self.flush_queued = False
            self.markers -= 1
            if (payload is None or payload == self.generation) and self.open:
                await self.handle(*self.take())
            run.end_marker()
            return
        before = count = self.count
        if type(ctx) is InputSpan:
            fits = self.size - before
            if ctx.count > fits:  # the rest goes back to the head of the queue
                ctx, rest = ctx.split(fits)
                self.queue.put_back(rest, payload[fits:])
                payload = payload[:fits]
            count += ctx.count
            self.spanned = True
        else:
            count += 1
        self.open.append((ctx, payload))
        if not self.markers and count < self.size:  # no marker among the queued items
            if self.queue.spans:
                self.spanned = True
            taken, weight = self.queue.take_many(self.size - count)
            self.open.extend(taken)
            count += weight
        self.count = count
        joined = count - before
        self.node.received += joined
        run.parked += joined
        if not before and self.timeout is not None:
            self._timer = asyncio.get_running_loop().call_later(
                self.timeout, self._expire, self.generation
            )
        if count >= self.size:
            await self.handle(*self.take())
        elif run.active == run.parked:
            run.idle()

    def take(self) -> tuple[list[tuple[Any, Any]], int, bool]:
        """Close the open batch: its entries, payload count and whether spans may be
        among the entries."""
        batch, count, spanned = self.open, self.count, self.spanned
        self.open, self.count, self.spanned = [], 0, False
        self.generation += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.run.parked -= count
        return batch, count, spanned

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

    async def handle(self, batch: list[tuple[Any, Any]], count: int, spanned: bool) -> None:
        """One call of the handler on ``batch``; route results, fail or filter payloads."""
        node, run = self.node, self.run
        node.in_flight += count
        node.batches += 1
        contexts: Sequence[PipelineContext] | None
        if not spanned:  # one entry per payload
            contexts, values = zip(*batch, strict=True)
            payloads = list(values)
            ctx = BatchContext(contexts[0], contexts)
        else:  # spans among them: their contexts are made when needed
            payloads = []
            for part, value in batch:
                if type(part) is InputSpan:
                    payloads.extend(value)
                else:
                    payloads.append(value)
            first = batch[0][0]
            lazy = LazyContexts([part for part, _ in batch])
            ctx = BatchContext(first.head() if type(first) is InputSpan else first, lazy)
            contexts = None
        ok, _, result = await node.call(ctx, payloads)
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
            if contexts is None:
                contexts = lazy.contexts()
            run.fail_batch(node, list(zip(contexts, payloads, strict=True)), result)
        elif result is None:
            node.filtered += count
        else:
            if contexts is None:
                contexts = lazy.contexts()
            emit = node.emit
            for item_ctx, value in zip(contexts, result, strict=True):
                node.emitted += 1
                pending = emit(item_ctx, value)
                if pending is not None:
                    await pending
        node.in_flight -= count
        if run.tracker is not None:
            if contexts is None:
                contexts = lazy.contexts()
            for item_ctx in contexts:
                run.finish(item_ctx, node)
        else:  # the batch's payloads end together: one check of the count, not one each
            run.active -= count
            if run.active == run.parked:
                run.idle()

    def close(self) -> None:
        """The run is over: drop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
