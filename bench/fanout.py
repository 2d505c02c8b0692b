"""Workload 4: fan-out to 4 branches and fan-in to one sink (4 outputs per input)."""

from __future__ import annotations

from . import baseline, steps
from .harness import Impl, Row, Target, compare

BRANCHES = 4
FAN_TARGET = Target("speed", 0.9)  # issue 16


def workload_fanout(scale: float, rounds: int) -> list[Row]:
    """``source -> 4 branches -> sink``, ``x + 1`` everywhere, one worker per node."""
    items = max(100, int(100_000 * scale))
    dag_q100 = steps.fan(BRANCHES, queue_size=100)
    dag_default = steps.fan(BRANCHES)

    async def hand(n: int) -> int:
        return await baseline.run_fan(n, steps.inc, BRANCHES)

    async def dag100(n: int) -> int:
        return await steps.run_counted(dag_q100, n)

    async def dag(n: int) -> int:
        return await steps.run_counted(dag_default, n)

    def outputs(n: int) -> int:
        return n * BRANCHES

    impls = [
        Impl("hand-written asyncio", hand, expected=outputs, note="reference"),
        Impl("async_dag DAG, queue_size=100", dag100, expected=outputs, target=FAN_TARGET),
        Impl(
            "async_dag DAG, default queues",
            dag,
            expected=outputs,
            target=FAN_TARGET,
            note=f"{dag_default.tasks['source'].bound} per edge in: the sink's "
            f"{dag_default.queue_sizes['sink']}",
        ),
    ]
    return compare("4 fan-out/in", impls, items=items, rounds=rounds, reference=impls[0].name)
