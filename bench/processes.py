"""Workload 7: a CPU-bound handler over batches, in 1 and in 2 worker processes.

``run_function_pipeline_in_subprocess`` runs each batch in a worker process with its own
event loop; with 2 cores, 2 processes should finish a CPU-bound load about twice as fast.
The pool is started by each call, as a user's call would, so its start-up is counted.
"""

from __future__ import annotations

from async_dag import PipelineContext, run_function_pipeline_in_subprocess

from .harness import Impl, Row, Target, compare

SPEEDUP_TARGET = Target("speed", 1.7)
BATCHES = 8
WORK = 4_000  # loop iterations per item: about 0.25 ms of pure Python


async def crunch(ctx: PipelineContext, x: int) -> int:
    """Pure-Python CPU work that never yields to the loop."""
    acc = x
    for i in range(WORK):
        acc = (acc * 31 + i) % 1_000_003
    return acc


def _batches(items: int) -> list[list[int]]:
    per = max(1, items // BATCHES)
    return [list(range(b * per, (b + 1) * per)) for b in range(BATCHES)]


def _run(items: int, processes: int) -> int:
    results = run_function_pipeline_in_subprocess(crunch, _batches(items), processes=processes)
    return sum(len(result) for result in results)


def one_process(items: int) -> int:
    """All batches through a pool of one worker process."""
    return _run(items, 1)


def two_processes(items: int) -> int:
    """All batches through a pool of two worker processes."""
    return _run(items, 2)


def workload_processes(scale: float, rounds: int) -> list[Row]:
    """Workload 7: 1 vs 2 processes (the speed-up is the 2-process row's ratio)."""
    items = max(BATCHES, int(16_000 * scale))

    def outputs(n: int) -> int:
        return max(1, n // BATCHES) * BATCHES

    impls = [
        Impl("1 process", one_process, expected=outputs, note="reference"),
        Impl("2 processes", two_processes, expected=outputs, target=SPEEDUP_TARGET),
    ]
    return compare("7 processes", impls, items=items, rounds=rounds, reference=impls[0].name)
