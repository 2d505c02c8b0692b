"""The graph: tasks, edges, validation. A definition never runs anything.

Example::

    pipeline = (
        PipelineBuilder("refresh")
        .add_task("fetch", fetch, concurrency=8)
        .add_task("parse", parse)
        .add_edge("fetch", "parse")
        .add_edge("parse", "fetch", when=is_transient, max_loops=3)
        .build()
    )
    results = await pipeline.run_stream(urls)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import PipelineDefinitionError
from .handlers import HandlerKind, callable_name, handler_kind
from .options import DEFAULT_QUEUE_SIZE, Checks, OnError, check_rate_limit
from .retry import RetryPolicy

if TYPE_CHECKING:
    import graphviz

    from .background import PipelineRun
    from .checkpoint import Checkpoint
    from .context import PipelineContext
    from .observer import Monitor
    from .options import RunOptions
    from .ratelimit import RateLimit
    from .results import RunResult

Handler = Callable[..., Any]
Predicate = Callable[["PipelineContext", Any], bool]


@dataclass(frozen=True, slots=True)
class DagTask:
    """A node: an id, a handler called as ``handler(ctx, payload)``, and how to run it.

    ``concurrency`` workers take payloads from a queue of ``queue_size`` (default
    ``max(64, 2 * concurrency, batch_size)`` for each edge into the task: fast on cheap
    steps; lower it for large payloads). A failed call is retried ``retries`` times: ``retry_delay``
    seconds before the first retry, times ``retry_backoff`` per further retry, with
    ``retry_jitter`` and capped at ``retry_max_delay``, for the failures ``retry_on``
    accepts. ``timeout`` bounds one call (one step of a generator). ``rate_limit`` (calls
    per second, or a shared ``RateLimit``) spaces the calls. ``batch_size`` hands the
    handler lists of payloads (flushed when full, after ``batch_timeout`` seconds, or when
    nothing else can join); ``join=True`` calls it once per data_id with ``{source:
    value}``. A plain ``def`` runs in a worker thread unless ``inline=True`` (for cheap pure
    functions). Options are checked when the task joins a :class:`DagPipeline`.
    """

    id: str
    handler: Handler
    concurrency: int = 1
    queue_size: int | None = None
    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    inline: bool = False
    retry_backoff: float = 1.0
    retry_max_delay: float | None = None
    retry_jitter: float = 0.0
    retry_on: Any = Exception
    rate_limit: Any = None
    batch_size: int | None = None
    batch_timeout: float | None = None
    join: bool = False

    @property
    def kind(self) -> HandlerKind:
        """How the handler produces outputs (async, async generator, sync, sync generator)."""
        return handler_kind(self.handler)

    @property
    def bound(self) -> int:
        """The capacity of this task's input queue: ``queue_size``, or the default for a
        task fed by one edge (:attr:`DagPipeline.queue_sizes` has each task's in a graph)."""
        if self.queue_size is not None:
            return self.queue_size
        # a batch task's worker takes a whole queue into its batch at once: a queue of one
        # batch fills it in one hop from the feeder (measured in bench/sqlite_sink.py)
        return max(DEFAULT_QUEUE_SIZE, 2 * self.concurrency, self.batch_size or 0)

    @property
    def retry_policy(self) -> RetryPolicy:
        """The task's retry options as one policy."""
        return RetryPolicy(
            retries=self.retries,
            delay=self.retry_delay,
            backoff=self.retry_backoff,
            max_delay=self.retry_max_delay,
            jitter=self.retry_jitter,
            retry_on=self.retry_on,
        )


@dataclass(frozen=True, slots=True)
class TaskTransition:
    """An edge ``source -> target``, taken when ``when(ctx, value)`` holds (always if None).

    ``max_loops=n`` marks a loop edge: one payload's lineage may take it at most n times.
    ``on_error=True`` makes it an error edge: it carries the failures of ``source`` (as
    :class:`ItemError` payloads) instead of its outputs.
    """

    source: str
    target: str
    when: Predicate | None = None
    max_loops: int | None = None
    on_error: bool = False

    @property
    def is_loop(self) -> bool:
        """Whether this edge is a bounded loop edge (it has ``max_loops``)."""
        return self.max_loops is not None

    @property
    def label(self) -> str:
        """``source -> target``, as error messages name the edge."""
        return f"{self.source} -> {self.target}"


def _check_task(task: object) -> DagTask:
    if not isinstance(task, DagTask):
        raise PipelineDefinitionError(f"expected a DagTask, got {task!r}")
    if not isinstance(task.id, str) or not task.id:
        raise PipelineDefinitionError(f"task id must be a non-empty string, got {task.id!r}")
    check = Checks(f"task {task.id!r}", definition=True)
    if not callable(task.handler):
        check.fail(f"handler {task.handler!r} is not callable")
    check.int_at_least("concurrency", task.concurrency, 1)
    if task.queue_size is not None:
        check.int_at_least("queue_size", task.queue_size, 1)
    check.boolean("inline", task.inline)
    check.boolean("join", task.join)
    kind = task.kind
    check.timeout(
        task.timeout, inline=task.inline and kind in (HandlerKind.SYNC, HandlerKind.SYNC_GEN)
    )
    RetryPolicy.check(
        check.where,
        definition=True,
        retries=task.retries,
        retry_delay=task.retry_delay,
        retry_backoff=task.retry_backoff,
        retry_max_delay=task.retry_max_delay,
        retry_jitter=task.retry_jitter,
        retry_on=task.retry_on,
    )
    check_rate_limit(check, task.rate_limit)
    if task.batch_size is not None:
        check.int_at_least("batch_size", task.batch_size, 1)
        if kind in (HandlerKind.ASYNC_GEN, HandlerKind.SYNC_GEN):
            check.fail(
                "a batch handler must return None or one result per payload; "
                "a generator cannot be a batch handler"
            )
        if task.join:
            check.fail("a task cannot be both a batch task (batch_size) and a join (join=True)")
    if task.batch_timeout is not None:
        if task.batch_size is None:
            check.fail("batch_timeout needs batch_size")
        check.number("batch_timeout", task.batch_timeout, strict=True)
    return task


def _check_edge(edge: object, tasks: Mapping[str, DagTask]) -> TaskTransition:
    if not isinstance(edge, TaskTransition):
        raise PipelineDefinitionError(f"expected a TaskTransition, got {edge!r}")
    for end, name in (("source", edge.source), ("target", edge.target)):
        if name not in tasks:
            known = ", ".join(repr(t) for t in tasks) or "none"
            raise PipelineDefinitionError(
                f"edge {edge.source!r} -> {edge.target!r}: unknown {end} task {name!r} "
                f"(known tasks: {known})"
            )
    check = Checks(f"edge {edge.label}", definition=True)
    if edge.when is not None and not callable(edge.when):
        check.fail(f"when={edge.when!r} is not callable; pass a function when(ctx, value) -> bool")
    if edge.max_loops is not None:
        check.int_at_least("max_loops", edge.max_loops, 1)
    check.boolean("on_error", edge.on_error)
    if edge.on_error:
        if edge.when is not None or edge.max_loops is not None:
            check.fail("an error edge (on_error=True) takes no when and no max_loops")
        if tasks[edge.target].join:
            check.fail(f"an error edge cannot lead to the join {edge.target!r}")
    return edge


def _find_cycle(ids: Sequence[str], edges: Sequence[TaskTransition]) -> list[str] | None:
    """A cycle among forward (non-loop) edges, as a list of node ids, or None."""
    succ: dict[str, list[str]] = {i: [] for i in ids}
    for e in edges:
        if not e.is_loop:
            succ[e.source].append(e.target)
    state: dict[str, int] = dict.fromkeys(ids, 0)  # 0 new, 1 on stack, 2 done
    for root in ids:
        if state[root]:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        trail = [root]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            if i < len(succ[node]):
                stack[-1] = (node, i + 1)
                nxt = succ[node][i]
                if state[nxt] == 1:
                    return [*trail[trail.index(nxt) :], nxt]
                if state[nxt] == 0:
                    state[nxt] = 1
                    stack.append((nxt, 0))
                    trail.append(nxt)
            else:
                state[node] = 2
                stack.pop()
                trail.pop()
    return None


class DagPipeline:
    """A validated graph of tasks; reusable, and runs of it share no state.

    Sources are the tasks with no incoming edge other than loop edges: every input goes
    to each of them. Sinks are the tasks with no outgoing edge: their outputs are the
    run's results. Raises :class:`PipelineDefinitionError` naming the culprit when the
    graph cannot run.
    """

    def __init__(
        self,
        tasks: Iterable[DagTask],
        transitions: Iterable[TaskTransition] = (),
        *,
        name: str | None = None,
    ) -> None:
        if isinstance(tasks, DagTask | str | bytes) or not isinstance(tasks, Iterable):
            raise PipelineDefinitionError("tasks must be an iterable of DagTask")
        by_id: dict[str, DagTask] = {}
        for task in tasks:
            task = _check_task(task)
            if task.id in by_id:
                raise PipelineDefinitionError(
                    f"duplicate task id {task.id!r}: every task needs its own id"
                )
            by_id[task.id] = task
        if not by_id:
            raise PipelineDefinitionError("a pipeline needs at least one task")
        edges: list[TaskTransition] = []
        seen: set[tuple[str, str, bool]] = set()
        for edge in transitions:
            edge = _check_edge(edge, by_id)
            if (edge.source, edge.target, edge.on_error) in seen:
                raise PipelineDefinitionError(
                    f"duplicate edge {edge.label}: combine the conditions into one predicate"
                )
            seen.add((edge.source, edge.target, edge.on_error))
            edges.append(edge)
        cycle = _find_cycle(list(by_id), edges)
        if cycle is not None:
            closing = f"{cycle[-2]} -> {cycle[-1]}"
            raise PipelineDefinitionError(
                f"edge {closing} closes a cycle with no max_loops ({' -> '.join(cycle)}); "
                "add max_loops=N to one of its edges"
            )
        fed = {e.target for e in edges if not e.is_loop and not e.on_error}
        self.name = name if name is not None else "pipeline"
        self.tasks: dict[str, DagTask] = by_id
        self.transitions: tuple[TaskTransition, ...] = tuple(edges)
        self.sources: tuple[str, ...] = tuple(
            i for i in by_id if i not in fed and i not in {e.target for e in edges if e.on_error}
        )
        # a queue left at its default holds that much per edge feeding it (the feeder is a
        # source's one): a fan-in shared by k tasks gives each the room a chain's task has,
        # rather than k times the hand-offs (measured: BENCHMARKS.md, "default queue size")
        inflow = Counter(e.target for e in edges if not e.is_loop and not e.on_error)
        self.queue_sizes: dict[str, int] = {
            i: t.queue_size if t.queue_size is not None else t.bound * max(1, inflow[i])
            for i, t in by_id.items()
        }
        has_out = {e.source for e in edges if not e.on_error}
        self.sinks: tuple[str, ...] = tuple(i for i in by_id if i not in has_out)
        if not self.sources:
            raise PipelineDefinitionError(
                "the pipeline has no source task: every task has an incoming edge"
            )
        _check_error_edges(edges)
        _check_joins(by_id, edges)

    def outgoing(self, task_id: str) -> tuple[TaskTransition, ...]:
        """The edges leaving ``task_id``, in the order they were added."""
        return tuple(e for e in self.transitions if e.source == task_id)

    def __repr__(self) -> str:
        return f"<DagPipeline {self.name!r} {len(self.tasks)} tasks {len(self.transitions)} edges>"

    # -- running -------------------------------------------------------------------

    async def run_stream(
        self,
        inputs: Iterable[Any] | Any,
        *,
        result_handler: Callable[..., Any] | None = None,
        key: Callable[[Any], Any] | None = None,
        on_error: OnError = "raise",
        monitor: bool | Monitor | None = None,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        total: int | None = None,
        checkpoint: str | os.PathLike[str] | Checkpoint | None = None,
        _id_prefix: str = "",
    ) -> RunResult:
        """Run every input through the graph; return the sinks' outputs as a RunResult.

        With ``result_handler(ctx, value)`` (sync or async) each sink output is handed
        over as it arrives and none is kept. ``checkpoint=`` (an SQLite path or a
        ``Checkpoint``) skips inputs recorded as done by an earlier run and records the
        ones this run finishes. See ``stream`` to iterate and ``start`` to run in the
        background.
        """
        from .run import Run

        options = self._options(locals())
        return await Run(self, options).collect()

    def stream(
        self,
        inputs: Iterable[Any] | Any,
        *,
        key: Callable[[Any], Any] | None = None,
        on_error: OnError = "raise",
        monitor: bool | Monitor | None = None,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        total: int | None = None,
        checkpoint: str | os.PathLike[str] | Checkpoint | None = None,
        _id_prefix: str = "",
    ) -> AsyncIterator[tuple[PipelineContext, Any]]:
        """Iterate ``(ctx, value)`` over the sinks' outputs as they come.

        ``async for ctx, value in pipeline.stream(inputs): ...``; leaving the loop early
        (``break``) or cancelling the consumer stops the run.
        """
        from .stream import RunIterator

        return RunIterator(self, self._options(locals()))

    def start(
        self,
        inputs: Iterable[Any] | Any,
        *,
        result_handler: Callable[..., Any] | None = None,
        key: Callable[[Any], Any] | None = None,
        on_error: OnError = "raise",
        monitor: bool | Monitor | None = None,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        total: int | None = None,
        checkpoint: str | os.PathLike[str] | Checkpoint | None = None,
    ) -> PipelineRun:
        """Start the run in the background on the running loop; return its PipelineRun.

        ``run = pipeline.start(urls)`` returns at once; ``await run`` gives the
        RunResult, ``run.cancel()`` stops it, ``run.results`` shows what came so far.
        Raises RuntimeError when no event loop is running (``await run_stream`` then).
        """
        from .background import start_run

        return start_run(self, self._options({**locals(), "_id_prefix": ""}))

    def _options(self, given: dict[str, Any]) -> RunOptions:
        from .options import RunOptions

        return RunOptions.check(
            given["inputs"],
            result_handler=given.get("result_handler"),
            key=given["key"],
            on_error=given["on_error"],
            monitor=given["monitor"],
            run_id=given["run_id"],
            metadata=given["metadata"],
            total=given["total"],
            id_prefix=given["_id_prefix"],
            checkpoint=given["checkpoint"],
        )

    # -- display (the notebook layer, loaded on first use) -----------------------------

    def to_dot(self) -> str:
        """The graph in Graphviz's DOT language (standard library only)."""
        from .dot import pipeline_to_dot

        return pipeline_to_dot(self)

    def to_mermaid(self) -> str:
        """The graph as a mermaid flowchart, labelled like ``to_dot()`` (standard library only)."""
        from .mermaid import pipeline_to_mermaid

        return pipeline_to_mermaid(self)

    def to_graphviz(self) -> graphviz.Digraph:
        """The graph as a ``graphviz.Digraph`` (needs the ``graphviz`` package)."""
        from ..notebook.graph import to_graphviz

        return to_graphviz(self)

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        from ..notebook.graph import mimebundle

        return mimebundle(self, include=include, exclude=exclude)


@dataclass
class PipelineBuilder:
    """Collects tasks and edges, then ``build()`` validates them into a DagPipeline."""

    name: str | None = None
    _tasks: list[DagTask] = field(default_factory=list, repr=False)
    _edges: list[TaskTransition] = field(default_factory=list, repr=False)

    def add_task(
        self,
        id: str,
        handler: Handler,
        *,
        concurrency: int = 1,
        queue_size: int | None = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        retry_backoff: float = 1.0,
        retry_max_delay: float | None = None,
        retry_jitter: float = 0.0,
        retry_on: Any = Exception,
        timeout: float | None = None,
        rate_limit: float | RateLimit | None = None,
        batch_size: int | None = None,
        batch_timeout: float | None = None,
        join: bool = False,
        inline: bool = False,
    ) -> PipelineBuilder:
        """Add a task (see :class:`DagTask` for the options); returns the builder."""
        self._tasks.append(
            DagTask(
                id,
                handler,
                concurrency=concurrency,
                queue_size=queue_size,
                retries=retries,
                retry_delay=retry_delay,
                timeout=timeout,
                inline=inline,
                retry_backoff=retry_backoff,
                retry_max_delay=retry_max_delay,
                retry_jitter=retry_jitter,
                retry_on=retry_on,
                rate_limit=rate_limit,
                batch_size=batch_size,
                batch_timeout=batch_timeout,
                join=join,
            )
        )
        return self

    def add_edge(
        self,
        source: str,
        target: str,
        *,
        when: Predicate | None = None,
        max_loops: int | None = None,
        on_error: bool = False,
    ) -> PipelineBuilder:
        """Add an edge (see :class:`TaskTransition`); returns the builder."""
        self._edges.append(
            TaskTransition(source, target, when=when, max_loops=max_loops, on_error=on_error)
        )
        return self

    def build(self) -> DagPipeline:
        """Validate and return the pipeline; raises PipelineDefinitionError if invalid."""
        return DagPipeline(self._tasks, self._edges, name=self.name)


def _check_error_edges(edges: Sequence[TaskTransition]) -> None:
    seen: dict[str, str] = {}
    for edge in edges:
        if edge.on_error:
            if edge.source in seen:
                raise PipelineDefinitionError(
                    f"task {edge.source!r} has two error edges ({edge.source} -> "
                    f"{seen[edge.source]} and {edge.label}); a task has at most one"
                )
            seen[edge.source] = edge.target


def _check_joins(tasks: Mapping[str, DagTask], edges: Sequence[TaskTransition]) -> None:
    for task in tasks.values():
        if not task.join:
            continue
        incoming = [e for e in edges if e.target == task.id]
        if len(incoming) < 2:
            raise PipelineDefinitionError(
                f"join {task.id!r} has {len(incoming)} incoming edge(s); a join needs at "
                "least two (drop join=True for a task fed by one edge)"
            )
        if all(e.is_loop for e in incoming):
            raise PipelineDefinitionError(
                f"join {task.id!r} is fed only by loop edges (max_loops), so it is a source "
                "and inputs would reach it from no branch; feed it by forward edges"
            )
        if task.id in upstream_of(task.id, edges):
            raise PipelineDefinitionError(
                f"join {task.id!r} lies on a cycle; a join may not (it could wait for itself)"
            )


def upstream_of(task_id: str, edges: Sequence[TaskTransition]) -> set[str]:
    """Every task from which some path of edges (loop and error edges included) leads to
    ``task_id``."""
    preds: dict[str, list[str]] = {}
    for e in edges:
        preds.setdefault(e.target, []).append(e.source)
    seen: set[str] = set()
    todo = list(preds.get(task_id, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(preds.get(node, ()))
    return seen


def describe_predicate(edge: TaskTransition) -> str | None:
    """The predicate's name for display, or None for an unconditional edge."""
    return None if edge.when is None else callable_name(edge.when)
