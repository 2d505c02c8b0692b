"""Where batches run: a spawn process pool of our own, or the caller's executor.

Our own pool (:class:`SpawnPool`) starts its processes per call and talks to each one
over its own pipe, so it always knows which batch each process is running: a process
that dies is reported with *its* batch and how it ended (:class:`WorkerDied`), and
``abort`` (from any thread) ends every process at once. No process outlives the call:
on success, on a failed batch, on a dead worker, on Ctrl-C or on cancellation the
remaining ones are terminated (then killed). An executor given by the caller is only
submitted to, never shut down. Either way the loop that collects finished batches hands
each result to ``on_result`` as it comes (what drives a ``monitor=``, batch by batch).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from ..core.errors import WorkerDied as WorkerDied
from ..core.results import RunResult
from .outcomes import decode, in_batch_order, with_batch_note
from .worker import serve

OnResult = Callable[[RunResult], None] | None

# How long a terminated worker may take to end before it is killed.
TERMINATE_GRACE = 1.0


class Stopped(Exception):
    """Raised by :meth:`SpawnPool.run` after :meth:`SpawnPool.abort`."""


class _Worker:
    """One process of the pool, its end of the pipe, and the batch it runs (or None)."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.batch: int | None = None
        self.closed = False  # the pipe reached its end: only the sentinel is waited on

    @property
    def pid(self) -> int:
        pid = self.process.pid
        assert pid is not None, "started"
        return pid


class SpawnPool:
    """Run shipped batches in at most ``size`` spawned processes of our own.

    ``run`` blocks the calling thread until every batch has a result (or raises the
    first failure); ``abort`` may be called from any other thread to stop it: it
    terminates every process at once, and ``run`` then raises :class:`Stopped`.
    """

    def __init__(self, size: int, common: bytes, payloads: list[bytes]) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._size = size
        self._common = common
        self._payloads = payloads
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()  # guards _workers against abort() from elsewhere
        self._stop = threading.Event()
        self._wake, self._waker = self._context.Pipe(duplex=False)

    def run(self, on_result: OnResult = None) -> list[RunResult]:
        """Every batch's result, in batch order; ``on_result`` sees each as it comes."""
        try:
            results = self._run(on_result)
        except BaseException:
            self._end_workers()
            raise
        finally:
            self._wake.close()
            with self._lock:
                self._waker.close()
        self._end_workers()
        return results

    def abort(self) -> None:
        """Stop ``run`` from another thread: every process is terminated now."""
        self._stop.set()
        with self._lock:
            workers = list(self._workers)
            if not self._waker.closed:
                with contextlib.suppress(OSError):
                    self._waker.send_bytes(b"")
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.process.terminate()

    def kill(self) -> None:
        """Kill every process now (SIGKILL), from any thread."""
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.process.kill()

    def pids(self) -> list[int]:
        """The pids of the processes started so far and not yet reaped."""
        with self._lock:
            return [worker.pid for worker in self._workers]

    # -- the collecting loop ------------------------------------------------------------

    def _run(self, on_result: OnResult) -> list[RunResult]:
        count = len(self._payloads)
        results: list[RunResult | None] = [None] * count
        pending = deque(range(count))
        remaining = count
        while remaining:
            self._staff(pending)
            ready = set(wait(self._waitables()))
            if self._stop.is_set():
                raise Stopped
            for worker in self._workers:
                if worker.batch is not None and not worker.closed and worker.conn in ready:
                    index, data = worker.batch, self._receive(worker)
                    if data is not None:
                        results[index] = result = decode(index, count, data)
                        remaining -= 1
                        if on_result is not None:
                            on_result(result)
            for worker in list(self._workers):
                if worker.process.sentinel in ready:
                    self._reap(worker, results, count)
        return in_batch_order(results)

    def _waitables(self) -> list[Any]:
        waitables: list[Any] = [self._wake]
        for worker in self._workers:
            if worker.batch is not None and not worker.closed:
                waitables.append(worker.conn)
            waitables.append(worker.process.sentinel)
        return waitables

    def _receive(self, worker: _Worker) -> bytes | None:
        """The outcome ``worker`` sent for its batch, or None if its pipe ended."""
        try:
            data = worker.conn.recv_bytes()
        except (EOFError, OSError):
            worker.closed = True
            return None
        worker.batch = None
        return data

    def _reap(self, worker: _Worker, results: list[RunResult | None], count: int) -> None:
        """``worker`` ended: fine if idle (or if its outcome was still in the pipe)."""
        if worker.batch is not None and not worker.closed and worker.conn.poll(0):
            index, data = worker.batch, self._receive(worker)
            if data is not None:
                results[index] = decode(index, count, data)
        worker.process.join(timeout=TERMINATE_GRACE)
        if worker.batch is not None:
            raise WorkerDied(worker.batch, worker.pid, worker.process.exitcode)
        with self._lock:
            self._workers.remove(worker)
        worker.conn.close()

    def _staff(self, pending: deque[int]) -> None:
        """Give every idle process a batch (or tell it to stop), starting processes as
        needed while batches wait."""
        busy = sum(worker.batch is not None for worker in self._workers)
        while len(self._workers) < min(self._size, busy + len(pending)):
            self._start_worker()
        for worker in self._workers:
            if worker.batch is not None or worker.closed:
                continue
            if not pending:
                worker.closed = True  # idle for good: it exits, its sentinel says when
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
                continue
            worker.batch = index = pending.popleft()
            with contextlib.suppress(OSError):
                # a process that died before reading this is reported with this batch
                worker.conn.send((index, self._payloads[index]))

    def _start_worker(self) -> None:
        mine, theirs = self._context.Pipe()
        process = self._context.Process(
            target=serve,
            args=(theirs, self._common, os.getpid()),
            name="async_dag-worker",
        )
        with self._lock:
            if self._stop.is_set():
                raise Stopped
            process.start()
            self._workers.append(_Worker(process, mine))
        theirs.close()

    def _end_workers(self) -> None:
        """Make sure no process is left: tell idle ones to stop, terminate, then kill."""
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            if worker.batch is None and not worker.closed:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
            elif worker.batch is not None:
                with contextlib.suppress(OSError):
                    worker.process.terminate()
        for worker in workers:
            worker.process.join(timeout=TERMINATE_GRACE)
            if worker.process.exitcode is None:
                worker.process.terminate()
                worker.process.join(timeout=TERMINATE_GRACE)
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join(timeout=5)
            worker.conn.close()


# -- the caller's executor ----------------------------------------------------------------


class _Settled(Protocol):
    """A finished future of either kind (concurrent.futures or asyncio)."""

    def result(self) -> Any: ...


def executor_outcome(
    index: int, count: int, future: _Settled, *, shipped: bool, unfinished: list[int]
) -> RunResult:
    """The RunResult of batch ``index`` from its finished future, or raise its failure."""
    try:
        value = future.result()
    except BrokenProcessPool as exc:
        raise BrokenProcessPool(
            f"a worker process of the given executor died (killed, crashed or out of "
            f"memory) while batches {', '.join(map(str, unfinished))} were unfinished; "
            f"that executor cannot tell which of them it was running (the default pool, "
            f"without executor=, names the batch and the signal)"
        ) from exc
    except BaseException as exc:
        noted = with_batch_note(exc, index, count)
        if type(exc).__name__ == "KilledWorker":
            noted.add_note(
                f"the dask worker process running batch {index} died (killed, crashed "
                f"or out of memory) each time the batch was tried"
            )
        if noted is exc:
            raise
        raise noted from exc
    result: RunResult = decode(index, count, value) if shipped else value
    return result


def run_on_executor(
    executor: Executor,
    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]],
    *,
    shipped: bool,
    on_result: OnResult = None,
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
            unfinished = [i for i, r in enumerate(results) if r is None]
            result = executor_outcome(index, count, future, shipped=shipped, unfinished=unfinished)
            results[index] = result
            if on_result is not None:
                on_result(result)
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    return in_batch_order(results)
