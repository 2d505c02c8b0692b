"""Batches in worker processes: order, shipping by value, errors, dead workers, Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import multiprocessing
import multiprocessing.resource_tracker
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import psutil
import pytest
from _util import default_sigint, kernel_manager, kill_session

from async_dag import (
    DagPipeline,
    ItemError,
    Monitor,
    NodeStats,
    PipelineBuilder,
    PipelineContext,
    RunResult,
    RunStats,
    run_function_pipeline_in_subprocess,
    run_pipeline_in_subprocess,
)
from async_dag.execution import WorkerDied, shipping
from async_dag.execution.shipping import ShippingError
from async_dag.observe.terminal import TerminalMonitor

# Handlers at module level travel by reference: spawned workers import this module.


async def where(ctx: PipelineContext, x: Any) -> tuple[Any, int]:
    """Report the item and the pid of the process that handled it."""
    return x, os.getpid()


async def wait_for_files(folder: Path, count: int) -> None:
    """Poll until ``folder`` holds ``count`` files (another process creates them)."""
    for _ in range(6000):
        if len(list(folder.iterdir())) >= count:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{folder} never held {count} files")


async def meet(ctx: PipelineContext, x: int) -> tuple[int, int]:
    """Check in, then wait until every batch has checked in: batches run side by side."""
    folder = Path(ctx.metadata["folder"])
    (folder / str(x)).touch()
    await wait_for_files(folder, ctx.metadata["batches"])
    return x, os.getpid()


async def fail_on_three(ctx: PipelineContext, x: int) -> int:
    """Fail for the item 3 only."""
    if x == 3:
        raise KeyError(f"no {x}")
    return x * 10


async def die_on(ctx: PipelineContext, x: Any) -> Any:
    """Kill the worker process outright on the item "die"."""
    if x == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    return x


class TwoArgError(Exception):
    """An exception whose constructor breaks unpickling (it needs two arguments)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


async def raise_two_arg(ctx: PipelineContext, x: int) -> int:
    raise TwoArgError(x, "broken")


async def return_lock(ctx: PipelineContext, x: int) -> threading.Lock:
    return threading.Lock()


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    """A spawn pool shared by the tests that do not need the default pool."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as executor:
        yield executor


@pytest.fixture
def new_children() -> Iterator[Any]:
    """A function listing the child processes started since the test began."""
    multiprocessing.resource_tracker.ensure_running()  # a long-lived helper, started once
    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}

    def started() -> list[psutil.Process]:
        fresh = [c for c in me.children(recursive=True) if c.pid not in before]
        _, alive = psutil.wait_procs(fresh, timeout=10)
        return alive

    yield started


def test_batches_come_back_in_order_from_separate_processes(
    tmp_path: Path, new_children: Any
) -> None:
    """Two batches meet while running, so they ran at once in two other processes."""
    batches = [[0, 1], [2, 3]]
    results = run_function_pipeline_in_subprocess(
        meet, batches, processes=2, metadata={"folder": str(tmp_path), "batches": 2}
    )
    assert [type(r) for r in results] == [RunResult, RunResult]
    assert [[x for x, _ in r] for r in results] == batches
    pids = [{pid for _, pid in r} for r in results]
    assert all(len(p) == 1 for p in pids)
    first, second = pids[0].pop(), pids[1].pop()
    assert len({first, second, os.getpid()}) == 3
    assert results[1].records[0].ctx.metadata["batches"] == 2
    assert results[1].records[0].ctx.data_id == "1:0"
    assert results[0].stats.nodes["meet"].received == 2
    assert new_children() == []


@pytest.mark.parametrize("where_to", ["default pool", "thread pool"])
def test_data_ids_are_unique_within_a_call(where_to: str) -> None:
    """Without key=, input j of batch i is "i:j" (outputs and collected errors alike), for
    both runners, so (run_id, data_id) is unique even with one run_id for every batch."""
    batches = [[1, 3], [3], [5, 6, 7]]
    expected = [["0:0", "0:1"], ["1:0"], ["2:0", "2:1", "2:2"]]

    def build() -> DagPipeline:
        return PipelineBuilder("ids").add_task("fail_on_three", fail_on_three).build()

    with contextlib.ExitStack() as stack:
        options: dict[str, Any] = {"on_error": "collect", "run_id": "one-call"}
        if where_to == "thread pool":
            options["executor"] = stack.enter_context(ThreadPoolExecutor(2))
        else:
            options["processes"] = 2
        for results in (
            run_function_pipeline_in_subprocess(fail_on_three, batches, **options),
            run_pipeline_in_subprocess(build, batches, **options),
        ):
            seen = [
                sorted([rec.ctx.data_id for rec in r.records] + [e.data_id for e in r.errors])
                for r in results
            ]
            assert seen == expected
            pairs = [(rec.ctx.run_id, rec.ctx.data_id) for r in results for rec in r.records]
            assert len(set(pairs)) == len(pairs) == 4
        keyed = run_function_pipeline_in_subprocess(
            fail_on_three, [[1], [2]], key=lambda x: f"k{x}", **options
        )
    assert [[rec.ctx.data_id for rec in r.records] for r in keyed] == [["k1"], ["k2"]]


def test_results_follow_batch_order_not_completion_order(
    pool: ProcessPoolExecutor, tmp_path: Path
) -> None:
    """Batch 0 waits for batch 1 to finish first; the list still follows batch order."""

    async def ordered(ctx: PipelineContext, x: int) -> int:
        if x == 0:
            await wait_for_files(tmp_path, 1)
        else:
            (tmp_path / "second-done").touch()
        return x

    results = run_function_pipeline_in_subprocess(ordered, [[0], [1]], executor=pool)
    assert [list(r) for r in results] == [[0], [1]]


def test_run_options_pass_through(pool: ProcessPoolExecutor) -> None:
    """key, metadata, concurrency, retries and on_error reach every worker's run."""
    results = run_function_pipeline_in_subprocess(
        fail_on_three,
        [[1, 2], [3, 4]],
        executor=pool,
        key=lambda x: f"item-{x}",
        metadata={"source": "test"},
        concurrency=2,
        retries=1,
        on_error="collect",
        run_id="batch-run",
    )
    assert [list(r) for r in results] == [[10, 20], [40]]
    assert [rec.ctx.data_id for rec in results[0].records] == ["item-1", "item-2"]
    metadata = results[1].records[0].ctx.metadata
    assert isinstance(metadata, types.MappingProxyType)
    assert dict(metadata) == {"source": "test"}
    assert results[1].run_id == "batch-run"
    assert results[1].stats.nodes["fail_on_three"].retried == 1


def test_collected_errors_come_back(pool: ProcessPoolExecutor) -> None:
    """on_error="collect" returns each ItemError with its context and real exception."""
    results = run_function_pipeline_in_subprocess(
        fail_on_three, [[1], [3, 5]], executor=pool, on_error="collect"
    )
    assert results[0].errors == []
    [error] = results[1].errors
    assert isinstance(error, ItemError)
    assert (error.node, error.data_id) == ("fail_on_three", "1:0")
    assert isinstance(error.exception, KeyError)
    assert error.exception.args == ("no 3",)
    assert list(results[1]) == [50]
    assert results[1].stats.nodes["fail_on_three"].failed == 1


def test_collected_exception_that_cannot_travel_is_described(pool: ProcessPoolExecutor) -> None:
    """A collected exception that cannot be unpickled becomes a RuntimeError naming it."""
    [result] = run_function_pipeline_in_subprocess(
        raise_two_arg, [[7]], executor=pool, on_error="collect"
    )
    [error] = result.errors
    assert isinstance(error.exception, RuntimeError)
    assert "TwoArgError: 7: broken" in str(error.exception)


def test_failing_batch_reraises_with_its_index(pool: ProcessPoolExecutor) -> None:
    """The exception keeps its type and the engine's note, and gains the batch index."""
    with pytest.raises(KeyError) as caught:
        run_function_pipeline_in_subprocess(fail_on_three, [[1], [2], [3]], executor=pool)
    notes = caught.value.__notes__
    assert any("batch 2 (of 3 batches)" in note for note in notes)
    assert any("fail_on_three" in note and "data_id '2:0'" in note for note in notes)
    assert "fail_on_three" in str(caught.value.__cause__)  # the worker's traceback


async def exit_early(ctx: PipelineContext, x: int) -> int:
    sys.exit(x)


def test_system_exit_in_a_batch_does_not_end_the_caller(pool: ProcessPoolExecutor) -> None:
    """SystemExit raised by a batch arrives as a RuntimeError naming the batch."""
    with pytest.raises(RuntimeError, match=r"batch 1 raised SystemExit\(5\)") as caught:
        run_function_pipeline_in_subprocess(exit_early, [[], [5]], executor=pool)
    assert isinstance(caught.value.__cause__, SystemExit)
    assert pool.submit(os.getpid).result(timeout=30) != os.getpid()  # the pool lives on


def test_exception_that_cannot_travel_names_the_batch(pool: ProcessPoolExecutor) -> None:
    """An exception that cannot be pickled back becomes a RuntimeError that says so."""
    with pytest.raises(RuntimeError, match=r"batch 1 raised .*TwoArgError: 4: broken"):
        run_function_pipeline_in_subprocess(raise_two_arg, [[], [4]], executor=pool)


def test_unpicklable_result_names_the_batch(pool: ProcessPoolExecutor) -> None:
    """A result that cannot be pickled back raises an error naming its batch."""
    with pytest.raises(ShippingError, match="result of batch 0 cannot be pickled"):
        run_function_pipeline_in_subprocess(return_lock, [[1]], executor=pool)


def test_unpicklable_arguments_are_named_before_any_worker_starts(new_children: Any) -> None:
    """The pipeline, an option or batch N that cannot be pickled is named, and nothing runs."""
    lock = threading.Lock()

    async def holds_lock(ctx: PipelineContext, x: int) -> bool:
        return lock.locked()

    with pytest.raises(ShippingError, match="the pipeline function"):
        run_function_pipeline_in_subprocess(holds_lock, [[1]])
    with pytest.raises(ShippingError, match="run option key="):
        run_function_pipeline_in_subprocess(where, [[1]], key=lambda x: (x, lock))
    with pytest.raises(ShippingError, match=r"batch 1 \(generator\).*as a list"):
        run_function_pipeline_in_subprocess(where, [[1], (x for x in range(3))])
    with pytest.raises(ShippingError, match="pipeline factory"):
        run_pipeline_in_subprocess(lambda: lock, [[1]])
    assert new_children() == []


def test_bad_arguments_raise_before_any_worker_starts(new_children: Any) -> None:
    """Bad pool sizes, batches and run options raise TypeError/ValueError up front."""
    with pytest.raises(ValueError, match="processes"):
        run_function_pipeline_in_subprocess(where, [[1]], processes=0)
    with pytest.raises(TypeError, match="processes"):
        run_function_pipeline_in_subprocess(where, [[1]], processes=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="batches must be an iterable"):
        run_function_pipeline_in_subprocess(where, 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"batch 1 is not an iterable .*\(got int\)"):
        run_function_pipeline_in_subprocess(where, [[1], 2])
    with pytest.raises(TypeError, match=r"batch 0 .*\(got str\)"):
        run_function_pipeline_in_subprocess(where, ["abc"])
    with pytest.raises(TypeError, match="not both"), ThreadPoolExecutor(1) as threads:
        run_function_pipeline_in_subprocess(where, [[1]], processes=2, executor=threads)
    with pytest.raises(TypeError, match="executor must be"):
        run_function_pipeline_in_subprocess(where, [[1]], executor=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="concurency"):
        run_function_pipeline_in_subprocess(where, [[1]], concurency=2)
    with pytest.raises(TypeError, match="ordered"):
        run_pipeline_in_subprocess(lambda: None, [[1]], ordered=True)
    with pytest.raises(ValueError, match="concurrency"):
        run_function_pipeline_in_subprocess(where, [[1]], concurrency=0)
    with pytest.raises(ValueError, match="on_error"):
        run_pipeline_in_subprocess(lambda: None, [[1]], on_error="maybe")
    with pytest.raises(TypeError, match="monitor must be"):
        run_function_pipeline_in_subprocess(where, [[1]], monitor=42)
    with pytest.raises(TypeError, match="async function"):
        run_function_pipeline_in_subprocess(lambda ctx, x: x, [[1]])
    with pytest.raises(TypeError, match="factory must be"):
        run_pipeline_in_subprocess(42, [[1]])  # type: ignore[arg-type]
    assert run_function_pipeline_in_subprocess(where, []) == []
    assert new_children() == []


def test_function_no_worker_can_import_runs_in_default_pool(new_children: Any) -> None:
    """A function from a module made at run time, claiming __main__, ships by value."""
    module = types.ModuleType("made_at_run_time")
    source = textwrap.dedent(
        """
        import os

        OFFSET = 100

        async def shifted(ctx, x):
            return x + OFFSET, os.getpid()
        """
    )
    exec(compile(source, "<made at run time>", "exec"), module.__dict__)
    shifted = module.shifted
    shifted.__module__ = "__main__"
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(shifted)  # the standard pickle could not ship it
    results = run_function_pipeline_in_subprocess(shifted, [[1, 2], [3]])
    assert [[x for x, _ in r] for r in results] == [[101, 102], [103]]
    assert os.getpid() not in {pid for r in results for _, pid in r}
    assert new_children() == []


def test_factory_builds_a_pipeline_in_each_worker(pool: ProcessPoolExecutor) -> None:
    """factory() runs in the worker (the pipeline is named after the worker's pid)."""

    def build() -> DagPipeline:
        return (
            PipelineBuilder(f"built-in-{os.getpid()}")
            .add_task("double", lambda ctx, x: x * 2)
            .add_task("label", lambda ctx, x: f"{ctx.node_path}:{x}")
            .add_edge("double", "label")
            .build()
        )

    results = run_pipeline_in_subprocess(build, [[1, 2], [3]], executor=pool)
    assert [list(r) for r in results] == [["double>label:2", "double>label:4"], ["double>label:6"]]
    names = {r.stats.name for r in results}
    assert f"built-in-{os.getpid()}" not in names
    assert all(name.startswith("built-in-") for name in names)
    assert results[0].records[0].node == "label"
    assert results[0].stats.nodes["double"].emitted == 2
    built_here = build()  # a pipeline itself is accepted too: each worker gets a copy
    [copied] = run_pipeline_in_subprocess(built_here, [[5]], executor=pool)
    assert list(copied) == ["double>label:10"]
    assert copied.stats.name == built_here.name
    with pytest.raises(TypeError, match="factory returned NoneType") as caught:
        run_pipeline_in_subprocess(lambda: None, [[1]], executor=pool)
    assert any("batch 0" in note for note in caught.value.__notes__)


def test_lambda_factory_in_default_pool() -> None:
    """A lambda factory with lambda handlers runs through the default pool."""
    results = run_pipeline_in_subprocess(
        lambda: PipelineBuilder("lam").add_task("inc", lambda ctx, x: x + 1).build(),
        [[1], [2, 3]],
        key=lambda x: x * 100,
    )
    assert [list(r) for r in results] == [[2], [3, 4]]
    assert [rec.ctx.data_id for rec in results[1].records] == ["200", "300"]


@pytest.mark.timeout(60)
def test_killed_worker_raises_instead_of_hanging(new_children: Any) -> None:
    """A worker killed by SIGKILL gives a BrokenProcessPool naming the batch and signal."""
    recorder = Recorder()
    pattern = r"batch 1 was running in worker pid \d+, which was killed by SIGKILL \(signal 9\)"
    with pytest.raises(RuntimeError, match=pattern) as caught:
        run_function_pipeline_in_subprocess(die_on, [[1], ["die"]], processes=2, monitor=recorder)
    assert recorder.calls[-1] == ("finish", caught.value)  # the monitor is told too
    assert recorder.snapshots[-1].state == "failed"
    assert isinstance(caught.value, BrokenProcessPool)
    assert isinstance(caught.value, WorkerDied)
    assert (caught.value.batch, caught.value.exitcode) == (1, -signal.SIGKILL)
    assert new_children() == []


def crash_on(ctx: PipelineContext, x: Any) -> Any:
    """A plain def (a DAG task runs it in a thread): end the process on "kill"/"segv"."""
    if x == "kill":
        time.sleep(0.2)  # the batch is running, and so is another one
        os.kill(os.getpid(), signal.SIGKILL)
    if x == "segv":
        time.sleep(0.2)
        ctypes.string_at(0)  # reads address 0: a segmentation fault
    time.sleep(0.3)
    return x


async def async_crash_on(ctx: PipelineContext, x: Any) -> Any:
    if x in ("kill", "segv"):
        await asyncio.sleep(0.2)
        crash_on(ctx, x)
    await asyncio.sleep(0.3)
    return x


def crashing_pipeline() -> DagPipeline:
    return PipelineBuilder("crashing").add_task("crash", crash_on).build()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["kill", "segv"])
@pytest.mark.parametrize("form", ["function", "factory"])
def test_a_dead_worker_is_blamed_on_its_own_batch(form: str, how: str, new_children: Any) -> None:
    """Five batches on two workers, batch 2 ends its process: the error names batch 2 and
    the signal, every time, within seconds, and no process is left."""
    signals = {"kill": signal.SIGKILL, "segv": signal.SIGSEGV}
    batches: list[list[Any]] = [[0, 1], [2], [how], [4, 5], [6]]
    for _ in range(3):
        started = time.monotonic()
        with pytest.raises(WorkerDied) as caught:
            if form == "function":
                run_function_pipeline_in_subprocess(async_crash_on, batches, processes=2)
            else:
                run_pipeline_in_subprocess(crashing_pipeline, batches, processes=2)
        assert time.monotonic() - started < 30
        number = signals[how]
        assert (caught.value.batch, caught.value.exitcode) == (2, -number)
        assert f"batch 2 was running in worker pid {caught.value.pid}, " in str(caught.value)
        assert f"killed by {number.name} (signal {int(number)})" in str(caught.value)
        assert new_children() == []


INTERRUPTED_SCRIPT = """
import asyncio, pathlib, sys
from async_dag import run_function_pipeline_in_subprocess

async def slow(ctx, x):
    (pathlib.Path(ctx.metadata["folder"]) / str(x)).touch()
    await asyncio.sleep(600)

if __name__ == "__main__":
    try:
        run_function_pipeline_in_subprocess(
            slow, [[0], [1]], processes=2, metadata={"folder": sys.argv[1]}
        )
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
"""


@pytest.mark.timeout(90)
def test_ctrl_c_leaves_no_orphan_process(tmp_path: Path) -> None:
    """SIGINT while batches sleep: KeyboardInterrupt, and every worker process is gone."""
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED_SCRIPT)
    folder = tmp_path / "started"
    folder.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
        start_new_session=True,  # its own process group: the finally kills all of it
    )
    try:
        asyncio.run(wait_for_files(folder, 2))  # both batches are running
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 3
        assert "interrupted" in out
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == []
    finally:
        kill_session(proc)  # nothing survives, even when an assertion above failed


@pytest.mark.timeout(90)
def test_workers_end_when_the_caller_is_killed(tmp_path: Path) -> None:
    """SIGKILL to the calling process alone (no cleanup runs there): its workers notice
    within seconds that their parent is gone, and end."""
    script = tmp_path / "killed.py"
    script.write_text(INTERRUPTED_SCRIPT)
    folder = tmp_path / "started"
    folder.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        asyncio.run(wait_for_files(folder, 2))
        workers = [
            child
            for child in psutil.Process(proc.pid).children(recursive=True)
            if any("spawn_main" in part for part in child.cmdline())
        ]
        assert len(workers) == 2
        proc.kill()
        proc.communicate(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == []
    finally:
        kill_session(proc)


def test_thread_pool_executor(new_children: Any) -> None:
    """A ThreadPoolExecutor runs each batch on its own loop in a worker thread."""

    async def thread_of(ctx: PipelineContext, x: int) -> tuple[int, int, int]:
        return x, os.getpid(), threading.get_ident()

    with ThreadPoolExecutor(2) as threads:
        results = run_function_pipeline_in_subprocess(thread_of, [[1], [2, 3]], executor=threads)
        with pytest.raises(KeyError) as caught:
            run_function_pipeline_in_subprocess(fail_on_three, [[3]], executor=threads)
    assert [[x for x, _, _ in r] for r in results] == [[1], [2, 3]]
    assert {pid for r in results for _, pid, _ in r} == {os.getpid()}
    assert threading.get_ident() not in {t for r in results for _, _, t in r}
    assert any("batch 0" in note for note in caught.value.__notes__)
    assert new_children() == []


async def sleep_half_a_second(ctx: PipelineContext, x: int) -> int:
    await asyncio.sleep(0.5)
    return x * 10


async def test_awaitable_from_a_running_loop(pool: ProcessPoolExecutor) -> None:
    """Through asyncio.to_thread the loop keeps running while the batches do: a heartbeat
    task ticks throughout the call, which blocks its own thread for at least 1 s."""
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.create_task(heartbeat())
    try:
        results = await asyncio.wait_for(
            asyncio.to_thread(
                run_function_pipeline_in_subprocess,
                sleep_half_a_second,
                [[1, 2], [3]],
                executor=pool,
                concurrency=1,
            ),
            60,
        )
        ticks_during_call = ticks
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    assert [list(r) for r in results] == [[10, 20], [30]]
    # batch 0 runs its two items one after the other: >= 1 s of blocking in the thread,
    # room for ~100 ticks on a free loop; a loop blocked by the call would get almost none.
    assert ticks_during_call > 10


def test_executor_passed_in_stays_open(pool: ProcessPoolExecutor) -> None:
    """An executor given by the caller is used, never shut down."""
    run_function_pipeline_in_subprocess(where, [[1]], executor=pool)
    assert pool.submit(os.getpid).result(timeout=30) != os.getpid()


def test_standard_pickle_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without cloudpickle, results (read-only metadata included) still travel, and
    unpicklable callables get a hint to install the extra."""
    monkeypatch.setitem(sys.modules, "cloudpickle", None)
    assert not shipping.have_cloudpickle()
    ctx = PipelineContext("r", "0", ("node",), 0, types.MappingProxyType({"k": [1]}))
    result = shipping.loads(shipping.dumps((ctx, ctx)))
    assert result == (ctx, ctx)
    assert isinstance(result[0].metadata, types.MappingProxyType)
    with pytest.raises(ShippingError, match=r"async-dag\[processes\]"):
        run_pipeline_in_subprocess(lambda: None, [[1]])


KERNEL_CELL = """
import asyncio, json, os
from async_dag import PipelineBuilder, run_function_pipeline_in_subprocess
from async_dag import run_pipeline_in_subprocess

async def tripled(ctx, x):
    return x * 3, os.getpid()

awaited = await asyncio.to_thread(run_function_pipeline_in_subprocess, tripled, [[1, 2], [3]])
blocking = run_pipeline_in_subprocess(
    lambda: PipelineBuilder("cell").add_task("neg", lambda ctx, x: -x).build(), [[1], [2]]
)
print(json.dumps({
    "values": [[v for v, _ in r] for r in awaited],
    "pids": sorted({pid for r in awaited for _, pid in r}),
    "kernel": os.getpid(),
    "dag": [list(r) for r in blocking],
}))
"""


@pytest.mark.timeout(120)
def test_functions_defined_in_a_kernel_cell(tmp_path: Path) -> None:
    """In a real Jupyter kernel, cell-defined functions and lambdas run in the workers."""
    manager = kernel_manager(tmp_path, "async-dag-processes")
    streams = {"stdout": "", "stderr": ""}

    def collect(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            streams[msg["content"]["name"]] += msg["content"]["text"]

    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        reply = client.execute_interactive(KERNEL_CELL, timeout=90, output_hook=collect)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert streams["stderr"] == ""
    report = json.loads(streams["stdout"])
    assert report["values"] == [[3, 6], [9]]
    assert report["kernel"] not in report["pids"]
    assert report["dag"] == [[-1], [-2]]


# -- monitor=: batch-level progress, driven from this process ------------------------


class Recorder(Monitor):
    """Records each hook call. Holds a lock, so it cannot be pickled: it is never shipped."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, Any]] = []  # ("start"/"update", stats), ("finish", error)
        self.snapshots: list[RunStats] = []

    def start(self, stats: RunStats) -> None:
        self.calls.append(("start", stats))
        self.snapshots.append(stats)

    def update(self, stats: RunStats) -> None:
        self.calls.append(("update", stats))
        self.snapshots.append(stats)

    def finish(self, stats: RunStats, error: BaseException | None) -> None:
        self.calls.append(("finish", error))
        self.snapshots.append(stats)

    @property
    def hooks(self) -> list[str]:
        return [hook for hook, _ in self.calls]


def summed(results: list[RunResult], node: str, counter: str) -> int:
    total: int = sum(getattr(r.stats.nodes[node], counter) for r in results)
    return total


def check_totals(final: RunStats, results: list[RunResult]) -> None:
    """The final view counts the batches, and sums the batches' stats."""
    assert final.done
    assert final.state == "done"
    assert final.inputs == final.total == len(results)  # progress is counted in batches
    assert final.outputs == sum(r.stats.outputs for r in results)
    assert final.errors == sum(r.stats.errors for r in results)
    assert set(final.nodes) == set(results[0].stats.nodes)
    for node_id, node in final.nodes.items():
        for counter in ("received", "emitted", "failed", "retried", "unrouted", "filtered"):
            assert getattr(node, counter) == summed(results, node_id, counter), counter
        maximum = max(r.stats.nodes[node_id].max_queue_depth for r in results)
        assert node.max_queue_depth == maximum
        assert (node.in_flight, node.queue_depth) == (0, 0)
        assert node.concurrency == results[0].stats.nodes[node_id].concurrency
        assert node.queue_size == results[0].stats.nodes[node_id].queue_size


def test_monitor_shows_batch_level_progress(pool: ProcessPoolExecutor) -> None:
    """start with zero counters, one update per finished batch with growing totals, then
    finish with the sums of the batches' stats; the workers get no monitor."""
    recorder = Recorder()
    batches = [[1, 2], [3, 4, 5], [6]]
    results = run_function_pipeline_in_subprocess(
        fail_on_three,
        batches,
        executor=pool,
        concurrency=2,
        on_error="collect",
        monitor=recorder,
        run_id="progress",
    )
    assert [list(r) for r in results] == [[10, 20], [40, 50], [60]]
    assert recorder.hooks == ["start", "update", "update", "update", "finish"]
    assert recorder.calls[-1] == ("finish", None)
    first = recorder.snapshots[0]
    assert (first.run_id, first.name, first.inputs, first.outputs, first.errors) == (
        "progress",
        "fail_on_three",
        0,
        0,
        0,
    )
    assert first.nodes == {"fail_on_three": NodeStats("fail_on_three", 2, 16)}
    assert not first.done
    assert (first.total, first.state) == (3, "running")
    assert [stats.inputs for stats in recorder.snapshots] == [0, 1, 2, 3, 3]  # batches done
    received = [stats.nodes["fail_on_three"].received for stats in recorder.snapshots]
    assert received[1] in {len(batch) for batch in batches}  # one batch's worth of items
    assert received[1] < received[2] < received[3] == received[4] == 6
    elapsed = [stats.elapsed for stats in recorder.snapshots]
    assert elapsed == sorted(elapsed)
    assert {stats.run_id for stats in recorder.snapshots} == {"progress"}
    assert all(r.run_id == "progress" for r in results)
    check_totals(recorder.snapshots[-1], results)
    assert recorder.snapshots[-1].errors == 1


def test_monitor_on_a_factory_in_the_default_pool() -> None:
    """The tasks are listed from the start (the factory is called here once, to learn
    them); the run id is a fresh one."""

    def build() -> DagPipeline:
        return (
            PipelineBuilder("two-steps")
            .add_task("double", lambda ctx, x: x * 2, concurrency=3)
            .add_task("label", lambda ctx, x: f"<{x}>")
            .add_edge("double", "label")
            .build()
        )

    recorder = Recorder()
    results = run_pipeline_in_subprocess(build, [[1, 2], [3]], processes=2, monitor=recorder)
    # three threaded workers: a DAG gives outputs in completion order
    assert [sorted(r) for r in results] == [["<2>", "<4>"], ["<6>"]]
    assert recorder.hooks == ["start", "update", "update", "finish"]
    start = recorder.snapshots[0]
    assert start.name == "two-steps"
    assert start.nodes == {"double": NodeStats("double", 3, 64), "label": NodeStats("label", 1, 64)}
    assert len(start.run_id) == 12
    assert {stats.run_id for stats in recorder.snapshots} == {start.run_id}
    assert start.run_id not in {r.run_id for r in results}  # each batch has its own
    check_totals(recorder.snapshots[-1], results)


def test_monitor_learns_the_tasks_from_a_batch_when_the_factory_fails_here(
    pool: ProcessPoolExecutor,
) -> None:
    """A factory that only works in the workers: the tasks come with the first batch."""
    parent = os.getpid()

    def build() -> DagPipeline:
        if os.getpid() == parent:
            raise RuntimeError("only on the workers")
        return PipelineBuilder("remote").add_task("inc", lambda ctx, x: x + 1).build()

    recorder = Recorder()
    results = run_pipeline_in_subprocess(build, [[1], [2]], executor=pool, monitor=recorder)
    assert [list(r) for r in results] == [[2], [3]]
    assert recorder.snapshots[0].nodes == {}
    assert recorder.snapshots[1].name == "remote"
    assert set(recorder.snapshots[1].nodes) == {"inc"}
    check_totals(recorder.snapshots[-1], results)


def test_monitor_with_a_thread_pool() -> None:
    """A ThreadPoolExecutor: the monitor is driven from the calling thread alone."""
    recorder = Recorder()
    hook_threads: set[int] = set()

    class Threads(Recorder):
        def update(self, stats: RunStats) -> None:
            hook_threads.add(threading.get_ident())
            super().update(stats)

    recorder = Threads()
    with ThreadPoolExecutor(2) as threads:
        results = run_function_pipeline_in_subprocess(
            where, [[1], [2, 3], [4]], executor=threads, monitor=recorder
        )
    assert recorder.hooks == ["start", "update", "update", "update", "finish"]
    assert hook_threads == {threading.get_ident()}
    check_totals(recorder.snapshots[-1], results)


def test_monitor_finish_gets_the_error_of_a_failing_batch(pool: ProcessPoolExecutor) -> None:
    recorder = Recorder()
    with pytest.raises(KeyError) as caught:
        run_function_pipeline_in_subprocess(
            fail_on_three, [[1], [3]], executor=pool, monitor=recorder
        )
    assert recorder.hooks[0] == "start"
    assert recorder.calls[-1] == ("finish", caught.value)
    final = recorder.snapshots[-1]
    assert final.done
    assert final.errors == 0  # the failing batch never finished: only batch 0 may count
    assert final.inputs in {0, 1}


def test_monitor_finish_on_keyboard_interrupt() -> None:
    """Ctrl-C while waiting for batches (here raised from a hook) still ends the view."""

    class Interrupted(Recorder):
        def update(self, stats: RunStats) -> None:
            super().update(stats)
            raise KeyboardInterrupt

    recorder = Interrupted()
    with ThreadPoolExecutor(1) as threads, pytest.raises(KeyboardInterrupt) as caught:
        run_function_pipeline_in_subprocess(where, [[1], [2]], executor=threads, monitor=recorder)
    assert recorder.hooks == ["start", "update", "finish"]
    assert recorder.calls[-1] == ("finish", caught.value)


def test_monitor_true_outside_a_kernel_is_a_quiet_terminal_monitor(
    pool: ProcessPoolExecutor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """monitor=True makes a TerminalMonitor, which writes nothing without a terminal."""
    finished: list[TerminalMonitor] = []
    original = TerminalMonitor.finish

    def finish(self: TerminalMonitor, stats: RunStats, error: BaseException | None) -> None:
        finished.append(self)
        original(self, stats, error)

    monkeypatch.setattr(TerminalMonitor, "finish", finish)
    results = run_function_pipeline_in_subprocess(where, [[1], [2]], executor=pool, monitor=True)
    assert [[x for x, _ in r] for r in results] == [[1], [2]]
    [terminal] = finished
    assert terminal.state == "done"
    assert terminal.stats is not None and terminal.stats.inputs == 2
    assert capsys.readouterr().out == ""


def test_a_broken_monitor_does_not_break_the_call(
    pool: ProcessPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Monitor):
        def start(self, stats: RunStats) -> None:
            raise RuntimeError("start is broken")

        def update(self, stats: RunStats) -> None:
            raise RuntimeError("update is broken")

        def finish(self, stats: RunStats, error: BaseException | None) -> None:
            raise RuntimeError("finish is broken")

    with caplog.at_level("WARNING", logger="async_dag"):
        results = run_function_pipeline_in_subprocess(
            where, [[1], [2]], executor=pool, monitor=Broken()
        )
    assert [[x for x, _ in r] for r in results] == [[1], [2]]
    failed = [r.getMessage() for r in caplog.records if "failed; the run goes on" in r.getMessage()]
    assert len(failed) == 4  # start, two updates, finish


def test_monitor_attach_in_the_blocking_form(pool: ProcessPoolExecutor) -> None:
    """attach comes first, with the pipeline and no cancel function (nothing to cancel
    from here); a function pipeline is shown as its one-node graph."""
    attached: list[tuple[Any, Any]] = []

    class Attaching(Recorder):
        def attach(self, pipeline: DagPipeline | None, cancel: Any) -> None:
            attached.append((pipeline, cancel))
            self.calls.append(("attach", None))

    def build() -> DagPipeline:
        return PipelineBuilder("attached").add_task("inc", lambda ctx, x: x + 1).build()

    recorder = Attaching()
    run_function_pipeline_in_subprocess(where, [[1]], executor=pool, monitor=recorder)
    run_pipeline_in_subprocess(build, [[1]], executor=pool, monitor=recorder)
    assert recorder.hooks == ["attach", "start", "update", "finish"] * 2
    (function_graph, no_cancel), (dag, also_none) = attached
    assert isinstance(function_graph, DagPipeline)
    assert (function_graph.name, list(function_graph.tasks)) == ("where", ["where"])
    assert isinstance(dag, DagPipeline)
    assert dag.name == "attached"
    assert no_cancel is None and also_none is None
