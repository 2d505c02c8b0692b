"""Workload ``queuesize``: the chain and the fan-out at several queue sizes, to pick
the default by measurement (issue 16).

Each size is one row against the same hand-written pipeline on ``asyncio.Queue(100)``;
the row of today's default says so. A ``queue_size=`` given is each task's whole queue;
the default is per edge into a task, so the fan-out also has a row at the default, whose
sink (4 edges in) holds four times as much.
"""

from __future__ import annotations

from async_dag.core.options import DEFAULT_QUEUE_SIZE

from . import baseline, steps
from .harness import Impl, Row, compare

SIZES = (2, 8, 16, 32, 64, 100, 256)


def _label(size: int, per_edge: bool = False) -> str:
    default = size == DEFAULT_QUEUE_SIZE and not per_edge
    return f"queue_size={size}" + (" (the default)" if default else "")


def workload_queuesize(scale: float, rounds: int) -> list[Row]:
    """The 3-stage chain (200,000 items) and the 4-branch fan-out (50,000) per size."""
    rows: list[Row] = []
    items = max(100, int(200_000 * scale))

    async def hand(n: int) -> int:
        return await baseline.run_chain(n, [(steps.inc, 1)] * 3)

    impls = [Impl("hand-written asyncio", hand, note="reference, asyncio.Queue(100)")]
    for size in SIZES:
        pipeline = steps.chain([(steps.h_inc, 1)] * 3, queue_size=size)

        async def dag(n: int, pipeline: steps.DagPipeline = pipeline) -> int:
            return await steps.run_counted(pipeline, n)

        impls.append(Impl(f"chain, {_label(size)}", dag))
    rows += compare("queue size", impls, items=items, rounds=rounds, reference=impls[0].name)

    fan_items = max(100, int(50_000 * scale))

    async def hand_fan(n: int) -> int:
        return await baseline.run_fan(n, steps.inc, 4)

    def outputs(n: int) -> int:
        return 4 * n

    impls = [Impl("hand-written fan-out/in", hand_fan, expected=outputs, note="reference")]
    for size in (*SIZES, None):
        pipeline = steps.fan(4, queue_size=size)

        async def fan(n: int, pipeline: steps.DagPipeline = pipeline) -> int:
            return await steps.run_counted(pipeline, n)

        name = (
            f"fan-out/in, {_label(size, per_edge=True)}"
            if size is not None
            else f"fan-out/in, the default ({DEFAULT_QUEUE_SIZE} per edge in, the sink's "
            f"{pipeline.queue_sizes['sink']})"
        )
        impls.append(Impl(name, fan, expected=outputs))
    rows += compare("queue size", impls, items=fan_items, rounds=rounds, reference=impls[0].name)
    return rows
