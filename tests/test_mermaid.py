"""Mermaid text of a pipeline: same labels as DOT, shapes, arrows, and hostile names."""

from __future__ import annotations

import re
import subprocess
import sys
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from async_dag import DagPipeline, DagTask, PipelineBuilder, TaskTransition
from async_dag.core.dot import edge_caption, node_caption
from async_dag.core.mermaid import mermaid_escape, pipeline_to_mermaid, yaml_quote


async def step(ctx, value):
    return value


def is_valid(ctx, value):
    return True


def is_transient(ctx, value):
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
        .add_edge("parse", "rejects", when=lambda ctx, v: False)
        .add_edge("parse", "fetch", when=is_transient, max_loops=3)
        .build()
    )


# -- a strict reader of what to_mermaid writes ------------------------------------------

LABEL = r"(?:[^\W]|[ \-.,×≤·]|#quot;|#\d+;|<br>)*"  # letters, digits, plain marks, codes
SHAPES = {'(["': '"])', '[["': '"]]', '{{"': '"}}', '["': '"]'}
NODE = re.compile(r'    (n\d+)(\(\["|\[\["|\{\{"|\[")(' + LABEL + r')("\]\)|"\]\]|"\}\}|"\])')
EDGE = re.compile(r'    (n\d+) (-->|-\.->|==>)(?:\|"(' + LABEL + r')"\|)? (n\d+)')
TITLE = re.compile(r'title: "((?:[^\W]|[ \-.,×≤·]|\\["\\n]|\\u[0-9a-f]{4}|\\U[0-9a-f]{8})*)"')
STYLE_LINES = [
    re.compile(r"    classDef (source|sink|both) fill:#[0-9a-f]{6},stroke:#[0-9a-f]{6}"),
    re.compile(r"    class n\d+(,n\d+)* (source|sink|both)"),
    re.compile(r"    linkStyle \d+(,\d+)* stroke:#[0-9a-f]{6},color:#[0-9a-f]{6}"),
]


def unescape_label(label: str) -> str:
    def one(m: re.Match[str]) -> str:
        token = m.group(0)
        return {"#quot;": '"', "<br>": "\n"}.get(token) or chr(int(m.group(1)))

    return re.sub(r"#quot;|<br>|#(\d+);", one, label)


def unescape_title(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        short, code = m.group(1), m.group(2) or m.group(3)
        return {"n": "\n"}.get(short, short) if short else chr(int(code, 16))

    return re.sub(r'\\(["\\n])|\\u([0-9a-f]{4})|\\U([0-9a-f]{8})', one, text)


def read(text: str) -> SimpleNamespace:
    """Parse the chart line by line; fail on any line outside the grammar."""
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == len(text.split("\n")) - 1  # no other line break (\r, U+2028, ...)
    assert lines[0] == "---" and lines[2] == "---" and lines[3] == "flowchart LR"
    title = TITLE.fullmatch(lines[1])
    assert title, lines[1]
    nodes: dict[str, tuple[str, str]] = {}
    edges: list[tuple[str, str, str, str | None]] = []
    for line in lines[4:]:
        if node := NODE.fullmatch(line):
            name, opening, label, closing = node.groups()
            assert SHAPES[opening] == closing and name not in nodes
            nodes[name] = (opening, unescape_label(label))
        elif edge := EDGE.fullmatch(line):
            source, arrow, label, target = edge.groups()
            assert source in nodes and target in nodes
            edges.append((source, arrow, target, None if label is None else unescape_label(label)))
        else:
            assert any(p.fullmatch(line) for p in STYLE_LINES), line
    return SimpleNamespace(title=unescape_title(title.group(1)), nodes=nodes, edges=edges)


# -- tests ------------------------------------------------------------------------------


def test_labels_are_those_of_the_dot_drawing():
    """Node and edge labels are the ids over captions and the edge captions of to_dot()."""
    p = refresh()
    chart = read(p.to_mermaid())
    task_of = {name: label.split("\n")[0] for name, (_, label) in chart.nodes.items()}
    assert {label for _, label in chart.nodes.values()} == {
        f"{t.id}\n{node_caption(t)}" for t in p.tasks.values()
    }
    assert {(task_of[s], task_of[t], c) for s, _, t, c in chart.edges} == {
        (e.source, e.target, edge_caption(e)) for e in p.transitions
    }
    dot = p.to_dot()
    for _, label in chart.nodes.values():
        assert 'label="' + label.replace("\n", "\\n") + '"' in dot
    assert 'label="is_transient\\n≤3 loops"' in dot
    assert "store\n×2 · queue 5" in {label for _, label in chart.nodes.values()}
    assert ("n1", "-->", "n3", "<lambda>") in chart.edges


def test_shapes_follow_roles_and_arrows_follow_edges():
    """Sources are stadiums, sinks double boxes, loops dotted and coloured."""
    text = refresh().to_mermaid()
    lines = text.splitlines()
    assert lines[:4] == ["---", 'title: "refresh"', "---", "flowchart LR"]
    assert '    n0(["fetch<br>×8"])' in lines
    assert '    n1["parse<br>×1"]' in lines
    assert '    n2[["store<br>×2 · queue 5"]]' in lines
    assert '    n1 -.->|"is_transient<br>≤3 loops"| n0' in lines
    assert "    n0 --> n1" in lines
    assert "    class n0 source" in lines and "    class n2,n3 sink" in lines
    assert "    linkStyle 3 stroke:#e65100,color:#e65100" in lines


def test_one_node_is_source_and_sink():
    """A one-node pipeline is a hexagon of the 'both' class."""
    lines = DagPipeline([DagTask("only", step)], name="one").to_mermaid().splitlines()
    assert '    n0{{"only<br>×1"}}' in lines and "    class n0 both" in lines


def test_output_is_deterministic():
    """Two builds of the same pipeline give the same text, through either entry point."""
    assert refresh().to_mermaid() == refresh().to_mermaid() == pipeline_to_mermaid(refresh())


def test_new_task_and_edge_options_show_with_one_line_each():
    """batch_size, join and on_error (of the run core's next version) read by name."""
    task = SimpleNamespace(concurrency=2, queue_size=None, retries=0, batch_size=100, join=True)
    assert node_caption(task) == "×2 · batch 100 · join"  # type: ignore[arg-type]
    p = PipelineBuilder("dead").add_task("a", step).add_task("dlq", step).build()
    error_edge = SimpleNamespace(source="a", target="dlq", when=None, max_loops=None)
    error_edge.is_loop, error_edge.on_error = False, True
    p.transitions = (error_edge,)  # type: ignore[assignment]
    lines = p.to_mermaid().splitlines()
    assert '    n0 ==>|"on error"| n1' in lines
    assert "    linkStyle 0 stroke:#c62828,color:#c62828" in lines
    assert 'n0 -> n1 [label="on error", style="bold", color="#c62828"' in p.to_dot()


def test_escape_leaves_no_syntax():
    """Quotes, brackets, pipes, %%, backticks, markup and line breaks become codes."""
    assert mermaid_escape('a"b<c>&d\\\n[x]|y') == "a#quot;b#60;c#62;#38;d#92;<br>#91;x#93;#124;y"
    assert mermaid_escape("%%{init: {}}%%") == "#37;#37;#123;init#58; #123;#125;#125;#37;#37;"
    assert mermaid_escape("`**b**`;") == "#96;#42;#42;b#42;#42;#96;#59;"
    assert mermaid_escape("é ü 数据 ok_1-2.3,×") == "é ü 数据 ok_1-2.3,×"
    assert mermaid_escape("\u2028\r\t😀") == "#8232;#13;#9;#128512;"
    assert yaml_quote('x"\n---\n\\ <%😀') == '"x\\"\\n---\\n\\\\ \\u003c\\u0025\\U0001f600"'


HOSTILE = [
    '"',
    '"]; evil["pwned',
    "<script>alert(1)</script>",
    "a|b",
    "x;y",
    "%%{init: {'theme': 'dark'}}%%",
    "`**md**`",
    "two\nlines",
    "cr\rlf\u2028ls\u0085",
    "end",
    "graph TD",
    "#quot;",
    "n0",
    "style n0 fill:#f00;",
    "😀 ünï €",
    "-->",
    "[[(])]]",
    "{{x}}",
]
names = st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=12))


def named(name: str):
    def predicate(ctx, value):
        return True

    predicate.__name__ = name
    return predicate


@settings(max_examples=200, deadline=None)
@given(
    ids=st.lists(names, min_size=1, max_size=6, unique=True),
    title=names,
    predicates=st.lists(st.one_of(st.none(), names), min_size=6, max_size=6),
    loop=st.booleans(),
)
def test_hostile_names_never_break_the_chart(ids, title, predicates, loop):
    """Any ids, predicate names and title: every line parses, one node per task, and
    every label and the title read back exactly."""
    edges = [
        TaskTransition(a, b, when=None if name is None else named(name))
        for a, b, name in zip(ids, ids[1:], predicates, strict=False)
    ]
    if loop and len(ids) > 1:
        edges.append(TaskTransition(ids[-1], ids[0], when=named(title), max_loops=2))
    p = DagPipeline([DagTask(i, step, concurrency=3) for i in ids], edges, name=title)
    chart = read(p.to_mermaid())
    assert chart.title == title
    assert [label for _, label in chart.nodes.values()] == [f"{i}\n×3" for i in ids]
    assert len(chart.edges) == len(edges)
    for (source, arrow, target, label), edge in zip(chart.edges, edges, strict=True):
        assert (source, target) == (f"n{ids.index(edge.source)}", f"n{ids.index(edge.target)}")
        assert arrow == ("-.->" if edge.is_loop else "-->")
        assert label == edge_caption(edge)


def test_to_mermaid_needs_no_third_party_package():
    """to_mermaid runs after a bare import and loads nothing outside the standard library."""
    code = (
        "import sys, async_dag\n"
        "p = async_dag.PipelineBuilder('p').add_task('a', lambda c, v: v).build()\n"
        "assert p.to_mermaid().startswith('---')\n"
        "heavy = {'ipywidgets', 'graphviz', 'pandas', 'IPython', 'pyarrow', 'polars'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
