"""One task's life inside one run: its queue, its counters, calling its handler, routing.

The hot path lives here. Per payload a worker does: take from the queue, call the
handler, and per output either hand it to the sink or push ``(ctx, value)`` to each
target whose predicate holds. Counters are plain ints on this object; observers read
them from the sampler, never from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from .context import PipelineContext
from .definition import DagTask, TaskTransition, describe_predicate
from .errors import LoopLimitExceeded
from .handlers import HandlerKind
from .queue import NodeQueue

if TYPE_CHECKING:
    from .run import Run

_new_ctx = tuple.__new__
FAILED: Any = object()  # returned by a call that failed for good (already recorded)
Out = Callable[[PipelineContext, Any], Awaitable[None]]


class Edge:
    """An edge resolved for one run: the target node, its predicate and loop bound."""

    __slots__ = ("label", "max_loops", "source", "target", "when", "when_name")

    def __init__(self, spec: TaskTransition, target: NodeRuntime) -> None:
        self.source = spec.source
        self.target = target
        self.when = spec.when
        self.max_loops = spec.max_loops
        self.label = spec.label
        self.when_name = describe_predicate(spec) or ""

    def times_taken(self, path: tuple[str, ...]) -> int:
        """How often a lineage with this path already took this edge."""
        src, dst = self.source, self.target.id
        return sum(1 for a, b in itertools.pairwise(path) if a == src and b == dst)


class NodeRuntime:
    """A task's per-run state: queue, counters, and how to call and route."""

    __slots__ = (
        "concurrency",
        "edges",
        "emitted",
        "failed",
        "filtered",
        "handler",
        "id",
        "in_flight",
        "inline",
        "kind",
        "queue",
        "received",
        "retried",
        "retries",
        "retry_delay",
        "route",
        "run",
        "timeout",
        "unrouted",
    )

    def __init__(self, task: DagTask, run: Run) -> None:
        self.id = task.id
        self.run = run
        self.handler = task.handler
        self.kind = task.kind
        self.inline = task.inline
        self.concurrency = task.concurrency
        self.retries = task.retries
        self.retry_delay = task.retry_delay
        self.timeout = task.timeout
        self.queue = NodeQueue(task.bound)
        self.edges: list[Edge] = []
        self.route: Out = self._route_general
        self.received = self.emitted = self.failed = self.retried = 0
        self.unrouted = self.filtered = self.in_flight = 0

    def connect(self, edges: list[Edge], is_sink: bool) -> None:
        """Set the outgoing edges and pick the cheapest routing that is still exact."""
        self.edges = edges
        if is_sink:
            self.route = self.run.sink_output(self)
        elif len(edges) == 1 and edges[0].when is None and edges[0].max_loops is None:
            self.route = self._route_single
        else:
            self.route = self._route_general

    # -- routing ---------------------------------------------------------------------

    async def _route_single(self, ctx: PipelineContext, value: Any) -> None:
        target = self.edges[0].target
        item = (_new_ctx(PipelineContext, (ctx[0], ctx[1], (*ctx[2], target.id), 0, ctx[4])), value)
        self.run.pending += 1
        queue = target.queue
        if len(queue.items) < queue.maxsize:
            queue.force_put(item)
        else:
            await queue.put(item)

    async def _route_general(self, ctx: PipelineContext, value: Any) -> None:
        chosen: list[Edge] = []
        for edge in self.edges:
            when = edge.when
            try:
                if when is not None and not when(ctx, value):
                    continue
            except Exception as exc:
                exc.add_note(f"raised by the predicate of edge {edge.label}")
                self.run.fail(self, ctx, exc)
                return
            if edge.max_loops is not None and edge.times_taken(ctx.path) >= edge.max_loops:
                exc2 = LoopLimitExceeded(edge.source, edge.target.id, edge.max_loops, ctx.data_id)
                self.run.fail(self, ctx, exc2)
                return
            chosen.append(edge)
        run = self.run
        if not chosen:
            self.unrouted += 1
            if run.debug:
                run.log_debug(ctx, "unrouted output of %s: no edge holds", self.id)
            return
        for edge in chosen:
            target = edge.target
            new = _new_ctx(PipelineContext, (ctx[0], ctx[1], (*ctx[2], target.id), 0, ctx[4]))
            run.pending += 1
            if edge.max_loops is not None:
                if run.debug:
                    run.log_debug(
                        new,
                        "loop back along %s (when=%s, max_loops=%d)",
                        edge.label,
                        edge.when_name,
                        edge.max_loops,
                    )
                target.queue.force_put((new, value))
                continue
            if run.debug and (edge.when is not None or len(chosen) > 1):
                if edge.when is None:
                    run.log_debug(new, "routed along %s", edge.label)
                else:
                    run.log_debug(new, "routed along %s (when=%s)", edge.label, edge.when_name)
            queue = target.queue
            if len(queue.items) < queue.maxsize:
                queue.force_put((new, value))
            else:
                await queue.put((new, value))

    # -- the worker loop -------------------------------------------------------------

    async def work(self) -> None:
        """One worker: take payloads from the queue until cancelled.

        The common case (an ``async def`` or inline ``def`` with no retries or timeout,
        whose output goes to one unconditional edge or straight out of a sink) is
        inlined here: at most one coroutine per payload, the handler's own. Anything
        else goes through ``process``. A bug or an unexpected BaseException stops the run with it.
        """
        run = self.run
        queue = self.queue
        items = queue.items
        handler = self.handler
        process = self.process
        route = self.route
        # the inlined case: one value per call, no retries or timeout, async or inline sync
        awaits = self.kind is HandlerKind.ASYNC
        fast = (
            (awaits or (self.kind is HandlerKind.SYNC and self.inline))
            and not self.retries
            and self.timeout is None
        )
        target: NodeQueue | None = None
        target_id = ""
        if route == self._route_single:
            target = self.edges[0].target.queue
            target_id = self.edges[0].target.id
        is_sink = not self.edges
        collecting = is_sink and run.collecting
        hand_over = run.result_handler if is_sink else None
        values, contexts = run.values, run.contexts
        try:
            while True:
                if items:
                    ctx, payload = items.popleft()
                    if queue.putters:
                        queue.wake_putter()
                else:
                    ctx, payload = await queue.get()
                self.received += 1
                self.in_flight += 1
                if fast:
                    try:
                        value = handler(ctx, payload)
                        if awaits:
                            value = await value
                    except Exception as exc:
                        run.fail(self, ctx, exc)
                    else:
                        self.emitted += 1
                        if target is not None:
                            # hand on: the payload's place in `pending` passes to its output
                            item = (
                                _new_ctx(
                                    PipelineContext,
                                    (ctx[0], ctx[1], (*ctx[2], target_id), 0, ctx[4]),
                                ),
                                value,
                            )
                            titems = target.items
                            if len(titems) < target.maxsize:
                                titems.append(item)
                                if len(titems) > target.max_depth:
                                    target.max_depth = len(titems)
                                if target.getters:
                                    target.wake_getter()
                            else:
                                await target.put(item)
                            self.in_flight -= 1
                            continue
                        if collecting:
                            run.outputs += 1
                            values.append(value)
                            contexts.append(ctx)
                        elif hand_over is not None:
                            run.outputs += 1
                            try:
                                result = hand_over(ctx, value)
                                if result is not None and asyncio.iscoroutine(result):
                                    await result
                            except Exception as exc:
                                run.fail_result_handler(self, ctx, exc)
                        else:
                            await route(ctx, value)
                else:
                    await process(ctx, payload, route)
                self.in_flight -= 1
                run.pending -= 1
                if not run.pending:
                    run.check_finished()
        except BaseException as exc:
            if worker_exit(run, self, exc):
                raise

    # -- calling the handler ---------------------------------------------------------

    def _call(self, ctx: PipelineContext, payload: Any) -> Any:
        """Start one call of a one-value handler; an awaitable unless inline sync."""
        kind = self.kind
        if kind is HandlerKind.ASYNC:
            return self.handler(ctx, payload)
        if self.inline:
            return self.handler(ctx, payload)
        return asyncio.get_running_loop().run_in_executor(
            self.run.executor(), self.handler, ctx, payload
        )

    async def call_once(self, ctx: PipelineContext, payload: Any) -> Any:
        """Call a one-value handler with this task's retries and timeout.

        Returns ``(ctx, value)`` with the context of the attempt that succeeded, or
        FAILED after recording the failure with the run.
        """
        attempt = 0
        is_awaitable = self.kind is HandlerKind.ASYNC or not self.inline
        while True:
            try:
                if self.timeout is None:
                    result = self._call(ctx, payload)
                    return ctx, (await result) if is_awaitable else result
                async with asyncio.timeout(self.timeout):
                    result = self._call(ctx, payload)
                    return ctx, (await result) if is_awaitable else result
            except Exception as exc:
                if attempt >= self.retries:
                    self.run.fail(self, ctx, exc)
                    return FAILED
            attempt += 1
            self.retried += 1
            if self.retry_delay:
                await asyncio.sleep(self.retry_delay)
            ctx = ctx._replace(attempt=attempt)

    async def call_generator(self, ctx: PipelineContext, payload: Any, out: Out) -> None:
        """Drive a generator handler, sending each output to ``out`` as it comes.

        A failure before the first output is retried; one after it is final.
        """
        attempt = 0
        while True:
            produced = 0
            try:
                if self.kind is HandlerKind.ASYNC_GEN:
                    produced = await self._drive_async_gen(ctx, payload, out)
                else:
                    produced = await self._drive_sync_gen(ctx, payload, out)
            except _AfterOutput as wrapped:
                self.run.fail(self, ctx, wrapped.error)
                return
            except Exception as exc:
                if attempt >= self.retries:
                    self.run.fail(self, ctx, exc)
                    return
            else:
                if produced == 0:
                    self.filtered += 1
                return
            attempt += 1
            self.retried += 1
            if self.retry_delay:
                await asyncio.sleep(self.retry_delay)
            ctx = ctx._replace(attempt=attempt)

    async def _drive_async_gen(self, ctx: PipelineContext, payload: Any, out: Out) -> int:
        agen = self.handler(ctx, payload)
        produced = 0
        timeout = self.timeout
        try:
            while True:
                try:
                    if timeout is None:
                        value = await agen.__anext__()
                    else:
                        async with asyncio.timeout(timeout):
                            value = await agen.__anext__()
                except StopAsyncIteration:
                    return produced
                except Exception as exc:
                    if produced:
                        raise _AfterOutput(exc) from None
                    raise
                produced += 1
                self.emitted += 1
                await out(ctx, value)
        finally:
            await agen.aclose()

    async def _drive_sync_gen(self, ctx: PipelineContext, payload: Any, out: Out) -> int:
        end = object()
        gen = self.handler(ctx, payload)  # creating a generator runs none of its code
        produced = 0
        try:
            while True:
                try:
                    if self.inline:
                        value = next(gen, end)
                    else:
                        step = asyncio.get_running_loop().run_in_executor(
                            self.run.executor(), next, gen, end
                        )
                        if self.timeout is None:
                            value = await step
                        else:
                            async with asyncio.timeout(self.timeout):
                                value = await step
                except Exception as exc:
                    if produced:
                        raise _AfterOutput(exc) from None
                    raise
                if value is end:
                    return produced
                produced += 1
                self.emitted += 1
                await out(ctx, value)
        finally:
            with contextlib.suppress(ValueError):  # a timed-out next() still runs
                gen.close()

    async def process(self, ctx: PipelineContext, payload: Any, out: Out) -> None:
        """Handle one payload completely: call, retry, and send the outputs to ``out``."""
        if self.kind is HandlerKind.ASYNC_GEN or self.kind is HandlerKind.SYNC_GEN:
            await self.call_generator(ctx, payload, out)
            return
        result = await self.call_once(ctx, payload)
        if result is not FAILED:
            self.emitted += 1
            await out(*result)


def worker_exit(run: Run, node: NodeRuntime, exc: BaseException) -> bool:
    """Decide how a worker ends: True to re-raise (the run cancelled it), else the
    exception (a bug, KeyboardInterrupt, a stray CancelledError) stops the run."""
    node.in_flight = 0
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            return True
        exc = RuntimeError(f"a handler of {node.id!r} raised CancelledError")
    run.abort(exc)
    return False


class _AfterOutput(Exception):
    """A generator failed after it had yielded: not retried."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def make_executor(workers: int) -> Executor:
    """A thread pool for the sync handlers of one run."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="async_dag")
