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
policies, retries, timeouts, rate limits, checkpoints, monitors and cancellation are
the same as for graphs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from .context import PipelineContext
from .definition import DagPipeline, DagTask
from .handlers import HandlerKind, callable_name, handler_kind
from .options import RUN, OnError, RunOptions, check_rate_limit
from .results import RunResult
from .retry import RetryPolicy
from .run import Run
from .stream import RunIterator

if TYPE_CHECKING:
    from .background import PipelineRun
    from .checkpoint import Checkpoint
    from .observer import Monitor
    from .ratelimit import RateLimit

_RUN_OPTIONS = ("key", "on_error", "monitor", "run_id", "metadata", "total", "checkpoint")
FUNCTION_OPTIONS = (
    "concurrency",
    "ordered",
    "timeout",
    "retries",
    "retry_delay",
    "retry_backoff",
    "retry_max_delay",
    "retry_jitter",
    "retry_on",
    "rate_limit",
)


def check_function_options(
    *,
    concurrency: Any = 1,
    ordered: Any = True,
    timeout: Any = None,
    retries: Any = 0,
    retry_delay: Any = 0.0,
    retry_backoff: Any = 1.0,
    retry_max_delay: Any = None,
    retry_jitter: Any = 0.0,
    retry_on: Any = Exception,
    rate_limit: Any = None,
) -> None:
    """Check the options only function pipelines have: ValueError or TypeError naming
    the option (the same checks as a DAG task's, with the run's exception types)."""
    RUN.int_at_least("concurrency", concurrency, 1)
    RUN.boolean("ordered", ordered)
    RUN.timeout(timeout)
    RetryPolicy.check(
        "run_function_pipeline",
        definition=False,
        retries=retries,
        retry_delay=retry_delay,
        retry_backoff=retry_backoff,
        retry_max_delay=retry_max_delay,
        retry_jitter=retry_jitter,
        retry_on=retry_on,
    )
    check_rate_limit(RUN, rate_limit)


def _prepare(
    inputs: Any, pipeline: Callable[..., Any], given: dict[str, Any]
) -> tuple[DagPipeline, RunOptions]:
    """Check a function pipeline's arguments; its one-node graph and run options."""
    if not callable(pipeline):
        raise TypeError(f"pipeline must be an async function, got {pipeline!r}")
    if handler_kind(pipeline) not in (HandlerKind.ASYNC, HandlerKind.ASYNC_GEN):
        raise TypeError(
            f"pipeline {callable_name(pipeline)!r} must be an async function (async def) "
            "or an async generator function; for a plain def use a PipelineBuilder task"
        )
    check_function_options(**{name: given[name] for name in FUNCTION_OPTIONS})
    concurrency, ordered = given["concurrency"], given["ordered"]
    options = RunOptions.check(
        inputs,
        result_handler=given.get("result_handler"),
        # one worker finishes inputs in order already: no reordering needed
        ordered=ordered and concurrency > 1,
        id_prefix=given.get("_id_prefix", ""),
        **{name: given[name] for name in _RUN_OPTIONS},
    )
    name = callable_name(pipeline)
    task = DagTask(
        name,
        pipeline,
        concurrency=concurrency,
        retries=given["retries"],
        retry_delay=given["retry_delay"],
        retry_backoff=given["retry_backoff"],
        retry_max_delay=given["retry_max_delay"],
        retry_jitter=given["retry_jitter"],
        retry_on=given["retry_on"],
        timeout=given["timeout"],
        rate_limit=given["rate_limit"],
    )
    return DagPipeline([task], name=name), options


async def run_function_pipeline(
    inputs: Any,
    pipeline: Callable[..., Any],
    *,
    concurrency: int = 1,
    ordered: bool = True,
    key: Callable[[Any], Any] | None = None,
    on_error: OnError = "raise",
    retries: int = 0,
    retry_delay: float = 0.0,
    retry_backoff: float = 1.0,
    retry_max_delay: float | None = None,
    retry_jitter: float = 0.0,
    retry_on: Any = Exception,
    timeout: float | None = None,
    rate_limit: float | RateLimit | None = None,
    result_handler: Callable[..., Any] | None = None,
    monitor: bool | Monitor | None = None,
    run_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    total: int | None = None,
    checkpoint: str | os.PathLike[str] | Checkpoint | None = None,
    _id_prefix: str = "",
) -> RunResult:
    """Call ``pipeline(ctx, item)`` for every input, ``concurrency`` at a time.

    ``pipeline`` is an ``async def`` (one output per input, None included) or an async
    generator (zero or more outputs). Inputs are pulled lazily from any iterable or async
    iterable. With ``ordered=True`` outputs come in input order, otherwise as they
    finish. Returns a :class:`RunResult`; with ``result_handler(ctx, value)`` each output
    is handed over as it comes and none is kept. Retries, back-off, ``rate_limit`` and
    ``checkpoint`` work as for a DAG task and ``run_stream``.
    """
    dag, options = _prepare(inputs, pipeline, locals())
    return await Run(dag, options).collect()


def iter_function_pipeline(
    inputs: Any,
    pipeline: Callable[..., Any],
    *,
    concurrency: int = 1,
    ordered: bool = True,
    key: Callable[[Any], Any] | None = None,
    on_error: OnError = "raise",
    retries: int = 0,
    retry_delay: float = 0.0,
    retry_backoff: float = 1.0,
    retry_max_delay: float | None = None,
    retry_jitter: float = 0.0,
    retry_on: Any = Exception,
    timeout: float | None = None,
    rate_limit: float | RateLimit | None = None,
    monitor: bool | Monitor | None = None,
    run_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    total: int | None = None,
    checkpoint: str | os.PathLike[str] | Checkpoint | None = None,
) -> AsyncIterator[tuple[PipelineContext, Any]]:
    """Like :func:`run_function_pipeline`, but yield ``(ctx, value)`` as outputs come.

    ``async for ctx, value in iter_function_pipeline(items, fn): ...``; leaving the loop
    early or cancelling the consumer stops the run and its tasks.
    """
    dag, options = _prepare(inputs, pipeline, locals())
    return RunIterator(dag, options)


def start_function_pipeline(
    inputs: Any,
    pipeline: Callable[..., Any],
    *,
    concurrency: int = 1,
    ordered: bool = True,
    key: Callable[[Any], Any] | None = None,
    on_error: OnError = "raise",
    retries: int = 0,
    retry_delay: float = 0.0,
    retry_backoff: float = 1.0,
    retry_max_delay: float | None = None,
    retry_jitter: float = 0.0,
    retry_on: Any = Exception,
    timeout: float | None = None,
    rate_limit: float | RateLimit | None = None,
    result_handler: Callable[..., Any] | None = None,
    monitor: bool | Monitor | None = None,
    run_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    total: int | None = None,
    checkpoint: str | os.PathLike[str] | Checkpoint | None = None,
) -> PipelineRun:
    """Start :func:`run_function_pipeline` in the background; return its PipelineRun.

    Returns at once (``run.results`` fills as outputs come; ``await run`` for the
    RunResult). Raises RuntimeError when no event loop is running.
    """
    from .background import start_run

    dag, options = _prepare(inputs, pipeline, locals())
    return start_run(dag, options)
