"""Where batches run: a spawn process pool of our own, or the caller's executor.

Our own pool is created and shut down per call; on a failed batch, a dead worker or
Ctrl-C its workers are terminated, so no process outlives the call. An executor given
by the caller is only submitted to, never shut down. Either way the loop that collects
finished batches runs in the calling thread, which hands each result to ``on_result``
as it comes (what drives a ``monitor=``, batch by batch).
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Callable, MutableSequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess
from typing import Any

from ..core.results import RunResult
from .outcomes import decode, in_batch_order, with_batch_note
from .worker import init_worker, run_shipped


def run_in_spawn_pool(
    workers: int,
    common: bytes,
    payloads: list[bytes],
    *,
    on_result: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Run each shipped batch in a fresh pool of ``workers`` spawned processes.

    ``on_result`` is called with each batch's result as it finishes (completion order).
    """
    context = multiprocessing.get_context("spawn")
    running: MutableSequence[int] = context.RawArray("l", len(payloads))
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=init_worker,
        initargs=(running,),
    )
    count = len(payloads)
    results: list[RunResult | None] = [None] * count
    try:
        futures: dict[Future[bytes], int] = {}
        for index, payload in enumerate(payloads):
            try:
                futures[pool.submit(run_shipped, index, common, payload)] = index
            except BrokenProcessPool:
                break  # a worker died already: the futures below say which batch it ran
        for future in as_completed(futures):
            index = futures[future]
            try:
                data = future.result()
            except BrokenProcessPool as exc:
                raise _worker_died(index, pool, running, exc) from exc
            result = results[index] = decode(index, count, data)
            if on_result is not None:
                on_result(result)
        pool.shutdown(wait=True)
    except BaseException:
        # A failed batch, a dead worker or Ctrl-C: stop every worker we started.
        _abort_pool(pool)
        raise
    return in_batch_order(results)


def run_on_executor(
    executor: Executor,
    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]],
    *,
    shipped: bool,
    on_result: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Submit one call per batch to the caller's executor and collect them in batch order.

    ``on_result`` is called with each batch's result as it finishes (completion order).

    The executor is not ours: on failure the batches not yet started are cancelled, and
    the executor is left open.
    """
    count = len(calls)
    results: list[RunResult | None] = [None] * count
    futures: dict[Future[Any], int] = {}
    try:
        for index, (fn, args) in enumerate(calls):
            futures[executor.submit(fn, *args)] = index
        for future in as_completed(futures):
            index = futures[future]
            try:
                value = future.result()
            except BrokenProcessPool as exc:
                raise BrokenProcessPool(
                    f"a worker process died while batch {index} was running or waiting "
                    f"(killed, crashed or out of memory); the pool is broken"
                ) from exc
            except BaseException as exc:
                noted = with_batch_note(exc, index, count)
                if noted is exc:
                    raise
                raise noted from exc
            result: RunResult = decode(index, count, value) if shipped else value
            results[index] = result
            if on_result is not None:
                on_result(result)
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    return in_batch_order(results)


def _worker_died(
    index: int,
    pool: ProcessPoolExecutor,
    running: MutableSequence[int],
    cause: BrokenProcessPool,
) -> BrokenProcessPool:
    """A clear error for a dead worker: which process, how it ended, which batch."""
    # `_processes` is the pool's own pid -> process map (it is None after shutdown).
    processes: dict[int, BaseProcess] = dict(getattr(pool, "_processes", None) or {})
    for process in processes.values():
        process.join(timeout=2)  # the pool is terminating the others: let them end
    dead = [
        process
        for process in processes.values()
        if process.exitcode is not None and process.exitcode != -signal.SIGTERM
    ]
    for process in dead:
        batches = [i for i, pid in enumerate(running) if pid == process.pid]
        if batches:
            return BrokenProcessPool(
                f"the worker process for batch {batches[0]} (pid {process.pid}) died before "
                f"finishing it ({_how(process.exitcode)}); the pool is broken, so the other "
                f"unfinished batches stopped too"
            )
    causes = ", ".join(_how(process.exitcode) for process in dead) or "cause unknown"
    return BrokenProcessPool(
        f"a worker process died while batch {index} was running or waiting ({causes}); "
        f"the pool is broken, so the unfinished batches stopped"
    )


def _how(exitcode: int | None) -> str:
    if exitcode is None:
        return "cause unknown"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}: os._exit, or a crash"


def _abort_pool(pool: ProcessPoolExecutor) -> None:
    """Shut ``pool`` down now: cancel what has not started, terminate every worker."""
    processes: list[BaseProcess] = list((getattr(pool, "_processes", None) or {}).values())
    manager: threading.Thread | None = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.exitcode is None:
            process.terminate()
    if manager is not None:
        manager.join(timeout=10)  # it notices the dead workers, fails their futures, joins
    for process in processes:
        process.join(timeout=2)
        if process.exitcode is None:
            process.kill()
            process.join(timeout=2)
