"""Run batches of inputs in worker processes (or on any Executor), one run per batch.

Example::

    async def score(ctx, row):
        return heavy(row)

    results = run_function_pipeline_in_subprocess(score, [rows[:1000], rows[1000:]])
    results[1].stats.elapsed  # one RunResult per batch, in batch order

    results = await arun_function_pipeline_in_subprocess(score, batches)  # on a loop

The default pool uses the ``spawn`` start method (never ``fork``): callables and batches
are pickled in this process (by value, with cloudpickle) and each worker runs its batch
with ``asyncio.run``. Without ``key=``, input ``j`` of batch ``i`` has data_id ``"i:j"``,
so ``(run_id, data_id)`` is unique within a call. From a notebook, ``await
arun_function_pipeline_in_subprocess(...)`` keeps the kernel responsive, and the
interrupt button (any cancellation) ends its worker processes.

``monitor=True`` (or a ``Monitor`` such as a ``PipelineMonitor``) shows batch-level
progress: workers run without a monitor, and this process updates the view each time a
batch finishes (see ``progress``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterable, Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from ..core.definition import DagPipeline, DagTask
from ..core.handlers import HandlerKind, callable_name, handler_kind
from ..core.observer import Monitor
from ..core.results import NodeStats, RunResult
from ..observe.monitor import resolve_monitor
from .awaiting import await_executor, await_spawn_pool
from .options import check_run_options
from .pool import OnResult, SpawnPool, WorkerDied, run_on_executor
from .progress import BatchProgress
from .shipping import ShippingError, describe_failure, dumps
from .worker import FACTORY, FUNCTION, run_batch, run_shipped

__all__ = [
    "ShippingError",
    "WorkerDied",
    "arun_function_pipeline_in_subprocess",
    "arun_pipeline_in_subprocess",
    "run_function_pipeline_in_subprocess",
    "run_pipeline_in_subprocess",
]


_ASYNC_KINDS = (HandlerKind.ASYNC, HandlerKind.ASYNC_GEN)

log = logging.getLogger("async_dag")


def run_function_pipeline_in_subprocess(
    pipeline: Callable[..., Any],
    batches: Iterable[Any],
    *,
    processes: int | None = None,
    executor: Executor | None = None,
    **run_options: Any,
) -> list[RunResult]:
    """Run ``await run_function_pipeline(batch, pipeline, **run_options)`` per batch in workers.

    Returns one ``RunResult`` per batch, in batch order. ``processes`` sizes the default
    spawn pool (default: the CPU count, at most one per batch); ``executor`` (any
    ``concurrent.futures.Executor``, e.g. ``distributed.Client(...).get_executor()``)
    replaces it and is never shut down here. Without ``key=``, input ``j`` of batch
    ``i`` has data_id ``f"{i}:{j}"``. A failing batch re-raises its exception with a
    note naming the batch; a worker of the default pool that dies raises
    :class:`~async_dag.execution.pool.WorkerDied` (a ``BrokenProcessPool``, so a
    ``RuntimeError``) naming the batch it was running, its pid and the signal.

    ``monitor=`` (``True``, or a ``Monitor`` such as a ``PipelineMonitor``) shows
    batch-level progress, driven from this process: ``total`` is the number of batches
    and ``inputs`` the batches finished; the node counters are the finished batches'
    stats summed (one node named like the function). Workers run without a monitor. The
    view's run id is ``run_id=`` when given (each batch's run has it too), else a fresh
    one.
    """
    _check_function(pipeline)
    return _BatchedCall(FUNCTION, pipeline, batches, processes, executor, run_options).run()


def run_pipeline_in_subprocess(
    factory: Callable[[], DagPipeline] | DagPipeline,
    batches: Iterable[Any],
    *,
    processes: int | None = None,
    executor: Executor | None = None,
    **run_options: Any,
) -> list[RunResult]:
    """Run ``await factory().run_stream(batch, **run_options)`` per batch in workers.

    ``factory`` is called in each worker, so every batch runs on its own ``DagPipeline``
    (a ``DagPipeline`` itself is accepted too: each worker gets a copy). Everything else
    is as in :func:`run_function_pipeline_in_subprocess`.

    With ``monitor=`` the view lists the tasks from the start: ``factory`` is also called
    once here (it should just build the pipeline; nothing runs on that copy). If that
    call fails, the tasks appear with the first finished batch instead.
    """
    _check_factory(factory)
    return _BatchedCall(FACTORY, factory, batches, processes, executor, run_options).run()


async def arun_function_pipeline_in_subprocess(
    pipeline: Callable[..., Any],
    batches: Iterable[Any],
    *,
    processes: int | None = None,
    executor: Executor | None = None,
    **run_options: Any,
) -> list[RunResult]:
    """The awaitable form of :func:`run_function_pipeline_in_subprocess`: same arguments,
    result and errors, and the loop keeps running meanwhile.

    Cancelling it (a notebook's interrupt button, ``asyncio.timeout``, ``task.cancel()``)
    drops the batches not started, ends the default pool's worker processes (terminated,
    then killed after a second) and raises ``CancelledError`` once they are gone. On an
    executor given by the caller every future is cancelled: dask cancels its tasks; a
    batch already running in a thread or process pool of the caller's runs to its end.
    A ``monitor=`` gets a function that cancels this call (``Monitor.attach``).
    """
    _check_function(pipeline)
    call = _BatchedCall(FUNCTION, pipeline, batches, processes, executor, run_options)
    return await call.arun()


async def arun_pipeline_in_subprocess(
    factory: Callable[[], DagPipeline] | DagPipeline,
    batches: Iterable[Any],
    *,
    processes: int | None = None,
    executor: Executor | None = None,
    **run_options: Any,
) -> list[RunResult]:
    """The awaitable form of :func:`run_pipeline_in_subprocess`; cancelling it stops it as
    :func:`arun_function_pipeline_in_subprocess` says."""
    _check_factory(factory)
    call = _BatchedCall(FACTORY, factory, batches, processes, executor, run_options)
    return await call.arun()


def _check_function(pipeline: Any) -> None:
    if not callable(pipeline) or handler_kind(pipeline) not in _ASYNC_KINDS:
        raise TypeError(
            f"pipeline must be an async function or async generator function (ctx, "
            f"payload), got {pipeline!r}"
        )


def _check_factory(factory: Any) -> None:
    if not isinstance(factory, DagPipeline) and not callable(factory):
        raise TypeError(
            f"factory must be a callable that returns a DagPipeline, got {type(factory).__name__}"
        )


class _BatchedCall:
    """One call, checked and shipped (so a ShippingError comes before anything runs)."""

    def __init__(
        self,
        kind: str,
        target: Any,
        batches: Iterable[Any],
        processes: int | None,
        executor: Executor | None,
        options: dict[str, Any],
    ) -> None:
        self.started = time.perf_counter()
        self.kind = kind
        self.target = target
        self.items = _list_batches(batches)
        workers = _pool_size(processes, executor, len(self.items))
        # The monitor stays here: workers run without one, this process shows progress.
        options = dict(options)
        monitor_spec = options.pop("monitor", None)
        check_run_options(kind, options)
        self.options = options
        self.monitor = resolve_monitor(monitor_spec)
        self.executor = executor
        self.local: list[tuple[Callable[..., Any], tuple[Any, ...]]] | None = None
        self.shipped: list[tuple[Callable[..., Any], tuple[Any, ...]]] | None = None
        self.pool: SpawnPool | None = None
        if not self.items:
            return
        if isinstance(executor, ThreadPoolExecutor):
            # Same process: nothing to pickle, each thread runs its own event loop.
            self.local = [
                (run_batch, (kind, target, batch, options, index))
                for index, batch in enumerate(self.items)
            ]
            return
        common = _ship_common(kind, target, options)
        payloads = [_ship_batch(index, batch) for index, batch in enumerate(self.items)]
        if executor is not None:
            self.shipped = [(run_shipped, (i, common, p)) for i, p in enumerate(payloads)]
        else:
            self.pool = SpawnPool(workers, common, payloads)

    def run(self) -> list[RunResult]:
        """Run the batches, blocking this thread."""
        progress = self._progress(None)
        try:
            results = self._execute(progress.add if progress is not None else None)
        except BaseException as exc:
            if progress is not None:
                progress.finish(exc)
            raise
        if progress is not None:
            progress.finish(None)
        return results

    async def arun(self) -> list[RunResult]:
        """Run the batches, awaiting them on the running loop."""
        progress = self._progress(_canceller())
        try:
            results = await self._aexecute(progress.add if progress is not None else None)
        except BaseException as exc:
            if progress is not None:
                progress.finish(exc)
            raise
        if progress is not None:
            progress.finish(None)
        return results

    def _execute(self, on_result: OnResult) -> list[RunResult]:
        if self.pool is not None:
            return self.pool.run(on_result)
        if self.executor is not None and (self.local or self.shipped):
            calls = self.local or self.shipped or []
            return run_on_executor(
                self.executor, calls, shipped=self.shipped is not None, on_result=on_result
            )
        return []

    async def _aexecute(self, on_result: OnResult) -> list[RunResult]:
        if self.pool is not None:
            return await await_spawn_pool(self.pool, on_result)
        if self.executor is not None and (self.local or self.shipped):
            calls = self.local or self.shipped or []
            return await await_executor(
                self.executor, calls, shipped=self.shipped is not None, on_result=on_result
            )
        await asyncio.sleep(0)  # still a point where a cancellation lands
        return []

    def _progress(self, cancel: Callable[[], None] | None) -> BatchProgress | None:
        """The parent-side progress of the call, started (None without a monitor)."""
        if self.monitor is None:
            return None
        progress, pipeline = _progress(
            self.monitor, self.kind, self.target, self.options, len(self.items), self.started
        )
        progress.start(pipeline, cancel)
        return progress


def _canceller() -> Callable[[], None]:
    """A function that cancels the running task, callable from any thread."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None, "called from a coroutine"

    def cancel() -> None:
        loop.call_soon_threadsafe(task.cancel)

    return cancel


def _progress(
    monitor: Monitor,
    kind: str,
    target: Any,
    options: dict[str, Any],
    batches: int,
    started: float,
) -> tuple[BatchProgress, DagPipeline | None]:
    """The parent-side progress of a call, with the nodes known before any batch ran,
    and the pipeline to show (a function pipeline as its one-node graph)."""
    if kind == FUNCTION:
        pipeline = _one_node(target, options.get("concurrency", 1))
    else:
        pipeline = target if isinstance(target, DagPipeline) else _build_here(target)
    name: str | None = None
    nodes: dict[str, NodeStats] = {}  # unknown: both come with the first finished batch
    if pipeline is not None:
        name = pipeline.name
        nodes = {
            task_id: NodeStats(task_id, task.concurrency, pipeline.queue_sizes[task_id])
            for task_id, task in pipeline.tasks.items()
        }
    progress = BatchProgress(
        monitor,
        run_id=options.get("run_id"),
        name=name,
        nodes=nodes,
        batches=batches,
        started=started,
    )
    return progress, pipeline


def _one_node(function: Callable[..., Any], concurrency: int) -> DagPipeline | None:
    """The one-node graph a function pipeline runs as, for display (None if it fails)."""
    name = callable_name(function)
    # the one queue as run_function_pipeline sizes it; each batch's stats say too
    try:
        task = DagTask(name, function, concurrency=concurrency, queue_size=max(2 * concurrency, 16))
        return DagPipeline([task], name=name)
    except Exception:
        log.debug("no one-node graph for %s", name, exc_info=True)
        return None


def _build_here(factory: Callable[[], Any]) -> DagPipeline | None:
    """Call the factory once in this process to learn the task ids (None if it fails)."""
    try:
        pipeline = factory()
    except Exception:
        log.debug(
            "the pipeline factory failed in the parent process; the monitor "
            "learns the task ids from the first finished batch",
            exc_info=True,
        )
        return None
    return pipeline if isinstance(pipeline, DagPipeline) else None


def _list_batches(batches: Iterable[Any]) -> list[Any]:
    if not isinstance(batches, Iterable):
        raise TypeError(
            f"batches must be an iterable of batches (each an iterable of inputs), "
            f"got {type(batches).__name__}"
        )
    items = list(batches)
    for index, batch in enumerate(items):
        # Checked without iterating: a batch may be a recipe that opens a file when read.
        if isinstance(batch, str | bytes) or not isinstance(batch, Iterable | AsyncIterable):
            raise TypeError(
                f"batch {index} is not an iterable of inputs (got {type(batch).__name__}): "
                f"each batch is the input stream of one run, e.g. a list"
            )
    return items


def _pool_size(processes: int | None, executor: Executor | None, batch_count: int) -> int:
    if executor is not None:
        if processes is not None:
            raise TypeError(
                "pass processes= or executor=, not both: processes= sizes the default "
                "process pool, which executor= replaces"
            )
        if not isinstance(executor, Executor):
            raise TypeError(
                f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}"
            )
        return 0
    if processes is None:
        processes = os.cpu_count() or 1
    elif not isinstance(processes, int) or isinstance(processes, bool):
        raise TypeError(f"processes must be a positive int, got {processes!r}")
    elif processes < 1:
        raise ValueError(f"processes must be a positive int, got {processes!r}")
    return max(1, min(processes, batch_count))


def _ship_common(kind: str, target: Any, options: dict[str, Any]) -> bytes:
    try:
        return dumps((kind, target, options))
    except Exception as exc:
        what = "the pipeline function" if kind == FUNCTION else "the pipeline factory"
        if _pickles(target):
            what = "the pipeline's run options"
            for name, value in options.items():
                if not _pickles(value):
                    what = f"the run option {name}={value!r}"
                    break
        raise ShippingError(describe_failure(what, exc)) from exc


def _ship_batch(index: int, batch: Any) -> bytes:
    try:
        return dumps(batch)
    except Exception as exc:
        what = f"batch {index} ({type(batch).__name__})"
        message = describe_failure(what, exc)
        if not isinstance(batch, list | tuple):
            message += "; pass each batch as a list"
        raise ShippingError(message) from exc


def _pickles(obj: object) -> bool:
    try:
        dumps(obj)
    except Exception:
        return False
    return True
