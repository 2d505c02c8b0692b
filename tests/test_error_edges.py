"""Error edges: failures become payloads of a dead-letter task instead of stopping a run."""

from __future__ import annotations

import asyncio

import pytest

from async_dag import ItemError, PipelineBuilder, PipelineDefinitionError


async def flaky(ctx, x):
    if x % 3 == 0:
        raise ValueError(f"bad {x}")
    return x


async def keep(ctx, error):
    assert isinstance(error, ItemError)
    assert ctx.path[-1] == "dead" and ctx.data_id == error.ctx.data_id
    return ("dead", error.payload, type(error.exception).__name__, error.node)


def with_dead_letters(handler=flaky, **options):
    """work --on_error--> dead."""
    return (
        PipelineBuilder("e")
        .add_task("work", handler, **options)
        .add_task("dead", keep)
        .add_edge("work", "dead", on_error=True)
        .build()
    )


async def test_failures_go_down_the_error_edge_and_stop_nothing():
    """Under raise, failures are handled by the target; not in errors; counted as failed."""
    result = await with_dead_letters().run_stream(range(7))
    assert sorted(v for v in result if not isinstance(v, tuple)) == [1, 2, 4, 5]
    assert sorted(v for v in result if isinstance(v, tuple)) == [
        ("dead", 0, "ValueError", "work"),
        ("dead", 3, "ValueError", "work"),
        ("dead", 6, "ValueError", "work"),
    ]
    assert result.errors == []
    assert result.stats.nodes["work"].failed == 3
    assert result.stats.nodes["dead"].received == 3


async def test_timeouts_retries_and_loop_limits_go_down_the_error_edge():
    """A timeout after retries and an exhausted loop edge both become dead letters."""

    async def slow(ctx, x):
        if x == 0:
            await asyncio.sleep(10)
        return x + 1

    pipeline = (
        PipelineBuilder()
        .add_task("work", slow, timeout=0.05, retries=1)
        .add_task("dead", keep)
        .add_edge("work", "dead", on_error=True)
        .add_edge("work", "work", when=lambda ctx, x: x < 100, max_loops=2)
        .build()
    )
    result = await pipeline.run_stream([0, 50])
    kinds = sorted(v[2] for v in result)
    assert kinds == ["LoopLimitExceeded", "TimeoutError"]
    assert result.stats.nodes["work"].retried == 1


async def test_failures_of_the_dead_letter_task_follow_on_error():
    """The target's own failures are ordinary failures under the run's policy."""

    async def broken(ctx, error):
        raise RuntimeError("dead letters table is gone")

    pipeline = (
        PipelineBuilder()
        .add_task("work", flaky)
        .add_task("dead", broken)
        .add_edge("work", "dead", on_error=True)
        .build()
    )
    result = await pipeline.run_stream(range(4), on_error="collect")
    assert [(e.node, e.ctx.data_id) for e in result.errors] == [("dead", "0"), ("dead", "3")]
    assert isinstance(result.errors[0].payload, ItemError)
    with pytest.raises(RuntimeError, match="gone"):
        await pipeline.run_stream(range(4))


async def test_a_raising_predicate_goes_down_the_error_edge():
    """A predicate that raises fails the output; the error edge takes it."""

    def picky(ctx, x):
        raise KeyError("field")

    pipeline = (
        PipelineBuilder()
        .add_task("work", flaky)
        .add_task("next", flaky)
        .add_task("dead", keep)
        .add_edge("work", "next", when=picky)
        .add_edge("work", "dead", on_error=True)
        .build()
    )
    result = await pipeline.run_stream([1])
    assert list(result) == [("dead", 1, "KeyError", "work")]
    assert result.stats.nodes["work"].emitted == 0 and result.stats.nodes["work"].failed == 1


async def test_collected_item_errors_carry_the_payload():
    """ItemError.payload is the payload that failed, also in results.errors."""
    pipeline = PipelineBuilder().add_task("work", flaky).build()
    result = await pipeline.run_stream(range(4), on_error="collect")
    assert [e.payload for e in result.errors] == [0, 3]


def test_error_edge_rules():
    """No when or max_loops on an error edge; one per source; not into a join; not a source."""
    b = PipelineBuilder().add_task("a", flaky).add_task("d", keep).add_task("d2", keep)
    with pytest.raises(PipelineDefinitionError, match="no when"):
        PipelineBuilder().add_task("a", flaky).add_task("d", keep).add_edge(
            "a", "d", on_error=True, when=lambda c, x: True
        ).build()
    with pytest.raises(PipelineDefinitionError, match="at most one"):
        b.add_edge("a", "d", on_error=True).add_edge("a", "d2", on_error=True).build()
    with pytest.raises(PipelineDefinitionError, match="join"):
        (
            PipelineBuilder()
            .add_task("a", flaky)
            .add_task("b", flaky)
            .add_task("j", keep, join=True)
            .add_edge("a", "j")
            .add_edge("b", "j")
            .add_edge("a", "j", on_error=True)
            .build()
        )
    pipeline = with_dead_letters()
    assert pipeline.sources == ("work",)
    assert set(pipeline.sinks) == {"work", "dead"}
