"""Batches on a real dask.distributed cluster through ``client.get_executor()``."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import dask
import psutil
import pytest
from distributed import Client, LocalCluster

from async_dag import (
    DagPipeline,
    Monitor,
    PipelineBuilder,
    PipelineContext,
    RunStats,
    run_function_pipeline_in_subprocess,
    run_pipeline_in_subprocess,
)
from async_dag.execution import arun_function_pipeline_in_subprocess


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """A two-process cluster on loopback, shared by the module."""
    with local_cluster() as cluster, Client(cluster) as dask_client:
        yield dask_client


def local_cluster() -> LocalCluster:
    """Two worker processes on loopback; no dashboard, and the scheduler's HTTP server on
    a free port (the default 8787 may be taken on a shared machine, which warns)."""
    return LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        scheduler_kwargs={"dashboard": False},
    )


async def where(ctx: PipelineContext, x: int) -> tuple[int, str, int]:
    """Double the item; say which input it was and which process handled it."""
    return x * 2, ctx.data_id, os.getpid()


def worker_pids(client: Client) -> set[int]:
    pids: dict[str, int] = client.run(os.getpid)
    return set(pids.values())


@pytest.mark.timeout(90)
def test_function_batches_run_on_the_cluster(client: Client) -> None:
    """Each batch runs in a dask worker process; results come back in batch order.

    ``where`` lives in this module, so it travels by reference: the workers import it.
    """
    batches = [[1, 2], [3], [4, 5, 6]]
    results = run_function_pipeline_in_subprocess(
        where, batches, executor=client.get_executor(), key=lambda x: f"k{x}"
    )
    assert [[v for v, _, _ in r] for r in results] == [[2, 4], [6], [8, 10, 12]]
    assert [[d for _, d, _ in r] for r in results][2] == ["k4", "k5", "k6"]
    pids = {pid for r in results for _, _, pid in r}
    assert pids <= worker_pids(client)
    assert os.getpid() not in pids
    assert results[2].stats.nodes["where"].received == 3


@pytest.mark.timeout(90)
def test_factory_and_failing_batch_on_the_cluster(client: Client) -> None:
    """A DAG factory runs on the workers; a failing batch raises with its index."""

    def build() -> DagPipeline:
        def check(ctx: PipelineContext, x: int) -> int:
            if x < 0:
                raise ValueError(f"negative: {x}")
            return x + 1

        return PipelineBuilder("on-cluster").add_task("check", check).build()

    class Recorder(Monitor):
        def __init__(self) -> None:
            self.calls: list[tuple[str, RunStats]] = []

        def start(self, stats: RunStats) -> None:
            self.calls.append(("start", stats))

        def update(self, stats: RunStats) -> None:
            self.calls.append(("update", stats))

        def finish(self, stats: RunStats, error: BaseException | None) -> None:
            self.calls.append(("finish", stats))

    executor = client.get_executor()
    recorder = Recorder()  # driven from this process, batch by batch
    results = run_pipeline_in_subprocess(build, [[1], [2, 3]], executor=executor, monitor=recorder)
    assert [list(r) for r in results] == [[2], [3, 4]]
    assert [hook for hook, _ in recorder.calls] == ["start", "update", "update", "finish"]
    assert list(recorder.calls[0][1].nodes) == ["check"]
    final = recorder.calls[-1][1]
    assert (final.inputs, final.total, final.state) == (2, 2, "done")  # in batches
    assert (final.outputs, final.nodes["check"].emitted) == (3, 3)
    with pytest.raises(ValueError, match="negative: -1") as caught:
        run_pipeline_in_subprocess(build, [[1], [-1]], executor=executor)
    notes: Any = caught.value.__notes__
    assert any("batch 1" in note for note in notes)


async def nap(ctx: PipelineContext, seconds: float) -> str:
    """Leave a file named after the data_id in metadata["folder"], then sleep."""
    (Path(ctx.metadata["folder"]) / ctx.data_id.replace(":", "-")).touch()
    await asyncio.sleep(seconds)
    return ctx.data_id


def kill_on(ctx: PipelineContext, x: str) -> str:
    """End the dask worker process outright on "kill"."""
    if x == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.2)
    return x


def ids(results: list[Any]) -> list[list[str]]:
    return [[record.ctx.data_id for record in result.records] for result in results]


@pytest.mark.timeout(90)
def test_data_ids_are_unique_per_call_on_the_cluster(client: Client) -> None:
    """Without key=, input j of batch i is "i:j" for both runners, one run_id throughout."""
    executor = client.get_executor()
    batches = [[1, 2], [3], [4, 5, 6]]
    functions = run_function_pipeline_in_subprocess(
        where, batches, executor=executor, run_id="one-call"
    )
    assert ids(functions) == [["0:0", "0:1"], ["1:0"], ["2:0", "2:1", "2:2"]]
    assert [[d for _, d, _ in r] for r in functions] == ids(functions)

    def build() -> DagPipeline:
        return PipelineBuilder("ids").add_task("inc", lambda ctx, x: x + 1).build()

    dags = run_pipeline_in_subprocess(build, batches, executor=executor, run_id="one-call")
    assert ids(dags) == ids(functions)
    pairs = [(rec.ctx.run_id, rec.ctx.data_id) for r in dags for rec in r.records]
    assert len(set(pairs)) == len(pairs) == 6


def scheduler_tasks(dask_scheduler: Any) -> int:
    return len(dask_scheduler.tasks)


@pytest.mark.timeout(90)
async def test_cancel_on_the_cluster_cancels_the_futures(client: Client, tmp_path: Path) -> None:
    """Cancelling the awaitable form returns within 3 s and the cluster drops the tasks."""
    # tasks an earlier test of this module still holds (futures not yet collected)
    before = await asyncio.to_thread(client.run_on_scheduler, scheduler_tasks)
    task = asyncio.create_task(
        arun_function_pipeline_in_subprocess(
            nap,
            [[3.0], [3.0], [3.0], [3.0]],
            executor=client.get_executor(),
            metadata={"folder": str(tmp_path)},
        )
    )
    for _ in range(3000):
        if len(list(tmp_path.iterdir())) >= 2:
            break
        await asyncio.sleep(0.01)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 3.0
    # the scheduler forgets a cancelled task once its worker reports back (a running nap
    # ends after its 3 s): allow a busy machine plenty of time for that
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        if await asyncio.to_thread(client.run_on_scheduler, scheduler_tasks) <= before:
            break
        await asyncio.sleep(0.2)
    assert await asyncio.to_thread(client.run_on_scheduler, scheduler_tasks) <= before
    assert {p.name for p in tmp_path.iterdir()} <= {"0-0", "1-0"}  # 2 and 3 never ran


@pytest.mark.timeout(120)
def test_a_killed_dask_worker_names_the_batch() -> None:
    """A dask worker SIGKILLed by batch 1: a clear error naming batch 1 within seconds,
    and no process is left once the cluster is closed."""
    # multiprocessing's resource tracker lives as long as this process: start it first
    # so it is not taken for a process the cluster left behind
    resource_tracker.ensure_running()
    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}

    def build() -> DagPipeline:
        return PipelineBuilder("killer").add_task("kill_on", kill_on).build()

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        local_cluster() as cluster,
        Client(cluster) as dask_client,
    ):
        started = time.monotonic()
        with pytest.raises(Exception, match="died") as caught:
            run_pipeline_in_subprocess(
                build, [["a"], ["kill"], ["b"]], executor=dask_client.get_executor()
            )
        assert time.monotonic() - started < 30
        assert type(caught.value).__name__ == "KilledWorker"
        notes = "\n".join(caught.value.__notes__)
        assert "raised in batch 1 (of 3 batches)" in notes
        assert "dask worker process running batch 1 died" in notes
    fresh = [c for c in me.children(recursive=True) if c.pid not in before]
    _, alive = psutil.wait_procs(fresh, timeout=10)
    assert alive == []
