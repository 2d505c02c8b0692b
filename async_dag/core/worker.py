"""The one worker loop: take a payload, call the handler, send the outputs on.

Every node runs ``concurrency`` copies of :func:`work`. What differs between nodes was
decided when the run started (see :class:`~async_dag.core.node.NodeRuntime`): a node
whose handler is an ``async def`` or an inline ``def`` with no retries, timeout, rate
limit, batch or join is called right here, one coroutine per payload (the handler's
own); every other node hands the payload to its ``invoke`` (retries, threads,
generators, batches, joins, and input order for those), which ends the payload's share
of the work itself. A direct node with one plain edge in a run without joins makes the
hop to the next queue here too (:class:`~async_dag.core.routing.Hop`): its output takes
over its payload's place in the run's count (and in its input's, with a checkpoint), so
the counts are left alone; so does the output given to a node's ``relay`` (a plain
fan-out, or the reorder of an ordered run, which a failure is also told about).

This loop runs once per payload per node, so it is written for CPython's sake: the
queue is iterated (``drain``, a generator resumed per item, cheaper than a call), names
are bound to locals once, and the hop is one context made in place (what ``derive_to``
does, without a call: the path is made again only when the parent's path object changes)
and one ``offer``. A direct worker counts itself in ``in_flight`` once per stretch of work, not
once per payload: between two payloads of a stretch it never suspends, so whoever reads
the count (a monitor's sampler, a handler) sees exactly the payloads being handled.
``make bench`` measures it against a hand-written pipeline, ``make bench-versus``
against an earlier revision of itself.
"""

from __future__ import annotations

import asyncio
from types import CoroutineType
from typing import TYPE_CHECKING

from .context import EngineContext
from .queue import QueueClosed

if TYPE_CHECKING:
    from .node import NodeRuntime


async def work(node: NodeRuntime) -> None:
    """One worker of ``node``: take payloads from its queue until the run winds down."""
    run = node.run
    drain, wait_items = node.queue.drain, node.queue.wait_items
    handler, emit, invoke = node.handler, node.emit, node.invoke
    direct, awaits = node.direct, node.awaits
    tracker = run.tracker
    hop = node.hop if direct else None
    relay = node.relay if direct else None
    on_failure = node.on_failure if direct else None
    if hop is not None:
        step, run_id, metadata, offer, put = hop
        parent: tuple[str, ...] | None = None
        path: tuple[str, ...] = step
    try:
        while True:
            if direct:  # busy from here to the wait: see the module docstring
                node.in_flight += 1
            for ctx, payload in drain():
                if not direct:
                    await invoke(ctx, payload)
                    continue
                node.received += 1
                try:
                    value = handler(ctx, payload)
                    if awaits:
                        value = await value
                    elif type(value) is CoroutineType:
                        raise node.returned_coroutine(value)
                except Exception as exc:
                    run.fail(node, ctx, exc, payload)
                    if on_failure is not None:
                        pending = on_failure(ctx)
                        if pending is not None:
                            await pending
                else:
                    node.emitted += 1
                    if hop is not None:  # the output counts in the payload's place
                        if ctx._path is not parent:  # (``derive_to``, inlined)
                            parent = ctx._path
                            path = parent + step
                        child = EngineContext()
                        child._run_id = run_id
                        child._data_id = ctx._data_id
                        child._path = path
                        child._attempt = 0
                        child._metadata = metadata
                        item = (child, value)
                        if not offer(item):
                            await put(item)
                        continue
                    if relay is not None:  # likewise, the first output
                        pending = relay(ctx, value)
                        if pending is not None:
                            await pending
                        continue
                    pending = emit(ctx, value)
                    if pending is not None:
                        await pending
                if tracker is not None:
                    tracker.leave(ctx._data_id, node)
                run.active -= 1
                if run.active == run.parked:
                    run.idle()
            if direct:
                node.in_flight -= 1
            await wait_items()
    except BaseException as exc:
        if stopped(node, exc):
            raise


def stopped(node: NodeRuntime, exc: BaseException) -> bool:
    """How a worker ends: True to re-raise (the run cancelled it); otherwise the
    worker simply ends (the run is winding down) or its exception (a bug,
    KeyboardInterrupt, a stray CancelledError) stops the run."""
    node.in_flight = 0
    if isinstance(exc, QueueClosed):
        return False
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        if node.run.closing or (task is not None and task.cancelling()):
            return True
        exc = RuntimeError(f"a handler of {node.id!r} raised CancelledError")
    node.run.abort(exc)
    return False
