"""Draw a pipeline as a mermaid flowchart, with the standard library only.

The same graph and labels as the DOT drawing (``dot.py``): sources are stadiums, sinks
double-bordered boxes, a node that is both a hexagon, each in the DOT colours; loop edges
are dotted, error edges thick. JupyterLab draws ``text/vnd.mermaid`` output by itself.

Nothing a user chose (task ids, predicate names, the pipeline's name) can change the
chart's structure: node names are synthetic (``n0``, ``n1``, ...), labels are quoted and
every character in them other than a letter, a digit or a few plain marks becomes a
mermaid entity code (``#quot;``, ``#60;``), so no quote, bracket, pipe, ``%%`` directive,
backtick or markup survives; the title is a YAML string escaped the same way.

Example::

    print(pipeline.to_mermaid())   # paste into https://mermaid.live or a ```mermaid block
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .dot import EDGE_KIND_ATTRS, ROLE_ATTRS, edge_caption, edge_kind, node_caption, node_role

if TYPE_CHECKING:
    from .definition import DagPipeline

# Characters kept as they are in labels and the title, besides letters and digits. No
# mermaid syntax ('"', '|', '[', '#', '%', ':', ';', '`', '<', ...) is among them.
_PLAIN = frozenset(" _-.,×≤·")

# Node shapes by role: (opening, closing) around the quoted label.
SHAPES = {
    "source": ('(["', '"])'),
    "sink": ('[["', '"]]'),
    "source+sink": ('{{"', '"}}'),
    "task": ('["', '"]'),
}
# Arrows by edge kind (dot.edge_kind).
ARROWS = {"plain": "-->", "loop": "-.->", "error": "==>"}
# Mermaid class names of the node roles that are coloured.
ROLE_CLASSES = {"source": "source", "sink": "sink", "source+sink": "both"}


def _plain(ch: str) -> bool:
    return ch.isalnum() or ch in _PLAIN


def mermaid_escape(text: str) -> str:
    """Escape ``text`` for the inside of a double-quoted mermaid label.

    A newline becomes ``<br>``, a quote ``#quot;``, and every other character that is not
    a letter, a digit or one of `` _-.,×≤·`` its entity code (``<`` -> ``#60;``).
    """
    out: list[str] = []
    for ch in text:
        if _plain(ch):
            out.append(ch)
        elif ch == "\n":
            out.append("<br>")
        elif ch == '"':
            out.append("#quot;")
        else:
            out.append(f"#{ord(ch)};")
    return "".join(out)


def yaml_quote(text: str) -> str:
    """``text`` as a double-quoted YAML string (the front matter's title).

    Letters, digits and `` _-.,×≤·`` stay; ``"``, ``\\`` and newlines get their short
    escapes; anything else a ``\\uXXXX`` or ``\\UXXXXXXXX`` escape, so the string holds
    no character mermaid could read as syntax.
    """
    out: list[str] = []
    for ch in text:
        if _plain(ch):
            out.append(ch)
        elif ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _style(attrs: dict[str, str]) -> str:
    return f"fill:{attrs['fillcolor']},stroke:{attrs['color']}"


def pipeline_to_mermaid(pipeline: DagPipeline) -> str:
    """The pipeline as a mermaid ``flowchart LR``; the same pipeline always gives the same
    text. Labels are those of ``to_dot()``: the id over the caption on nodes, the
    predicate's name, ``on error`` and the loop bound on edges."""
    lines = ["---", f"title: {yaml_quote(str(pipeline.name))}", "---", "flowchart LR"]
    names = {task_id: f"n{i}" for i, task_id in enumerate(pipeline.tasks)}
    members: dict[str, list[str]] = {}
    for task_id, task in pipeline.tasks.items():
        role = node_role(pipeline, task_id)
        members.setdefault(role, []).append(names[task_id])
        opening, closing = SHAPES[role]
        label = mermaid_escape(f"{task_id}\n{node_caption(task)}")
        lines.append(f"    {names[task_id]}{opening}{label}{closing}")
    styled: dict[str, list[str]] = {}  # edge kind -> link numbers (mermaid counts from 0)
    for number, edge in enumerate(pipeline.transitions):
        kind = edge_kind(edge)
        if kind in EDGE_KIND_ATTRS:
            styled.setdefault(kind, []).append(str(number))
        caption = edge_caption(edge)
        label = f'|"{mermaid_escape(caption)}"|' if caption is not None else ""
        lines.append(f"    {names[edge.source]} {ARROWS[kind]}{label} {names[edge.target]}")
    for role, name in ROLE_CLASSES.items():
        lines.append(f"    classDef {name} {_style(ROLE_ATTRS[role])}")
    for role, name in ROLE_CLASSES.items():
        if role in members:
            lines.append(f"    class {','.join(members[role])} {name}")
    for kind, numbers in styled.items():
        attrs = EDGE_KIND_ATTRS[kind]
        lines.append(
            f"    linkStyle {','.join(numbers)} stroke:{attrs['color']},color:{attrs['fontcolor']}"
        )
    return "\n".join(lines) + "\n"
