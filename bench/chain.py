"""Workloads 1-3: a 3-stage chain, with 1 worker per stage, 8 yielding workers, and I/O.

1. ``chain``: ``x + 1`` three times, one worker per stage; DAG and function forms.
2. ``workers8``: the same with 8 workers per stage, each awaiting ``asyncio.sleep(0)``.
3. ``io``: the middle stage sleeps 1 ms with 64 workers; also compared to the ideal
   ``items x 1 ms / 64``.
"""

from __future__ import annotations

from typing import Any

from async_dag import PipelineBuilder, PipelineContext, run_function_pipeline
from async_dag.core.context import derive

from . import baseline, steps
from .harness import Impl, Row, Target, compare
from .peers import peer_impls

CHAIN_TARGET = Target("speed", 0.5)
WORKERS_TARGET = Target("speed", 0.7)
DEFAULT_TARGET = Target("time", 1.10)  # issue 16: the default within 10% of queue_size=100
Q100 = "async_dag DAG, queue_size=100"


async def chain3(ctx: PipelineContext, x: int) -> int:
    """The chain as one function: the three steps awaited in turn."""
    return await steps.inc(await steps.inc(await steps.inc(x)))


async def chain3_yield(ctx: PipelineContext, x: int) -> int:
    """The yielding chain as one function."""
    return await steps.inc_yield(await steps.inc_yield(await steps.inc_yield(x)))


def fused3(ctx: PipelineContext, x: int) -> int:
    """What fusing the inline chain into one worker could give at most: the three calls
    with their contexts derived as the engine would, but no counters for ``s1``/``s2``."""
    c1 = derive(ctx, "s1")
    c2 = derive(c1, "s2")
    return steps.h_inc_sync(c2, steps.h_inc_sync(c1, steps.h_inc_sync(ctx, x)))


async def _run_function(items: int, fn: Any, **options: Any) -> int:
    counter = steps.Counter()
    await run_function_pipeline(range(items), fn, result_handler=counter, **options)
    return counter.count


def workload_chain(scale: float, rounds: int) -> list[Row]:
    """Workload 1: 3 stages of ``x + 1``, one worker each."""
    items = max(100, int(200_000 * scale))
    dag_q100 = steps.chain([(steps.h_inc, 1)] * 3, queue_size=100)
    dag_default = steps.chain([(steps.h_inc, 1)] * 3)
    dag_inline = steps.chain([(steps.h_inc_sync, 1)] * 3, queue_size=100, inline=True)
    dag_fused = PipelineBuilder("fused").add_task("s0", fused3, inline=True).build()

    async def hand(n: int) -> int:
        return await baseline.run_chain(n, [(steps.inc, 1)] * 3)

    async def sequential(n: int) -> int:
        return await baseline.run_sequential(n, [steps.inc] * 3)

    async def dag100(n: int) -> int:
        return await steps.run_counted(dag_q100, n)

    async def dag(n: int) -> int:
        return await steps.run_counted(dag_default, n)

    async def inline(n: int) -> int:
        return await steps.run_counted(dag_inline, n)

    async def fused(n: int) -> int:
        return await steps.run_counted(dag_fused, n)

    async def collected(n: int) -> int:
        return len(await dag_q100.run_stream(range(n)))

    async def function(n: int) -> int:
        return await _run_function(n, chain3)

    impls = [
        Impl("hand-written asyncio", hand, note="reference"),
        Impl("sequential awaits, no queues", sequential, note="floor, no pipeline"),
        Impl(Q100, dag100, target=CHAIN_TARGET),
        Impl(
            "async_dag DAG, default queues",
            dag,
            target=DEFAULT_TARGET,
            versus=Q100,
            versus_label="queue_size=100",
            note=f"queue_size={dag_default.tasks['s0'].bound}",
        ),
        Impl("async_dag DAG, inline sync handlers", inline, note="def handlers, inline=True"),
        Impl(
            "inline chain fused by hand (fusion's upper bound)",
            fused,
            note="one inline task making the 3 calls, contexts derived, no per-node counters",
        ),
        Impl("async_dag DAG, RunResult kept", collected, note="no result_handler"),
        # the function-pipeline form of the chain: the three steps are awaits in one
        # function, so no queue between them (what users of this form write)
        Impl(
            "async_dag function pipeline",
            function,
            target=CHAIN_TARGET,
            note="3 awaits in one function, 1 worker",
        ),
        *peer_impls(steps.inc, 1, 3, max(100, items // 20)),
    ]
    return compare("1 chain", impls, items=items, rounds=rounds, reference=impls[0].name)


def workload_workers8(scale: float, rounds: int) -> list[Row]:
    """Workload 2: 3 stages, 8 workers each, every call awaiting ``asyncio.sleep(0)``."""
    items = max(100, int(100_000 * scale))
    dag_q100 = steps.chain([(steps.h_inc_yield, 8)] * 3, queue_size=100)
    dag_default = steps.chain([(steps.h_inc_yield, 8)] * 3)

    async def hand(n: int) -> int:
        return await baseline.run_chain(n, [(steps.inc_yield, 8)] * 3)

    async def dag100(n: int) -> int:
        return await steps.run_counted(dag_q100, n)

    async def dag(n: int) -> int:
        return await steps.run_counted(dag_default, n)

    async def function(n: int) -> int:
        return await _run_function(n, chain3_yield, concurrency=8, ordered=False)

    impls = [
        Impl("hand-written asyncio", hand, note="reference"),
        Impl(Q100, dag100, target=WORKERS_TARGET),
        Impl("async_dag DAG, default queues", dag, target=WORKERS_TARGET),
        Impl(
            "async_dag function, concurrency=8",
            function,
            note="ordered=False; 8 in flight, not 24",
        ),
        *peer_impls(steps.inc_yield, 8, 3, max(100, items // 20)),
    ]
    return compare("2 workers8", impls, items=items, rounds=rounds, reference=impls[0].name)


def workload_io(scale: float, rounds: int) -> list[Row]:
    """Workload 3: ``x + 1``, then 1 ms of I/O on 64 workers, then ``x + 1``."""
    items = max(200, int(20_000 * scale))
    dag_q100 = steps.chain(
        [(steps.h_inc, 1), (steps.h_inc_io, 64), (steps.h_inc, 1)], queue_size=100
    )
    dag_default = steps.chain([(steps.h_inc, 1), (steps.h_inc_io, 64), (steps.h_inc, 1)])

    async def hand(n: int) -> int:
        return await baseline.run_chain(n, [(steps.inc, 1), (steps.inc_io, 64), (steps.inc, 1)])

    async def dag100(n: int) -> int:
        return await steps.run_counted(dag_q100, n)

    async def dag(n: int) -> int:
        return await steps.run_counted(dag_default, n)

    def ideal(impl: Impl, n: int, seconds: float) -> dict[str, Any]:
        ideal_s = n * 0.001 / 64
        return {"ideal_seconds": ideal_s, "note_ideal": f"{seconds / ideal_s:.2f}x ideal time"}

    impls = [
        Impl("hand-written asyncio", hand, note="reference"),
        Impl("async_dag DAG, queue_size=100", dag100, target=WORKERS_TARGET),
        Impl("async_dag DAG, default queues", dag, target=WORKERS_TARGET),
    ]
    return compare("3 io", impls, items=items, rounds=rounds, reference=impls[0].name, extra=ideal)
