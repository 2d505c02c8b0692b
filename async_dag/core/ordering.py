"""Input order for function pipelines with ``ordered=True``, within a bounded window.

Workers take inputs from the one queue in the order they entered and finish them in any
order. ``order`` holds the contexts of the inputs entered and not yet released, oldest
first (the feeder appends them as they enter); a finished input's outputs wait in
``finished``, keyed by its context's identity, until every older input is done. Then
they go to the run's destination and the input's share of the run's work ends. The
feeder lets inputs in only while fewer than ``window`` (``2 x concurrency``) are
entered and unreleased, so that many at most are pulled and unfinished however slow the
oldest one is.

A plain ``async def`` (or inline ``def``) with no retries, timeout or rate limit stays
on the worker loop's direct path: the node's ``relay`` is :meth:`Reorder.file` (its
output takes over the payload's place in the count until it is released) and a failure
goes to :meth:`Reorder.gap`. Any other handler runs through :meth:`Reorder.invoke`,
which collects its outputs in a list.

The worker that finishes the oldest input releases the run of finished inputs behind it
and then makes room at once: while the feeder waits on a plain iterator, that worker
takes the feeder's step itself (``refill``: the next inputs enter in the same loop
turn, and idle workers are woken for them straight away); otherwise it wakes the feeder.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from .context import PipelineContext
from .node import Emit, NodeRuntime

if TYPE_CHECKING:
    from .run import Run

_FAILED: Any = object()  # a direct input's outputs when its handler failed (it has ended)
_SENT: Any = object()  # the oldest input's outputs, already passed on (after a wait)
_UNFINISHED: Any = object()  # what ``finished`` gives for an input still being handled
_NOTHING: Iterator[Any] = iter(())


class Reorder:
    """Holds finished inputs' outputs back and releases them in input order."""

    def __init__(self, run: Run, node: NodeRuntime, deliver: Emit) -> None:
        self.run = run
        self.node = node
        self.deliver = deliver
        self.window = 2 * node.concurrency
        self.order: deque[PipelineContext] = deque()  # entered, unreleased; oldest first
        # id(ctx) of a finished, unreleased input -> its outputs: one value (or _FAILED)
        # on the direct path, else a list of (ctx, value)
        self.finished: dict[int, Any] = {}
        # the feeder's step while it waits for room, and how many inputs it may still
        # enter before the budget is renewed (see lend)
        self.refill: Callable[[int], int] | None = None
        self.budget = 0
        self._renewing = False  # a fresh budget is due at the loop's next turn
        self._feeder: asyncio.Future[None] | None = None  # the feeder, waiting for room
        # decided once: a direct handler stays on the worker's direct path
        self.single = node.direct
        if node.direct:
            node.relay = self.file
            node.on_failure = self.gap
            node.hop = None
        else:
            node.invoke = self.invoke

    def room(self) -> int:
        """How many more inputs may enter now."""
        return self.window - len(self.order)

    async def admit(self) -> None:
        """The feeder's wait until one more input fits in the window."""
        while len(self.order) >= self.window:
            await self._wait()

    async def lend(self, refill: Callable[[int], int]) -> None:
        """The feeder's wait while releases take its step: after each release
        ``refill(most)`` enters up to ``most`` of the inputs that now fit. Releases
        spend a budget of two windows of inputs, renewed at the loop's next turn once
        under one window, so a worker whose handler never waits still lets the loop
        run (the rest enter at that turn). Returns once ``refill`` returns -1: the
        input has ended, or raised."""
        self.refill = refill
        self.budget = 2 * self.window
        try:
            await self._wait()
        finally:
            self.refill = None

    async def _wait(self) -> None:
        self._feeder = asyncio.get_running_loop().create_future()
        try:
            await self._feeder
        finally:
            self._feeder = None

    def gap(self, ctx: PipelineContext) -> Awaitable[None] | None:
        """A direct handler failed on ``ctx``'s input: nothing to pass on, and its worker
        ends the input's count itself."""
        return self.file(ctx, _FAILED)

    def file(self, ctx: PipelineContext, outputs: Any) -> Awaitable[None] | None:
        """``ctx``'s input has finished with ``outputs``: release it (and the finished
        inputs behind it) if it is the oldest, else keep it. An awaitable when the
        destination makes the release wait."""
        if ctx is not self.order[0]:
            self.finished[id(ctx)] = outputs
            return None
        stalled = self._pass_on(outputs)
        return None if stalled is None else self._pass_on_later(*stalled)

    async def invoke(self, ctx: PipelineContext, payload: Any) -> None:
        """The worker step for any other handler: its outputs into a list, then file."""
        node = self.node
        outputs: list[tuple[PipelineContext, Any]] = []
        node.received += 1
        node.in_flight += 1

        def keep(ctx: PipelineContext, value: Any) -> None:
            outputs.append((ctx, value))

        await node.handle(ctx, payload, keep)
        node.in_flight -= 1
        pending = self.file(ctx, outputs)
        if pending is not None:
            await pending

    def _pass_on(self, outputs: Any) -> tuple[Awaitable[None], Iterator[Any]] | None:
        """Pass on the oldest input's ``outputs``, end it, and go on with the finished
        inputs behind it; then make room. Stops at a delivery that has to wait: returns
        that wait and the input's outputs still to send."""
        order, finished, deliver, run = self.order, self.finished, self.deliver, self.run
        single, counted = self.single, run.tracker is None
        stalled: tuple[Awaitable[None], Iterator[Any]] | None = None
        ends = 0  # released inputs whose share of the run's work is still to end
        while True:
            ctx = order[0]
            if outputs is not _FAILED:
                if outputs is not _SENT:
                    if single:
                        pending = deliver(ctx, outputs)
                        if pending is not None:
                            stalled = pending, _NOTHING
                            break
                    else:
                        values = iter(outputs)
                        for out_ctx, value in values:
                            pending = deliver(out_ctx, value)
                            if pending is not None:
                                stalled = pending, values
                                break
                        if stalled is not None:
                            break
                if counted:
                    ends += 1
                else:
                    run.finish(ctx, self.node)
            order.popleft()
            if not order:
                break
            outputs = finished.pop(id(order[0]), _UNFINISHED)
            if outputs is _UNFINISHED:
                break
        if ends:
            run.active -= ends
            if run.active == run.parked:
                run.idle()
        if stalled is None:
            self._make_room()
        return stalled

    def _make_room(self) -> None:
        """After a release: enter the inputs that now fit (or wake the feeder)."""
        refill = self.refill
        if refill is not None:
            budget = self.budget
            most = self.window - len(self.order)  # (no min(): a call costs more here)
            if budget < most:
                most = budget
            if most <= 0:
                return  # no room, or the rest enter at the next turn (``_renew``)
            entered = refill(most)
            if entered >= 0:
                budget -= entered
                self.budget = budget
                if budget < self.window and not self._renewing:
                    self._renewing = True
                    asyncio.get_running_loop().call_soon(self._renew)
                return
        feeder = self._feeder
        if feeder is not None and not feeder.done():
            feeder.set_result(None)

    def _renew(self) -> None:
        """The loop's next turn: a fresh budget, and the inputs that fit enter."""
        self._renewing = False
        spent = self.budget <= 0
        self.budget = 2 * self.window
        if spent:
            self._make_room()

    async def _pass_on_later(self, pending: Awaitable[None], values: Iterator[Any]) -> None:
        """A release that has to wait for the destination: wait, then go on."""
        while True:
            await pending
            for out_ctx, value in values:
                more = self.deliver(out_ctx, value)
                if more is not None:
                    await more
            stalled = self._pass_on(_SENT)
            if stalled is None:
                return
            pending, values = stalled
