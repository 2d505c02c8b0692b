"""Pipeline definitions: validation with messages that name the culprit, and the graph's shape."""

from __future__ import annotations

import pytest

from async_dag import DagPipeline, DagTask, PipelineBuilder, PipelineDefinitionError, TaskTransition


async def step(ctx, x):
    return x


def is_even(ctx, x):
    return x % 2 == 0


def build(tasks, edges=()):
    b = PipelineBuilder("t")
    for t in tasks:
        if isinstance(t, str):
            b.add_task(t, step)
        else:
            b.add_task(*t[:2], **t[2])
    for e in edges:
        b.add_edge(*e[:2], **(e[2] if len(e) > 2 else {}))
    return b.build()


def test_builder_makes_pipeline_with_sources_and_sinks():
    """Sources have no incoming forward edge; sinks have no outgoing edge."""
    p = build(
        ["a", "b", "c", "d"],
        [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "a", {"max_loops": 2})],
    )
    assert p.sources == ("a",)
    assert p.sinks == ()
    p2 = build(["a", "b", "c"], [("a", "b"), ("a", "c")])
    assert p2.sources == ("a",)
    assert p2.sinks == ("b", "c")
    assert repr(p2) == "<DagPipeline 't' 3 tasks 2 edges>"


def test_pipeline_from_tasks_and_transitions():
    """DagPipeline can be built directly from DagTask and TaskTransition objects."""
    p = DagPipeline([DagTask("a", step), DagTask("b", step)], [TaskTransition("a", "b")], name="x")
    assert p.name == "x"
    assert list(p.tasks) == ["a", "b"]
    assert p.sinks == ("b",)


def test_unconditional_edges_into_a_node_make_fan_in():
    """Several edges into one node are allowed (fan-in)."""
    p = build(["a", "b", "c"], [("a", "c"), ("b", "c")])
    assert p.sources == ("a", "b")
    assert p.sinks == ("c",)


@pytest.mark.parametrize(
    ("tasks", "edges", "match"),
    [
        (["a", "a"], [], "duplicate task id 'a'"),
        ([("", step, {})], [], "non-empty string"),
        (["a"], [("a", "zzz")], "unknown target task 'zzz'"),
        (["a"], [("nope", "a")], "unknown source task 'nope'"),
        (["a", "b"], [("a", "b"), ("b", "a")], r"edge b -> a closes a cycle .*add max_loops"),
        (["a"], [("a", "a")], r"edge a -> a closes a cycle"),
        ([("a", step, {"concurrency": 0})], [], r"task 'a': concurrency must be a positive int"),
        ([("a", step, {"concurrency": 1.5})], [], r"task 'a': concurrency"),
        ([("a", step, {"concurrency": True})], [], r"task 'a': concurrency"),
        ([("a", step, {"queue_size": 0})], [], r"task 'a': queue_size"),
        ([("a", step, {"retries": -1})], [], r"task 'a': retries must be an int >= 0"),
        ([("a", step, {"retry_delay": -1})], [], r"task 'a': retry_delay"),
        ([("a", step, {"timeout": 0})], [], r"task 'a': timeout"),
        ([("a", "not callable", {})], [], r"task 'a': handler 'not callable' is not callable"),
        (["a", "b"], [("a", "b", {"when": 3})], r"edge a -> b: when=3 is not callable"),
        (
            ["a", "b"],
            [("a", "b"), ("b", "a", {"max_loops": 0})],
            r"edge b -> a: max_loops must be a positive int",
        ),
        (["a", "b"], [("a", "b"), ("a", "b")], r"duplicate edge a -> b"),
    ],
)
def test_invalid_definitions_name_the_culprit(tasks, edges, match):
    """Each invalid definition raises PipelineDefinitionError naming the task or edge."""
    with pytest.raises(PipelineDefinitionError, match=match):
        build(tasks, edges)


def test_definition_error_is_a_value_error():
    """PipelineDefinitionError refines ValueError, so existing handlers still catch it."""
    with pytest.raises(ValueError):
        build([])


def test_empty_pipeline_is_rejected():
    """A pipeline needs a task."""
    with pytest.raises(PipelineDefinitionError, match="at least one task"):
        DagPipeline([])


def test_cycle_with_max_loops_is_accepted():
    """A cycle with one bounded loop edge is valid."""
    p = build(["a", "b"], [("a", "b"), ("b", "a", {"when": is_even, "max_loops": 3})])
    assert p.sources == ("a",)
    assert [e.is_loop for e in p.transitions] == [False, True]


def test_task_options_are_kept():
    """Options given to add_task end up on the DagTask."""
    p = (
        PipelineBuilder()
        .add_task("a", step, concurrency=4, queue_size=3, retries=2, retry_delay=0.5, timeout=1)
        .build()
    )
    t = p.tasks["a"]
    assert (t.concurrency, t.queue_size, t.retries, t.retry_delay, t.timeout) == (4, 3, 2, 0.5, 1)
    assert t.bound == 3
    assert PipelineBuilder().add_task("b", step, concurrency=5).build().tasks["b"].bound == 64
    assert PipelineBuilder().add_task("c", step, concurrency=40).build().tasks["c"].bound == 80
