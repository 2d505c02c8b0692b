"""Batch-level progress for ``monitor=`` on batched runs, driven from this process.

A live view cannot sample runs in other processes, so workers run without a monitor.
Instead this process calls ``start`` (zero counters) before the first batch is
submitted, ``update`` each time a batch finishes (in completion order) with the totals
of the batches finished so far, and ``finish`` at the end, also when a batch fails, a
worker dies or Ctrl-C stops the call. The numbers move in batch-sized steps: a batch
counts once it has finished, so ``in_flight`` and ``queue_depth`` are always 0.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

from ..core.results import NodeStats, RunResult, RunStats
from ..observe.monitor import Monitor, notify


class BatchProgress:
    """Sums the stats of finished batches and shows them on ``monitor``.

    ``nodes`` are the node ids known before any batch ran, as zero counters (empty if
    unknown: nodes then appear as batches report them); ``name`` likewise (None: the
    first finished batch's). ``started`` is the ``time.perf_counter()`` the call began.
    Hooks that raise are logged and ignored (:func:`~async_dag.observe.monitor.notify`).
    """

    def __init__(
        self,
        monitor: Monitor,
        *,
        run_id: str | None,
        name: str | None,
        nodes: Mapping[str, NodeStats],
        started: float,
    ) -> None:
        self.monitor = monitor
        self.run_id = run_id if run_id is not None else uuid.uuid4().hex[:12]
        self.name = name
        self.nodes: dict[str, NodeStats] = dict(nodes)
        self.started = started
        self.inputs = 0
        self.outputs = 0
        self.errors = 0

    def stats(self, *, done: bool = False) -> RunStats:
        """The totals of the finished batches, as one run's stats."""
        return RunStats(
            run_id=self.run_id,
            name=self.name if self.name is not None else "pipeline",
            elapsed=time.perf_counter() - self.started,
            inputs=self.inputs,
            outputs=self.outputs,
            errors=self.errors,
            nodes=dict(self.nodes),
            done=done,
        )

    def start(self) -> None:
        """Before the first batch is submitted."""
        notify(self.monitor.start, self.stats())

    def add(self, result: RunResult) -> None:
        """Count a finished batch and show the new totals."""
        batch = result.stats
        if self.name is None:
            self.name = batch.name
        self.inputs += batch.inputs
        self.outputs += batch.outputs
        self.errors += batch.errors
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
            )
        notify(self.monitor.update, self.stats())

    def finish(self, error: BaseException | None) -> None:
        """At the end: ``error`` is None, or what the call raises."""
        notify(self.monitor.finish, self.stats(done=True), error)
