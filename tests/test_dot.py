"""DOT text of a pipeline: roles, captions, edge labels, escaping, determinism."""

from __future__ import annotations

import re
import subprocess

import pytest

from async_dag import DagPipeline, DagTask, PipelineBuilder, TaskTransition
from async_dag.core.dot import dot_escape, pipeline_to_dot


async def step(ctx, value):
    return value


def is_valid(ctx, value):
    return True


def is_invalid(ctx, value):
    return False


def is_transient_error(ctx, value):
    return False


def refresh() -> DagPipeline:
    return (
        PipelineBuilder("refresh")
        .add_task("fetch", step, concurrency=8)
        .add_task("parse", step)
        .add_task("store", step, concurrency=2, queue_size=5)
        .add_task("rejects", step, retries=2)
        .add_edge("fetch", "parse")
        .add_edge("parse", "store", when=is_valid)
        .add_edge("parse", "rejects", when=is_invalid)
        .add_edge("parse", "fetch", when=is_transient_error, max_loops=3)
        .build()
    )


def node_lines(dot: str) -> dict[str, str]:
    """Map each node's label to its whole DOT statement."""
    found = {}
    for line in dot.splitlines():
        match = re.match(r'\s*n\d+ \[label="((?:[^"\\]|\\.)*)"', line)
        if match:
            found[match.group(1)] = line
    return found


def edge_line(dot: str, source: str, target: str) -> str:
    ids = {label.split("\\n")[0]: line.split()[0] for label, line in node_lines(dot).items()}
    pattern = rf"^\s*{ids[source]} -> {ids[target]}\b.*$"
    match = re.search(pattern, dot, re.MULTILINE)
    assert match, f"no edge {source} -> {target} in\n{dot}"
    return match.group(0)


def test_nodes_show_id_and_concurrency():
    """Each node's label is its id over its concurrency; queue size and retries when set."""
    labels = set(node_lines(refresh().to_dot()))
    assert labels == {
        "fetch\\n×8",
        "parse\\n×1",
        "store\\n×2 · queue 5",
        "rejects\\n×1 · retries 2",
    }


def test_sources_and_sinks_look_different():
    """Sources, sinks and inner tasks get three different shapes."""
    lines = {label.split("\\n")[0]: line for label, line in node_lines(refresh().to_dot()).items()}
    assert 'shape="invhouse"' in lines["fetch"]
    assert 'shape="house"' in lines["store"] and 'peripheries="2"' in lines["store"]
    assert 'shape="house"' in lines["rejects"]
    assert "shape=" not in lines["parse"]  # the default rounded box


def test_single_node_is_both_source_and_sink():
    """A one-node pipeline draws its node with the source-and-sink shape."""
    dot = DagPipeline([DagTask("only", step)], name="one").to_dot()
    assert 'shape="doubleoctagon"' in node_lines(dot)["only\\n×1"]


def test_edges_carry_predicate_names_and_loop_bounds():
    """Conditional edges show the predicate's name; loop edges are dashed with their bound."""
    dot = refresh().to_dot()
    assert "label=" not in edge_line(dot, "fetch", "parse")
    assert 'label="is_valid"' in edge_line(dot, "parse", "store")
    assert 'label="is_invalid"' in edge_line(dot, "parse", "rejects")
    loop = edge_line(dot, "parse", "fetch")
    assert 'label="is_transient_error\\n≤3 loops"' in loop
    assert 'style="dashed"' in loop
    assert 'style="dashed"' not in edge_line(dot, "parse", "store")


def test_single_loop_bound_is_singular():
    """max_loops=1 reads as one loop, without a predicate line."""
    p = DagPipeline(
        [DagTask("a", step), DagTask("b", step), DagTask("c", step)],
        [TaskTransition("a", "b"), TaskTransition("b", "a", max_loops=1), TaskTransition("b", "c")],
    )
    assert 'label="≤1 loop"' in edge_line(p.to_dot(), "b", "a")


def test_graph_label_is_pipeline_name():
    """The graph's label is the pipeline's name."""
    assert re.search(r'graph \[.*label="refresh"', refresh().to_dot())


def test_output_is_deterministic():
    """Two builds of the same pipeline give the same text."""
    assert pipeline_to_dot(refresh()) == pipeline_to_dot(refresh()) == refresh().to_dot()


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ('a"b', 'a\\"b'),
        ("back\\slash", "back\\\\slash"),
        ("a&lt;b", "a&amp;lt;b"),
        ("line\nbreak", "line\\nbreak"),
        ("nul\x00bell\x07", "nul\\\\x00bell\\\\x07"),
        ("<b>x</b>", "<b>x</b>"),
    ],
)
def test_dot_escape(text, escaped):
    """Quotes, backslashes, entities, newlines and control characters are escaped."""
    assert dot_escape(text) == escaped


HOSTILE = 'a"b<c>&d\\'
INJECT = 'x"]; evil [label="pwned'


def hostile_pipeline() -> DagPipeline:
    return (
        PipelineBuilder('na"me\n<i>')
        .add_task(HOSTILE, step)
        .add_task(INJECT, step)
        .add_task("two\nlines", step)
        .add_edge(HOSTILE, INJECT)
        .add_edge(INJECT, "two\nlines")
        .build()
    )


def test_node_names_are_synthetic():
    """Task ids never appear as DOT node names, only n0, n1, ... do."""
    dot = hostile_pipeline().to_dot()
    statements = [line.strip() for line in dot.splitlines()[1:-1]]
    heads = {s.split(" ", 1)[0] for s in statements}
    assert heads == {"graph", "node", "edge", "n0", "n1", "n2"}
    assert "evil" not in heads


def svg_texts(dot: str) -> list[str]:
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=dot.encode(), capture_output=True, check=True, timeout=30
    ).stdout.decode()
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def test_hostile_ids_render_literally_with_dot():
    """The real dot program draws hostile ids as their literal text, three nodes only."""
    texts = svg_texts(hostile_pipeline().to_dot())
    assert "a&quot;b&lt;c&gt;&amp;d\\" in texts
    assert "x&quot;]; evil [label=&quot;pwned" in texts
    assert "two" in texts and "lines" in texts  # the newline became a line break
    assert "na&quot;me" in texts and "&lt;i&gt;" in texts
    assert "pwned" not in texts  # no node was injected
    assert texts.count("×1") == 3
