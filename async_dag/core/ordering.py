"""Input order for function pipelines with ``ordered=True``, within a bounded window.

Workers take inputs from the one queue in input order, so the order in which they take
them numbers them; they finish in any order. An input's outputs wait in its own buffer
until every earlier input is done; then they go to the run's destination and the
input's share of the run's work ends. The feeder lets input ``i`` in only while
``i - head < window`` (``2 x concurrency``), so at most ``window`` inputs are pulled
and unfinished however slow the oldest one is. One worker at a time releases what
became ready, in order, and wakes the feeder when it waits for the window; the others
just mark their input done. A plain ``async def`` with no retries, timeout or rate
limit is awaited right here (no ``handle``/``call`` frames between the worker and the
handler, one fewer coroutine per input).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .context import PipelineContext
from .node import Emit, NodeRuntime

if TYPE_CHECKING:
    from .run import Run


class Reorder:
    """Buffers outputs per input and releases them in input order."""

    def __init__(self, run: Run, node: NodeRuntime, deliver: Emit) -> None:
        self.run = run
        self.node = node
        self.deliver = deliver
        self.window = 2 * node.concurrency
        self.head = 0  # the oldest input not yet released
        self.taken = 0  # inputs taken by workers so far
        self.entries: dict[int, tuple[PipelineContext, list[tuple[PipelineContext, Any]]]] = {}
        self.done: set[int] = set()
        self.releasing = False
        self._feeder: asyncio.Future[None] | None = None  # the feeder, waiting for room
        self.invoke = self.invoke_general

    async def admit(self, entered: int) -> None:
        """The feeder's wait until input number ``entered`` fits in the window."""
        while entered - self.head >= self.window:
            self._feeder = asyncio.get_running_loop().create_future()
            try:
                await self._feeder
            finally:
                self._feeder = None

    async def invoke_general(self, ctx: PipelineContext, payload: Any) -> None:
        """The node's worker step: handle one input into its own buffer, then release."""
        node = self.node
        index = self.taken
        self.taken += 1
        buffer: list[tuple[PipelineContext, Any]] = []
        self.entries[index] = (ctx, buffer)
        node.received += 1
        node.in_flight += 1

        def keep(ctx: PipelineContext, value: Any) -> None:
            buffer.append((ctx, value))

        await node.handle(ctx, payload, keep)
        node.in_flight -= 1
        self.done.add(index)
        if index == self.head and not self.releasing:
            await self.release()

    async def release(self) -> None:
        """Pass on every input that is ready, oldest first."""
        self.releasing = True
        run, node, deliver = self.run, self.node, self.deliver
        done, entries = self.done, self.entries
        try:
            while self.head in done:
                head = self.head
                ctx, buffer = entries.pop(head)
                for out_ctx, value in buffer:
                    pending = deliver(out_ctx, value)
                    if pending is not None:
                        await pending
                done.discard(head)
                self.head = head + 1
                feeder = self._feeder
                if feeder is not None and not feeder.done():
                    feeder.set_result(None)
                run.finish(ctx, node)
        finally:
            self.releasing = False
