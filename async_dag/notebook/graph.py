"""Show a pipeline's graph in a notebook: SVG through Graphviz, or a readable fallback.

``mimebundle`` backs ``DagPipeline._repr_mimebundle_``: a pipeline left last in a cell
shows as SVG drawn by the ``dot`` program. Without ``dot`` (or the ``graphviz``
package) it never raises: it returns a mermaid flowchart of the same graph, which
JupyterLab draws by itself, and a plain-text DOT source with a hint how to install
Graphviz.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from ..core.dot import ROLE_ATTRS, dot_body, edge_caption, node_caption, node_role

if TYPE_CHECKING:
    import graphviz

    from ..core.definition import DagPipeline

SVG = "image/svg+xml"
MERMAID = "text/vnd.mermaid"
PLAIN = "text/plain"

INSTALL_HINT = (
    "Install Graphviz to see this graph drawn: apt-get install graphviz "
    "(or conda install graphviz, or brew install graphviz)."
)


def to_graphviz(pipeline: DagPipeline) -> graphviz.Digraph:
    """The pipeline as a ``graphviz.Digraph`` whose source is ``pipeline.to_dot()``."""
    import graphviz

    return graphviz.Digraph(body=dot_body(pipeline))


def render_svg(pipeline: DagPipeline) -> str:
    """The graph as SVG text, drawn by the ``dot`` program through the graphviz package."""
    svg: str = to_graphviz(pipeline).pipe(format="svg", encoding="utf-8")
    return svg


def mermaid_escape(text: str) -> str:
    """Escape ``text`` for a double-quoted mermaid label.

    Every character that mermaid or HTML could read as syntax becomes an entity code
    (``#quot;``, ``#60;``); a newline becomes ``<br>``.
    """
    out: list[str] = []
    for ch in text:
        if ch == "\n":
            out.append("<br>")
        elif ch == '"':
            out.append("#quot;")
        elif ch.isalnum() or ch in " _-.,:/+=?!@×≤·":
            out.append(ch)
        else:
            out.append(f"#{ord(ch)};")
    return "".join(out)


def to_mermaid(pipeline: DagPipeline) -> str:
    """The graph as a mermaid flowchart: same nodes, roles, captions and edge labels.

    Sources are stadiums, sinks double-bordered boxes, loop edges dotted.
    """
    shapes = {
        "source": ('(["', '"])'),
        "sink": ('[["', '"]]'),
        "source+sink": ('{{"', '"}}'),
        "task": ('["', '"]'),
    }
    lines = [
        "---",
        f"title: {json.dumps(pipeline.name)}",  # a JSON string is a YAML string
        "---",
        "flowchart LR",
    ]
    names = {task_id: f"n{i}" for i, task_id in enumerate(pipeline.tasks)}
    roles: dict[str, list[str]] = {}
    for task_id, task in pipeline.tasks.items():
        role = node_role(pipeline, task_id)
        roles.setdefault(role, []).append(names[task_id])
        opening, closing = shapes[role]
        label = mermaid_escape(f"{task_id}\n{node_caption(task)}")
        lines.append(f"    {names[task_id]}{opening}{label}{closing}")
    for edge in pipeline.transitions:
        arrow = "-.->" if edge.is_loop else "-->"
        caption = edge_caption(edge)
        label = f'|"{mermaid_escape(caption)}"|' if caption is not None else ""
        lines.append(f"    {names[edge.source]} {arrow}{label} {names[edge.target]}")
    css = {"source": "source", "sink": "sink", "source+sink": "both"}
    for role, name in css.items():  # the colours of the DOT drawing
        attrs = ROLE_ATTRS[role]
        lines.append(f"    classDef {name} fill:{attrs['fillcolor']},stroke:{attrs['color']}")
    for role, members in roles.items():
        if role in css:
            lines.append(f"    class {','.join(members)} {css[role]}")
    return "\n".join(lines) + "\n"


def _wanted(mime: str, include: Collection[str] | None, exclude: Collection[str] | None) -> bool:
    if include and mime not in include:
        return False
    return not (exclude and mime in exclude)


def mimebundle(
    pipeline: DagPipeline,
    include: Collection[str] | None = None,
    exclude: Collection[str] | None = None,
) -> dict[str, Any]:
    """The display bundle of a pipeline: SVG and its repr, or a fallback that never raises.

    With Graphviz: ``image/svg+xml`` and ``text/plain`` (the repr). Without the ``dot``
    program or the ``graphviz`` package: ``text/vnd.mermaid`` and a ``text/plain`` holding
    the repr, the DOT source and how to install Graphviz. ``include``/``exclude`` (sets of
    MIME types, as IPython passes them) filter the bundle; SVG is not rendered when it is
    not wanted.
    """
    bundle: dict[str, Any] = {}
    problem: str | None = None
    if _wanted(SVG, include, exclude):
        try:
            bundle[SVG] = render_svg(pipeline)
        except ImportError:
            problem = "The graphviz Python package is missing (pip install graphviz)."
        except Exception as exc:  # dot missing (ExecutableNotFound) or failing: fall back
            from graphviz import ExecutableNotFound

            if isinstance(exc, ExecutableNotFound):
                problem = "Graphviz's dot program was not found."
            else:
                problem = f"Graphviz could not draw the graph ({type(exc).__name__}: {exc})."
    if problem is None:
        if _wanted(PLAIN, include, exclude):
            bundle[PLAIN] = repr(pipeline)
        return bundle
    if _wanted(MERMAID, include, exclude):
        bundle[MERMAID] = to_mermaid(pipeline)
    if _wanted(PLAIN, include, exclude):
        bundle[PLAIN] = f"{pipeline!r}\n\n{pipeline.to_dot()}\n{problem} {INSTALL_HINT}"
    return bundle
