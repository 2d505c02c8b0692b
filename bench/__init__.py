"""The async_dag benchmark suite (issue 6): ``make bench`` or ``python -m bench``.

Each workload is a function ``(scale, rounds) -> list[Row]`` that measures async_dag
next to a hand-written asyncio pipeline in the same process, round by round. See
``BENCHMARKS.md`` for the results and what they taught.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable

from .harness import Row

Workload = Callable[[float, int], list[Row]]


def _workloads() -> dict[str, Workload]:
    from .chain import workload_chain, workload_io, workload_workers8
    from .cli_stream import workload_cli
    from .fanout import workload_fanout
    from .features import workload_checkpoint, workload_join, workload_options
    from .memory import workload_memory
    from .overheads import workload_ordered, workload_overheads
    from .processes import workload_processes
    from .queuesize import workload_queuesize
    from .ratelimit import workload_ratelimit
    from .sqlite_sink import workload_sqlite

    return {
        "chain": workload_chain,
        "queuesize": workload_queuesize,
        "workers8": workload_workers8,
        "io": workload_io,
        "fanout": workload_fanout,
        "memory": workload_memory,
        "overheads": workload_overheads,
        "ordered": workload_ordered,
        "options": workload_options,
        "join": workload_join,
        "checkpoint": workload_checkpoint,
        "sqlite": workload_sqlite,
        "ratelimit": workload_ratelimit,
        "processes": workload_processes,
        "cli": workload_cli,
    }


WORKLOADS: dict[str, Workload] = _workloads()


def machine_info() -> dict[str, str | int]:
    """Cores, CPU model (from /proc/cpuinfo), Python version and implementation."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 1,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }
