"""Show a pipeline's graph in a notebook: SVG through Graphviz, or a readable fallback.

``mimebundle`` backs ``DagPipeline._repr_mimebundle_``: a pipeline left last in a cell
shows as SVG drawn by the ``dot`` program. Without ``dot`` (or the ``graphviz``
package) it never raises: it returns a mermaid flowchart of the same graph, which
JupyterLab draws by itself, and a plain-text DOT source with a hint how to install
Graphviz.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from ..core.dot import dot_body
from ..core.mermaid import mermaid_escape as mermaid_escape
from ..core.mermaid import pipeline_to_mermaid

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


#: the colour of lines and text drawn on the background (edges, their captions, the
#: title): a grey that reads on white and on JupyterLab's dark theme alike
ON_BACKGROUND = "#767676"


def themed_svg(svg: str) -> str:
    """``dot``'s SVG made to sit on any theme: no white background box, and edges, edge
    captions and the title in :data:`ON_BACKGROUND` (nodes keep their light fills and
    dark text). The SVG scales down to its output's width."""
    svg = re.sub(
        r'<polygon fill="white" stroke="[^"]*"', '<polygon fill="none" stroke="none"', svg, count=1
    )
    svg = svg.replace('"#616161"', f'"{ON_BACKGROUND}"')
    pieces = re.split(
        r'(<g id="node\d+" class="node">.*?</g>\n</g>|<g id="node\d+" class="node">.*?</g>)',
        svg,
        flags=re.S,
    )
    for i in range(0, len(pieces), 2):  # outside node groups: text on the background
        pieces[i] = re.sub(r"<text (?![^>]*\bfill=)", f'<text fill="{ON_BACKGROUND}" ', pieces[i])
    svg = "".join(pieces)
    return re.sub(
        r'<svg width="([\d.]+)pt" height="([\d.]+)pt"',
        r'<svg width="\1pt" height="\2pt" style="max-width:100%;height:auto"',
        svg,
        count=1,
    )


def render_svg(pipeline: DagPipeline) -> str:
    """The graph as SVG text, drawn by the ``dot`` program through the graphviz package,
    themed by :func:`themed_svg`."""
    svg: str = to_graphviz(pipeline).pipe(format="svg", encoding="utf-8")
    return themed_svg(svg)


def to_mermaid(pipeline: DagPipeline) -> str:
    """The graph as mermaid text: ``pipeline.to_mermaid()``, the fallback shown without dot."""
    return pipeline_to_mermaid(pipeline)


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
        bundle[MERMAID] = pipeline.to_mermaid()
    if _wanted(PLAIN, include, exclude):
        bundle[PLAIN] = f"{pipeline!r}\n\n{pipeline.to_dot()}\n{problem} {INSTALL_HINT}"
    return bundle
