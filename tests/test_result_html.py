"""RunResult's HTML summary for notebooks: counts, per-node table, errors, escaping."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st
from IPython.core.formatters import DisplayFormatter

from async_dag import ItemError, PipelineBuilder, PipelineContext, RunResult, run_function_pipeline
from async_dag.core.results import NodeStats, RunStats

TAGS = {"div", "p", "b", "code", "table", "thead", "tbody", "tr", "th", "td", "ul", "li"}


class Reader(HTMLParser):
    """Collects the tags, attributes and text of a summary."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.cells: list[list[str]] = []  # one list per table row
        self.in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)
        if tag == "tr":
            self.cells.append([])
        elif tag in ("td", "th"):
            self.in_cell = True
            self.cells[-1].append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.in_cell = False

    def handle_data(self, data):
        self.text.append(data)
        if self.in_cell:
            self.cells[-1][-1] += data


def read(markup: str) -> Reader:
    reader = Reader()
    reader.feed(markup)
    reader.close()
    return reader


async def picky(ctx, x):
    if x % 4 == 0:
        raise ValueError(f"bad {x}")
    return x


async def test_summary_shows_counts_elapsed_and_a_row_per_node():
    """Outputs, errors, inputs, elapsed, and each node's counters in a table."""
    result = await run_function_pipeline(range(10), picky, on_error="collect", run_id="r1")
    page = read(result._repr_html_())
    text = "".join(page.text)
    assert "7 outputs, 3 errors, 10 inputs" in text
    assert f"{result.stats.elapsed:.2f} s" in text and "r1" in text
    header, row = page.cells
    assert header == [
        "node", "received", "emitted", "failed", "retried", "unrouted", "filtered", "max queue",
    ]  # fmt: skip
    node = result.stats.nodes["picky"]
    assert row == [
        "picky",
        *(str(getattr(node, f)) for f in ("received", "emitted", "failed", "retried")),
        *(str(getattr(node, f)) for f in ("unrouted", "filtered", "max_queue_depth")),
    ]
    assert row[1:4] == ["10", "7", "3"]
    assert "ValueError: bad 0" in text and "ValueError: bad 8" in text


async def test_dag_summary_has_one_row_per_task_in_order():
    """A DAG's table lists its tasks in definition order, unrouted counted."""

    async def split(ctx, x):
        return x

    def even(ctx, x):
        return x % 2 == 0

    p = (
        PipelineBuilder("dag")
        .add_task("split", split)
        .add_task("keep", split)
        .add_edge("split", "keep", when=even)
        .build()
    )
    result = await p.run_stream(range(6))
    rows = read(result._repr_html_()).cells[1:]
    assert [r[0] for r in rows] == ["split", "keep"]
    assert rows[0][1:3] == ["6", "6"] and rows[0][5] == "3"  # 3 unrouted
    assert rows[1][1:3] == ["3", "3"]


async def test_only_the_first_errors_are_listed():
    """Twelve errors: five listed, and a line says how many more and where to see them."""
    result = await run_function_pipeline(range(48), picky, on_error="collect")
    markup = result._repr_html_()
    page = read(markup)
    assert page.tags.count("li") == 5
    text = "".join(page.text)
    assert "First 5 of 12 errors" in text and "and 7 more" in text
    assert "errors_to_pandas()" in text


async def test_repr_is_unchanged_and_ipython_shows_html():
    """__repr__ stays the one-line form; IPython's formatter offers HTML beside it."""
    result = await run_function_pipeline([1, 2], picky)
    assert repr(result) == f"<RunResult 2 outputs, 0 errors, {result.stats.elapsed:.2f} s>"
    data, _ = DisplayFormatter().format(result)
    assert data["text/plain"] == repr(result)
    assert data["text/html"] == result._repr_html_()
    assert "Errors" not in data["text/html"] and "1 error" not in data["text/html"]


def fabricated(run_id: str, node: str, data_id: str, message: str, name: str) -> RunResult:
    """A RunResult with one output and one error, every string chosen by the caller."""
    ctx = PipelineContext(run_id, data_id, (node,))
    stats = RunStats(
        run_id=run_id,
        name=name,
        elapsed=0.5,
        inputs=2,
        outputs=1,
        errors=1,
        nodes={node: NodeStats(node, 1, 2, received=2, emitted=1, failed=1)},
        done=True,
        state="done",
    )
    error = ItemError(ctx, node, RuntimeError(message), payload=None)
    return RunResult(run_id, [message], [ctx], [error], stats)


HOSTILE = st.one_of(
    st.sampled_from(
        [
            "<script>alert(1)</script>",
            '"><img src=x onerror=alert(1)>',
            "' onmouseover='x",
            "&amp;&lt;",
            "</td></tr></table>",
            "<!-- x",
            "]]>",
        ]
    ),
    st.text(min_size=1, max_size=20),
)


@settings(max_examples=150, deadline=None)
@given(run_id=HOSTILE, node=HOSTILE, data_id=HOSTILE, message=HOSTILE, name=HOSTILE)
def test_user_strings_are_escaped(run_id, node, data_id, message, name):
    """Whatever the ids, names and messages: only the summary's own tags, the strings
    shown literally as text."""
    markup = fabricated(run_id, node, data_id, message, name)._repr_html_()
    page = read(markup)
    assert set(page.tags) <= TAGS
    assert {key for key, _ in page.attrs} <= {"class", "style"}
    assert page.tags.count("tr") == 2 and page.tags.count("li") == 1
    text = lines("".join(page.text))
    for value in (run_id, node, data_id, message, name):
        assert lines(value) in text


def lines(text: str) -> str:
    """Line breaks as one \\n each, as HTML reads them (the parser may turn \\r into \\n)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def test_a_broken_exception_str_does_not_break_the_summary():
    """An exception whose __str__ raises is shown by its type name."""

    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    result = fabricated("r", "n", "0", "m", "p")
    result.errors[0] = ItemError(result.errors[0].ctx, "n", Broken(), payload=None)
    assert "<li><code>n</code> data_id <code>0</code>: Broken</li>" in result._repr_html_()


def test_summary_loads_no_table_library():
    """Showing a RunResult as HTML imports neither pandas, pyarrow, polars nor IPython."""
    code = (
        "import asyncio, sys, async_dag\n"
        "async def f(ctx, x):\n"
        "    return x\n"
        "r = asyncio.run(async_dag.run_function_pipeline([1], f))\n"
        "assert '<table>' in r._repr_html_()\n"
        "heavy = {'pandas', 'pyarrow', 'polars', 'IPython', 'ipywidgets', 'graphviz'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
