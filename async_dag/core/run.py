"""One run of a pipeline: the feeder, the count of work in flight, and the lifecycle.

A run is a fresh object used once. ``active`` counts payloads queued or being handled
anywhere (and markers on their way); the feeder adds one per source per input, routing
adds one per payload it sends on, and a payload's end removes one. ``parked`` counts
the payloads among them that wait in a batch or a join. The run is over when the input
is exhausted and ``active`` is zero, which holds with loops too, where end-of-stream
markers would not; when only parked payloads are left, the batches are flushed.

Deadlock freedom: a worker only ever waits on a full queue along a forward edge, and the
forward edges form an acyclic graph (the definition checks it), so some waiting put can
always proceed. Loop-backs, error edges and markers never wait (``force_put``); each
replaces the payload it came from, so memory stays bounded by the queue sizes and the
generators' fan-out.

The lifecycle (:meth:`Run.execute`) is a task group: every exit closes the queues,
cancels the workers and waits for all of them however often it is cancelled itself,
then releases threads, commits the checkpoint and finishes the monitor, once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TYPE_CHECKING, Any

from . import routing, sinks
from .batches import Batcher
from .context import (
    InputSpan,
    PipelineContext,
    derive,
    input_context,
    input_contexts,
    log_extra,
)
from .definition import upstream_of
from .errors import ItemError
from .joins import Joiner
from .node import NodeRuntime
from .observer import notify
from .options import RunOptions, make_rate_limit
from .ordering import Reorder
from .queue import BatchQueue, NodeQueue, QueueClosed
from .results import NodeStats, RunResult, RunStats
from .tracking import Counts, Lineage, OneEach, Tracker
from .worker import work

if TYPE_CHECKING:
    from .checkpoint import CheckpointSession
    from .definition import DagPipeline
    from .observer import Monitor

log = logging.getLogger("async_dag")
RECENT_ERRORS = 5


class Run:
    """Executes one pipeline over one input stream; see the module docstring."""

    # slots: the worker loop reads and updates ``active`` once or twice per payload
    __slots__ = (
        "_done",
        "_end_error",
        "_ended",
        "_monitors_begun",
        "_sampler",
        "_started",
        "_task",
        "active",
        "batchers",
        "closing",
        "collect_errors",
        "contexts",
        "cut_off",
        "debug",
        "entered",
        "errors",
        "failure",
        "feeding",
        "input_failures",
        "inputs",
        "joiners",
        "monitors",
        "nodes",
        "options",
        "outputs",
        "parked",
        "pipeline",
        "recent",
        "reorder",
        "run_id",
        "session",
        "skipped",
        "sources",
        "state",
        "tracker",
        "values",
    )

    def __init__(
        self, pipeline: DagPipeline, options: RunOptions, stream: NodeQueue | None = None
    ) -> None:
        self.pipeline = pipeline
        self.options = options
        self.run_id = options.run_id
        self.collect_errors = options.collect_errors
        self.debug = False
        self.active = 0
        self.parked = 0
        self.inputs = 0  # inputs pulled from the input stream
        self.entered = 0  # inputs sent to the sources (not skipped, not failed by key=)
        self.skipped = 0
        self.input_failures = 0  # inputs whose key= raised
        self.outputs = 0
        self.values: list[Any] = []
        self.contexts: list[PipelineContext] = []
        self.errors: list[ItemError] = []
        self.recent: deque[tuple[str, str, str]] = deque(maxlen=RECENT_ERRORS)
        self.failure: BaseException | None = None
        self.feeding = True
        self.closing = False
        self.state = "running"
        self._done: asyncio.Future[None] | None = None
        self._task: asyncio.Task[Any] | None = None
        self.monitors: list[Monitor] = [options.monitor] if options.monitor is not None else []
        self._monitors_begun = False
        self.cut_off = 0
        self._sampler: asyncio.Task[None] | None = None
        self._started = 0.0
        self._ended: float | None = None
        self._end_error: BaseException | None = None
        self.session: CheckpointSession | None = None
        if options.checkpoint is not None:
            self.session = options.checkpoint.session(pipeline.name)
        tasks = pipeline.tasks
        self.nodes: dict[str, NodeRuntime] = {
            tid: NodeRuntime(task, self, i) for i, (tid, task) in enumerate(tasks.items())
        }
        joins = [n for n in self.nodes.values() if n.task.join]
        for j, join in enumerate(joins):
            join.join_index = j
            for tid in upstream_of(join.id, pipeline.transitions):
                self.nodes[tid].joins_below += (j,)
        self.tracker: Tracker | Counts | None = None
        if joins:
            self.tracker = Tracker(len(joins), self._upstream_done, self._input_done)
        elif self.session is not None:  # a count per input is enough: see Counts
            keyed = options.key is not None
            if keyed:
                self.tracker = Counts(self.session.pending, self.session.done)
            else:  # data_ids by position, never twice
                self.tracker = OneEach(self.session.pending, None)
        self.joiners = (
            [Joiner(n, self, self.tracker) for n in joins]
            if isinstance(self.tracker, Tracker)
            else []
        )
        self.batchers = [Batcher(n, self) for n in self.nodes.values() if n.task.batch_size]
        self.reorder: Reorder | None = None
        self.sources = [self.nodes[s] for s in pipeline.sources]
        self._connect(stream)

    # -- wiring, once per run ----------------------------------------------------------

    def _connect(self, stream: NodeQueue | None) -> None:
        handler = self.options.result_handler if stream is None else None
        sinks_ = set(self.pipeline.sinks)
        for node in self.nodes.values():
            node.limit = make_rate_limit(node.task.rate_limit)
            out = []
            for spec in self.pipeline.outgoing(node.id):
                if spec.on_error:
                    node.error_target = self.nodes[spec.target]
                else:
                    out.append(routing.Edge(spec, self.nodes[spec.target]))
            if node.id in sinks_:
                if stream is not None:
                    node.emit = sinks.to_stream(self, node, stream)
                elif handler is not None:
                    node.emit = sinks.hand_over(self, node, handler)
                else:
                    node.emit = sinks.collect(self, node)
            elif len(out) == 1 and out[0].when is None and out[0].max_loops is None:
                node.emit = routing.single_edge(self, out[0].target)
                if not isinstance(self.tracker, Tracker):  # a count moves with the payload
                    node.hop = routing.hop(self, out[0].target)
            elif (
                len(out) > 1
                and self.tracker is None
                and all(e.when is None and e.max_loops is None for e in out)
            ):
                node.emit = routing.fan_out(self, node, out)
                node.relay = routing.fan_out(self, node, out, relay=True)
            else:
                node.emit = routing.edges(self, node, out)
            node.choose_path()
        for batcher in self.batchers:
            batcher.node.invoke = batcher.invoke
        for joiner in self.joiners:
            joiner.node.invoke = joiner.invoke
        if self.options.ordered:
            node = self.sources[0]
            self.reorder = Reorder(self, node, node.emit)

    # -- the end of a payload, of an input, of the run ------------------------------

    def finish(self, ctx: PipelineContext, node: NodeRuntime) -> None:
        """A payload at ``node`` has ended (its outputs, if any, already sent on)."""
        if self.tracker is not None:
            self.tracker.leave(ctx._data_id, node)
        self.active -= 1
        if self.active == self.parked:
            self.idle()

    def idle(self) -> None:
        """Nothing alive but parked payloads: end the run, or flush what waits."""
        if self.closing or self.feeding:
            return
        if not self.active:
            self._finish()
            return
        for batcher in self.batchers:
            batcher.flush_soon()
        if self.active == self.parked:  # nothing could be flushed: a bug, never a hang
            self.abort(RuntimeError(f"async_dag: run {self.run_id!r} stalled with parked payloads"))

    def send_marker(self, node: NodeRuntime, marker: tuple[Any, Any]) -> None:
        """Queue a flush or fire marker for ``node``'s workers (it counts as active)."""
        if self.closing:
            return
        self.active += 1
        node.queue.force_put(marker)

    def end_marker(self) -> None:
        """A marker has been handled."""
        self.active -= 1
        if self.active == self.parked:
            self.idle()

    def _upstream_done(self, join: int, data_id: str, lineage: Lineage) -> None:
        self.joiners[join].upstream_done(data_id, lineage)

    def _input_done(self, data_id: str, lineage: Lineage) -> None:
        if self.session is not None and not lineage.failed:
            self.session.record(data_id)

    def _finish(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    # -- failures ----------------------------------------------------------------------

    def _remember(self, node: str, data_id: str, exc: BaseException) -> None:
        self.recent.append((node, data_id, f"{type(exc).__name__}: {exc}"))

    def fail(
        self, node: NodeRuntime, ctx: PipelineContext, exc: BaseException, payload: Any
    ) -> None:
        """``payload`` failed for good at ``node``: send it down the error edge, record
        it, or stop the run with it."""
        node.failed += 1
        self._remember(node.id, ctx._data_id, exc)
        if self.tracker is not None:
            self.tracker.fail(ctx._data_id)
        target = node.error_target
        if target is not None:
            if self.closing:
                return
            child = derive(ctx, target.id)
            self.active += 1
            if self.tracker is not None:
                self.tracker.enter(ctx._data_id, target)
            target.queue.force_put((child, ItemError(ctx, node.id, exc, payload)))
            return
        if self.collect_errors:
            self.errors.append(ItemError(ctx, node.id, exc, payload))
            log.warning(
                "%s failed for good: %s: %s", node.id, type(exc).__name__, exc, extra=log_extra(ctx)
            )
            return
        if self.failure is None:
            exc.add_note(
                f"async_dag: in node {node.id!r}, data_id {ctx._data_id!r}, run_id {self.run_id!r}"
            )
            self.abort(exc)

    def fail_batch(
        self, node: NodeRuntime, batch: list[tuple[PipelineContext, Any]], exc: BaseException
    ) -> None:
        """A batch call failed for good: every payload in it fails with ``exc``."""
        if not self.collect_errors and node.error_target is None and self.failure is None:
            ids = ", ".join(repr(ctx._data_id) for ctx, _ in batch[:3])
            more = f" and {len(batch) - 3} more" if len(batch) > 3 else ""
            exc.add_note(
                f"async_dag: in batch node {node.id!r}, a batch of {len(batch)} with data_ids "
                f"{ids}{more}, run_id {self.run_id!r}"
            )
            node.failed += len(batch)
            self._remember(node.id, batch[0][0]._data_id, exc)
            self.abort(exc)
            return
        for ctx, payload in batch:
            self.fail(node, ctx, exc, payload)

    def fail_input(self, position: int, payload: Any, exc: Exception) -> None:
        """``key=`` raised for an input: that input fails under the error policy."""
        source = self.sources[0]
        ctx = input_context(self.run_id, str(position), source.id, self.options.metadata)
        exc.add_note(f"async_dag: raised by key= for input #{position} of run {self.run_id!r}")
        self.input_failures += 1
        self._remember("key=", ctx._data_id, exc)
        if self.collect_errors:
            self.errors.append(ItemError(ctx, "key=", exc, payload))
            log.warning("key= failed: %s: %s", type(exc).__name__, exc, extra=log_extra(ctx))
        elif self.failure is None:
            self.abort(exc)

    def abort(self, exc: BaseException) -> None:
        """Stop the run with ``exc`` (the first one wins): no worker takes another payload."""
        if self.failure is None:
            self.failure = exc
        self._close_queues()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _close_queues(self) -> None:
        if not self.closing and (self.feeding or self.active):
            # what a stop cuts off: payloads still queued, handled or waiting in a batch,
            # and an input pulled but still waiting to enter (ordered runs' window)
            waiting = self.inputs - self.entered - self.skipped - self.input_failures
            self.cut_off = self.active + waiting
        self.closing = True
        for node in self.nodes.values():
            node.queue.close()

    def bind(self, task: asyncio.Task[Any]) -> None:
        """The task that runs this run (what ``cancel`` cancels), known before it starts."""
        self._task = task

    def cancel(self) -> None:
        """Cancel just this run (what a monitor's stop button calls)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # -- input -------------------------------------------------------------------------

    async def _feed(self) -> None:
        inputs = self.options.inputs
        try:
            if isinstance(inputs, AsyncIterator):
                async for payload in inputs:
                    pending = self._admit(payload)
                    if pending is not None:
                        await pending
            elif self._plain_inputs():
                await self._feed_chunks(iter(inputs))
            else:
                for payload in inputs:
                    pending = self._admit(payload)
                    if pending is not None:
                        await pending
        except (asyncio.CancelledError, QueueClosed):
            await _close_input(inputs)
            raise
        except Exception as exc:
            exc.add_note(
                f"async_dag: raised while reading input #{self.inputs} of run {self.run_id!r}"
            )
            self.abort(exc)
            await _close_input(inputs)
            return
        self.feeding = False
        if self.active == self.parked:
            self.idle()

    def _plain_inputs(self) -> bool:
        """Whether every input simply enters the sources in turn (or is skipped by the
        checkpoint): no ``key=``, no join, and not both an ordering window and a
        checkpoint (:meth:`_feed_chunks` keeps to either alone)."""
        return (
            self.options.key is None
            and not isinstance(self.tracker, Tracker)
            and (self.reorder is None or self.session is None)
        )

    async def _feed_chunks(self, inputs: Iterator[Any]) -> None:
        """Feed plain inputs a queueful at a time: as many as every source has room for
        are pulled, numbered and offered together, so the per-input cost is a few list
        operations (the inputs are pulled no earlier than one at a time would pull them).
        An input stream that raises has what it gave before the error fed first. With a
        checkpoint, the recorded inputs of a chunk are skipped together and the rest
        begin together (data_ids by position are distinct). In an ordered run no more
        enter than the window has room for; once it is full, this loop's step is taken
        for it (``refill``) as releases make room, until the input ends
        (:meth:`Reorder.lend`)."""
        queues = [node.queue for node in self.sources]
        ids = [node.id for node in self.sources]
        first_queue = queues[0] if len(queues) == 1 else None
        # one source that takes inputs one by one, no checkpoint: every ordered run
        plain = first_queue is not None and self.session is None and type(first_queue) is NodeQueue
        reorder = self.reorder
        ended: list[BaseException | None] = []  # what ended the input during ``refill``

        def pull(room: int) -> bool:
            """Enter up to ``room`` inputs; False once the input has ended."""
            chunk: list[Any] = []
            try:
                chunk.extend(itertools.islice(inputs, room))
            finally:
                if chunk and plain:
                    self._feed_plain(chunk, queues[0], ids[0])
                elif chunk:
                    self._feed_chunk(chunk, queues, ids)
            return len(chunk) == room

        def refill(most: int) -> int:
            """This loop's step, taken for it while it waits in an ordered run: enter up
            to ``most`` inputs (as many as fit in the window); how many entered, or -1
            once the input has ended or raised (the feeder then raises it as its own)."""
            assert first_queue is not None
            room = first_queue.room()
            if most < room:
                room = most
            if room <= 0:
                return 0
            try:
                if pull(room):
                    return room
                ended.append(None)
            except BaseException as exc:
                ended.append(exc)
            return -1

        while True:
            if first_queue is not None:
                room = first_queue.room()
            else:
                room = min(queue.room() for queue in queues)
            if reorder is not None:
                window = reorder.room()
                if window <= 0:
                    if not plain:
                        await reorder.admit()
                        continue
                    await reorder.lend(refill)
                    if ended[0] is not None:
                        raise ended[0]
                    return
                room = min(room, window)
            if not room:
                for queue in queues:
                    await queue.wait_refill()
                continue
            entered = self.entered
            if not pull(room):
                return
            if self.entered == entered:  # a chunk the checkpoint skipped: let the loop run
                await asyncio.sleep(0)

    def _feed_chunk(self, chunk: list[Any], queues: list[NodeQueue], ids: list[str]) -> None:
        """Number a chunk of inputs, skip the recorded ones, offer the rest to the sources."""
        first, pulled = self.inputs, len(chunk)
        self.inputs += pulled
        run_id, metadata, prefix = self.run_id, self.options.metadata, self.options.id_prefix
        session, counts = self.session, self.tracker
        for n, queue in enumerate(queues):
            if session is None and type(queue) is BatchQueue:  # a batch task: one span
                queue.offer_span(InputSpan(run_id, prefix, first, pulled, ids[n], metadata), chunk)
                if not n:
                    self.entered += pulled
                self.active += pulled
                continue
            contexts = input_contexts(run_id, prefix, first, pulled, ids[n], metadata)
            # one length by construction; a strict= keyword costs more than the zip itself
            items = list(zip(contexts, chunk))  # noqa: B905
            if session is not None:  # the same inputs are skipped for every source
                assert isinstance(counts, Counts)
                if session.loaded:
                    done = session.done
                    items = [item for item in items if item[0]._data_id not in done]
                if not n:
                    self.skipped += pulled - len(items)
                    counts.begin_many((ctx._data_id for ctx, _ in items), len(queues))
            if not n:
                self.entered += len(items)
                if self.reorder is not None:  # (ordered runs take _feed_plain)
                    self.reorder.order.extend(ctx for ctx, _ in items)
            self.active += len(items)
            queue.offer_many(items)

    def _feed_plain(self, chunk: list[Any], queue: NodeQueue, node_id: str) -> None:
        """:meth:`_feed_chunk` for one source and no checkpoint (every input enters), as
        few steps as it takes: an ordered run does it once per release."""
        first, pulled = self.inputs, len(chunk)
        self.inputs = first + pulled
        self.entered += pulled
        self.active += pulled
        options = self.options
        contexts = input_contexts(
            self.run_id, options.id_prefix, first, pulled, node_id, options.metadata
        )
        if self.reorder is not None:
            self.reorder.order.extend(contexts)
        queue.offer_many(list(zip(contexts, chunk)))  # noqa: B905 (one length)

    def _admit(self, payload: Any) -> Awaitable[None] | None:
        """Send one input to every source; an awaitable when a queue is full."""
        position = self.inputs
        self.inputs += 1
        key = self.options.key
        if key is None:
            data_id = self.options.id_prefix + str(position)
        else:
            try:
                data_id = str(key(payload))
            except Exception as exc:
                self.fail_input(position, payload, exc)
                return None
        if self.session is not None and self.session.is_done(data_id):
            self.skipped += 1
            return None
        if self.reorder is not None and self.reorder.room() <= 0:
            return self._admit_later(data_id, payload)
        return self._enter(data_id, payload)

    async def _admit_later(self, data_id: str, payload: Any) -> None:
        assert self.reorder is not None
        await self.reorder.admit()
        pending = self._enter(data_id, payload)
        if pending is not None:
            await pending

    def _enter(self, data_id: str, payload: Any) -> Awaitable[None] | None:
        self.entered += 1
        tracker = self.tracker
        if tracker is not None:
            tracker.begin(data_id)
        blocked = None
        reorder = self.reorder
        for node in self.sources:
            ctx = input_context(self.run_id, data_id, node.id, self.options.metadata)
            if reorder is not None:  # an ordered run has one source
                reorder.order.append(ctx)
            item = (ctx, payload)
            self.active += 1
            if tracker is not None:
                tracker.enter(data_id, node)
            if not node.queue.offer(item):
                if blocked is None:
                    blocked = []
                blocked.append((node.queue, item))
        return None if blocked is None else routing.put_all(blocked)

    # -- stats -------------------------------------------------------------------------

    def snapshot(self) -> RunStats:
        """The counters now, as a RunStats (what monitors and RunResult.stats show)."""
        end = self._ended if self._ended is not None else time.perf_counter()
        nodes = {
            nid: NodeStats(
                node=nid,
                concurrency=n.concurrency,
                queue_size=self.pipeline.queue_sizes[nid],
                received=n.received,
                emitted=n.emitted,
                failed=n.failed,
                retried=n.retried,
                unrouted=n.unrouted,
                filtered=n.filtered,
                in_flight=n.in_flight,
                queue_depth=len(n.queue),
                max_queue_depth=n.queue.max_depth,
                batches=n.batches,
                abandoned=n.abandoned,
                throttled=n.throttled,
            )
            for nid, n in self.nodes.items()
        }
        return RunStats(
            run_id=self.run_id,
            name=self.pipeline.name,
            elapsed=(end - self._started) if self._started else 0.0,
            inputs=self.inputs,
            outputs=self.outputs,
            errors=sum(n.failed for n in self.nodes.values()) + self.input_failures,
            nodes=nodes,
            done=self._ended is not None,
            total=self.options.total,
            skipped=self.skipped,
            state=self.state,
            recent_errors=tuple(self.recent),
            cut_off=self.cut_off,
        )

    def _signature(self) -> tuple[Any, ...]:
        sig: list[Any] = [self.inputs, self.outputs, self.skipped, self.input_failures]
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
                n.batches,
            )
        return tuple(sig)

    async def _sample(self) -> None:
        last = self._signature()
        while True:
            await asyncio.sleep(min(m.interval for m in self.monitors))
            sig = self._signature()
            if sig != last:
                last = sig
                stats = self.snapshot()
                for monitor in self.monitors:
                    notify(monitor.update, stats)

    def begin_monitors(self) -> None:
        """Attach and start the monitors (a background run does it before its task runs,
        so a notebook shows the panel in the cell that started it)."""
        self._monitors_begun = True
        for monitor in self.monitors:
            notify(monitor.attach, self.pipeline, self.cancel)
            notify(monitor.start, self.snapshot())

    def add_monitor(self, monitor: Monitor) -> None:
        """Show this run on one more monitor, also once it is going (a background run
        displayed in a notebook); a run that has ended shows its final state."""
        if monitor in self.monitors:
            return
        if not self._monitors_begun:  # not begun yet: it starts with the others
            self.monitors.append(monitor)
            return
        notify(monitor.attach, self.pipeline, None if self._ended is not None else self.cancel)
        notify(monitor.start, self.snapshot())
        if self._ended is not None:
            notify(monitor.finish, self.snapshot(), self._end_error)
            return
        self.monitors.append(monitor)
        if self._started and self._sampler is None and not self.closing:
            self._sampler = asyncio.get_running_loop().create_task(
                self._sample(), name=self._name("monitor")
            )

    # -- lifecycle -----------------------------------------------------------------------

    async def execute(self) -> None:
        """Run to the end; raise the first failure under ``on_error="raise"``."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        if self._task is None:
            self._task = asyncio.current_task()
        self.debug = log.isEnabledFor(logging.DEBUG)
        self._started = time.perf_counter()
        tasks: list[asyncio.Task[None]] = []
        error: BaseException | None = None
        if not self._monitors_begun:
            self.begin_monitors()
        try:
            if self.session is not None:
                await self.session.open()
                tasks.append(
                    loop.create_task(self.session.run_flusher(), name=self._name("checkpoint"))
                )
            for node in self.nodes.values():
                for i in range(node.concurrency):
                    tasks.append(loop.create_task(work(node), name=self._name(f"{node.id}#{i}")))
            tasks.append(loop.create_task(self._feed(), name=self._name("feed")))
            if self.monitors:
                self._sampler = loop.create_task(self._sample(), name=self._name("monitor"))
            await self._done
        except BaseException as exc:
            error = exc
            raise
        finally:
            await self._wind_down(tasks, error)
        if self.failure is not None:
            raise self.failure

    def _name(self, what: str) -> str:
        return f"async_dag:{self.run_id}:{what}"

    async def _wind_down(
        self, tasks: list[asyncio.Task[None]], error: BaseException | None
    ) -> None:
        """Close, cancel and wait for everything, whatever happens meanwhile; once."""
        self._close_queues()
        if self._sampler is not None:
            tasks.append(self._sampler)
        for batcher in self.batchers:
            batcher.close()
        for task in tasks:
            task.cancel()
        cancelled = False
        while True:
            try:
                if tasks:
                    await asyncio.wait(tasks)
                if self.session is not None:
                    await self.session.close()
                break
            except asyncio.CancelledError:
                cancelled = True  # as a TaskGroup does: keep waiting, raise at the end
        for node in self.nodes.values():
            node.close()
            node.in_flight = 0
        self._ended = time.perf_counter()
        error = error or self.failure
        if error is None and not cancelled:
            self.state = "done"
        elif isinstance(error, asyncio.CancelledError | KeyboardInterrupt) or (
            error is None and cancelled
        ):
            self.state = "cancelled"
        else:
            self.state = "failed"
        if error is None and cancelled:
            error = asyncio.CancelledError()
        self._end_error = error
        stats = self.snapshot()
        for monitor in self.monitors:
            notify(monitor.finish, stats, error)
        if cancelled:
            raise asyncio.CancelledError

    def result(self) -> RunResult:
        """What has come so far, as a RunResult."""
        return RunResult(self.run_id, self.values, self.contexts, self.errors, self.snapshot())

    async def collect(self) -> RunResult:
        """Run and return the result (records unless a result_handler took them)."""
        await self.execute()
        return self.result()


async def _close_input(inputs: object) -> None:
    """Close an async input iterator we stop early, so its cleanup runs now."""
    close = getattr(inputs, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:
            log.debug("closing the input iterator failed", exc_info=True)
