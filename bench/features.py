"""Workloads for what issues 11 and 12 added, each against the same run without it.

- ``options``: a chain whose tasks have ``rate_limit=None``, ``retry_on`` and an error
  edge configured but never used, against the plain chain (within 5%); and per-input
  completion tracking, which is off without joins or checkpoints: the chain against a
  copy of the engine with the tracking hooks taken out of its hot path (within 3%),
  and, for what it would cost, the chain with tracking forced on.
- ``join``: fan-out to two async branches and a join, against the same branches merging
  into a sink with no join: the cost per input; and peak RSS at 100,000 and 1,000,000
  inputs in fresh child processes (``bench.memory``), which must stay flat.
- ``checkpoint``: the chain over 200,000 inputs with a fresh checkpoint file against
  none (within 15%), and a rerun on a file that has every input: skipped per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from async_dag import ItemError, PipelineBuilder, PipelineContext
from async_dag.core import routing, run, worker
from async_dag.core.context import derive_to

from . import memory, steps
from .harness import Impl, Row, Target, compare

UNUSED_TARGET = Target("time", 1.05)
TRACKING_TARGET = Target("time", 1.03)
CHECKPOINT_TARGET = Target("time", 1.15)
GROWTH_LIMIT = 1.10


def unused_options_chain() -> Any:
    """The 3-step chain, each task with ``rate_limit=None``, ``retry_on`` and an error
    edge to a dead-letter task, none of which any item ever uses."""
    builder = PipelineBuilder("chain")
    for i in range(3):
        builder.add_task(f"s{i}", steps.h_inc, rate_limit=None, retry_on=(ValueError,))
        builder.add_edge(f"s{i}", "dead", on_error=True)
        if i:
            builder.add_edge(f"s{i - 1}", f"s{i}")

    async def dead(ctx: PipelineContext, error: ItemError) -> None:
        raise AssertionError("no item fails in this benchmark")

    return builder.add_task("dead", dead).build()


def _untracked_single_edge(run_: Any, target: Any) -> Any:
    """``routing.single_edge`` as it would be with no tracking code at all."""
    queue, to = target.queue, derive_to(target.id, run_.run_id, run_.options.metadata)

    def emit(ctx: PipelineContext, value: Any) -> Any:
        item = (to(ctx), value)
        run_.active += 1
        if queue.offer(item):
            return None
        return queue.put(item)

    return emit


_TRACKING_HOOK = """\
                if tracker is not None:
                    tracker.leave(ctx._data_id, node)
"""


def _untracked_work() -> Any:
    """The engine's worker loop with its one per-payload tracking check cut out: the
    source of ``worker.work`` minus the hook, compiled in the worker's module."""
    source = inspect.getsource(worker.work)
    if _TRACKING_HOOK not in source:
        raise RuntimeError("bench: the worker's tracking hook moved; update _TRACKING_HOOK")
    namespace = dict(vars(worker))
    exec(compile(source.replace(_TRACKING_HOOK, ""), "<untracked worker>", "exec"), namespace)
    return namespace["work"]


@contextlib.contextmanager
def tracking_removed() -> Iterator[None]:
    """Run the engine with the tracking checks taken out of its hot path: the worker's
    check at each payload's end, and ``single_edge``'s (used off the direct path)."""
    original_edge, original_work = routing.single_edge, run.work
    untracked_work = _untracked_work()  # before patching anything: it may raise
    routing.single_edge, run.work = _untracked_single_edge, untracked_work
    try:
        yield
    finally:
        routing.single_edge, run.work = original_edge, original_work


class _TrackedRun(run.Run):
    """A run that keeps per-input completion although it has no join or checkpoint."""

    def _connect(self, stream: Any) -> None:
        self.tracker = run.Tracker(0, self._upstream_done, self._input_done)
        super()._connect(stream)


def workload_options(scale: float, rounds: int) -> list[Row]:
    """Unused options and completion tracking on the 3-step chain (default queues)."""
    items = max(100, int(200_000 * scale))
    plain = steps.chain([(steps.h_inc, 1)] * 3)
    configured = unused_options_chain()

    async def base(n: int) -> int:
        return await steps.run_counted(plain, n)

    async def unused(n: int) -> int:
        return await steps.run_counted(configured, n)

    async def untracked(n: int) -> int:
        with tracking_removed():
            return await steps.run_counted(plain, n)

    async def tracked(n: int) -> int:
        from async_dag.core.options import RunOptions

        counter = steps.Counter()
        options = RunOptions.check(range(n), result_handler=counter)
        await _TrackedRun(plain, options).execute()
        return counter.count

    impls = [
        Impl("chain, no options", base, note="reference, default queues"),
        Impl(
            "chain, rate_limit=None + retry_on + error edges, unused",
            unused,
            target=UNUSED_TARGET,
        ),
        Impl("chain, tracking hooks removed from the engine", untracked, note="patched copy"),
        Impl(
            "chain as shipped (tracking off: no joins, no checkpoint)",
            base,
            target=TRACKING_TARGET,
            versus="chain, tracking hooks removed from the engine",
            versus_label="hooks removed",
        ),
        Impl("chain, tracking forced on", tracked, note="what it would cost if it were on"),
    ]
    return compare("options", impls, items=items, rounds=rounds, reference=impls[0].name)


def fork_join(join: bool, queue_size: int | None = None) -> Any:
    """``split -> (left, right) -> merge``: ``merge`` a join, or a plain fan-in sink."""

    async def merge(ctx: PipelineContext, parts: Any) -> Any:
        return parts

    builder = PipelineBuilder("fork")
    for tid in ("split", "left", "right"):
        builder.add_task(tid, steps.h_inc, queue_size=queue_size)
    builder.add_task("merge", merge, join=join, queue_size=queue_size)
    for a, b in (("split", "left"), ("split", "right"), ("left", "merge"), ("right", "merge")):
        builder.add_edge(a, b)
    return builder.build()


def workload_join(scale: float, rounds: int) -> list[Row]:
    """A fork of two async branches, joined or merged; then peak RSS of the join."""
    items = max(100, int(100_000 * scale))
    with_join, without = fork_join(True), fork_join(False)

    async def merged(n: int) -> int:
        return await steps.run_counted(without, n)

    async def joined(n: int) -> int:
        return await steps.run_counted(with_join, n)

    def per_input(impl: Impl, n: int, seconds: float) -> dict[str, Any]:
        return {"us_per_input": seconds / n * 1e6, "note_cost": f"{seconds / n * 1e6:.2f} us/input"}

    impls = [
        Impl("fork, two branches merged, no join", merged, expected=lambda n: 2 * n),
        Impl("fork, two branches joined (join=True)", joined, note="one call per input"),
    ]
    rows = compare(
        "join", impls, items=items, rounds=rounds, reference=impls[0].name, extra=per_input
    )
    rows[1].extra["note_extra"] = (
        f"the join adds {rows[1].extra['us_per_input'] - rows[0].extra['us_per_input']:.2f} "
        "us/input"
    )
    small = max(1_000, int(100_000 * scale))
    low = memory.measure(memory.JOIN, small)
    high = memory.measure(memory.JOIN, small * 10)
    rows.append(memory.growth_row("join memory", memory.JOIN, low, high, GROWTH_LIMIT))
    return rows


def workload_checkpoint(scale: float, rounds: int) -> list[Row]:
    """The chain with and without a checkpoint file; a rerun that skips everything."""
    items = max(100, int(200_000 * scale))
    pipeline = steps.chain([(steps.h_inc, 1)] * 3)
    folder = tempfile.TemporaryDirectory(prefix="async-dag-checkpoint-")
    fresh = Path(folder.name) / "fresh.db"
    full = Path(folder.name) / "full.db"

    async def base(n: int) -> int:
        return await steps.run_counted(pipeline, n)

    async def checkpointed(n: int) -> int:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{fresh}{suffix}").unlink(missing_ok=True)
        return await steps.run_counted(pipeline, n, checkpoint=fresh)

    async def rerun(n: int) -> int:
        result = await pipeline.run_stream(range(n), checkpoint=full)
        return result.stats.skipped

    impls = [
        Impl("chain, no checkpoint", base, note="reference, default queues"),
        Impl("chain, checkpoint= a fresh file", checkpointed, target=CHECKPOINT_TARGET),
        Impl("rerun, every input recorded", rerun, note="inputs skipped per second"),
    ]
    try:
        asyncio.run(steps.run_counted(pipeline, items, checkpoint=full))  # not timed
        return compare("checkpoint", impls, items=items, rounds=rounds, reference=impls[0].name)
    finally:
        folder.cleanup()
