"""Draw a pipeline in Graphviz's DOT language, with the standard library only.

Sources are green "invhouse" shapes (inputs enter there), sinks blue "house" shapes with
a double border (results leave there); a node that is both is a green double octagon.
Each node's label shows its id and concurrency (``fetch\\n×8``), plus the options set
(queue size, retries, batch size, join; see TASK_CAPTIONS). Conditional edges carry the
predicate's name, loop edges are dashed and carry their bound (``≤3 loops``), error
edges are bold red and say ``on error``. DOT node names are synthetic (``n0``, ``n1``, ...):
task ids appear only inside escaped labels, so no id can inject DOT or markup.

Example::

    print(pipeline.to_dot())            # paste into any Graphviz viewer
    pipeline.to_graphviz().render(...)  # the same drawing through the graphviz package
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .definition import describe_predicate

if TYPE_CHECKING:
    from .definition import DagPipeline, DagTask, TaskTransition

# Default looks of the whole graph, every node and every edge.
GRAPH_ATTRS = {"rankdir": "LR", "labelloc": "t", "fontname": "Helvetica", "fontsize": "14"}
NODE_ATTRS = {
    "shape": "box",
    "style": "rounded,filled",
    "fillcolor": "#f5f5f5",
    "color": "#616161",
    "fontname": "Helvetica",
    "fontsize": "12",
}
EDGE_ATTRS = {"fontname": "Helvetica", "fontsize": "10", "color": "#616161"}

# How a node looks by its role: (shape, style, fill, border, peripheries).
ROLE_ATTRS: dict[str, dict[str, str]] = {
    "source": {"shape": "invhouse", "style": "filled", "fillcolor": "#dcedc8", "color": "#33691e"},
    "sink": {
        "shape": "house",
        "style": "filled",
        "fillcolor": "#bbdefb",
        "color": "#0d47a1",
        "peripheries": "2",
    },
    "source+sink": {
        "shape": "doubleoctagon",
        "style": "filled",
        "fillcolor": "#dcedc8",
        "color": "#0d47a1",
    },
}
_ROLE_TOOLTIP = {
    "source": "source: every input enters here",
    "sink": "sink: its outputs are the results",
    "source+sink": "source and sink: inputs enter and results leave here",
    "task": "task",
}


def dot_escape(text: str) -> str:
    """Escape ``text`` for the inside of a double-quoted DOT label.

    Quotes and backslashes are escaped, ``&`` becomes ``&amp;`` (Graphviz reads entities
    in labels), a newline becomes a centred line break, and any other control character
    is shown as its Python escape (``\\x00``) so the label stays printable.
    """
    out: list[str] = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "&":
            out.append("&amp;")
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _attrs(attrs: dict[str, str]) -> str:
    return ", ".join(f'{key}="{dot_escape(value)}"' for key, value in attrs.items())


def node_role(pipeline: DagPipeline, task_id: str) -> str:
    """``"source"``, ``"sink"``, ``"source+sink"`` or ``"task"``: how the node is drawn."""
    source = task_id in pipeline.sources
    sink = task_id in pipeline.sinks
    if source and sink:
        return "source+sink"
    return "source" if source else "sink" if sink else "task"


# What a node's caption shows after its concurrency: (task attribute, how a set value
# reads). Read with getattr, so an option the task type lacks is simply not shown; a new
# option shows in both drawings (DOT and mermaid) with one line here.
TASK_CAPTIONS: tuple[tuple[str, Callable[[Any], str]], ...] = (
    ("queue_size", "queue {}".format),
    ("retries", "retries {}".format),
    ("batch_size", "batch {}".format),
    ("join", lambda _: "join"),
)
# The same for an edge's label, after the predicate's name and before the loop bound.
EDGE_CAPTIONS: tuple[tuple[str, Callable[[Any], str]], ...] = (("on_error", lambda _: "on error"),)
# How an edge is drawn by its kind (see edge_kind); a plain edge keeps EDGE_ATTRS.
EDGE_KIND_ATTRS: dict[str, dict[str, str]] = {
    "loop": {"style": "dashed", "color": "#e65100", "fontcolor": "#e65100"},
    "error": {"style": "bold", "color": "#c62828", "fontcolor": "#c62828"},
}


def _is_set(value: object) -> bool:
    return value is not None and value is not False and value != 0


def node_caption(task: DagTask) -> str:
    """The second line of a node's label: ``×8``, then every option of TASK_CAPTIONS set."""
    parts = [f"×{task.concurrency}"]
    for name, show in TASK_CAPTIONS:
        value = getattr(task, name, None)
        if _is_set(value):
            parts.append(show(value))
    return " · ".join(parts)


def edge_caption(edge: TaskTransition) -> str | None:
    """An edge's label: the predicate's name, EDGE_CAPTIONS set, on a loop ``≤n loops``."""
    lines = []
    predicate = describe_predicate(edge)
    if predicate is not None:
        lines.append(predicate)
    for name, show in EDGE_CAPTIONS:
        value = getattr(edge, name, None)
        if _is_set(value):
            lines.append(show(value))
    if edge.max_loops is not None:
        lines.append(f"≤{edge.max_loops} loop" + ("s" if edge.max_loops != 1 else ""))
    return "\n".join(lines) if lines else None


def edge_kind(edge: TaskTransition) -> str:
    """``"error"`` (carries failures), ``"loop"`` (has ``max_loops``) or ``"plain"``."""
    if _is_set(getattr(edge, "on_error", None)):
        return "error"
    return "loop" if edge.is_loop else "plain"


def dot_body(pipeline: DagPipeline) -> list[str]:
    """The statements inside ``digraph { ... }``, one per line (tab-indented, with newline).

    Shaped like ``graphviz.Digraph(body=...)`` expects, so both drawings are one text.
    """
    lines = [
        f"\tgraph [{_attrs({**GRAPH_ATTRS, 'label': pipeline.name})}]\n",
        f"\tnode [{_attrs(NODE_ATTRS)}]\n",
        f"\tedge [{_attrs(EDGE_ATTRS)}]\n",
    ]
    names = {task_id: f"n{i}" for i, task_id in enumerate(pipeline.tasks)}
    for task_id, task in pipeline.tasks.items():
        role = node_role(pipeline, task_id)
        attrs = {"label": f"{task_id}\n{node_caption(task)}", "tooltip": _ROLE_TOOLTIP[role]}
        attrs.update(ROLE_ATTRS.get(role, {}))
        lines.append(f"\t{names[task_id]} [{_attrs(attrs)}]\n")
    for edge in pipeline.transitions:
        attrs = {}
        caption = edge_caption(edge)
        if caption is not None:
            attrs["label"] = caption
        attrs.update(EDGE_KIND_ATTRS.get(edge_kind(edge), {}))
        tail = f" [{_attrs(attrs)}]" if attrs else ""
        lines.append(f"\t{names[edge.source]} -> {names[edge.target]}{tail}\n")
    return lines


def pipeline_to_dot(pipeline: DagPipeline) -> str:
    """The pipeline as a DOT ``digraph``; the same pipeline always gives the same text."""
    return "digraph {\n" + "".join(dot_body(pipeline)) + "}\n"
