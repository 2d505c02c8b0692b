"""The awaitable batch runners: same results and errors, and cancellation that ends workers."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.resource_tracker
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
from _util import default_sigint, kill_session

from async_dag import (
    DagPipeline,
    Monitor,
    PipelineBuilder,
    PipelineContext,
    RunStats,
    run_function_pipeline_in_subprocess,
)
from async_dag.execution import (
    ShippingError,
    arun_function_pipeline_in_subprocess,
    arun_pipeline_in_subprocess,
)

# Handlers at module level travel by reference: spawned workers import this module.


async def nap(ctx: PipelineContext, seconds: float) -> float:
    """Leave a file named after the data_id in metadata["folder"], then sleep."""
    folder = ctx.metadata.get("folder")
    if folder is not None:
        (Path(folder) / ctx.data_id.replace(":", "-")).touch()
    await asyncio.sleep(seconds)
    return seconds


def nap_pipeline() -> DagPipeline:
    return PipelineBuilder("naps").add_task("nap", nap).build()


async def stubborn(ctx: PipelineContext, seconds: float) -> float:
    """Ignore SIGTERM in this worker, then behave like ``nap``."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return await nap(ctx, seconds)


async def fail_on_three(ctx: PipelineContext, x: int) -> int:
    if x == 3:
        raise KeyError(f"no {x}")
    return x * 10


async def return_lock(ctx: PipelineContext, x: int) -> threading.Lock:
    return threading.Lock()


async def wait_for_files(folder: Path, count: int, timeout: float = 60) -> None:
    """Poll until ``folder`` holds ``count`` files (worker processes create them)."""
    deadline = time.monotonic() + timeout
    while len(list(folder.iterdir())) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{folder} never held {count} files")
        await asyncio.sleep(0.02)


class Recorder(Monitor):
    """Records the hooks; keeps the cancel function ``attach`` was given."""

    def __init__(self, on_update: Callable[[Recorder], None] | None = None) -> None:
        self.hooks: list[str] = []
        self.snapshots: list[RunStats] = []
        self.errors: list[BaseException | None] = []
        self.attached: tuple[Any, Any] | None = None
        self.on_update = on_update

    def attach(self, pipeline: Any, cancel: Any) -> None:
        self.hooks.append("attach")
        self.attached = (pipeline, cancel)

    def start(self, stats: RunStats) -> None:
        self.hooks.append("start")
        self.snapshots.append(stats)

    def update(self, stats: RunStats) -> None:
        self.hooks.append("update")
        self.snapshots.append(stats)
        if self.on_update is not None:
            self.on_update(self)

    def finish(self, stats: RunStats, error: BaseException | None) -> None:
        self.hooks.append("finish")
        self.snapshots.append(stats)
        self.errors.append(error)


@pytest.fixture
def new_children() -> Iterator[Callable[[float], list[psutil.Process]]]:
    """A function listing the child processes started since the test began and still
    alive after waiting up to the given seconds."""
    multiprocessing.resource_tracker.ensure_running()  # a long-lived helper, started once
    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}

    def alive(wait: float = 3.0) -> list[psutil.Process]:
        fresh = [c for c in me.children(recursive=True) if c.pid not in before]
        _, left = psutil.wait_procs(fresh, timeout=wait)
        return left

    yield alive
    for child in alive(0.0):  # never leave one behind for the next test
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


async def cancel_and_time(task: asyncio.Task[Any]) -> float:
    """Cancel ``task``; the seconds until it ended, which must be with CancelledError."""
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return time.monotonic() - started


# -- same arguments, results and errors as the blocking forms ---------------------------


async def test_results_and_data_ids_match_the_blocking_form(tmp_path: Path) -> None:
    """Both awaitable forms return one RunResult per batch, with data_ids "i:j"."""
    batches = [[0.0, 0.0], [0.0], [0.0, 0.0, 0.0]]
    results = await arun_function_pipeline_in_subprocess(nap, batches, processes=2, run_id="r")
    assert [list(r) for r in results] == batches
    ids = [[rec.ctx.data_id for rec in r.records] for r in results]
    assert ids == [["0:0", "0:1"], ["1:0"], ["2:0", "2:1", "2:2"]]
    dag = await arun_pipeline_in_subprocess(nap_pipeline, batches[:2], processes=2)
    assert [[rec.ctx.data_id for rec in r.records] for r in dag] == ids[:2]
    assert [list(r) for r in dag] == batches[:2]


async def test_same_errors_as_the_blocking_form() -> None:
    """A failing batch, an unpicklable result, batch or option, bad arguments."""
    with pytest.raises(KeyError) as caught:
        await arun_function_pipeline_in_subprocess(fail_on_three, [[1], [3]], processes=2)
    assert any("batch 1 (of 2 batches)" in note for note in caught.value.__notes__)
    with pytest.raises(ShippingError, match="result of batch 0 cannot be pickled"):
        await arun_function_pipeline_in_subprocess(return_lock, [[1]], processes=1)
    with pytest.raises(ShippingError, match=r"batch 1 \(list\) cannot be pickled"):
        await arun_function_pipeline_in_subprocess(nap, [[0], [threading.Lock()]])
    with pytest.raises(ShippingError, match="run option key="):
        lock = threading.Lock()
        await arun_pipeline_in_subprocess(nap_pipeline, [[0]], key=lambda x: (x, lock))
    with pytest.raises(TypeError, match="async function"):
        await arun_function_pipeline_in_subprocess(lambda ctx, x: x, [[1]])
    with pytest.raises(TypeError, match="_id_prefix"):
        await arun_function_pipeline_in_subprocess(nap, [[0]], _id_prefix="x")
    with pytest.raises(ValueError, match="processes"):
        await arun_pipeline_in_subprocess(nap_pipeline, [[0]], processes=0)
    assert await arun_pipeline_in_subprocess(nap_pipeline, []) == []


async def test_the_loop_keeps_running_meanwhile() -> None:
    """A heartbeat ticks on the loop while the batches run in the workers."""
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.create_task(heartbeat())
    try:
        results = await arun_function_pipeline_in_subprocess(nap, [[0.5, 0.5], [0.5]], processes=2)
        during = ticks
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    assert [list(r) for r in results] == [[0.5, 0.5], [0.5]]
    assert during > 10  # >= 1 s of batches: room for ~100 ticks on a free loop


async def test_to_thread_of_the_blocking_form_still_works() -> None:
    """await asyncio.to_thread(run_function_pipeline_in_subprocess, ...) on the default pool."""
    results = await asyncio.to_thread(
        run_function_pipeline_in_subprocess, nap, [[0.0], [0.0, 0.0]], processes=2
    )
    assert [[rec.ctx.data_id for rec in r.records] for r in results] == [["0:0"], ["1:0", "1:1"]]


async def test_monitor_is_attached_with_a_cancel_function() -> None:
    """attach gets the one-node graph and a cancel function; stats count batches."""
    recorder = Recorder()
    results = await arun_function_pipeline_in_subprocess(
        fail_on_three, [[1], [2, 3], [4]], processes=2, on_error="collect", monitor=recorder
    )
    assert [list(r) for r in results] == [[10], [20], [40]]
    assert recorder.hooks == ["attach", "start", "update", "update", "update", "finish"]
    assert recorder.attached is not None
    pipeline, cancel = recorder.attached
    assert isinstance(pipeline, DagPipeline)
    assert list(pipeline.tasks) == ["fail_on_three"]
    assert callable(cancel)
    final = recorder.snapshots[-1]
    assert (final.inputs, final.total, final.state, final.errors) == (3, 3, "done", 1)
    assert final.nodes["fail_on_three"].received == 4


async def test_thread_pool_executor_awaited() -> None:
    """A ThreadPoolExecutor works with the awaitable form too."""
    with ThreadPoolExecutor(2) as threads:
        results = await arun_function_pipeline_in_subprocess(
            fail_on_three, [[1], [2]], executor=threads
        )
        with pytest.raises(KeyError):
            await arun_function_pipeline_in_subprocess(fail_on_three, [[3]], executor=threads)
    assert [list(r) for r in results] == [[10], [20]]
    assert results[1].records[0].ctx.data_id == "1:0"


# -- cancellation ------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["function", "factory"])
async def test_cancel_mid_batch_ends_the_workers(
    tmp_path: Path, new_children: Any, form: str
) -> None:
    """Cancelled while both workers sleep in a batch: CancelledError within 3 s, and
    the worker processes are gone; the monitor finishes as cancelled."""
    recorder = Recorder()
    batches = [[600.0], [600.0], [600.0]]
    options: dict[str, Any] = {"metadata": {"folder": str(tmp_path)}, "monitor": recorder}
    if form == "function":
        call = arun_function_pipeline_in_subprocess(nap, batches, processes=2, **options)
    else:
        call = arun_pipeline_in_subprocess(nap_pipeline, batches, processes=2, **options)
    task = asyncio.create_task(call)
    await wait_for_files(tmp_path, 2)
    assert len(new_children(0.0)) >= 2  # both workers run a batch
    assert await cancel_and_time(task) < 3.0
    assert new_children(3.0) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0-0", "1-0"]  # batch 2 never ran
    assert recorder.hooks[-1] == "finish"
    assert isinstance(recorder.errors[-1], asyncio.CancelledError)
    assert recorder.snapshots[-1].state == "cancelled"


async def test_cancel_ends_a_worker_that_ignores_sigterm(tmp_path: Path, new_children: Any) -> None:
    """A batch that ignores SIGTERM: its process is killed, still within 3 s."""
    task = asyncio.create_task(
        arun_function_pipeline_in_subprocess(
            stubborn, [[600.0]], processes=1, metadata={"folder": str(tmp_path)}
        )
    )
    await wait_for_files(tmp_path, 1)
    assert await cancel_and_time(task) < 3.0
    assert new_children(3.0) == []


async def test_cancel_before_any_batch_started(new_children: Any) -> None:
    """Cancelled before the task ran, or while the workers are still starting."""
    task = asyncio.create_task(arun_function_pipeline_in_subprocess(nap, [[600.0]] * 2))
    assert await cancel_and_time(task) < 3.0
    task = asyncio.create_task(
        arun_function_pipeline_in_subprocess(nap, [[600.0]] * 2, processes=2)
    )
    await asyncio.sleep(0.05)  # the processes are spawned, not yet running a batch
    assert await cancel_and_time(task) < 3.0
    assert new_children(3.0) == []


async def test_cancel_while_results_come_back(tmp_path: Path, new_children: Any) -> None:
    """The monitor's cancel function, called when the first batch's result arrives."""

    def stop_at_first(recorder: Recorder) -> None:
        assert recorder.attached is not None
        recorder.attached[1]()

    recorder = Recorder(on_update=stop_at_first)
    task = asyncio.create_task(
        arun_pipeline_in_subprocess(
            nap_pipeline, [[0.0], [600.0], [600.0]], processes=2, monitor=recorder
        )
    )
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 30
    assert recorder.hooks.count("update") == 1
    assert recorder.snapshots[-1].state == "cancelled"
    assert new_children(3.0) == []


async def test_repeated_cancel_does_not_skip_the_cleanup(tmp_path: Path, new_children: Any) -> None:
    """Cancelled again and again while winding down: still CancelledError, monitor
    finished once, every worker gone."""
    recorder = Recorder()
    task = asyncio.create_task(
        arun_function_pipeline_in_subprocess(
            nap,
            [[600.0], [600.0]],
            processes=2,
            metadata={"folder": str(tmp_path)},
            monitor=recorder,
        )
    )
    await wait_for_files(tmp_path, 2)
    started = time.monotonic()
    for _ in range(50):
        task.cancel()
        await asyncio.sleep(0.01)
        if task.done():
            break
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 3.0
    assert recorder.hooks.count("finish") == 1
    assert new_children(3.0) == []


async def test_timeout_around_the_call(tmp_path: Path, new_children: Any) -> None:
    """asyncio.timeout turns the cancellation into TimeoutError, workers gone."""
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.5):
            await arun_function_pipeline_in_subprocess(nap, [[600.0], [600.0]], processes=2)
    assert time.monotonic() - started < 1.5 + 3.0
    assert new_children(3.0) == []


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.3, 0.8, 1.5, 2.5])
async def test_cancel_at_any_moment(delay: float, new_children: Any) -> None:
    """Whenever the cancel lands (spawning, running, results arriving), it ends within
    3 s with CancelledError (or the result, if it came first) and no process is left."""
    batches = [[0.1], [0.3, 0.2], [0.5], [0.1, 0.1]]
    task = asyncio.create_task(arun_function_pipeline_in_subprocess(nap, batches, processes=2))
    await asyncio.sleep(delay)
    started = time.monotonic()
    task.cancel()
    try:
        results = await task
    except asyncio.CancelledError:
        pass
    else:
        assert [list(r) for r in results] == batches
    assert time.monotonic() - started < 3.0
    assert new_children(3.0) == []


async def test_cancel_on_a_process_pool_of_the_caller(tmp_path: Path) -> None:
    """The caller's pool: batches not started are cancelled (those it already queued run
    to their end: it is not ours to stop), and the pool stays usable."""
    batches = [[1.0]] * 5
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        task = asyncio.create_task(
            arun_function_pipeline_in_subprocess(
                nap, batches, executor=pool, metadata={"folder": str(tmp_path)}
            )
        )
        await wait_for_files(tmp_path, 1)
        assert await cancel_and_time(task) < 3.0
        assert await asyncio.wrap_future(pool.submit(os.getpid)) != os.getpid()
    finally:
        await asyncio.to_thread(pool.shutdown)
    ran = {p.name for p in tmp_path.iterdir()}
    assert "0-0" in ran
    assert "4-0" not in ran


ASYNC_INTERRUPTED_SCRIPT = """
import asyncio, pathlib, sys
from async_dag.execution import arun_function_pipeline_in_subprocess

async def slow(ctx, x):
    (pathlib.Path(ctx.metadata["folder"]) / str(x)).touch()
    await asyncio.sleep(600)

if __name__ == "__main__":
    try:
        asyncio.run(arun_function_pipeline_in_subprocess(
            slow, [[0], [1]], processes=2, metadata={"folder": sys.argv[1]}
        ))
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
"""


@pytest.mark.timeout(90)
def test_ctrl_c_under_asyncio_run_leaves_no_orphan(tmp_path: Path) -> None:
    """SIGINT to a script awaiting the call in asyncio.run: KeyboardInterrupt, workers gone."""
    script = tmp_path / "interrupted.py"
    script.write_text(ASYNC_INTERRUPTED_SCRIPT)
    folder = tmp_path / "started"
    folder.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
        start_new_session=True,
    )
    try:
        asyncio.run(wait_for_files(folder, 2))
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert time.monotonic() - started < 5.0
        assert proc.returncode == 3
        assert "interrupted" in out
        _, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []
    finally:
        kill_session(proc)
