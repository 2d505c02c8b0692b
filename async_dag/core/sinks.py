"""Where sink outputs go: kept for the RunResult, handed to a ``result_handler``, or
put in a stream's buffer. One is chosen per run; every sink node emits into it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .context import PipelineContext
from .node import Emit, NodeRuntime
from .queue import NodeQueue

if TYPE_CHECKING:
    from .run import Run


def collect(run: Run, node: NodeRuntime) -> Emit:
    """Keep outputs and their contexts side by side (Records are built on first use)."""
    values, contexts = run.values, run.contexts

    def emit(ctx: PipelineContext, value: Any) -> None:
        run.outputs += 1
        values.append(value)
        contexts.append(ctx)

    return emit


def hand_over(run: Run, node: NodeRuntime, handler: Callable[..., Any]) -> Emit:
    """Give each output to ``result_handler(ctx, value)`` (sync or async); keep none.

    A handler that raises fails that output at its sink, under the run's policy."""

    def emit(ctx: PipelineContext, value: Any) -> Awaitable[None] | None:
        run.outputs += 1
        try:
            result = handler(ctx, value)
        except Exception as exc:
            _handler_failed(run, node, ctx, exc, value)
            return None
        if result is not None and asyncio.iscoroutine(result):
            return _await_handler(run, node, ctx, value, result)
        return None

    return emit


async def _await_handler(
    run: Run, node: NodeRuntime, ctx: PipelineContext, value: Any, result: Awaitable[Any]
) -> None:
    try:
        await result
    except Exception as exc:
        _handler_failed(run, node, ctx, exc, value)


def _handler_failed(
    run: Run, node: NodeRuntime, ctx: PipelineContext, exc: Exception, value: Any
) -> None:
    exc.add_note(f"raised by result_handler for an output of {node.id!r}")
    run.outputs -= 1  # produced (the sink's ``emitted``) but not delivered
    run.fail(node, ctx, exc, value)


def to_stream(run: Run, node: NodeRuntime, buffer: NodeQueue) -> Emit:
    """Put outputs in the iterator's bounded buffer, waiting while the consumer lags."""

    def emit(ctx: PipelineContext, value: Any) -> Awaitable[None] | None:
        run.outputs += 1
        item = (ctx, value)
        if buffer.offer(item):
            return None
        return buffer.put(item)

    return emit
