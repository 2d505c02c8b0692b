"""Input order for function pipelines with ``ordered=True``, within a bounded window.

Workers finish inputs in any order; each input's outputs wait in a small buffer until
every earlier input is done. One emitter task hands them on, so ordering needs no lock,
and the feeder admits input ``i`` only while ``i - head < window``: at most ``window``
inputs are pulled and unfinished, however slow the oldest one is.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from .context import PipelineContext
from .node import NodeRuntime, Out

if TYPE_CHECKING:
    from .run import Run


class Reorder:
    """Buffers outputs per input index and releases them in index order."""

    def __init__(self, run: Run, node: NodeRuntime) -> None:
        self.run = run
        self.window = 2 * node.concurrency
        self.head = 0
        self.buffers: dict[int, deque[tuple[PipelineContext, Any]]] = {}
        self.done: set[int] = set()
        self._out: Out | None = None
        self._wake = asyncio.Event()
        self._space = asyncio.Event()

    def bind(self, out: Out) -> None:
        """Where ordered outputs go (the sink's output function)."""
        self._out = out

    async def admit(self, index: int) -> None:
        """Wait until input ``index`` fits in the window."""
        while index - self.head >= self.window:
            self._space.clear()
            await self._space.wait()

    def output_for(self, index: int) -> Out:
        """The output function a worker uses for input ``index``."""

        async def out(ctx: PipelineContext, value: Any) -> None:
            buffer = self.buffers.get(index)
            if buffer is None:
                buffer = self.buffers[index] = deque()
            buffer.append((ctx, value))
            if index == self.head:
                self._wake.set()

        return out

    def finished(self, index: int) -> None:
        """Input ``index`` has no more outputs to come."""
        self.done.add(index)
        if index == self.head:
            self._wake.set()

    async def emit_in_order(self) -> None:
        """The emitter task: hand on the head's outputs, advance when it is done."""
        out = self._out
        assert out is not None
        while True:
            buffer = self.buffers.get(self.head)
            while buffer:
                ctx, value = buffer.popleft()
                await out(ctx, value)
            if self.head in self.done:
                self.done.discard(self.head)
                self.buffers.pop(self.head, None)
                self.head += 1
                self._space.set()
                self.run.finish_one()
                continue
            self._wake.clear()
            await self._wake.wait()
