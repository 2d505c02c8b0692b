"""One run of a pipeline: queues, workers, the in-flight count, errors and the end.

A run is a fresh object used once. ``pending`` counts payloads that are queued or being
handled anywhere; the feeder adds one per source per input, routing adds one per output
sent on, a worker removes one when it has finished a payload. The run is over when the
input is exhausted and ``pending`` is zero, which holds with loops too, where
end-of-stream markers would not.

Deadlock freedom: a worker only ever waits on a full queue along a forward edge, and the
forward edges form an acyclic graph (the definition checks it), so some waiting put can
always proceed. Loop-backs never wait (``force_put``); they replace the payload they
came from, so memory stays bounded by the queue sizes and the generators' fan-out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from ..observe.monitor import notify
from .context import PipelineContext
from .errors import ItemError
from .handlers import HandlerKind
from .node import Edge, NodeRuntime, Out, make_executor
from .options import RunOptions
from .ordering import Reorder
from .queue import NodeQueue
from .results import NodeStats, RunResult, RunStats

if TYPE_CHECKING:
    from ..observe.monitor import Monitor
    from .definition import DagPipeline

log = logging.getLogger("async_dag")
_new_ctx = tuple.__new__


class Run:
    """Executes one pipeline over one input stream; see the module docstring."""

    def __init__(
        self, pipeline: DagPipeline, options: RunOptions, stream: NodeQueue | None = None
    ) -> None:
        self.pipeline = pipeline
        self.options = options
        self.run_id = options.run_id
        self.collect_errors = options.collect_errors
        self.debug = False
        self.pending = 0
        self.inputs = 0
        self.outputs = 0
        self.values: list[Any] = []
        self.contexts: list[PipelineContext] = []
        self.errors: list[ItemError] = []
        self.failure: BaseException | None = None
        self._feeding = True
        self._done: asyncio.Future[None] | None = None
        self._executor: Executor | None = None
        self._started = 0.0
        self._ended: float | None = None
        # where sink outputs go: a stream's queue, else the result_handler, else kept
        self.stream = stream
        self.result_handler = options.result_handler if stream is None else None
        self.collecting = stream is None and self.result_handler is None
        self._reorder: Reorder | None = None
        self.nodes: dict[str, NodeRuntime] = {
            tid: NodeRuntime(task, self) for tid, task in pipeline.tasks.items()
        }
        sinks = set(pipeline.sinks)
        for tid, node in self.nodes.items():
            edges = [Edge(e, self.nodes[e.target]) for e in pipeline.outgoing(tid)]
            node.connect(edges, tid in sinks)
        self.sources = [self.nodes[s] for s in pipeline.sources]

    # -- sink outputs ----------------------------------------------------------------

    def collect_now(self, ctx: PipelineContext, value: Any) -> None:
        """Keep a sink output for the RunResult."""
        self.outputs += 1
        self.values.append(value)
        self.contexts.append(ctx)

    def sink_output(self, node: NodeRuntime) -> Out:
        """The routing function of a sink: send to the stream, hand over, or keep."""
        stream, handler = self.stream, self.result_handler

        async def deliver(ctx: PipelineContext, value: Any) -> None:
            if stream is not None:
                self.outputs += 1
                await stream.put((ctx, value))
            elif handler is not None:
                self.outputs += 1
                try:
                    result = handler(ctx, value)
                    if asyncio.iscoroutine(result):
                        await result
                except Exception as exc:
                    self.fail_result_handler(node, ctx, exc)
            else:
                self.collect_now(ctx, value)

        return deliver

    # -- failures ----------------------------------------------------------------------

    def fail(self, node: NodeRuntime, ctx: PipelineContext, exc: BaseException) -> None:
        """A payload failed for good at ``node``: record it, or stop the run with it."""
        node.failed += 1
        if self.collect_errors:
            self.errors.append(ItemError(ctx, node.id, exc))
            if self.debug:
                self.log_debug(ctx, "collected %s: %s", type(exc).__name__, exc)
            return
        if self.failure is None:
            exc.add_note(
                f"async_dag: in node {node.id!r}, data_id {ctx.data_id!r}, run_id {self.run_id!r}"
            )
            self.abort(exc)

    def fail_result_handler(self, node: NodeRuntime, ctx: PipelineContext, exc: Exception) -> None:
        """The result_handler raised for an output of ``node``."""
        exc.add_note(f"raised by result_handler for an output of {node.id!r}")
        self.fail(node, ctx, exc)

    def abort(self, exc: BaseException) -> None:
        """Stop the run with ``exc`` (the first one wins)."""
        if self.failure is None:
            self.failure = exc
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def log_debug(self, ctx: PipelineContext, msg: str, *args: Any) -> None:
        """Log at debug level with the payload's context attached."""
        log.debug(
            msg,
            *args,
            extra={
                "run_id": ctx.run_id,
                "data_id": ctx.data_id,
                "node": ctx.path[-1],
                "node_path": ">".join(ctx.path),
            },
        )

    # -- workers -----------------------------------------------------------------------

    def finish_one(self) -> None:
        """A payload's work is done; the run ends if it was the last."""
        self.pending -= 1
        if not self.pending:
            self.check_finished()

    def check_finished(self) -> None:
        """End the run if the input is exhausted and nothing is left in flight."""
        if not self.pending and not self._feeding:
            self._finish()

    def _finish(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    # -- input -------------------------------------------------------------------------

    async def _feed(self) -> None:
        inputs = self.options.inputs
        try:
            if isinstance(inputs, AsyncIterator):
                async for payload in inputs:
                    await self._put_input(payload)
            elif self._reorder is not None:
                for payload in inputs:
                    await self._put_input(payload)
            else:
                await self._feed_plain(inputs)
        except asyncio.CancelledError:
            await _close_input(inputs)
            raise
        except Exception as exc:
            exc.add_note(
                f"async_dag: raised while reading input #{self.inputs} of run {self.run_id!r}"
            )
            self.abort(exc)
            await _close_input(inputs)
            return
        self._feeding = False
        if not self.pending:
            self._finish()

    def _context(self, payload: Any, node: NodeRuntime) -> PipelineContext:
        key = self.options.key
        data_id = str(key(payload)) if key is not None else self.options.id_prefix + str(self.inputs)
        return _new_ctx(
            PipelineContext, (self.run_id, data_id, (node.id,), 0, self.options.metadata)
        )

    async def _put_input(self, payload: Any) -> None:
        reorder = self._reorder
        for node in self.sources:
            ctx = self._context(payload, node)
            self.pending += 1
            queue = node.queue
            if reorder is not None:
                index = self.inputs
                if index - reorder.head >= reorder.window:
                    await reorder.admit(index)
                item: tuple[Any, ...] = (ctx, payload, index)
            else:
                item = (ctx, payload)
            if len(queue.items) < queue.maxsize:
                queue.force_put(item)
            else:
                await queue.put(item)
        self.inputs += 1

    async def _feed_plain(self, inputs: Iterator[Any]) -> None:
        """The feeder's hot path: a sync iterator, no reordering, awaiting only when full."""
        key = self.options.key
        head = (self.run_id,)
        tail = (0, self.options.metadata)
        sources = [(node.queue, (node.id,)) for node in self.sources]
        prefix = self.options.id_prefix
        for payload in inputs:
            data_id = str(key(payload)) if key is not None else prefix + str(self.inputs)
            for queue, path in sources:
                item = (_new_ctx(PipelineContext, (*head, data_id, path, *tail)), payload)
                self.pending += 1
                if len(queue.items) < queue.maxsize:
                    queue.force_put(item)
                else:
                    await queue.put(item)
            self.inputs += 1

    # -- lifecycle -----------------------------------------------------------------------

    def executor(self) -> Executor:
        """The thread pool for sync handlers, created on first use."""
        if self._executor is None:
            threads = sum(
                n.concurrency
                for n in self.nodes.values()
                if n.kind in (HandlerKind.SYNC, HandlerKind.SYNC_GEN) and not n.inline
            )
            self._executor = make_executor(threads)
        return self._executor

    def snapshot(self) -> RunStats:
        """The counters now, as a RunStats (what monitors and RunResult.stats show)."""
        end = self._ended if self._ended is not None else time.perf_counter()
        nodes = {
            nid: NodeStats(
                node=nid,
                concurrency=n.concurrency,
                queue_size=n.queue.maxsize,
                received=n.received,
                emitted=n.emitted,
                failed=n.failed,
                retried=n.retried,
                unrouted=n.unrouted,
                filtered=n.filtered,
                in_flight=n.in_flight,
                queue_depth=len(n.queue),
                max_queue_depth=n.queue.max_depth,
            )
            for nid, n in self.nodes.items()
        }
        return RunStats(
            run_id=self.run_id,
            name=self.pipeline.name,
            elapsed=(end - self._started) if self._started else 0.0,
            inputs=self.inputs,
            outputs=self.outputs,
            errors=sum(n.failed for n in self.nodes.values()),
            nodes=nodes,
            done=self._ended is not None,
            total=self.options.total,
        )

    def _signature(self) -> tuple[int, ...]:
        sig = [self.inputs, self.outputs]
        for n in self.nodes.values():
            sig += (
                n.received,
                n.emitted,
                n.failed,
                n.retried,
                n.unrouted,
                n.filtered,
                n.in_flight,
                len(n.queue),
            )
        return tuple(sig)

    async def _sample(self, monitor: Monitor) -> None:
        last = self._signature()
        while True:
            await asyncio.sleep(monitor.interval)
            sig = self._signature()
            if sig != last:
                last = sig
                notify(monitor.update, self.snapshot())

    async def execute(self) -> None:
        """Run to the end; raise the first failure under ``on_error="raise"``."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self.debug = log.isEnabledFor(logging.DEBUG)
        self._started = time.perf_counter()
        monitor: Monitor | None = self.options.monitor
        tasks: list[asyncio.Task[None]] = []
        error: BaseException | None = None
        if monitor is not None:
            notify(monitor.start, self.snapshot())
        try:
            name = f"async_dag:{self.run_id}"
            if self.options.ordered:
                node = self.sources[0]
                reorder = self._reorder = Reorder(
                    self, node, self.collect_now if self.collecting else None, node.route
                )
                for i in range(node.concurrency):
                    tasks.append(loop.create_task(reorder.work(), name=f"{name}:{node.id}#{i}"))
                if reorder.needs_emitter:
                    tasks.append(loop.create_task(reorder.emit_in_order(), name=f"{name}:reorder"))
            else:
                for node in self.nodes.values():
                    for i in range(node.concurrency):
                        tasks.append(loop.create_task(node.work(), name=f"{name}:{node.id}#{i}"))
            tasks.append(loop.create_task(self._feed(), name=f"{name}:feed"))
            if monitor is not None:
                tasks.append(loop.create_task(self._sample(monitor), name=f"{name}:monitor"))
            await self._done
        except BaseException as exc:
            error = exc
            raise
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
            self._ended = time.perf_counter()
            if monitor is not None:
                notify(monitor.finish, self.snapshot(), error or self.failure)
        if self.failure is not None:
            raise self.failure

    async def collect(self) -> RunResult:
        """Run and return the result (records unless a result_handler took them)."""
        await self.execute()
        return RunResult(self.run_id, self.values, self.contexts, self.errors, self.snapshot())


async def _close_input(inputs: object) -> None:
    """Close an async input iterator we stop early, so its cleanup runs now."""
    close = getattr(inputs, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:
            log.debug("closing the input iterator failed", exc_info=True)
