"""Plain async function pipelines: one async function (or async generator) per input.

Example::

    async def enrich(ctx, user_id):
        profile = await fetch_profile(user_id)
        if profile is None:
            return None
        for order in profile["orders"]:
            ...
        return summary

    results = await run_function_pipeline(user_ids, enrich, concurrency=16)

A function pipeline is a one-node run of the DAG engine, so contexts, stats, error
policies, retries, timeouts, monitors and cancellation are the same as for graphs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from .context import PipelineContext
from .definition import DagPipeline, DagTask
from .handlers import HandlerKind, callable_name, handler_kind
from .options import RunOptions, check_function_options
from .results import RunResult
from .run import Run
from .stream import RunIterator


def _options(
    inputs: Any,
    pipeline: Callable[..., Any],
    *,
    concurrency: int,
    ordered: bool,
    key: Callable[[Any], Any] | None,
    on_error: str,
    retries: int,
    timeout: float | None,
    result_handler: Callable[..., Any] | None,
    monitor: Any,
    run_id: str | None,
    metadata: Mapping[str, Any] | None,
    total: int | None = None,
    id_prefix: str = "",
) -> tuple[DagPipeline, RunOptions]:
    if not callable(pipeline):
        raise TypeError(f"pipeline must be an async function, got {pipeline!r}")
    if handler_kind(pipeline) not in (HandlerKind.ASYNC, HandlerKind.ASYNC_GEN):
        raise TypeError(
            f"pipeline {callable_name(pipeline)!r} must be an async function (async def) "
            "or an async generator function; for a plain def use a PipelineBuilder task"
        )
    check_function_options(
        concurrency=concurrency, ordered=ordered, retries=retries, timeout=timeout
    )
    options = RunOptions.check(
        inputs,
        result_handler=result_handler,
        key=key,
        on_error=on_error,
        monitor=monitor,
        run_id=run_id,
        metadata=metadata,
        # one worker finishes inputs in order already: no reordering needed
        ordered=ordered and concurrency > 1,
        total=total,
        id_prefix=id_prefix,
    )
    name = callable_name(pipeline)
    # A queue of at least 16 lets the feeder and the workers hand over inputs in small
    # batches instead of one loop turn per input; still a fixed bound on inputs pulled.
    task = DagTask(
        name,
        pipeline,
        concurrency=concurrency,
        queue_size=max(2 * concurrency, 16),
        retries=retries,
        timeout=timeout,
    )
    return DagPipeline([task], name=name), options


async def run_function_pipeline(
    inputs: Any,
    pipeline: Callable[..., Any],
    *,
    concurrency: int = 1,
    ordered: bool = True,
    key: Callable[[Any], Any] | None = None,
    on_error: str = "raise",
    retries: int = 0,
    timeout: float | None = None,
    result_handler: Callable[..., Any] | None = None,
    monitor: Any = None,
    run_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    total: int | None = None,
    _id_prefix: str = "",
) -> RunResult:
    """Call ``pipeline(ctx, item)`` for every input, ``concurrency`` at a time.

    ``pipeline`` is an ``async def`` (one output per input, None included) or an async
    generator (zero or more outputs). Inputs are pulled lazily from any iterable or async
    iterable. With ``ordered=True`` outputs come in input order, otherwise as they
    finish. Returns a :class:`RunResult`; with ``result_handler(ctx, value)`` each output
    is handed over as it comes and none is kept.
    """
    dag, options = _options(
        inputs,
        pipeline,
        concurrency=concurrency,
        ordered=ordered,
        key=key,
        on_error=on_error,
        retries=retries,
        timeout=timeout,
        result_handler=result_handler,
        monitor=monitor,
        run_id=run_id,
        metadata=metadata,
        total=total,
        id_prefix=_id_prefix,
    )
    return await Run(dag, options).collect()


def iter_function_pipeline(
    inputs: Any,
    pipeline: Callable[..., Any],
    *,
    concurrency: int = 1,
    ordered: bool = True,
    key: Callable[[Any], Any] | None = None,
    on_error: str = "raise",
    retries: int = 0,
    timeout: float | None = None,
    monitor: Any = None,
    run_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    total: int | None = None,
    _id_prefix: str = "",
) -> AsyncIterator[tuple[PipelineContext, Any]]:
    """Like :func:`run_function_pipeline`, but yield ``(ctx, value)`` as outputs come.

    ``async for ctx, value in iter_function_pipeline(items, fn): ...``; leaving the loop
    early or cancelling the consumer stops the run and its tasks.
    """
    dag, options = _options(
        inputs,
        pipeline,
        concurrency=concurrency,
        ordered=ordered,
        key=key,
        on_error=on_error,
        retries=retries,
        timeout=timeout,
        result_handler=None,
        monitor=monitor,
        run_id=run_id,
        metadata=metadata,
        total=total,
        id_prefix=_id_prefix,
    )
    return RunIterator(dag, options)
