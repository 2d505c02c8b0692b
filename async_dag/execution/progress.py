"""Batch-level progress for ``monitor=`` on batched runs, driven from this process.

A live view cannot sample runs in other processes, so workers run without a monitor.
Instead this process calls ``attach`` (the pipeline, and for the awaitable forms a
function that cancels the call) and ``start`` (zero counters) before the first batch is
submitted, ``update`` each time a batch finishes (in completion order), and ``finish``
at the end, also when a batch fails, a worker dies, Ctrl-C stops the call or it is
cancelled. Progress is counted in batches: the view's ``inputs`` is the number of
batches finished and ``total`` the number of batches, so a progress bar moves one batch
at a time; ``outputs``, ``errors``, ``skipped`` and the per-node counters are the sums
of the finished batches' own stats (``in_flight`` and queue depths stay 0).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..core.observer import Monitor, notify
from ..core.results import NodeStats, RunResult, RunStats

if TYPE_CHECKING:
    from ..core.definition import DagPipeline

# How many of the finished batches' latest failures the view keeps.
RECENT_ERRORS = 5


class BatchProgress:
    """Sums the stats of finished batches and shows them on ``monitor``.

    ``nodes`` are the node ids known before any batch ran, as zero counters (empty if
    unknown: nodes then appear as batches report them); ``name`` likewise (None: the
    first finished batch's). ``batches`` is the number of batches, ``started`` the
    ``time.perf_counter()`` the call began. Hooks that raise are logged and ignored
    (:func:`~async_dag.core.observer.notify`).
    """

    def __init__(
        self,
        monitor: Monitor,
        *,
        run_id: str | None,
        name: str | None,
        nodes: Mapping[str, NodeStats],
        batches: int,
        started: float,
    ) -> None:
        self.monitor = monitor
        self.run_id = run_id if run_id is not None else uuid.uuid4().hex[:12]
        self.name = name
        self.nodes: dict[str, NodeStats] = dict(nodes)
        self.batches = batches
        self.started = started
        self.finished = 0  # batches
        self.outputs = 0
        self.errors = 0
        self.skipped = 0
        self.recent_errors: tuple[tuple[str, str, str], ...] = ()

    def stats(self, state: str = "running") -> RunStats:
        """The totals of the finished batches, as one run's stats."""
        return RunStats(
            run_id=self.run_id,
            name=self.name if self.name is not None else "pipeline",
            elapsed=time.perf_counter() - self.started,
            inputs=self.finished,
            outputs=self.outputs,
            errors=self.errors,
            nodes=dict(self.nodes),
            done=state != "running",
            total=self.batches,
            skipped=self.skipped,
            state=state,
            recent_errors=self.recent_errors,
        )

    def start(self, pipeline: DagPipeline | None, cancel: Callable[[], None] | None = None) -> None:
        """Before the first batch is submitted: attach, then start with zero counters."""
        notify(self.monitor.attach, pipeline, cancel)
        notify(self.monitor.start, self.stats())

    def add(self, result: RunResult) -> None:
        """Count a finished batch and show the new totals."""
        batch = result.stats
        if self.name is None:
            self.name = batch.name
        self.finished += 1
        self.outputs += batch.outputs
        self.errors += batch.errors
        self.skipped += batch.skipped
        self.recent_errors = (self.recent_errors + tuple(batch.recent_errors))[-RECENT_ERRORS:]
        for node_id, node in batch.nodes.items():
            total = self.nodes.get(node_id) or NodeStats(node_id, node.concurrency, node.queue_size)
            self.nodes[node_id] = NodeStats(
                node=node_id,
                concurrency=node.concurrency,
                queue_size=node.queue_size,
                received=total.received + node.received,
                emitted=total.emitted + node.emitted,
                failed=total.failed + node.failed,
                retried=total.retried + node.retried,
                unrouted=total.unrouted + node.unrouted,
                filtered=total.filtered + node.filtered,
                max_queue_depth=max(total.max_queue_depth, node.max_queue_depth),
                batches=total.batches + node.batches,
                abandoned=total.abandoned + node.abandoned,
                throttled=total.throttled + node.throttled,
            )
        notify(self.monitor.update, self.stats())

    def finish(self, error: BaseException | None) -> None:
        """At the end: ``error`` is None, or what the call raises."""
        notify(self.monitor.finish, self.stats(end_state(error)), error)


def end_state(error: BaseException | None) -> str:
    """``"done"``, ``"cancelled"`` (CancelledError, Ctrl-C) or ``"failed"``."""
    if error is None:
        return "done"
    if isinstance(error, asyncio.CancelledError | KeyboardInterrupt):
        return "cancelled"
    return "failed"
