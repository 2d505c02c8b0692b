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

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import PipelineDefinitionError
from .handlers import HandlerKind, callable_name, handler_kind

if TYPE_CHECKING:
    import graphviz

    from .context import PipelineContext
    from .results import RunResult

Handler = Callable[..., Any]
Predicate = Callable[["PipelineContext", Any], bool]


@dataclass(frozen=True, slots=True)
class DagTask:
    """A node: an id, a handler called as ``handler(ctx, payload)``, and how to run it.

    ``concurrency`` workers take payloads from a queue of ``queue_size`` (default
    ``2 * concurrency``). A failed call is retried ``retries`` times, ``retry_delay``
    seconds apart; ``timeout`` bounds one call (one step of a generator). A plain ``def``
    handler runs in a worker thread unless ``inline=True`` (for cheap pure functions).
    Options are checked when the task joins a :class:`DagPipeline`.
    """

    id: str
    handler: Handler
    concurrency: int = 1
    queue_size: int | None = None
    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    inline: bool = False

    @property
    def kind(self) -> HandlerKind:
        """How the handler produces outputs (async, async generator, sync, sync generator)."""
        return handler_kind(self.handler)

    @property
    def bound(self) -> int:
        """The capacity of this task's input queue."""
        return self.queue_size if self.queue_size is not None else 2 * self.concurrency


@dataclass(frozen=True, slots=True)
class TaskTransition:
    """An edge ``source -> target``, taken when ``when(ctx, value)`` holds (always if None).

    ``max_loops=n`` marks a loop edge: one payload's lineage may take it at most n times.
    """

    source: str
    target: str
    when: Predicate | None = None
    max_loops: int | None = None

    @property
    def is_loop(self) -> bool:
        """Whether this edge is a bounded loop edge (it has ``max_loops``)."""
        return self.max_loops is not None

    @property
    def label(self) -> str:
        """``source -> target``, as error messages name the edge."""
        return f"{self.source} -> {self.target}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_task(task: object) -> DagTask:
    if not isinstance(task, DagTask):
        raise PipelineDefinitionError(f"expected a DagTask, got {task!r}")
    where = f"task {task.id!r}"
    if not isinstance(task.id, str) or not task.id:
        raise PipelineDefinitionError(f"task id must be a non-empty string, got {task.id!r}")
    if not callable(task.handler):
        raise PipelineDefinitionError(f"{where}: handler {task.handler!r} is not callable")
    if not _is_int(task.concurrency) or task.concurrency < 1:
        raise PipelineDefinitionError(
            f"{where}: concurrency must be a positive int, got {task.concurrency!r}"
        )
    if task.queue_size is not None and (not _is_int(task.queue_size) or task.queue_size < 1):
        raise PipelineDefinitionError(
            f"{where}: queue_size must be a positive int or None, got {task.queue_size!r}"
        )
    if not _is_int(task.retries) or task.retries < 0:
        raise PipelineDefinitionError(
            f"{where}: retries must be a non-negative int, got {task.retries!r}"
        )
    if not _is_number(task.retry_delay) or task.retry_delay < 0:
        raise PipelineDefinitionError(
            f"{where}: retry_delay must be a non-negative number, got {task.retry_delay!r}"
        )
    if task.timeout is not None and (not _is_number(task.timeout) or task.timeout <= 0):
        raise PipelineDefinitionError(
            f"{where}: timeout must be a positive number of seconds or None, got {task.timeout!r}"
        )
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
    if edge.when is not None and not callable(edge.when):
        raise PipelineDefinitionError(
            f"edge {edge.label}: when={edge.when!r} is not callable; pass a function "
            "when(ctx, value) -> bool"
        )
    if edge.max_loops is not None and (not _is_int(edge.max_loops) or edge.max_loops < 1):
        raise PipelineDefinitionError(
            f"edge {edge.label}: max_loops must be a positive int, got {edge.max_loops!r}"
        )
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
        seen: set[tuple[str, str]] = set()
        for edge in transitions:
            edge = _check_edge(edge, by_id)
            if (edge.source, edge.target) in seen:
                raise PipelineDefinitionError(
                    f"duplicate edge {edge.label}: combine the conditions into one predicate"
                )
            seen.add((edge.source, edge.target))
            edges.append(edge)
        cycle = _find_cycle(list(by_id), edges)
        if cycle is not None:
            closing = f"{cycle[-2]} -> {cycle[-1]}"
            raise PipelineDefinitionError(
                f"edge {closing} closes a cycle with no max_loops ({' -> '.join(cycle)}); "
                "add max_loops=N to one of its edges"
            )
        fed = {e.target for e in edges if not e.is_loop}
        self.name = name if name is not None else "pipeline"
        self.tasks: dict[str, DagTask] = by_id
        self.transitions: tuple[TaskTransition, ...] = tuple(edges)
        self.sources: tuple[str, ...] = tuple(i for i in by_id if i not in fed)
        has_out = {e.source for e in edges}
        self.sinks: tuple[str, ...] = tuple(i for i in by_id if i not in has_out)
        if not self.sources:  # unreachable for an acyclic forward graph; kept as a guard
            raise PipelineDefinitionError("the pipeline has no source task")

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
        on_error: str = "raise",
        monitor: Any = None,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        total: int | None = None,
        _id_prefix: str = "",
    ) -> RunResult:
        """Run every input through the graph; return the sinks' outputs as a RunResult.

        With ``result_handler(ctx, value)`` (sync or async) each sink output is handed
        over as it arrives and none is kept. See ``stream`` to iterate instead.
        """
        from .options import RunOptions
        from .run import Run

        options = RunOptions.check(
            inputs,
            result_handler=result_handler,
            key=key,
            on_error=on_error,
            monitor=monitor,
            run_id=run_id,
            metadata=metadata,
            total=total,
            id_prefix=_id_prefix,
        )
        return await Run(self, options).collect()

    def stream(
        self,
        inputs: Iterable[Any] | Any,
        *,
        key: Callable[[Any], Any] | None = None,
        on_error: str = "raise",
        monitor: Any = None,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        total: int | None = None,
        _id_prefix: str = "",
    ) -> AsyncIterator[tuple[PipelineContext, Any]]:
        """Iterate ``(ctx, value)`` over the sinks' outputs as they come.

        ``async for ctx, value in pipeline.stream(inputs): ...``; leaving the loop early
        (``break``) or cancelling the consumer stops the run.
        """
        from .options import RunOptions
        from .stream import RunIterator

        options = RunOptions.check(
            inputs,
            key=key,
            on_error=on_error,
            monitor=monitor,
            run_id=run_id,
            metadata=metadata,
            total=total,
            id_prefix=_id_prefix,
        )
        return RunIterator(self, options)

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
        timeout: float | None = None,
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
    ) -> PipelineBuilder:
        """Add an edge (see :class:`TaskTransition`); returns the builder."""
        self._edges.append(TaskTransition(source, target, when=when, max_loops=max_loops))
        return self

    def build(self) -> DagPipeline:
        """Validate and return the pipeline; raises PipelineDefinitionError if invalid."""
        return DagPipeline(self._tasks, self._edges, name=self.name)


def describe_predicate(edge: TaskTransition) -> str | None:
    """The predicate's name for display, or None for an unconditional edge."""
    return None if edge.when is None else callable_name(edge.when)
