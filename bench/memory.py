"""Workload 5: peak RSS of the chain over 200,000 and 2,000,000 generated inputs.

RSS never shrinks inside a process, so every (implementation, size) runs in a fresh
child: ``python -m bench.memory --impl NAME --items N`` prints one JSON line with the
child's peak RSS (``VmHWM``, else ``resource.getrusage``), the peak right after its
imports, and the time. Inputs come from a generator and outputs go to a counting
``result_handler``: nothing stays in memory, so the peak must not grow with the stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from .harness import Row

IMPLS = ("hand-written asyncio", "async_dag DAG", "async_dag function pipeline")
CONTROL = "control: async_dag DAG, RunResult kept"  # keeps every output: must grow
JOIN = "async_dag fork of two branches and a join"  # for the join workload
GROWTH_LIMIT = 1.10
ROOT = Path(__file__).resolve().parent.parent


def _peak_mb() -> float:
    """This process's peak RSS in MiB.

    Linux's ``VmHWM`` first: ``getrusage`` maxrss carries over the parent's RSS at fork
    across ``exec``, so in a child of a big benchmark process it reports the parent.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _runner(impl: str) -> Callable[[int], Awaitable[int]]:
    from async_dag import PipelineContext, run_function_pipeline

    from . import baseline, steps

    async def hand(n: int) -> int:
        return await baseline.run_chain(n, [(steps.inc, 1)] * 3, inputs=(i for i in range(n)))

    async def dag(n: int) -> int:
        counter = steps.Counter()
        pipeline = steps.chain([(steps.h_inc, 1)] * 3)
        await pipeline.run_stream((i for i in range(n)), result_handler=counter)
        return counter.count

    async def chain3(ctx: PipelineContext, x: int) -> int:
        return await steps.inc(await steps.inc(await steps.inc(x)))

    async def function(n: int) -> int:
        counter = steps.Counter()
        await run_function_pipeline((i for i in range(n)), chain3, result_handler=counter)
        return counter.count

    async def kept(n: int) -> int:
        pipeline = steps.chain([(steps.h_inc, 1)] * 3)
        return len(await pipeline.run_stream(i for i in range(n)))

    async def joined(n: int) -> int:
        from .features import fork_join

        counter = steps.Counter()
        await fork_join(True).run_stream((i for i in range(n)), result_handler=counter)
        return counter.count

    runners = (hand, dag, function, kept, joined)
    return dict(zip((*IMPLS, CONTROL, JOIN), runners, strict=True))[impl]


def child(impl: str, items: int) -> dict[str, float | int | str]:
    """Run one configuration in this process and report its peak RSS."""
    run = _runner(impl)
    start_mb = _peak_mb()
    start = time.perf_counter()
    count = asyncio.run(run(items))
    seconds = time.perf_counter() - start
    return {
        "impl": impl,
        "items": items,
        "outputs": count,
        "seconds": seconds,
        "start_rss_mb": start_mb,
        "peak_rss_mb": _peak_mb(),
    }


def measure(impl: str, items: int) -> dict[str, float | int | str]:
    """Run :func:`child` in a fresh Python process and return what it reported."""
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--impl", impl, "--items", str(items)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {impl!r} {items} failed:\n{proc.stderr}")
    report: dict[str, float | int | str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def workload_memory(scale: float, rounds: int) -> list[Row]:
    """Workload 5: peak RSS at the small and the large size, per implementation."""
    small = max(1_000, int(200_000 * scale))
    large = small * 10
    rows = []
    for impl in (*IMPLS, CONTROL):
        # the control keeps every output: a tenth of the sizes shows its growth well enough
        div = 10 if impl == CONTROL else 1
        low = measure(impl, small // div)
        high = measure(impl, large // div)
        growth = float(high["peak_rss_mb"]) / float(low["peak_rss_mb"])
        verdict = ("PASS" if growth <= GROWTH_LIMIT else "FAIL") if impl != CONTROL else ""
        rows.append(
            Row(
                workload="5 memory",
                impl=impl,
                items=large // div,
                outputs=int(high["outputs"]),
                expected=large // div,
                value=f"{float(high['peak_rss_mb']):.1f} MB",
                seconds=[float(high["seconds"])],
                target=f"<= {GROWTH_LIMIT:g}x" if impl != CONTROL else "must grow",
                verdict=verdict,
                extra={
                    "ratio_text": f"{growth:.3f}x RSS",
                    "small": low,
                    "large": high,
                    "growth": growth,
                    "note_rss": (
                        f"peak {float(low['peak_rss_mb']):.1f} MB at {small // div:,}, "
                        f"{float(high['peak_rss_mb']):.1f} MB at {large // div:,} "
                        f"(after imports {float(high['start_rss_mb']):.1f} MB)"
                    ),
                },
            )
        )
        if int(low["outputs"]) != small // div:
            rows[-1].outputs = int(low["outputs"])
            rows[-1].expected = small // div
    return rows


def growth_row(
    workload: str,
    impl: str,
    low: dict[str, float | int | str],
    high: dict[str, float | int | str],
    limit: float,
) -> Row:
    """A row for peak RSS at two sizes measured by :func:`measure`: must stay flat."""
    growth = float(high["peak_rss_mb"]) / float(low["peak_rss_mb"])
    small, large = int(low["items"]), int(high["items"])
    ok = int(low["outputs"]) == small and int(high["outputs"]) == large
    return Row(
        workload=workload,
        impl=impl,
        items=large,
        outputs=int(high["outputs"]) if ok else int(low["outputs"]),
        expected=large if ok else small,
        value=f"{float(high['peak_rss_mb']):.1f} MB",
        seconds=[float(high["seconds"])],
        target=f"<= {limit:g}x",
        verdict="PASS" if growth <= limit else "FAIL",
        extra={
            "ratio_text": f"{growth:.3f}x RSS",
            "small": low,
            "large": high,
            "growth": growth,
            "note_rss": (
                f"peak {float(low['peak_rss_mb']):.1f} MB at {small:,}, "
                f"{float(high['peak_rss_mb']):.1f} MB at {large:,} "
                f"({large / float(high['seconds']):,.0f} inputs/s)"
            ),
        },
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--impl", choices=(*IMPLS, CONTROL, JOIN), required=True)
    parser.add_argument("--items", type=int, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(child(args.impl, args.items)))


if __name__ == "__main__":
    main()
