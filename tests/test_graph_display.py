"""Notebook display of a pipeline: SVG through dot, and a fallback that never raises."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET

import graphviz
import pytest
from IPython.core.formatters import DisplayFormatter

from async_dag import DagPipeline, PipelineBuilder
from async_dag.notebook import to_graphviz, to_mermaid
from async_dag.notebook.graph import INSTALL_HINT, mermaid_escape, mimebundle

SVG, MERMAID, PLAIN = "image/svg+xml", "text/vnd.mermaid", "text/plain"
HOSTILE = 'a"b<c>&d\\'


async def step(ctx, value):
    return value


def is_valid(ctx, value):
    return True


def is_transient(ctx, value):
    return False


def pipeline() -> DagPipeline:
    return (
        PipelineBuilder("refresh")
        .add_task("fetch", step, concurrency=8)
        .add_task(HOSTILE, step)
        .add_task("store", step)
        .add_edge("fetch", HOSTILE)
        .add_edge(HOSTILE, "store", when=is_valid)
        .add_edge(HOSTILE, "fetch", when=is_transient, max_loops=3)
        .build()
    )


@pytest.fixture
def no_dot(monkeypatch, tmp_path):
    """A PATH on which the dot program cannot be found."""
    monkeypatch.setenv("PATH", str(tmp_path))


def svg_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)  # the SVG is well-formed XML
    return [el.text or "" for el in root.iter("{http://www.w3.org/2000/svg}text")]


def test_to_graphviz_is_a_digraph_with_the_dot_source():
    """to_graphviz gives a graphviz.Digraph whose source is exactly to_dot()."""
    p = pipeline()
    g = p.to_graphviz()
    assert isinstance(g, graphviz.Digraph)
    assert g.source == p.to_dot() == to_graphviz(p).source


def test_svg_shows_escaped_labels():
    """With dot, the bundle holds SVG with every label (hostile id as literal text)."""
    p = pipeline()
    bundle = p._repr_mimebundle_()
    assert set(bundle) == {SVG, PLAIN}
    assert bundle[PLAIN] == repr(p)
    texts = svg_texts(bundle[SVG])
    for text in ("refresh", "fetch", "×8", HOSTILE, "is_valid", "is_transient", "≤3 loops"):
        assert text in texts
    assert "<c>" not in bundle[SVG].replace("&lt;c&gt;", "")


def test_ipython_formatter_uses_the_bundle():
    """IPython's display formatter gets the SVG from the pipeline."""
    data, _ = DisplayFormatter().format(pipeline())
    assert data[SVG].lstrip().startswith("<?xml")
    assert "refresh" in data[SVG]


def test_include_and_exclude_are_respected():
    """include/exclude filter the bundle."""
    p = pipeline()
    assert set(mimebundle(p, include={PLAIN})) == {PLAIN}
    assert set(mimebundle(p, exclude={SVG})) == {PLAIN}
    assert set(mimebundle(p, exclude={PLAIN})) == {SVG}


def test_without_dot_falls_back_to_mermaid(no_dot):
    """Without dot: no exception, a mermaid chart and the DOT source with an install hint."""
    p = pipeline()
    with pytest.raises(graphviz.ExecutableNotFound):
        p.to_graphviz().pipe(format="svg")  # the PATH really lacks dot
    bundle = p._repr_mimebundle_()
    assert set(bundle) == {MERMAID, PLAIN}
    assert bundle[MERMAID] == to_mermaid(p)
    assert p.to_dot() in bundle[PLAIN]
    assert INSTALL_HINT in bundle[PLAIN]
    assert "apt-get install graphviz" in bundle[PLAIN]
    assert "dot program was not found" in bundle[PLAIN]


def test_without_dot_formatter_shows_fallback(no_dot):
    """IPython's formatter gets the fallback, not an error."""
    data, _ = DisplayFormatter().format(pipeline())
    assert SVG not in data
    assert data[MERMAID].startswith("---\ntitle:")
    assert "brew install graphviz" in data[PLAIN]


def test_without_graphviz_package_falls_back(monkeypatch):
    """A missing graphviz package also gives the fallback, with a pip hint."""
    monkeypatch.setitem(sys.modules, "graphviz", None)
    bundle = pipeline()._repr_mimebundle_()
    assert set(bundle) == {MERMAID, PLAIN}
    assert "pip install graphviz" in bundle[PLAIN]


def test_fallback_respects_include(no_dot):
    """The fallback is filtered by include too."""
    assert set(mimebundle(pipeline(), include={SVG, MERMAID})) == {MERMAID}


def test_mermaid_has_every_node_edge_and_label():
    """The mermaid chart has synthetic ids, shapes by role, edge labels, dotted loops."""
    text = to_mermaid(pipeline())
    lines = text.splitlines()
    assert lines[:4] == ["---", 'title: "refresh"', "---", "flowchart LR"]
    assert '    n0(["fetch<br>×8"])' in lines  # source: stadium
    assert '    n2[["store<br>×1"]]' in lines  # sink: double border
    assert '    n1 -->|"is_valid"| n2' in lines
    assert '    n1 -.->|"is_transient<br>≤3 loops"| n0' in lines
    assert "    n0 --> n1" in lines
    assert "    class n0 source" in lines and "    class n2 sink" in lines


def test_mermaid_labels_cannot_break_out():
    """Hostile ids become entity codes: no raw quote, bracket or markup in a label."""
    escaped = mermaid_escape(HOSTILE + "\n[x]|y")
    assert escaped == "a#quot;b#60;c#62;#38;d#92;<br>#91;x#93;#124;y"
    text = to_mermaid(pipeline())
    node = next(line for line in text.splitlines() if line.startswith("    n1["))
    assert node == '    n1["' + mermaid_escape(HOSTILE) + '<br>×1"]'
    label = re.fullmatch(r'    n1\["(.*)"\]', node)
    assert label and '"' not in label.group(1) and "<c>" not in label.group(1)


def test_mermaid_title_is_a_quoted_string():
    """A hostile pipeline name stays inside the title's quoted string."""
    p = PipelineBuilder('x"\n---\nflowchart').add_task("a", step).build()
    lines = to_mermaid(p).splitlines()
    assert lines[1] == 'title: "x\\"\\n---\\nflowchart"'
    assert lines[2:4] == ["---", "flowchart LR"]
