"""Where a node's outputs go, chosen once per node when a run starts.

An ``emit(ctx, value)`` function sends one output on and returns None, or, when a
queue is full, an awaitable the worker must await before it takes the next payload.
A non-sink node routes along its edges (:func:`single_edge`; :func:`fan_out` for several
plain edges; :func:`edges` for predicates and loops); a sink hands its outputs to the
run's destination (:mod:`.sinks`). Routing adds one to the run's ``active`` count per
payload it sends on; the worker removes the payload it handled.
One exception, the hot path of a chain: along the one unconditional edge of a direct
node in a run without joins, the worker makes the hop itself and the output takes over
its payload's place in the counts (:class:`Hop`, chosen once per node); a direct node's
plain fan-out does likewise through its ``relay`` (:func:`fan_out`, runs without
completion tracking).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from .context import EngineContext, PipelineContext, derive, derive_to, log_extra
from .definition import TaskTransition, describe_predicate
from .errors import LoopLimitExceeded
from .node import Emit, NodeRuntime
from .queue import NodeQueue

if TYPE_CHECKING:
    from .run import Run

log = logging.getLogger("async_dag")


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


async def put_all(blocked: list[tuple[NodeQueue, Any]]) -> None:
    """Wait for room in full queues, in edge order."""
    for queue, item in blocked:
        await queue.put(item)


def single_edge(run: Run, target: NodeRuntime) -> Emit:
    """One unconditional edge: the hot path of a chain."""
    queue, to = target.queue, derive_to(target.id, run.run_id, run.options.metadata)
    offer = queue.offer
    tracker = run.tracker

    def emit(ctx: PipelineContext, value: Any) -> Awaitable[None] | None:
        item = (to(ctx), value)
        run.active += 1
        if tracker is not None:
            tracker.enter(ctx._data_id, target)
        if offer(item):
            return None
        return queue.put(item)

    return emit


class Hop(NamedTuple):
    """One unconditional edge, taken by a worker that calls its handler directly in a run
    without joins (the hot path of a chain). The worker does the hop itself: it makes
    the output's context as :func:`~async_dag.core.context.derive_to` would (inlined: a
    call per payload is a tenth of the hop) and ``offer(item) or await put(item)``; the
    output takes over its payload's place in ``run.active`` (and, with a checkpoint, in
    its input's :class:`~async_dag.core.tracking.Counts`), so neither side touches the
    counts."""

    step: tuple[str]  # the target's id, to append to the path
    run_id: str
    metadata: dict[str, Any] | None
    offer: Callable[[Any], bool]
    put: Callable[[Any], Awaitable[None]]


def hop(run: Run, target: NodeRuntime) -> Hop:
    """The hop along the edge to ``target``."""
    queue = target.queue
    return Hop((target.id,), run.run_id, run.options.metadata, queue.offer, queue.put)


def fan_out(run: Run, node: NodeRuntime, out: list[Edge], relay: bool = False) -> Emit:
    """Several unconditional forward edges in a run without completion tracking: every
    output goes down each of them, counted at once. A ``relay`` is what a direct worker
    calls: the first output takes over its payload's place in the count (as with
    :class:`Hop`). With debug logging on, :func:`edges` does it (it logs each route)."""
    general = edges(run, node, out)
    run_id, metadata = run.run_id, run.options.metadata
    targets = [((edge.target.id,), edge.target.queue.offer, edge.target.queue) for edge in out]
    count = len(targets) - 1 if relay else len(targets)
    # the children's paths, made again only when the parent's path object changes (the
    # contexts are made as ``derive_to`` makes them, inlined: see :class:`Hop`)
    parent: tuple[str, ...] | None = None
    routes: list[tuple[tuple[str, ...], Callable[[Any], bool], NodeQueue]] = []

    def emit(ctx: PipelineContext, value: Any) -> Awaitable[None] | None:
        nonlocal parent, routes
        if run.debug:
            if relay:
                run.active -= 1
            return general(ctx, value)
        run.active += count
        if ctx._path is not parent:
            parent = ctx._path
            routes = [(parent + step, offer, queue) for step, offer, queue in targets]
        data_id = ctx._data_id
        blocked: list[tuple[NodeQueue, Any]] | None = None
        for path, offer, queue in routes:
            child = EngineContext()
            child._run_id = run_id
            child._data_id = data_id
            child._path = path
            child._attempt = 0
            child._metadata = metadata
            item = (child, value)
            if not offer(item):
                if blocked is None:
                    blocked = []
                blocked.append((queue, item))
        return None if blocked is None else put_all(blocked)

    return emit


def edges(run: Run, node: NodeRuntime, out: list[Edge]) -> Emit:
    """Predicates, fan-out and loop edges: every edge whose predicate holds."""
    tracker = run.tracker

    def emit(ctx: PipelineContext, value: Any) -> Awaitable[None] | None:
        chosen: list[Edge] = []
        for edge in out:
            when = edge.when
            try:
                if when is not None and not when(ctx, value):
                    continue
            except Exception as exc:
                exc.add_note(f"raised by the predicate of edge {edge.label} ({edge.when_name})")
                node.emitted -= 1  # the output went nowhere: the node failed it
                run.fail(node, ctx, exc, value)
                return None
            if edge.max_loops is not None and edge.times_taken(ctx._path) >= edge.max_loops:
                error = LoopLimitExceeded(edge.source, edge.target.id, edge.max_loops, ctx._data_id)
                node.emitted -= 1
                run.fail(node, ctx, error, value)
                return None
            chosen.append(edge)
        if not chosen:
            node.unrouted += 1
            if run.debug:
                log.debug("unrouted output of %s: no edge holds", node.id, extra=log_extra(ctx))
            return None
        blocked: list[tuple[NodeQueue, Any]] | None = None
        for edge in chosen:
            target = edge.target
            child = derive(ctx, target.id)
            item = (child, value)
            run.active += 1
            if tracker is not None:
                tracker.enter(ctx._data_id, target)
            if edge.max_loops is not None:
                if run.debug:
                    log.debug(
                        "loop back along %s (when=%s, max_loops=%d)",
                        edge.label,
                        edge.when_name,
                        edge.max_loops,
                        extra=log_extra(child),
                    )
                target.queue.force_put(item)  # never waits: see Run's docstring
                continue
            if run.debug and (edge.when is not None or len(chosen) > 1):
                if edge.when is None:
                    log.debug("routed along %s", edge.label, extra=log_extra(child))
                else:
                    log.debug(
                        "routed along %s (when=%s)",
                        edge.label,
                        edge.when_name,
                        extra=log_extra(child),
                    )
            if not target.queue.offer(item):
                if blocked is None:
                    blocked = []
                blocked.append((target.queue, item))
        return None if blocked is None else put_all(blocked)

    return emit
