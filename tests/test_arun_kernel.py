"""Interrupting a real Jupyter kernel's cell that awaits arun_pipeline_in_subprocess."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from _util import kernel_manager

SLOW_CELL = """
import asyncio, pathlib
from async_dag import PipelineBuilder
from async_dag.execution import arun_pipeline_in_subprocess

async def slow(ctx, x):
    (pathlib.Path(ctx.metadata["folder"]) / ctx.data_id.replace(":", "-")).touch()
    await asyncio.sleep(600)
    return x

results = await arun_pipeline_in_subprocess(
    lambda: PipelineBuilder("slow").add_task("slow", slow).build(),
    [[0], [1], [2]],
    processes=2,
    metadata={"folder": FOLDER},
)
"""


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def workers_of(kernel: psutil.Process) -> list[psutil.Process]:
    """The kernel's spawned worker processes (not multiprocessing's resource tracker, a
    helper that lives as long as the kernel)."""
    found = []
    for child in kernel.children(recursive=True):
        try:
            if any("spawn_main" in part for part in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def reply_to(client: Any, msg_id: str, timeout: float) -> dict[str, Any]:
    """The execute_reply of the request ``msg_id``."""
    deadline = time.monotonic() + timeout
    while True:
        msg: dict[str, Any] = client.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.1))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


@pytest.mark.timeout(120)
def test_interrupt_ends_the_worker_processes(tmp_path: Path) -> None:
    """After the interrupt no worker process of the kernel is left within a few seconds,
    the cell ends with CancelledError, and the kernel answers the next cell."""
    folder = tmp_path / "started"
    folder.mkdir()
    manager = kernel_manager(tmp_path, "async-dag-interrupt")
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        kernel = psutil.Process(manager.provisioner.process.pid)
        msg_id = client.execute(SLOW_CELL.replace("FOLDER", repr(str(folder))))
        wait_until(lambda: len(list(folder.iterdir())) >= 2, 60, "the batches never started")
        workers = workers_of(kernel)
        assert len(workers) == 2
        started = time.monotonic()
        manager.interrupt_kernel()
        _, alive = psutil.wait_procs(workers, timeout=10)
        ended = time.monotonic() - started
        assert alive == []
        assert ended < 5.0
        reply = reply_to(client, msg_id, 30)["content"]
        assert reply["status"] == "error"
        assert reply["ename"] in {"CancelledError", "KeyboardInterrupt"}
        assert workers_of(kernel) == []
        assert sorted(p.name for p in folder.iterdir()) == ["0-0", "1-0"]  # 2 never ran
        output: list[str] = []

        def collect(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                output.append(msg["content"]["text"])

        answer = client.execute_interactive("print(6 * 7)", timeout=30, output_hook=collect)
        assert answer["content"]["status"] == "ok"
        assert "".join(output).strip() == "42"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
