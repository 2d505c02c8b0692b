"""Run batches of inputs in worker processes (or on any Executor), one run per batch.

Example::

    async def score(ctx, row):
        return heavy(row)

    results = run_function_pipeline_in_subprocess(score, [rows[:1000], rows[1000:]])
    results[1].stats.elapsed  # one RunResult per batch, in batch order

From a notebook, keep the kernel responsive with ``await asyncio.to_thread(
run_function_pipeline_in_subprocess, score, batches)``. The default pool uses the
``spawn`` start method (never ``fork``): callables and batches are pickled in this
process (by value, with cloudpickle) and each worker runs its batch with ``asyncio.run``.

``monitor=True`` (or a ``Monitor`` such as a ``PipelineMonitor``) shows batch-level
progress: workers run without a monitor, and this process updates the view with the
summed stats of the finished batches each time one finishes (see ``progress``).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import AsyncIterable, Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from ..core.definition import DagPipeline
from ..core.handlers import HandlerKind, callable_name, handler_kind
from ..core.results import NodeStats, RunResult
from ..observe.monitor import Monitor, resolve_monitor
from .options import check_run_options
from .pool import run_in_spawn_pool, run_on_executor
from .progress import BatchProgress
from .shipping import ShippingError, describe_failure, dumps
from .worker import FACTORY, FUNCTION, run_batch, run_shipped

__all__ = ["ShippingError", "run_function_pipeline_in_subprocess", "run_pipeline_in_subprocess"]


_ASYNC_KINDS = (HandlerKind.ASYNC, HandlerKind.ASYNC_GEN)

log = logging.getLogger("async_dag")

# Runs the batches: ``run(on_result=callback_or_None)``; the callback sees each batch's
# result as it finishes.
_Runner = Callable[..., list[RunResult]]


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
    replaces it and is never shut down here. A failing batch re-raises its exception
    with a note naming the batch; a worker that dies raises ``BrokenProcessPool`` (a
    ``RuntimeError``) naming the batch it was running.

    ``monitor=`` (``True``, or a ``Monitor`` such as a ``PipelineMonitor``) shows
    batch-level progress, driven from this process: it starts with one node named like
    the function and zero counters, and is updated as batches finish (in the order they
    finish) with the stats of the finished batches summed; ``in_flight`` and queue
    depths stay 0. Workers run without a monitor. The view's run id is ``run_id=`` when
    given (each batch's run has it too), else a fresh one.
    """
    if not callable(pipeline) or handler_kind(pipeline) not in _ASYNC_KINDS:
        raise TypeError(
            f"pipeline must be an async function or async generator function (ctx, "
            f"payload), got {pipeline!r}"
        )
    return _run_batches(FUNCTION, pipeline, batches, processes, executor, run_options)


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

    With ``monitor=`` the view shows batch-level progress per task, updated as batches
    finish; to list the tasks from the start, ``factory`` is also called once here (it
    should just build the pipeline; nothing runs on that copy). If that call fails, the
    tasks appear with the first finished batch instead.
    """
    if not isinstance(factory, DagPipeline) and not callable(factory):
        raise TypeError(
            f"factory must be a callable that returns a DagPipeline, got {type(factory).__name__}"
        )
    return _run_batches(FACTORY, factory, batches, processes, executor, run_options)


def _run_batches(
    kind: str,
    target: Any,
    batches: Iterable[Any],
    processes: int | None,
    executor: Executor | None,
    options: dict[str, Any],
) -> list[RunResult]:
    started = time.perf_counter()
    items = _list_batches(batches)
    workers = _pool_size(processes, executor, len(items))
    # The monitor stays here: workers run without one, this process shows their progress.
    options = dict(options)
    monitor_spec = options.pop("monitor", None)
    check_run_options(kind, options)
    monitor = resolve_monitor(monitor_spec)
    run = _runner(kind, target, items, workers, executor, options)
    if monitor is None:
        return run(on_result=None)
    progress = _progress(monitor, kind, target, options, started)
    progress.start()
    try:
        results = run(on_result=progress.add)
    except BaseException as exc:
        progress.finish(exc)
        raise
    progress.finish(None)
    return results


def _runner(
    kind: str,
    target: Any,
    items: list[Any],
    workers: int,
    executor: Executor | None,
    options: dict[str, Any],
) -> _Runner:
    """What runs the batches, once everything is shipped (so a ShippingError comes first)."""
    if not items:
        return lambda *, on_result: []
    if isinstance(executor, ThreadPoolExecutor):
        # Same process: nothing to pickle, each thread runs its own event loop.
        local = [(run_batch, (kind, target, batch, options)) for batch in items]
        return functools.partial(run_on_executor, executor, local, shipped=False)
    common = _ship_common(kind, target, options)
    payloads = [_ship_batch(index, batch) for index, batch in enumerate(items)]
    if executor is not None:
        shipped = [(run_shipped, (i, common, payload)) for i, payload in enumerate(payloads)]
        return functools.partial(run_on_executor, executor, shipped, shipped=True)
    return functools.partial(run_in_spawn_pool, workers, common, payloads)


def _progress(
    monitor: Monitor, kind: str, target: Any, options: dict[str, Any], started: float
) -> BatchProgress:
    """The parent-side progress of a call, with the nodes known before any batch ran."""
    name: str | None
    nodes: dict[str, NodeStats]
    if kind == FUNCTION:
        name = callable_name(target)
        concurrency: int = options.get("concurrency", 1)
        # the one queue as run_function_pipeline sizes it; each batch's stats say too
        nodes = {name: NodeStats(name, concurrency, max(2 * concurrency, 16))}
    else:
        pipeline = target if isinstance(target, DagPipeline) else _build_here(target)
        if pipeline is None:
            name, nodes = None, {}  # both come with the first finished batch
        else:
            name = pipeline.name
            nodes = {
                task_id: NodeStats(task_id, task.concurrency, task.bound)
                for task_id, task in pipeline.tasks.items()
            }
    return BatchProgress(
        monitor, run_id=options.get("run_id"), name=name, nodes=nodes, started=started
    )


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
