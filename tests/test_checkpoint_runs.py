"""Checkpointed runs without joins: a count per input, the fast paths kept on, and
exactly the inputs that succeeded recorded (and skipped by a rerun)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from async_dag import Checkpoint, PipelineBuilder, run_function_pipeline
from async_dag.core.options import RunOptions
from async_dag.core.run import Run
from async_dag.core.tracking import Counts, OneEach


def recorded(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {d for (d,) in db.execute("SELECT data_id FROM async_dag_checkpoint")}


class Calls:
    """A chain step that counts its calls and fails the inputs in ``bad``."""

    def __init__(self, bad: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.seen: list[int] = []
        self.bad = bad

    async def __call__(self, ctx, x):
        self.seen.append(x)
        if x in self.bad:
            raise ValueError(f"bad {x}")
        return x


def chain(first: Calls, *, dead_letters: bool = False):
    builder = (
        PipelineBuilder("chain")
        .add_task("a", first)
        .add_task("b", lambda ctx, x: x + 1, inline=True)
        .add_edge("a", "b")
    )
    if dead_letters:
        builder.add_task("dead", lambda ctx, err: None, inline=True).add_edge(
            "a", "dead", on_error=True
        )
    return builder.build()


async def test_a_chain_keeps_its_hop_and_records_what_succeeded(tmp_path: Path):
    """The direct node keeps its hop (the count moves with the payload); the failed
    inputs are not recorded; a rerun over more inputs skips the recorded ones only."""
    path = tmp_path / "c.db"
    first = Calls(bad={3, 7})
    run = Run(chain(first), RunOptions.check(range(10), on_error="collect", checkpoint=path))
    result = await run.collect()
    assert isinstance(run.tracker, Counts) and run.nodes["a"].hop is not None
    assert len(run.tracker) == 0 and not run.tracker.failed
    assert sorted(r.value for r in result.records) == [x + 1 for x in range(10) if x not in {3, 7}]
    assert recorded(path) == {str(x) for x in range(10) if x not in {3, 7}}

    again = Calls()
    result = await chain(again).run_stream(range(15), checkpoint=path)
    assert result.stats.skipped == 8
    assert again.seen == [3, 7, 10, 11, 12, 13, 14]
    assert sorted(r.value for r in result.records) == [4, 8, 11, 12, 13, 14, 15]
    assert len(Checkpoint(path)) == 15


async def test_a_chain_by_position_records_with_one_append_until_something_fails(
    tmp_path: Path,
):
    """With data_ids by position and nothing failed, every payload ending ends its
    input (``OneEach``); the first failure turns the count into a plain ``Counts``, and
    from then on a failed input is not recorded, the others are."""
    path = tmp_path / "c.db"
    run = Run(chain(Calls()), RunOptions.check(range(100), checkpoint=path))
    await run.collect()
    assert type(run.tracker) is OneEach
    assert recorded(path) == {str(x) for x in range(100)}

    path = tmp_path / "d.db"
    run = Run(
        chain(Calls(bad={50})), RunOptions.check(range(100), on_error="collect", checkpoint=path)
    )
    await run.collect()
    assert type(run.tracker) is Counts
    assert len(run.tracker) == 0 and not run.tracker.failed
    assert recorded(path) == {str(x) for x in range(100) if x != 50}


async def test_a_dead_letter_is_not_recorded(tmp_path: Path):
    """A failure sent down an error edge is handled, and still a failure for the record."""
    path = tmp_path / "c.db"
    result = await chain(Calls(bad={1}), dead_letters=True).run_stream(range(4), checkpoint=path)
    assert not result.errors
    assert recorded(path) == {"0", "2", "3"}


async def test_an_input_is_recorded_only_once_all_its_branches_ended(tmp_path: Path):
    """Fan-out to a fast sink and a held branch: the input is not recorded while the
    held branch still has its payload, and is once it ends."""
    held = asyncio.Event()
    release = asyncio.Event()

    async def fast(ctx, x):
        return x

    async def slow(ctx, x):
        held.set()
        await release.wait()
        return x

    pipeline = (
        PipelineBuilder("fan")
        .add_task("src", lambda ctx, x: x, inline=True)
        .add_task("fast", fast)
        .add_task("slow", slow)
        .add_edge("src", "fast")
        .add_edge("src", "slow")
        .build()
    )
    run = Run(pipeline, RunOptions.check(["x"], checkpoint=tmp_path / "c.db"))
    task = asyncio.ensure_future(run.collect())
    await held.wait()
    while run.nodes["fast"].emitted == 0:  # the fast branch's output reaches its sink
        await asyncio.sleep(0)
    assert run.session is not None and run.session.recorded == 0
    assert run.tracker is not None and len(run.tracker) == 1
    release.set()
    result = await task
    assert len(result) == 2
    assert recorded(tmp_path / "c.db") == {"0"}


async def test_generators_batches_and_keys_balance(tmp_path: Path):
    """A generator's outputs into a batch task, inputs by key= with a duplicate: every
    input whose outputs all succeeded is recorded once; a rerun skips them all."""
    path = tmp_path / "c.db"

    async def explode(ctx, x):
        for i in range(x % 3):
            yield (x, i)
        if x == 4:  # after its one output, which the batch writes
            raise OSError("page 2 missing")

    async def write(ctx, batch):
        return None

    pipeline = (
        PipelineBuilder("gen")
        .add_task("explode", explode)
        .add_task("write", write, batch_size=2)
        .add_edge("explode", "write")
        .build()
    )
    inputs = [1, 2, 3, 4, 5, 6, 2]
    result = await pipeline.run_stream(
        inputs, key=lambda x: f"k{x}", on_error="collect", checkpoint=path
    )
    failed = {e.ctx.data_id for e in result.errors}
    assert failed == {"k4"} and result.stats.nodes["write"].received == 8
    assert recorded(path) == {f"k{x}" for x in inputs} - failed
    again = await pipeline.run_stream(
        inputs, key=lambda x: f"k{x}", on_error="collect", checkpoint=path
    )
    assert again.stats.skipped == 6 and len(again.errors) == 1


async def test_stream_and_function_pipelines_resume(tmp_path: Path):
    """``stream`` and ``run_function_pipeline`` record and skip like ``run_stream``."""
    path = tmp_path / "c.db"
    got = [v async for _, v in chain(Calls()).stream(range(5), checkpoint=Checkpoint(path, "s"))]
    assert sorted(got) == [1, 2, 3, 4, 5]
    again = chain(Calls()).stream(range(7), checkpoint=Checkpoint(path, "s"))
    assert sorted([v async for _, v in again]) == [6, 7]

    async def double(ctx, x):
        return 2 * x

    first = await run_function_pipeline(range(4), double, checkpoint=Checkpoint(path, "f"))
    second = await run_function_pipeline(range(6), double, checkpoint=Checkpoint(path, "f"))
    assert len(first) == 4 and second.stats.skipped == 4 and list(second) == [8, 10]


async def test_data_ids_are_stored_exactly(tmp_path: Path):
    """Data_ids with NULs, quotes, backslashes and non-ASCII characters are recorded as
    they are (whichever way a batch is written) and skipped by a rerun."""
    path = tmp_path / "c.db"
    keys = ["a\x00b", '"q"', "back\\slash", "\\u0000", "é✓😀", "\n\t", ""]
    pipeline = chain(Calls())
    await pipeline.run_stream(range(len(keys)), key=keys.__getitem__, checkpoint=path)
    assert recorded(path) == set(keys)
    again = await pipeline.run_stream(range(len(keys)), key=keys.__getitem__, checkpoint=path)
    assert again.stats.skipped == len(keys) and len(again) == 0


async def test_a_run_that_skips_everything_lets_the_loop_run(tmp_path: Path):
    """Skipping chunk after chunk of recorded inputs, the feeder still yields, so
    other tasks (a monitor, a cancel) get their turn before the run ends."""
    path = tmp_path / "c.db"
    pipeline = chain(Calls())
    await pipeline.run_stream(range(5000), checkpoint=path)
    other_ran = asyncio.Event()
    seen_at: list[int] = []

    def inputs():
        asyncio.get_running_loop().call_soon(other_ran.set)  # runs at the loop's next turn
        for i in range(5000):
            if other_ran.is_set() and not seen_at:
                seen_at.append(i)
            yield i

    result = await pipeline.run_stream(inputs(), checkpoint=path)
    assert result.stats.skipped == 5000
    assert seen_at and seen_at[0] < 5000


async def test_records_reach_the_file_while_the_run_still_goes(tmp_path: Path):
    """The inputs that ended are committed during the run, not only at its end: the
    file lists them while the last input is still held by its handler."""
    path = tmp_path / "c.db"
    holding, release = asyncio.Event(), asyncio.Event()

    async def step(ctx, x):
        if x == 9:
            holding.set()
            await release.wait()
        return x

    pipeline = PipelineBuilder("held").add_task("step", step, concurrency=10).build()
    task = asyncio.create_task(pipeline.run_stream(range(10), checkpoint=path))
    await holding.wait()  # the file is open and made by now
    for _ in range(500):  # up to 10 s; the flusher commits every few milliseconds
        if recorded(path) == {str(x) for x in range(9)}:
            break
        await asyncio.sleep(0.02)
    assert recorded(path) == {str(x) for x in range(9)} and not task.done()
    release.set()
    await task
    assert recorded(path) == {str(x) for x in range(10)}


async def test_a_key_that_comes_again_after_its_input_ended_is_skipped(tmp_path: Path):
    """With ``key=``, an input whose key was recorded earlier in the same run is skipped."""
    calls = Calls()
    runs: list[Run] = []

    async def inputs():
        yield 1
        for _ in range(1000):
            session = runs[0].session
            if session is not None and "k1" in session.done:
                break
            await asyncio.sleep(0)
        yield 1
        yield 2

    options = RunOptions.check(inputs(), key=lambda x: f"k{x}", checkpoint=tmp_path / "c.db")
    runs.append(Run(chain(calls), options))
    result = await runs[0].collect()
    assert calls.seen == [1, 2] and result.stats.skipped == 1
    assert recorded(tmp_path / "c.db") == {"k1", "k2"}
