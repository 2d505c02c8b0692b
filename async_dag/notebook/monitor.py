"""A live ipywidgets panel of a run: a header and one row per node.

Example (two cells)::

    monitor = PipelineMonitor()
    monitor

    results = await pipeline.run_stream(items, monitor=monitor)

``monitor=True`` makes one that displays itself when the run starts. The panel is a
single ``HTML`` widget inside a ``VBox``: each refresh changes one trait, so the kernel
sends at most one comm message per refresh (the engine refreshes at most every
``interval`` seconds, and only when a counter changed) however many nodes and items the
run has. Node ids and the pipeline name are HTML-escaped.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from ..core.results import NodeStats, RunStats
from ..observe.monitor import Monitor
from ..observe.rates import RateMeter, node_done
from ..observe.terminal import describe_end

if TYPE_CHECKING:
    import ipywidgets

#: (field, column title, tooltip) of the node table, in display order
COLUMNS = (
    ("node", "node", "the task id"),
    ("queue", "queue", "payloads waiting in the input queue, against its bound"),
    ("in_flight", "in flight", "payloads being handled right now"),
    ("done", "done", "payloads finished: received − in flight"),
    ("emitted", "out", "outputs produced"),
    ("failed", "failed", "payloads that failed for good"),
    ("retried", "retried", "retry calls"),
    ("unrouted", "unrouted", "outputs that no edge took"),
    ("rate", "items/s", "payloads done per second (last second; run average at the end)"),
)

_STATE_COLOURS = {"idle": "#757575", "running": "#1565c0", "done": "#2e7d32"}
_LEFT = "padding:1px 8px;text-align:left"
_CELL = "padding:1px 8px;text-align:right;font-variant-numeric:tabular-nums;min-width:4em"


class PipelineMonitor(Monitor):
    """A widget panel that follows a run: state, totals, and per-node counters and rates.

    Display it in one cell and pass it as ``monitor=`` to a run started in another; it
    can follow several runs one after the other (the rows follow each run's nodes).
    ``stats`` is the last snapshot received (None before the first run), and
    ``state`` the header's state: ``idle``, ``running``, ``done``, ``cancelled`` or
    ``failed: ExcType``. ``display_on_start=True`` displays the panel in the current
    cell when a run starts (what ``monitor=True`` does in a kernel).
    """

    interval = 0.1

    def __init__(self, *, display_on_start: bool = False) -> None:
        import ipywidgets

        self.display_on_start = display_on_start
        self.stats: RunStats | None = None
        self.state = "idle"
        self._rates = RateMeter()
        self._html: ipywidgets.HTML = ipywidgets.HTML(value=self._render())
        self._root: ipywidgets.VBox = ipywidgets.VBox([self._html])
        self._root.add_class("async-dag-monitor")

    # -- the Monitor hooks ----------------------------------------------------------

    def start(self, stats: RunStats) -> None:
        """Reset the panel for a new run and show it (with ``display_on_start``)."""
        self.state = "running"
        self._rates.reset()
        self._refresh(stats)
        if self.display_on_start:
            from IPython.display import display

            display(self)  # type: ignore[no-untyped-call]

    def update(self, stats: RunStats) -> None:
        """Show a new snapshot (one widget message at most)."""
        self._refresh(stats)

    def finish(self, stats: RunStats, error: BaseException | None) -> None:
        """Show the final numbers and how the run ended."""
        self.state = describe_end(error)
        self._refresh(stats)

    # -- what is shown --------------------------------------------------------------

    @property
    def widget(self) -> ipywidgets.VBox:
        """The root widget (a ``VBox`` with the CSS class ``async-dag-monitor``)."""
        return self._root

    @property
    def panel_html(self) -> str:
        """The panel's current HTML, as the frontend shows it."""
        value: str = self._html.value
        return value

    def rows(self) -> dict[str, dict[str, Any]]:
        """The numbers each node row shows, by node id (queue as ``(depth, bound)``)."""
        stats = self.stats
        if stats is None:
            return {}
        return {node_id: self._row(node) for node_id, node in stats.nodes.items()}

    def _refresh(self, stats: RunStats) -> None:
        self.stats = stats
        self._rates.sample(stats)
        value = self._render()
        if value != self._html.value:  # an equal value would send nothing anyway
            with self._html.hold_sync():  # one message, however the panel grows
                self._html.value = value

    def _rate(self, node_id: str) -> float:
        stats = self.stats
        if stats is None:
            return 0.0
        return self._rates.rate(stats, node_id, running=self.state == "running")

    def _row(self, node: NodeStats) -> dict[str, Any]:
        return {
            "node": node.node,
            "queue": (node.queue_depth, node.queue_size),
            "in_flight": node.in_flight,
            "done": node_done(node),
            "emitted": node.emitted,
            "failed": node.failed,
            "retried": node.retried,
            "unrouted": node.unrouted,
            "rate": self._rate(node.node),
        }

    def _render(self) -> str:
        stats = self.stats
        colour = _STATE_COLOURS.get(self.state, "#c62828")
        state = (
            f'<span data-field="state" style="color:{colour};font-weight:bold">'
            f"{html.escape(self.state)}</span>"
        )
        if stats is None:
            return f'<div class="async-dag-monitor-header">pipeline monitor · {state}</div>'
        header = (
            f'<div class="async-dag-monitor-header" style="margin-bottom:4px">'
            f'<b data-field="name">{html.escape(stats.name)}</b> · run '
            f'<code data-field="run_id">{html.escape(stats.run_id)}</code> · {state} · '
            f'<span data-field="elapsed">{stats.elapsed:.1f} s</span> · in '
            f'<span data-field="inputs">{stats.inputs:,}</span> · out '
            f'<span data-field="outputs">{stats.outputs:,}</span> · errors '
            f'<span data-field="errors">{stats.errors:,}</span></div>'
        )
        head = "".join(
            f'<th title="{html.escape(tip)}" style="{_CELL if name != "node" else _LEFT}">'
            f"{title}</th>"
            for name, title, tip in COLUMNS
        )
        body = "".join(self._render_row(node) for node in stats.nodes.values())
        return (
            f'{header}<table class="async-dag-monitor-nodes" style="border-collapse:collapse">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )

    def _render_row(self, node: NodeStats) -> str:
        row = self._row(node)
        depth, bound = row["queue"]
        cells = [
            f'<td data-field="node" style="{_LEFT}"><code>{html.escape(node.node)}</code></td>',
            f'<td data-field="queue" style="{_CELL}">'
            f'<progress value="{min(depth, bound)}" max="{max(bound, 1)}" '
            f'style="width:5em;vertical-align:middle"></progress> {depth:,}/{bound:,}</td>',
        ]
        for field in ("in_flight", "done", "emitted", "failed", "retried", "unrouted"):
            cells.append(f'<td data-field="{field}" style="{_CELL}">{row[field]:,}</td>')
        cells.append(f'<td data-field="rate" style="{_CELL}">{row["rate"]:,.0f}</td>')
        return f'<tr data-node="{html.escape(node.node)}">{"".join(cells)}</tr>'

    # -- display ----------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = self._root._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        stats = self.stats
        if stats is None:
            return f"<PipelineMonitor {self.state}>"
        return (
            f"<PipelineMonitor {stats.name!r} {self.state}: {stats.inputs} in, "
            f"{stats.outputs} out, {stats.errors} errors>"
        )
