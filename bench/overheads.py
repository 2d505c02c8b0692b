"""Workload 6: what optional features cost on the 3-stage chain.

Monitors (terminal and widget), ``on_error="collect"``, all against the same chain with
none of them; and ``ordered=True`` against ``ordered=False`` for a function pipeline at
concurrency 16. The terminal monitor is measured drawing (stdout a pseudo-terminal, as
``monitor=True`` sees it in a shell; and forced onto an in-memory stream that claims to
be a terminal) and quiet (stdout not a terminal).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import os
import struct
import subprocess
import termios
from collections.abc import Iterator
from typing import Any

from async_dag import PipelineContext, run_function_pipeline

from . import steps
from .harness import Impl, Row, Target, compare

OVERHEAD_TARGET = Target("time", 1.05)
ORDERED_TARGET = Target("speed", 0.8)  # issue 16


class TtyStringIO(io.StringIO):
    """An in-memory stream that says it is a terminal, so a monitor draws into it."""

    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def stdout_on_pty(columns: int = 120, lines: int = 40) -> Iterator[io.TextIOWrapper]:
    """Point ``sys.stdout`` at a pseudo-terminal that another process reads, as a
    terminal emulator would (a reader thread here would compete for the GIL)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    reader = subprocess.Popen(
        ["cat"], stdin=master, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    os.close(master)
    stream = open(slave, "w", buffering=1, encoding="utf-8", closefd=True)  # noqa: SIM115
    try:
        with contextlib.redirect_stdout(stream):
            yield stream
    finally:
        stream.close()  # the reader sees end of file (or EIO) and exits
        try:
            reader.wait(timeout=5)
        except subprocess.TimeoutExpired:
            reader.kill()
            reader.wait()


def _terminal_monitor(stream: Any) -> Any:
    from async_dag.observe.terminal import TerminalMonitor

    return TerminalMonitor(stream=stream)


def workload_overheads(scale: float, rounds: int) -> list[Row]:
    """Workload 6a: the chain with a monitor or ``on_error="collect"`` vs without."""
    items = max(100, int(400_000 * scale))
    pipeline = steps.chain([(steps.h_inc, 1)] * 3, queue_size=100)

    async def plain(n: int) -> int:
        return await steps.run_counted(pipeline, n)

    async def plain_pty(n: int) -> int:
        with stdout_on_pty():
            return await steps.run_counted(pipeline, n)

    async def monitor_pty(n: int) -> int:
        with stdout_on_pty():
            return await steps.run_counted(pipeline, n, monitor=True)

    async def monitor_quiet(n: int) -> int:
        with contextlib.redirect_stdout(io.StringIO()):
            return await steps.run_counted(pipeline, n, monitor=True)

    async def monitor_forced(n: int) -> int:
        return await steps.run_counted(pipeline, n, monitor=_terminal_monitor(TtyStringIO()))

    async def widget(n: int) -> int:
        from async_dag.notebook import PipelineMonitor

        return await steps.run_counted(pipeline, n, monitor=PipelineMonitor())

    async def collect(n: int) -> int:
        return await steps.run_counted(pipeline, n, on_error="collect")

    impls = [
        Impl("async_dag DAG, no options", plain, note="reference"),
        Impl("no monitor, stdout a pty", plain_pty, note="the pty and its reader alone"),
        Impl("monitor=True, stdout a pty", monitor_pty, target=OVERHEAD_TARGET, note="draws"),
        Impl("monitor=True, stdout not a tty", monitor_quiet, target=OVERHEAD_TARGET),
        Impl("TerminalMonitor on a tty-like StringIO", monitor_forced, target=OVERHEAD_TARGET),
        Impl(
            "PipelineMonitor() with its live graph, no frontend",
            widget,
            target=OVERHEAD_TARGET,
            note="graph laid out once per run, recoloured per refresh",
        ),
        Impl('on_error="collect"', collect, target=OVERHEAD_TARGET),
    ]
    return compare("6 overheads", impls, items=items, rounds=rounds, reference=impls[0].name)


async def uneven(ctx: PipelineContext, x: int) -> int:
    """``x + 1`` after 0-3 loop turns, so that items finish out of input order."""
    for _ in range(x % 4):
        await asyncio.sleep(0)
    return x + 1


def workload_ordered(scale: float, rounds: int) -> list[Row]:
    """Workload 6b: ``ordered=True`` vs ``False``, function pipeline, concurrency 16."""
    items = max(100, int(100_000 * scale))

    async def unordered(n: int) -> int:
        counter = steps.Counter()
        await run_function_pipeline(
            range(n), uneven, concurrency=16, ordered=False, result_handler=counter
        )
        return counter.count

    async def ordered(n: int) -> int:
        counter = steps.Counter()
        await run_function_pipeline(
            range(n), uneven, concurrency=16, ordered=True, result_handler=counter
        )
        return counter.count

    impls = [
        Impl("function, concurrency=16, ordered=False", unordered, note="reference"),
        Impl(
            "function, concurrency=16, ordered=True",
            ordered,
            target=ORDERED_TARGET,
            note="items finish out of order (0-3 loop turns each)",
        ),
    ]
    return compare("6 ordered", impls, items=items, rounds=rounds, reference=impls[0].name)
