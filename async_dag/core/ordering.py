"""Input order for function pipelines with ``ordered=True``, within a bounded window.

Workers finish inputs in any order; an input's outputs wait in a small buffer until
every earlier input is done. The feeder admits input ``i`` only while
``i - head < window``, so at most ``window`` inputs are pulled and unfinished however
slow the oldest one is. When outputs are simply collected, the worker that finishes
the head hands on everything that became ready, synchronously (no lock needed: nothing
awaits in between). Otherwise (a result_handler, an iterator) one emitter task does it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .context import PipelineContext
from .handlers import HandlerKind
from .node import NodeRuntime, Out, worker_exit

if TYPE_CHECKING:
    from .run import Run

Emit = Callable[[PipelineContext, Any], None]


class Reorder:
    """Buffers outputs per input index and releases them in index order."""

    def __init__(self, run: Run, node: NodeRuntime, collect: Emit | None, out: Out) -> None:
        self.run = run
        self.node = node
        self.window = 2 * node.concurrency
        self.head = 0
        self.buffers: dict[int, list[tuple[PipelineContext, Any]]] = {}
        self.done: set[int] = set()
        self._collect = collect  # sync hand-off, when outputs are only collected
        self._out = out  # async hand-off otherwise, from the emitter task
        self._wake = asyncio.Event()
        self._space = asyncio.Event()

    @property
    def needs_emitter(self) -> bool:
        """Whether ``emit_in_order`` must run as a task (async hand-off)."""
        return self._collect is None

    async def admit(self, index: int) -> None:
        """Wait until input ``index`` fits in the window."""
        while index - self.head >= self.window:
            self._space.clear()
            await self._space.wait()

    def add(self, index: int, ctx: PipelineContext, value: Any) -> None:
        """An output of input ``index``."""
        if self._collect is not None and index == self.head:
            self._collect(ctx, value)
            return
        buffer = self.buffers.get(index)
        if buffer is None:
            buffer = self.buffers[index] = []
        buffer.append((ctx, value))
        if index == self.head:
            self._wake.set()

    def finished(self, index: int) -> None:
        """Input ``index`` has no more outputs to come."""
        self.done.add(index)
        if index != self.head:
            return
        if self._collect is None:
            self._wake.set()
            return
        collect = self._collect
        while True:  # hand on every input that became ready, in order
            for ctx, value in self.buffers.pop(self.head, ()):
                collect(ctx, value)
            if self.head not in self.done:
                return
            self._advance()

    def _advance(self) -> None:
        self.done.discard(self.head)
        self.head += 1
        self._space.set()
        self.run.finish_one()

    async def emit_in_order(self) -> None:
        """The emitter task (async hand-off): pass on the head's outputs, then advance."""
        out = self._out
        while True:
            buffer = self.buffers.get(self.head)
            while buffer:
                ctx, value = buffer.pop(0)
                await out(ctx, value)
            if self.head in self.done:
                self.buffers.pop(self.head, None)
                self._advance()
                continue
            self._wake.clear()
            await self._wake.wait()

    async def work(self) -> None:
        """One worker of the pipeline's node: handle inputs, report outputs by index."""
        node, run = self.node, self.run
        queue = node.queue
        items = queue.items
        handler = node.handler
        fast = node.kind is HandlerKind.ASYNC and not node.retries and node.timeout is None
        try:
            while True:
                if items:
                    ctx, payload, index = items.popleft()
                    if queue.putters:
                        queue.wake_putter()
                else:
                    ctx, payload, index = await queue.get()
                node.received += 1
                node.in_flight += 1
                if fast:
                    try:
                        value = await handler(ctx, payload)
                    except Exception as exc:
                        run.fail(node, ctx, exc)
                    else:
                        node.emitted += 1
                        self.add(index, ctx, value)
                else:

                    async def out(ctx: PipelineContext, value: Any, index: int = index) -> None:
                        self.add(index, ctx, value)

                    await node.process(ctx, payload, out)
                node.in_flight -= 1
                self.finished(index)
        except BaseException as exc:
            if worker_exit(run, node, exc):
                raise
