"""RunResult.to_pandas() and errors_to_pandas(), from real runs."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import pandas as pd

from async_dag import PipelineBuilder, run_function_pipeline


@dataclasses.dataclass
class Reading:
    sensor: str
    node: str  # clashes with a context column


class Pair(NamedTuple):
    left: int
    right: int


async def shape(ctx, x):
    """Give each input a different kind of output."""
    if x == 0:
        return {"a": 1, "path": "p"}
    if x == 1:
        return Reading("s1", "n")
    if x == 2:
        return Pair(3, 4)
    return x * 10


async def test_records_frame_expands_structured_values():
    """Dicts, dataclasses and named tuples spread into columns; clashes get value_."""
    result = await run_function_pipeline(range(4), shape, run_id="r1")
    df = result.to_pandas()
    assert list(df.columns) == [
        "run_id", "data_id", "node", "path",
        "a", "value_path", "sensor", "value_node", "left", "right", "value",
    ]  # fmt: skip
    assert len(df) == 4
    assert list(df["run_id"]) == ["r1"] * 4
    assert list(df["data_id"]) == ["0", "1", "2", "3"]
    assert list(df["node"]) == ["shape"] * 4
    assert list(df["path"]) == [("shape",)] * 4
    assert df.loc[0, "a"] == 1 and df.loc[0, "value_path"] == "p"
    assert df.loc[1, "sensor"] == "s1" and df.loc[1, "value_node"] == "n"
    assert (df.loc[2, "left"], df.loc[2, "right"]) == (3, 4)
    assert df.loc[3, "value"] == 30
    assert pd.isna(df.loc[3, "a"]) and pd.isna(df.loc[0, "value"])  # union of shapes


async def test_plain_values_go_to_value_column():
    """Scalars and other objects are kept as they are in the value column."""

    async def double(ctx, x):
        return [x, x]

    result = await run_function_pipeline([1, 2], double)
    df = result.to_pandas()
    assert list(df.columns) == ["run_id", "data_id", "node", "path", "value"]
    assert list(df["value"]) == [[1, 1], [2, 2]]
    assert list(df["run_id"]) == [result.run_id] * 2


async def test_empty_result_gives_empty_frame():
    """No outputs: an empty frame with the context columns and value."""

    async def drop(ctx, x):
        return
        yield  # an async generator that yields nothing

    df = (await run_function_pipeline(range(3), drop)).to_pandas()
    assert df.empty
    assert list(df.columns) == ["run_id", "data_id", "node", "path", "value"]


async def test_dag_paths_and_sinks():
    """A DAG's frame names the sink and the whole path of each record."""

    async def fetch(ctx, x):
        return {"x": x}

    async def keep(ctx, item):
        return {**item, "kept": True}

    async def reject(ctx, item):
        return {**item, "kept": False}

    def even(ctx, item):
        return item["x"] % 2 == 0

    def odd(ctx, item):
        return not even(ctx, item)

    p = (
        PipelineBuilder("split")
        .add_task("fetch", fetch)
        .add_task("keep", keep)
        .add_task("reject", reject)
        .add_edge("fetch", "keep", when=even)
        .add_edge("fetch", "reject", when=odd)
        .build()
    )
    result = await p.run_stream(range(4), key=lambda x: f"k{x}")
    df = result.to_pandas().sort_values("x").reset_index(drop=True)
    assert list(df.columns) == ["run_id", "data_id", "node", "path", "x", "kept"]
    assert list(df["data_id"]) == ["k0", "k1", "k2", "k3"]
    assert list(df["node"]) == ["keep", "reject", "keep", "reject"]
    assert list(df["path"]) == [
        ("fetch", "keep"),
        ("fetch", "reject"),
        ("fetch", "keep"),
        ("fetch", "reject"),
    ]
    assert list(df["kept"]) == [True, False, True, False]


async def test_errors_frame():
    """Collected errors become rows with type name, message and attempt."""

    async def picky(ctx, x):
        if x % 3 == 0:
            raise ValueError(f"bad {x}")
        return x

    result = await run_function_pipeline(
        range(7), picky, on_error="collect", retries=1, run_id="r2"
    )
    assert list(result) == [1, 2, 4, 5]
    df = result.errors_to_pandas().sort_values("data_id").reset_index(drop=True)
    assert list(df.columns) == [
        "run_id", "data_id", "node", "path", "error", "message", "attempt",
    ]  # fmt: skip
    assert list(df["data_id"]) == ["0", "3", "6"]
    assert list(df["run_id"]) == ["r2"] * 3
    assert list(df["node"]) == ["picky"] * 3
    assert list(df["path"]) == [("picky",)] * 3
    assert list(df["error"]) == ["ValueError"] * 3
    assert list(df["message"]) == ["bad 0", "bad 3", "bad 6"]
    assert list(df["attempt"]) == [1, 1, 1]  # the retry was the failing call


async def test_no_errors_gives_empty_errors_frame():
    """A clean run gives an empty errors frame with all columns."""
    result = await run_function_pipeline([1], shape)
    df = result.errors_to_pandas()
    assert df.empty
    assert list(df.columns) == [
        "run_id", "data_id", "node", "path", "error", "message", "attempt",
    ]  # fmt: skip
