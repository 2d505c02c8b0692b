"""Joins: one call per data_id with the parts that came, never waiting forever."""

from __future__ import annotations

import asyncio

import pytest

from async_dag import PipelineBuilder, PipelineDefinitionError


def passthrough(ctx, x):
    return x


async def profile(ctx, x):
    return f"profile {x}"


async def orders(ctx, x):
    if x == 3:
        raise ConnectionError("orders service down")
    return [x] * 2


async def combine(ctx, parts):
    return (ctx.data_id, ctx.path[-1], tuple(sorted(parts)), parts)


def enrich(**join_options):
    """src fans out to two services; the join combines their answers."""
    return (
        PipelineBuilder("enrich")
        .add_task("src", passthrough, inline=True)
        .add_task("profile", profile)
        .add_task("orders", orders)
        .add_task("combine", combine, join=True, **join_options)
        .add_edge("src", "profile")
        .add_edge("src", "orders")
        .add_edge("profile", "combine")
        .add_edge("orders", "combine")
        .build()
    )


async def test_a_join_gets_both_parts_and_is_called_once_per_data_id():
    """Each data_id gives one call with {source: value}; the ctx is at the join."""
    result = await enrich().run_stream(range(3))
    by_id = {r.value[0]: r.value for r in result.records}
    assert sorted(by_id) == ["0", "1", "2"]
    assert by_id["1"][1] == "combine"
    assert by_id["1"][3] == {"profile": "profile 1", "orders": [1, 1]}
    assert result.stats.nodes["combine"].received == 6


async def test_a_failed_branch_is_absent_and_nothing_is_left_held():
    """A branch that failed leaves its source out of parts; the join still fires."""
    result = await enrich().run_stream(range(5), on_error="collect")
    parts = {r.value[0]: r.value[2] for r in result.records}
    assert parts["3"] == ("profile",)
    assert parts["2"] == ("orders", "profile")
    assert [e.ctx.data_id for e in result.errors] == ["3"]


async def test_an_if_else_that_joins_again():
    """Complementary branches join: exactly one part per data_id, never a wait."""

    async def small(ctx, x):
        return "small"

    async def large(ctx, x):
        return "large"

    async def meet(ctx, parts):
        return dict(parts)

    pipeline = (
        PipelineBuilder()
        .add_task("src", passthrough, inline=True)
        .add_task("small", small)
        .add_task("large", large)
        .add_task("meet", meet, join=True)
        .add_edge("src", "small", when=lambda ctx, x: x < 5)
        .add_edge("src", "large", when=lambda ctx, x: x >= 5)
        .add_edge("small", "meet")
        .add_edge("large", "meet")
        .build()
    )
    result = await asyncio.wait_for(pipeline.run_stream(range(10)), 5)
    assert sorted(map(str, result)) == sorted(
        [str({"small": "small"})] * 5 + [str({"large": "large"})] * 5
    )


async def test_filtered_branches_and_a_data_id_with_no_part():
    """A generator that yields nothing is absent; no part at all gives no call."""

    async def maybe(ctx, x):
        if x % 2:
            yield x

    async def other(ctx, x):
        if x % 3 == 0:
            yield -x

    async def meet(ctx, parts):
        return (ctx.data_id, sorted(parts))

    pipeline = (
        PipelineBuilder()
        .add_task("src", passthrough, inline=True)
        .add_task("maybe", maybe)
        .add_task("other", other)
        .add_task("meet", meet, join=True)
        .add_edge("src", "maybe")
        .add_edge("src", "other")
        .add_edge("maybe", "meet")
        .add_edge("other", "meet")
        .build()
    )
    result = await pipeline.run_stream(range(6))
    got = dict(result)
    assert got == {"0": ["other"], "1": ["maybe"], "3": ["maybe", "other"], "5": ["maybe"]}


async def test_a_second_output_from_one_source_fails_that_data_id():
    """Two outputs of one source for one data_id: a ValueError naming join, source, data_id."""

    async def twice(ctx, x):
        yield x
        if x == 1:
            yield x

    async def once(ctx, x):
        return x

    async def meet(ctx, parts):
        return ctx.data_id

    pipeline = (
        PipelineBuilder()
        .add_task("src", passthrough, inline=True)
        .add_task("twice", twice)
        .add_task("once", once)
        .add_task("meet", meet, join=True)
        .add_edge("src", "twice")
        .add_edge("src", "once")
        .add_edge("twice", "meet")
        .add_edge("once", "meet")
        .build()
    )
    result = await pipeline.run_stream(range(3), on_error="collect")
    assert sorted(result) == ["0", "2"]
    [error] = result.errors
    assert isinstance(error.exception, ValueError) and error.node == "meet"
    message = str(error.exception)
    assert "'meet'" in message and "'twice'" in message and "'1'" in message


async def test_a_join_behind_a_batch_task_and_a_slow_branch():
    """Parts waiting in a batch upstream are flushed; the join fires when they come."""

    async def slow(ctx, x):
        await asyncio.sleep(0.01 * (x % 3))
        return x

    async def batch(ctx, rows):
        return [r * 10 for r in rows]

    async def meet(ctx, parts):
        return (ctx.data_id, parts["slow"], parts["batch"])

    pipeline = (
        PipelineBuilder()
        .add_task("src", passthrough, inline=True)
        .add_task("slow", slow, concurrency=3)
        .add_task("batch", batch, batch_size=4)
        .add_task("meet", meet, join=True)
        .add_edge("src", "slow")
        .add_edge("src", "batch")
        .add_edge("slow", "meet")
        .add_edge("batch", "meet")
        .build()
    )
    result = await asyncio.wait_for(pipeline.run_stream(range(10)), 5)
    assert sorted(result) == [(str(i), i, i * 10) for i in range(10)]


def test_joins_are_refused_on_a_cycle_and_with_one_edge():
    """A join needs two incoming edges and may not lie on a cycle."""
    with pytest.raises(PipelineDefinitionError, match="at least two"):
        (
            PipelineBuilder()
            .add_task("a", passthrough, inline=True)
            .add_task("j", combine, join=True)
            .add_edge("a", "j")
            .build()
        )
    with pytest.raises(PipelineDefinitionError, match="cycle"):
        (
            PipelineBuilder()
            .add_task("a", passthrough, inline=True)
            .add_task("b", passthrough, inline=True)
            .add_task("j", combine, join=True)
            .add_edge("a", "j")
            .add_edge("b", "j")
            .add_edge("j", "a", max_loops=2)
            .build()
        )


async def test_memory_holds_only_data_ids_in_flight():
    """After a long run no lineage or part is left held."""
    from async_dag.core.options import RunOptions
    from async_dag.core.run import Run

    pipeline = enrich()
    run = Run(pipeline, RunOptions.check(range(2000), on_error="collect"))
    result = await run.collect()
    assert len(result) == 2000 and len(result.errors) == 1
    assert run.tracker is not None and len(run.tracker) == 0
    assert all(len(j) == 0 for j in run.joiners)
    assert run.parked == 0 and run.active == 0
