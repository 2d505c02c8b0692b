"""RunResult.to_pandas(), to_arrow(), to_polars() and errors_to_pandas(), from real runs."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from typing import NamedTuple

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

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


# -- pyarrow and polars -----------------------------------------------------------------


def cells(frame, column):
    """One column of a pandas, pyarrow or polars frame as a list."""
    if isinstance(frame, pd.DataFrame):
        return [
            None if not isinstance(v, tuple | list) and pd.isna(v) else v for v in frame[column]
        ]
    values = (
        frame[column].to_list() if isinstance(frame, pl.DataFrame) else frame[column].to_pylist()
    )
    return [tuple(v) if isinstance(v, list) else v for v in values]


async def test_arrow_and_polars_have_the_columns_and_cells_of_pandas():
    """to_arrow() and to_polars() give the same columns and values as to_pandas()."""
    result = await run_function_pipeline(range(4), shape, run_id="r1")
    frames = {
        "pandas": result.to_pandas(),
        "arrow": result.to_arrow(),
        "polars": result.to_polars(),
    }
    assert isinstance(frames["arrow"], pa.Table) and isinstance(frames["polars"], pl.DataFrame)
    columns = list(frames["pandas"].columns)
    assert frames["arrow"].column_names == columns == frames["polars"].columns
    for column in columns:
        expected = cells(frames["pandas"], column)
        assert cells(frames["arrow"], column) == expected, column
        assert cells(frames["polars"], column) == expected, column
    assert cells(frames["arrow"], "path") == [("shape",)] * 4


async def test_context_columns_are_typed_as_strings():
    """run_id, data_id and node are string columns, path a list of strings."""
    result = await run_function_pipeline([3, 4], shape)
    table, frame = result.to_arrow(), result.to_polars()
    for name in ("run_id", "data_id", "node"):
        assert table.schema.field(name).type == pa.string()
        assert frame.schema[name] == pl.String
    assert table.schema.field("path").type == pa.list_(pa.string())
    assert frame.schema["path"] == pl.List(pl.String)
    assert table.schema.field("value").type == pa.int64() and frame.schema["value"] == pl.Int64


async def test_empty_result_gives_empty_tables_with_the_columns():
    """No outputs: no rows, the context columns and value."""

    async def drop(ctx, x):
        return
        yield

    result = await run_function_pipeline(range(3), drop)
    table, frame = result.to_arrow(), result.to_polars()
    assert table.num_rows == 0 and frame.height == 0
    assert table.column_names == ["run_id", "data_id", "node", "path", "value"] == frame.columns


async def test_other_objects_fit_polars_but_not_arrow():
    """Plain Python objects become a polars Object column; Arrow refuses them by column name."""

    class Token:
        pass

    async def make(ctx, x):
        return Token()

    result = await run_function_pipeline([1, 2], make)
    frame = result.to_polars()
    assert frame.schema["value"] == pl.Object and isinstance(frame["value"][0], Token)
    with pytest.raises(TypeError, match=r"column 'value' cannot become a pyarrow column"):
        result.to_arrow()


async def test_mixed_types_raise_a_type_error_naming_the_column():
    """A column mixing ints and strings is refused by both, naming the column."""

    async def mixed(ctx, x):
        return {"v": x if x else "zero"}

    result = await run_function_pipeline([0, 1], mixed)
    with pytest.raises(TypeError, match=r"column 'v' cannot become a pyarrow column"):
        result.to_arrow()
    with pytest.raises(TypeError, match=r"column 'v' cannot become a polars column.*to_pandas"):
        result.to_polars()


@pytest.mark.parametrize(
    ("module", "method", "extra"),
    [("pyarrow", "to_arrow", "arrow"), ("polars", "to_polars", "polars"),
     ("pandas", "to_pandas", "notebook")],
)  # fmt: skip
async def test_a_missing_library_names_its_extra(monkeypatch, module, method, extra):
    """Without the library, the call raises ImportError with the pip command of its extra."""
    result = await run_function_pipeline([1], shape)
    monkeypatch.setitem(sys.modules, module, None)  # import now fails; restored afterwards
    with pytest.raises(ImportError, match=re.escape(f"pip install 'async-dag[{extra}]'")):
        getattr(result, method)()


def test_importing_async_dag_loads_no_table_library():
    """`import async_dag` (and its notebook layer) loads neither pyarrow, polars nor pandas."""
    code = (
        "import sys, async_dag, async_dag.notebook, async_dag.notebook.frames\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'pyarrow', 'polars',"
        " 'pandas'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
