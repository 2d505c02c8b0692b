"""The hand-written asyncio pipelines that async_dag is measured against.

The tightest queue pipeline one would write by hand: long-lived workers per stage on
``asyncio.Queue(100)``, taking and putting with ``get_nowait``/``put_nowait`` and awaiting
only when a queue is empty or full, end of stream marked by sentinels. No contexts, no
counters, no error handling: the floor that any toolkit pays on top of.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence

Step = Callable[[int], Awaitable[int]]

_DONE = object()
QUEUE_SIZE = 100


async def _worker(
    step: Step, inq: asyncio.Queue[object], outqs: list[asyncio.Queue[object]]
) -> None:
    get = inq.get_nowait
    while True:
        try:
            item = get()
        except asyncio.QueueEmpty:
            item = await inq.get()
        if item is _DONE:
            return
        out = await step(item)  # type: ignore[arg-type]
        for outq in outqs:
            try:
                outq.put_nowait(out)
            except asyncio.QueueFull:
                await outq.put(out)


async def _stage(
    step: Step,
    workers: int,
    inq: asyncio.Queue[object],
    outqs: list[asyncio.Queue[object]],
    downstream_workers: list[int],
) -> None:
    """Run ``workers`` workers until each took a sentinel, then pass sentinels on."""
    await asyncio.gather(*(_worker(step, inq, outqs) for _ in range(workers)))
    for outq, count in zip(outqs, downstream_workers, strict=True):
        for _ in range(count):
            await outq.put(_DONE)


async def _feed(inputs: Iterable[int], q: asyncio.Queue[object], workers: int) -> None:
    put = q.put_nowait
    for i in inputs:
        try:
            put(i)
        except asyncio.QueueFull:
            await q.put(i)
    for _ in range(workers):
        await q.put(_DONE)


async def _sink_worker(
    step: Step, inq: asyncio.Queue[object], sentinels: int, tally: list[int]
) -> None:
    """A last-stage worker: apply ``step`` and count the outputs (no queue after it)."""
    get = inq.get_nowait
    count = 0
    while True:
        try:
            item = get()
        except asyncio.QueueEmpty:
            item = await inq.get()
        if item is _DONE:
            sentinels -= 1
            if sentinels == 0:
                tally.append(count)
                return
            continue
        await step(item)  # type: ignore[arg-type]
        count += 1


async def run_chain(
    items: int, stages: Sequence[tuple[Step, int]], inputs: Iterable[int] | None = None
) -> int:
    """Stream ``inputs`` (default ``range(items)``) through ``stages`` of (step, workers).

    The last stage's workers count their outputs themselves, as a result handler would;
    returns how many there were.
    """
    queues: list[asyncio.Queue[object]] = [asyncio.Queue(QUEUE_SIZE) for _ in stages]
    source = range(items) if inputs is None else inputs
    tasks = [asyncio.ensure_future(_feed(source, queues[0], stages[0][1]))]
    for i, (step, workers) in enumerate(stages[:-1]):
        after = [stages[i + 1][1]]
        tasks.append(
            asyncio.ensure_future(_stage(step, workers, queues[i], [queues[i + 1]], after))
        )
    tally: list[int] = []
    last_step, last_workers = stages[-1]
    tasks.extend(
        asyncio.ensure_future(_sink_worker(last_step, queues[-1], 1, tally))
        for _ in range(last_workers)
    )
    await asyncio.gather(*tasks)
    return sum(tally)


async def run_fan(items: int, step: Step, branches: int) -> int:
    """Source -> ``branches`` parallel stages -> one sink stage, one worker each."""
    source_q: asyncio.Queue[object] = asyncio.Queue(QUEUE_SIZE)
    branch_qs: list[asyncio.Queue[object]] = [asyncio.Queue(QUEUE_SIZE) for _ in range(branches)]
    sink_q: asyncio.Queue[object] = asyncio.Queue(QUEUE_SIZE)
    tally: list[int] = []
    tasks = [
        asyncio.ensure_future(_feed(range(items), source_q, 1)),
        asyncio.ensure_future(_stage(step, 1, source_q, branch_qs, [1] * branches)),
        # the sink must see one sentinel per branch before it stops
        asyncio.ensure_future(_sink_worker(step, sink_q, branches, tally)),
    ]
    tasks.extend(asyncio.ensure_future(_stage(step, 1, q, [sink_q], [1])) for q in branch_qs)
    await asyncio.gather(*tasks)
    return sum(tally)


async def run_sequential(items: int, steps: Sequence[Step]) -> int:
    """No queues at all: await each step in turn per item (the floor of the floor)."""
    count = 0
    for i in range(items):
        x: int = i
        for step in steps:
            x = await step(x)
        count += 1
    return count
