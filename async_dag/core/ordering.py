"""Input order for function pipelines with ``ordered=True``, within a bounded window.

Workers take inputs from the one queue in input order, so the order in which they take
them numbers them; they finish in any order. A finished input's outputs wait in
``finished``, keyed by its number, until every earlier input is done; then they go to
the run's destination and the input's share of the run's work ends. The feeder lets
input ``i`` in only while ``i - head < window`` (``2 x concurrency``), so at most
``window`` inputs are pulled and unfinished however slow the oldest one is. The worker
that finishes the oldest input releases the run of consecutive finished inputs behind
it and then wakes the feeder (once per run, not per input); the others just file their
outputs. A plain ``async def`` (or inline ``def``) with no retries, timeout or rate
limit is called right here (no ``handle``/``call`` frames between the worker and the
handler, which every loop turn inside the handler resumes through).
"""

from __future__ import annotations

import asyncio
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from .context import PipelineContext
from .node import Emit, NodeRuntime

if TYPE_CHECKING:
    from .run import Run

_FAILED: Any = object()  # a direct input's output when its handler failed (nothing to send)


class Reorder:
    """Buffers outputs per input and releases them in input order."""

    def __init__(self, run: Run, node: NodeRuntime, deliver: Emit) -> None:
        self.run = run
        self.node = node
        self.deliver = deliver
        self.window = 2 * node.concurrency
        self.head = 0  # the oldest input not yet released
        self.taken = 0  # inputs taken by workers so far
        # finished, unreleased inputs: number -> (input context, its outputs); the outputs
        # are one value (or _FAILED) on the direct path, else a list of (ctx, value)
        self.finished: dict[int, tuple[PipelineContext, Any]] = {}
        self.releasing = False
        self._feeder: asyncio.Future[None] | None = None  # the feeder, waiting for room
        # decided once: one value per input, the handler called here
        self.single = node.direct
        self.invoke = self.invoke_direct if node.direct else self.invoke_general

    def room(self, entered: int) -> int:
        """How many more inputs may enter when ``entered`` have."""
        return self.window - (entered - self.head)

    async def admit(self, entered: int) -> None:
        """The feeder's wait until input number ``entered`` fits in the window."""
        while entered - self.head >= self.window:
            self._feeder = asyncio.get_running_loop().create_future()
            try:
                await self._feeder
            finally:
                self._feeder = None

    async def invoke_direct(self, ctx: PipelineContext, payload: Any) -> None:
        """The worker step for a handler called directly: one output or one failure."""
        node = self.node
        index = self.taken
        self.taken = index + 1
        node.received += 1
        node.in_flight += 1
        try:
            value = node.handler(ctx, payload)
            if node.awaits:
                value = await value
            elif type(value) is CoroutineType:
                raise node.returned_coroutine(value)
        except Exception as exc:
            value = _FAILED
            self.run.fail(node, ctx, exc, payload)
        else:
            node.emitted += 1
        node.in_flight -= 1
        self.finished[index] = (ctx, value)
        if index == self.head and not self.releasing:
            await self.release()

    async def invoke_general(self, ctx: PipelineContext, payload: Any) -> None:
        """The worker step: handle one input into its own buffer, then release."""
        node = self.node
        index = self.taken
        self.taken = index + 1
        buffer: list[tuple[PipelineContext, Any]] = []
        node.received += 1
        node.in_flight += 1

        def keep(ctx: PipelineContext, value: Any) -> None:
            buffer.append((ctx, value))

        await node.handle(ctx, payload, keep)
        node.in_flight -= 1
        self.finished[index] = (ctx, buffer)
        if index == self.head and not self.releasing:
            await self.release()

    async def release(self) -> None:
        """Pass on the run of finished inputs from the oldest on, then wake the feeder."""
        self.releasing = True
        run, node, deliver, finished = self.run, self.node, self.deliver, self.finished
        single, plain_count = self.single, run.tracker is None
        head = self.head
        try:
            while True:
                entry = finished.pop(head, None)
                if entry is None:
                    break
                ctx, out = entry
                if single:
                    if out is not _FAILED:
                        pending = deliver(ctx, out)
                        if pending is not None:
                            await pending
                else:
                    for out_ctx, value in out:
                        pending = deliver(out_ctx, value)
                        if pending is not None:
                            await pending
                head += 1
                self.head = head
                if plain_count:
                    run.active -= 1
                    if run.active == run.parked:
                        run.idle()
                else:
                    run.finish(ctx, node)
        finally:
            self.releasing = False
            feeder = self._feeder
            if feeder is not None and not feeder.done():
                feeder.set_result(None)
