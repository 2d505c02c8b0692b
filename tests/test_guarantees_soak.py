"""A soak: 1,000,000 items through a 6-node DAG in flat memory.

The DAG has a fan-out, a join, a batch task, 1% failures (half transient and retried,
half final and sent down an error edge to a dead-letter task). Inputs come from a
generator and every output goes to a counting result_handler, so nothing need grow with
the stream. RSS never shrinks inside a process, so each size runs in a fresh child
(``python tests/test_guarantees_soak.py N`` prints one JSON line) and its peak RSS
(``VmHWM``) at 1,000,000 items must be within 15% of the peak at 100,000.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def peak_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def soak(items: int) -> dict[str, float | int]:
    """Run the soak DAG over ``items`` inputs in this process; report counts and peak RSS."""
    from async_dag import PipelineBuilder

    written = 0
    batches = 0

    async def parse(ctx, x):
        if x % 200 == 3 and ctx.attempt == 0:
            raise ConnectionError("transient")  # retried once, then fine
        if x % 200 == 5:
            raise ValueError(f"bad record {x}")  # final: to the dead letters
        return x

    async def double(ctx, x):
        return 2 * x

    async def square(ctx, x):
        return x * x

    async def merge(ctx, parts):
        return parts["double"] + parts["square"]

    async def write(ctx, rows):
        nonlocal written, batches
        written += len(rows)
        batches += 1

    async def dead(ctx, error):
        return error.payload

    pipeline = (
        PipelineBuilder("soak")
        .add_task("parse", parse, concurrency=4, retries=1, retry_delay=0.0)
        .add_task("double", double, concurrency=2)
        .add_task("square", square, concurrency=2)
        .add_task("merge", merge, join=True, concurrency=2)
        .add_task("write", write, batch_size=100)
        .add_task("dead", dead)
        .add_edge("parse", "double")
        .add_edge("parse", "square")
        .add_edge("double", "merge")
        .add_edge("square", "merge")
        .add_edge("merge", "write")
        .add_edge("parse", "dead", on_error=True)
        .build()
    )
    dead_letters = 0

    def count(ctx, value):
        nonlocal dead_letters
        dead_letters += 1

    started = time.perf_counter()
    result = asyncio.run(pipeline.run_stream((i for i in range(items)), result_handler=count))
    stats = result.stats.nodes
    return {
        "items": items,
        "written": written,
        "batches": batches,
        "dead": dead_letters,
        "retried": stats["parse"].retried,
        "failed": stats["parse"].failed,
        "errors": len(result.errors),
        "seconds": round(time.perf_counter() - started, 2),
        "peak_mb": round(peak_mb(), 2),
    }


def in_child(items: int) -> dict[str, float | int]:
    out = subprocess.run(
        [sys.executable, __file__, str(items)],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=ROOT,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def expected(items: int) -> dict[str, int]:
    final = sum(1 for x in range(items) if x % 200 == 5)
    return {
        "written": items - final,
        "dead": final,
        "failed": final,
        "retried": sum(1 for x in range(items) if x % 200 in (3, 5)),
        "errors": 0,
    }


def test_soak_books_on_a_small_stream():
    """The soak DAG's books balance exactly on 20,000 items (in this process)."""
    report = soak(20_000)
    assert {k: report[k] for k in expected(20_000)} == expected(20_000)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_million_items_in_flat_memory():
    """1,000,000 items through the soak DAG: every item written or dead-lettered, and
    peak RSS within 15% of the peak at 100,000 items."""
    small = in_child(100_000)
    big = in_child(1_000_000)
    for report in (small, big):
        want = expected(int(report["items"]))
        assert {k: report[k] for k in want} == want
    print(f"\nsoak: {small} / {big}")
    assert big["peak_mb"] <= 1.15 * small["peak_mb"], (small, big)


if __name__ == "__main__":
    print(json.dumps(soak(int(sys.argv[1]))))
