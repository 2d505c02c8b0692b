"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Endless:
    """The inputs 0, 1, 2, ... without end, counting how many were pulled (``pulled``)."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for i in itertools.count():
            self.pulled += 1
            yield i


async def settle(turns: int = 5) -> None:
    """Let the loop run a few turns so cancelled tasks can finish."""
    for _ in range(turns):
        await asyncio.sleep(0)


def other_tasks() -> set[asyncio.Task[object]]:
    """Tasks of this loop other than the running test."""
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


def default_sigint() -> None:
    """In the child before exec: undo a SIGINT ignored by whoever started pytest (CI runners
    often do, and children inherit it), so SIGINT reaches Python as KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_session(proc: subprocess.Popen[str]) -> None:
    """Kill a child started with ``start_new_session=True`` and everything it started: its
    whole process group, plus every descendant psutil still sees (in case one left it)."""
    import psutil

    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    if proc.poll() is None:
        proc.kill()
    proc.communicate()
    psutil.wait_procs(descendants, timeout=10)


def kernel_manager(folder: Path, name: str) -> Any:
    """A ``jupyter_client.KernelManager`` for a real ipykernel on this interpreter, from a
    kernelspec written under ``folder`` (so no user-level kernelspec can take its place)."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    spec_dir = folder / "kernels" / name
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"async_dag test ({name})",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return KernelManager(
        kernel_name=name,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(folder / "kernels")]),
    )
