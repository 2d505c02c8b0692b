"""PipelineContext as the engine makes it: the same object in every way a user can see as
one built by hand, and the right path however the contexts that reach a node differ."""

from __future__ import annotations

import copy
import pickle

import pytest

from async_dag import PipelineBuilder, PipelineContext
from async_dag.core.context import derive_to, input_context, made


def test_engine_contexts_are_the_public_class_in_every_visible_way():
    """Equality, hash, order, repr, pickling and copying by fields; read-only fields."""
    by_hand = PipelineContext("r", "7", ("a", "b"), 0, {"k": 1})
    engine = derive_to("b", "r", {"k": 1})(input_context("r", "7", "a", {"k": 1}))
    assert isinstance(engine, PipelineContext) and type(engine).__name__ == "PipelineContext"
    assert engine == by_hand and by_hand == engine and hash(engine) == hash(by_hand)
    assert (
        repr(engine)
        == repr(by_hand)
        == ("PipelineContext(run_id='r', data_id='7', path='a>b', attempt=0)")
    )
    for twin in (pickle.loads(pickle.dumps(engine)), copy.copy(engine), copy.deepcopy(engine)):
        assert twin == by_hand and twin.metadata == {"k": 1}
    assert engine._asdict() == {
        "run_id": "r",
        "data_id": "7",
        "path": ("a", "b"),
        "attempt": 0,
        "metadata": {"k": 1},
    }
    assert engine._replace(attempt=2) == PipelineContext("r", "7", ("a", "b"), 2, {"k": 1})
    for name in ("run_id", "data_id", "path", "attempt", "metadata", "node"):
        with pytest.raises(AttributeError):
            setattr(engine, name, "x")
    with pytest.raises(AttributeError):
        engine.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        engine.metadata["k"] = 2  # type: ignore[index]
    assert engine != PipelineContext("r", "7", ("a", "b"), 0, {"k": 2})
    assert engine != ("r", "7", ("a", "b"), 0, {"k": 1})
    assert sorted([made("r", "2", ("a",), 0, None), made("r", "10", ("a",), 0, None)]) == [
        PipelineContext("r", "10", ("a",)),
        PipelineContext("r", "2", ("a",)),
    ]


def test_a_derived_path_is_right_when_the_parents_path_changes():
    """derive_to keeps the last path it made: contexts arriving with other paths (equal
    but not the same object, or different) still get their own."""
    to = derive_to("c", "r", None)
    a = input_context("r", "0", "a", None)
    b = made("r", "1", ("a", "b"), 0, None)
    b_again = made("r", "2", tuple(["a", "b"]), 0, None)
    assert [to(ctx).path for ctx in (a, b, b, a, b_again, a)] == [
        ("a", "c"),
        ("a", "b", "c"),
        ("a", "b", "c"),
        ("a", "c"),
        ("a", "b", "c"),
        ("a", "c"),
    ]


async def test_paths_through_merges_hops_and_loops_are_exact():
    """A task fed by several branches hops on with each payload's own path; a loop makes
    the path grow; the fan-out's children each get theirs."""
    seen: list[tuple[str, tuple[str, ...]]] = []

    async def step(ctx: PipelineContext, x: int) -> int:
        seen.append((ctx.data_id, ctx.path))
        return x + 1

    builder = PipelineBuilder("paths").add_task("src", step)
    for branch in ("l", "r"):
        builder.add_task(branch, step).add_edge("src", branch).add_edge(branch, "merge")
    builder.add_task("merge", step).add_task("out", step).add_edge("merge", "out")
    builder.add_edge("out", "src", when=lambda ctx, x: x < 8, max_loops=1)
    result = await builder.build().run_stream([0, 10], run_id="r")
    paths = sorted(seen)
    first = ("src", "l", "merge", "out")
    first_r = ("src", "r", "merge", "out")
    again_l = (*first, "src", "l", "merge", "out")
    again_r = (*first_r, "src", "r", "merge", "out")
    for data_id in ("0", "1"):
        mine = {path for d, path in paths if d == data_id}
        assert {
            ("src",),
            ("src", "l"),
            ("src", "r"),
            first[:3],
            first_r[:3],
            first,
            first_r,
        } <= mine
    # input 0 (x = 0 -> 4 at out) loops once from each branch and fans out again; input 1
    # (14 at out) never loops; "out" has an edge, so its last outputs are unrouted
    looped = [path for d, path in paths if d == "0" and path[-1] == "out" and len(path) > 4]
    assert len(looped) == 4 and {again_l, again_r} <= set(looped)
    assert all(len(path) <= 4 for d, path in paths if d == "1")
    assert result.stats.nodes["out"].unrouted == 6
