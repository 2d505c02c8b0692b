"""Batches on a real dask.distributed cluster through ``client.get_executor()``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

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


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """A two-process cluster on loopback, without a dashboard."""
    with (
        LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as dask_client,
    ):
        yield dask_client


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
