"""The pipeline's drawing with each node coloured live by its state, for the widget.

``dot`` lays the graph out once (per pipeline: layouts are cached by their DOT text);
the SVG is then cut into a template whose slots are each node's colours and its line of
counts, so a refresh is a string join and never runs ``dot`` again. Colours come from
JupyterLab's theme variables (``var(--jp-...)``), so the drawing reads in light and dark
themes; the background is transparent and the SVG scales down to its output's width.
Long chains are laid out top to bottom. Without ``dot`` the same states show as a row of
coloured boxes in HTML. Every id reaches the SVG through DOT escaping (``dot`` writes
it XML-escaped) or ``html.escape``, so no id can inject markup.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.dot import dot_escape, node_caption
from ..core.results import NodeStats
from ..observe.terminal import printable

if TYPE_CHECKING:
    from ..core.definition import DagPipeline

#: node states, in the order a legend shows them
STATES = ("idle", "busy", "backed up", "failing")

#: (fill, border, text) of a node by state: theme variables, with light tints under
#: dark text for the three active states (the tints are the same in both themes)
STATE_STYLE = {
    "idle": ("var(--jp-layout-color2)", "var(--jp-border-color1)", "var(--jp-ui-font-color1)"),
    "busy": ("var(--jp-brand-color3)", "var(--jp-brand-color1)", "#1a1a1a"),
    "backed up": ("var(--jp-warn-color3)", "var(--jp-warn-color1)", "#1a1a1a"),
    "failing": ("var(--jp-error-color3)", "var(--jp-error-color1)", "#1a1a1a"),
}

#: how many characters of an id the drawing and the table show (the rest on hover)
ID_WIDTH = 28
#: the width the layout reserves for a node's line of counts
_COUNTS_PLACEHOLDER = "done 000,000 · busy 00 · queue 00"
#: graphs with this many ranks or more (and more ranks than nodes side by side) go TB
DEEP = 4

_LAYOUTS: dict[str, tuple[list[str], list[tuple[int, str]]] | None] = {}
_SLOT = re.compile("\x00(\\d+):(\\w+)\x00")


def shorten(text: str, width: int = ID_WIDTH) -> str:
    """``text`` made printable and cut in the middle with ``…`` to ``width`` characters."""
    text = printable(text)
    if len(text) <= width:
        return text
    head = (width - 1) * 2 // 3
    tail = width - 1 - head
    return f"{text[:head]}…{text[len(text) - tail :]}"


def node_state(node: NodeStats, *, failing: bool) -> str:
    """``failing`` (failed lately), ``backed up`` (queue at least 3/4 full), ``busy``
    (work in flight or queued) or ``idle``."""
    if failing:
        return "failing"
    if node.queue_size > 0 and node.queue_depth * 4 >= node.queue_size * 3 and node.queue_depth:
        return "backed up"
    if node.in_flight or node.queue_depth:
        return "busy"
    return "idle"


def counts_line(node: NodeStats, done: int) -> str:
    """``done 1,234 · busy 3 · queue 16 · failed 2``: the nonzero counters of a node."""
    parts = [f"done {done:,}"]
    if node.in_flight:
        parts.append(f"busy {node.in_flight:,}")
    if node.queue_depth:
        parts.append(f"queue {node.queue_depth:,}")
    if node.failed:
        parts.append(f"failed {node.failed:,}")
    return " · ".join(parts)


@dataclass(frozen=True)
class NodeView:
    """What the drawing shows of one node: its state and its line of counts."""

    state: str
    counts: str


def _ranks(pipeline: DagPipeline) -> tuple[int, int]:
    """(depth, breadth) of the graph without its loop edges: ranks, most nodes in one."""
    rank = dict.fromkeys(pipeline.tasks, 0)
    edges = [(e.source, e.target) for e in pipeline.transitions if not e.is_loop]
    for _ in range(len(rank)):  # longest path by relaxation (no cycles without loops)
        changed = False
        for source, target in edges:
            if rank[target] < rank[source] + 1:
                rank[target] = rank[source] + 1
                changed = True
        if not changed:
            break
    per_rank: dict[int, int] = {}
    for r in rank.values():
        per_rank[r] = per_rank.get(r, 0) + 1
    return (max(rank.values(), default=0) + 1, max(per_rank.values(), default=0))


def live_dot(pipeline: DagPipeline) -> str:
    """``pipeline.to_dot()`` with each node's label made of its short id, its caption and
    room for a line of counts, its whole id as tooltip, a transparent background, and
    ``rankdir=TB`` when the graph is deep."""
    ids = list(pipeline.tasks)
    lines = pipeline.to_dot().splitlines(keepends=True)
    label = re.compile(r'^\tn(\d+) \[label="(?:[^"\\]|\\.)*", tooltip="(?:[^"\\]|\\.)*"')
    out: list[str] = []
    for line in lines:
        match = label.match(line)
        if match is not None:
            task_id = ids[int(match.group(1))]
            text = f"{shorten(task_id)}\n{node_caption(pipeline.tasks[task_id])}\n"
            text += _COUNTS_PLACEHOLDER
            line = (
                f'\tn{match.group(1)} [label="{dot_escape(text)}", '
                f'tooltip="{dot_escape(printable(task_id))}"' + line[match.end() :]
            )
            # boxes for every role: a house shape grows wide around three lines
            line = re.sub(
                r'shape="[^"]*", style="[^"]*"', 'shape="box", style="rounded,filled"', line
            )
        out.append(line)
    depth, breadth = _ranks(pipeline)
    rankdir = "TB" if depth >= DEEP and depth >= breadth else "LR"
    while out and out[-1].strip() != "}":
        out.pop()
    out.insert(len(out) - 1, f'\tgraph [rankdir="{rankdir}", bgcolor="transparent"]\n')
    return "".join(out)


def _free_text(svg: str) -> str:
    """Text outside the nodes (title, edge captions) in the current colour, unless dot
    already gave it one (a loop edge's caption)."""
    return re.sub(r"<text (?![^>]*\bfill=)", '<text fill="currentColor" ', svg)


def _template(svg: str, count: int) -> tuple[list[str], list[tuple[int, str]]]:
    """Cut dot's SVG into static parts and (node index, slot) pairs between them."""
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<!--.*?-->\n?", "", svg, flags=re.S)
    size = re.match(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', svg)
    if size is not None:  # natural size in px as the most, scaled down to the output
        width = float(size.group(1)) * 4 / 3
        svg = (
            f'<svg class="async-dag-live-graph" width="{width:.0f}" '
            f'style="max-width:100%;height:auto;color:var(--jp-ui-font-color2)"' + svg[size.end() :]
        )
    # edges and free text (title, edge captions) in the theme's secondary text colour
    svg = svg.replace('"#616161"', '"currentColor"')
    pieces = re.split(r'(<g id="(?:node|edge)\d+" class="(?:node|edge)">)', svg)
    head = re.sub(r"<title>[^<]*</title>\n?", "", pieces[0], count=1)  # dot's "%3"
    out = [_free_text(head)]
    for opening, body in zip(pieces[1::2], pieces[2::2], strict=True):
        if 'class="edge"' in opening:
            out.append(opening + _free_text(body))
            continue
        match = re.search(r"<title>n(\d+)</title>", body)
        if match is None or int(match.group(1)) >= count:
            out.append(opening + body)
            continue
        i = int(match.group(1))
        body = body.replace(match.group(0), f"<title>\x00{i}:title\x00</title>", 1)

        def shape(m: re.Match[str], i: int = i) -> str:
            slot = "line" if m.group(2) == "none" else "shape"
            return f'<{m.group(1)} style="\x00{i}:{slot}\x00"'

        body = re.sub(r'<(polygon|path|ellipse) fill="([^"]*)" stroke="[^"]*"', shape, body)
        texts = list(re.finditer(r"<text ([^>]*)>([^<]*)</text>", body))
        for n, m in reversed(list(enumerate(texts))):
            attrs, content = m.group(1), m.group(2)
            if n == len(texts) - 1:  # the line of counts, a size smaller
                attrs = re.sub(r'font-size="[\d.]+"', 'font-size="10.00"', attrs)
                content = f"\x00{i}:counts\x00"
            text = f'<text style="\x00{i}:text\x00" {attrs}>{content}</text>'
            body = body[: m.start()] + text + body[m.end() :]
        out.append(opening + body)
    parts = _SLOT.split("".join(out))
    statics = parts[0::3]
    slots = [(int(i), kind) for i, kind in zip(parts[1::3], parts[2::3], strict=True)]
    return statics, slots


def layout(dot: str, count: int) -> tuple[list[str], list[tuple[int, str]]] | None:
    """The SVG template of a DOT text, from ``dot -Tsvg`` (cached); None without dot."""
    if dot in _LAYOUTS:
        return _LAYOUTS[dot]
    program = shutil.which("dot")
    result = None
    if program is not None:
        try:
            done = subprocess.run(
                [program, "-Tsvg"], input=dot, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            done = None
        if done is not None and done.returncode == 0 and "<svg" in done.stdout:
            result = _template(done.stdout, count)
    if len(_LAYOUTS) > 32:
        _LAYOUTS.clear()
    _LAYOUTS[dot] = result
    return result


class LiveGraph:
    """A pipeline's live drawing: laid out once, recoloured on every ``html`` call."""

    def __init__(self, pipeline: DagPipeline) -> None:
        self.ids = list(pipeline.tasks)
        self.name = pipeline.name
        self.successors: dict[str, list[str]] = {task_id: [] for task_id in self.ids}
        for edge in pipeline.transitions:
            self.successors[edge.source].append(edge.target)
        self.dot = live_dot(pipeline)
        self.template = layout(self.dot, len(self.ids))

    @property
    def drawn(self) -> bool:
        """Whether ``dot`` drew the graph (else the HTML fallback shows)."""
        return self.template is not None

    def html(self, views: Mapping[str, NodeView]) -> str:
        """The drawing as inline SVG (or the fallback's HTML) for these node views."""
        if self.template is None:
            return self._fallback(views)
        statics, slots = self.template
        out = [statics[0]]
        for (i, kind), static in zip(slots, statics[1:], strict=True):
            task_id = self.ids[i]
            view = views.get(task_id, NodeView("idle", ""))
            fill, border, text = STATE_STYLE[view.state]
            width = "1" if view.state == "idle" else "2"
            if kind == "shape":
                out.append(f"fill:{fill};stroke:{border};stroke-width:{width}")
            elif kind == "line":
                out.append(f"fill:none;stroke:{border}")
            elif kind == "text":
                out.append(f"fill:{text}")
            elif kind == "counts":
                out.append(html.escape(view.counts))
            else:  # the hover text
                out.append(html.escape(f"{printable(task_id)} ({view.state})"))
            out.append(static)
        return "".join(out)

    def _fallback(self, views: Mapping[str, NodeView]) -> str:
        """Without dot: one coloured box per node with its counts and successors."""
        boxes = []
        for task_id in self.ids:
            view = views.get(task_id, NodeView("idle", ""))
            fill, border, text = STATE_STYLE[view.state]
            targets = ", ".join(shorten(t, 16) for t in self.successors[task_id])
            arrow = f" → {html.escape(targets)}" if targets else ""
            boxes.append(
                f'<div class="async-dag-node" data-state="{html.escape(view.state)}" '
                f'title="{html.escape(printable(task_id))}" style="background:{fill};'
                f"border:1px solid {border};color:{text};border-radius:4px;padding:2px 6px;"
                f'max-width:100%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap">'
                f"<b>{html.escape(shorten(task_id))}</b>{arrow}<br>"
                f"<small>{html.escape(view.state)} · {html.escape(view.counts)}</small></div>"
            )
        return (
            '<div class="async-dag-live-graph" style="display:flex;flex-wrap:wrap;gap:4px;'
            f'max-width:100%">{"".join(boxes)}</div>'
        )

    def text(self, views: Mapping[str, NodeView]) -> list[str]:
        """One plain line per node: ``id [state] counts -> successors``."""
        lines = []
        for task_id in self.ids:
            view = views.get(task_id, NodeView("idle", ""))
            targets = ", ".join(shorten(t, 16) for t in self.successors[task_id])
            arrow = f" -> {targets}" if targets else ""
            lines.append(f"{shorten(task_id)} [{view.state}] {view.counts}{arrow}")
        return lines
