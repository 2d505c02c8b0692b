"""A live ipywidgets panel of a run: progress, the graph coloured by state, node table.

Example (two cells)::

    monitor = PipelineMonitor()
    monitor

    results = await pipeline.run_stream(items, monitor=monitor)

``monitor=True`` makes one that displays itself when the run starts. The panel is one
``HTML`` widget (plus a stop button shown while a run that can be cancelled goes on):
each refresh changes one trait inside ``hold_sync``, so the kernel sends at most one
comm message per refresh, at most ``1 / interval`` a second, and only when what is shown
changed. The panel has, top to bottom: a header with the run's badge (running, done,
failed, cancelled), an overall bar with count/total, percent, rate and ETA (when the
number of inputs is known), the live graph beside the node table, and the last errors.

The monitor is displayed with a ``display_id``: when a run ends that output is replaced
by the final panel as static HTML and plain text, so a saved or exported notebook shows
how the run ended; a later run puts the live widget back. Every id and message is
escaped (and long ids shortened, whole on hover), and colours are JupyterLab's theme
variables.
"""

from __future__ import annotations

import asyncio
import contextvars
import html
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.results import NodeStats, RunStats
from ..observe.monitor import Monitor
from ..observe.rates import Progress, RateMeter, format_duration, node_done
from ..observe.terminal import end_state, printable
from .livegraph import STATE_STYLE, LiveGraph, NodeView, counts_line, node_state, shorten

if TYPE_CHECKING:
    import ipywidgets

    from ..core.definition import DagPipeline

#: (field, column title, tooltip) of the node table, in display order
COLUMNS = (
    ("node", "node", "the task id (whole on hover)"),
    ("node_state", "state", "idle, busy, backed up (queue 3/4 full) or failing (lately)"),
    ("queue", "queue", "payloads waiting in the input queue, against its bound"),
    ("in_flight", "in flight", "payloads being handled right now"),
    ("done", "done", "payloads finished: received − in flight"),
    ("emitted", "out", "outputs produced"),
    ("failed", "failed", "payloads that failed for good"),
    ("retried", "retried", "retry calls"),
    ("unrouted", "unrouted", "outputs that no edge took"),
    ("throttled", "throttled", "seconds workers waited for a rate limit or a RetryAfter"),
    ("rate", "items/s", "payloads done per second (last second; run average at the end)"),
)

#: (background, text) of the run's badge by state: the same in light and dark themes
BADGES = {
    "idle": ("var(--jp-layout-color3)", "var(--jp-ui-font-color1)"),
    "running": ("var(--jp-brand-color2)", "#000"),
    "done": ("var(--jp-success-color2)", "#000"),
    "failed": ("var(--jp-error-color2)", "#000"),
    "cancelled": ("var(--jp-warn-color2)", "#000"),
}
#: the overall bar's colour by state
BARS = {
    "idle": "var(--jp-brand-color1)",
    "running": "var(--jp-brand-color1)",
    "done": "var(--jp-success-color1)",
    "failed": "var(--jp-error-color1)",
    "cancelled": "var(--jp-warn-color1)",
}

#: seconds a node stays "failing" after its last failure
FAILING_FOR = 5.0
#: errors listed in the panel, newest first
ERRORS_SHOWN = 5

_PANEL = (
    "font-family:var(--jp-ui-font-family);font-size:var(--jp-ui-font-size1);"
    "color:var(--jp-ui-font-color1);max-width:100%;min-width:0;box-sizing:border-box;"
    "overflow:hidden"
)
_TH = (
    "padding:1px 5px;white-space:nowrap;font-weight:600;"
    "border-bottom:1px solid var(--jp-border-color2)"
)
_NOWRAP = ' style="white-space:nowrap"'
_LEFT = "padding:1px 5px;text-align:left;white-space:nowrap"
_CELL = "padding:1px 5px;text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums"


def _kind(state: str) -> str:
    """The badge kind of a header state (``failed: KeyError`` -> ``failed``)."""
    return state.split(":", 1)[0]


def current_cell() -> int | None:
    """The execution count of the cell running now (None outside IPython)."""
    from IPython import get_ipython

    shell = get_ipython()
    count = getattr(shell, "execution_count", None)
    return count if isinstance(count, int) else None


class PipelineMonitor(Monitor):
    """A widget panel that follows a run: progress, graph, per-node counters, errors.

    Display it in one cell and pass it as ``monitor=`` to a run started in another; it
    can follow several runs one after the other (the rows follow each run's nodes).
    ``stats`` is the last snapshot received (None before the first run), and
    ``state`` the header's state: ``idle``, ``running``, ``done``, ``cancelled`` or
    ``failed: ExcType``. ``display_on_start=True`` displays the panel in the current
    cell when a run starts (what ``monitor=True`` does in a kernel).
    """

    interval = 0.25

    def __init__(self, *, display_on_start: bool = False) -> None:
        import ipywidgets

        self.display_on_start = display_on_start
        self.shown_in: int | None = None  # the execution count of the cell it was shown in
        self.stats: RunStats | None = None
        self.state = "idle"
        self.progress = Progress()
        self._rates = RateMeter()
        self._graph: LiveGraph | None = None
        self._graph_for: object = None
        self._cancel: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failures: dict[str, tuple[int, float]] = {}
        self._display_id: str | None = None
        self._live_shown = True  # whether the displayed output is the widget (or static)
        self._html: ipywidgets.HTML = ipywidgets.HTML(value=self._render())
        self._stop: ipywidgets.Button = ipywidgets.Button(
            description="Stop",
            icon="stop",
            tooltip="Cancel this run (cleanly: what finished is kept)",
            layout=ipywidgets.Layout(display="none", width="auto"),
        )
        self._stop.add_class("async-dag-stop")
        self._stop.on_click(self._on_stop)
        self._root: ipywidgets.VBox = ipywidgets.VBox(
            [self._html, self._stop], layout=ipywidgets.Layout(max_width="100%")
        )
        self._root.add_class("async-dag-monitor")

    # -- the Monitor hooks ----------------------------------------------------------

    def attach(self, pipeline: DagPipeline | None, cancel: Callable[[], None] | None) -> None:
        """Keep the run's cancel function (for the stop button) and lay out its graph
        (once per pipeline: a later run of the same pipeline reuses the layout)."""
        self._cancel = cancel
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        if pipeline is None:
            self._graph, self._graph_for = None, None
        elif pipeline is not self._graph_for:
            self._graph = LiveGraph(pipeline)
            self._graph_for = pipeline

    def start(self, stats: RunStats) -> None:
        """Reset the panel for a new run and show it (with ``display_on_start``)."""
        self.state = "running"
        self._rates.reset()
        self.progress.reset()
        self._failures = {}
        if self._graph is not None and list(stats.nodes) != self._graph.ids:
            self._graph, self._graph_for = None, None  # attach was for another pipeline
        self._refresh(stats)
        self._show_stop(self._cancel is not None)
        if self._display_id is not None and not self._live_shown:
            self._update_display(live=True)
        elif self.display_on_start and self._display_id is None:
            self._ipython_display_()

    def update(self, stats: RunStats) -> None:
        """Show a new snapshot (one widget message at most)."""
        self._refresh(stats)

    def finish(self, stats: RunStats, error: BaseException | None) -> None:
        """Show the final numbers and how the run ended; make the saved output final."""
        self.state = end_state(stats, error)
        self._refresh(stats)
        self._show_stop(False)
        self._cancel = None
        if self._display_id is not None:
            self._update_display(live=False)

    # -- the stop button --------------------------------------------------------------

    def _show_stop(self, visible: bool) -> None:
        with self._stop.hold_sync():
            self._stop.disabled = False
            self._stop.description = "Stop"
            self._stop.layout.display = "" if visible else "none"

    def _on_stop(self, _button: object = None) -> None:
        cancel = self._cancel
        if cancel is None or self.state != "running":
            return
        self._stop.disabled = True
        self._stop.description = "Stopping…"
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(cancel)
        else:
            cancel()

    @property
    def stop_button(self) -> ipywidgets.Button:
        """The stop button (shown only while a run that can be cancelled goes on)."""
        return self._stop

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

    def node_states(self) -> dict[str, str]:
        """Each node's state as drawn: idle, busy, backed up or failing."""
        stats = self.stats
        if stats is None:
            return {}
        return {node_id: self._node_state(node) for node_id, node in stats.nodes.items()}

    def _refresh(self, stats: RunStats) -> None:
        self.stats = stats
        self._rates.sample(stats)
        self.progress.sample(stats, _kind(self.state) if self.state != "idle" else "running")
        for node_id, node in stats.nodes.items():
            count = self._failures.get(node_id, (0, 0.0))[0]
            if node.failed > count:
                self._failures[node_id] = (node.failed, stats.elapsed)
        value = self._render()
        if value != self._html.value:  # an equal value would send nothing anyway
            with self._html.hold_sync():  # one message, however the panel grows
                self._html.value = value

    def _node_state(self, node: NodeStats) -> str:
        stats = self.stats
        since = self._failures.get(node.node, (0, float("-inf")))[1]
        if self.state != "running":  # over: nothing is busy any more
            return "failing" if node.failed else "idle"
        failing = stats is not None and stats.elapsed - since <= FAILING_FOR
        return node_state(node, failing=failing)

    def _rate(self, node_id: str) -> float:
        stats = self.stats
        if stats is None:
            return 0.0
        return self._rates.rate(stats, node_id, running=self.state == "running")

    def _row(self, node: NodeStats) -> dict[str, Any]:
        return {
            "node": node.node,
            "node_state": self._node_state(node),
            "queue": (node.queue_depth, node.queue_size),
            "in_flight": node.in_flight,
            "done": node_done(node),
            "emitted": node.emitted,
            "failed": node.failed,
            "retried": node.retried,
            "unrouted": node.unrouted,
            "throttled": node.throttled,
            "rate": self._rate(node.node),
        }

    def _views(self) -> dict[str, NodeView]:
        stats = self.stats
        if stats is None:
            return {}
        return {
            node_id: NodeView(self._node_state(node), counts_line(node, node_done(node)))
            for node_id, node in stats.nodes.items()
        }

    def _render(self) -> str:
        stats = self.stats
        badge = self._badge()
        if stats is None:
            return f'<div class="async-dag-monitor" style="{_PANEL}">pipeline monitor {badge}</div>'
        name = printable(stats.name)
        run_id = printable(stats.run_id)
        header = (
            '<div class="async-dag-monitor-header" style="display:flex;flex-wrap:wrap;'
            'gap:2px 10px;align-items:baseline;margin-bottom:4px">'
            f'<b data-field="name" title="{html.escape(name)}">'
            f"{html.escape(shorten(name, 40))}</b>"
            f'<span>run <code data-field="run_id" title="{html.escape(run_id)}">'
            f"{html.escape(shorten(run_id, 24))}</code></span>{badge}"
            f'<span data-field="elapsed">{stats.elapsed:.1f} s</span>'
            f'<span>in <span data-field="inputs">{stats.inputs:,}</span> · out '
            f'<span data-field="outputs">{stats.outputs:,}</span> · errors '
            f'<span data-field="errors">{stats.errors:,}</span>'
            + (
                f' · skipped <span data-field="skipped">{stats.skipped:,}</span>'
                if stats.skipped
                else ""
            )
            + "</span></div>"
        )
        graph = ""
        if self._graph is not None:
            graph = (
                '<div class="async-dag-monitor-graph" style="flex:0 1 auto;max-width:100%;'
                f'min-width:0;max-height:560px;overflow:auto">{self._graph.html(self._views())}'
                "</div>"
            )
        columns = self._columns(stats)
        head = "".join(
            f'<th title="{html.escape(tip)}" style="{_TH};'
            f'text-align:{"left" if name in ("node", "node_state") else "right"}">{title}</th>'
            for name, title, tip in COLUMNS
            if name in columns
        )
        body = "".join(self._render_row(node, columns) for node in stats.nodes.values())
        table = (
            '<div class="async-dag-monitor-table" style="flex:1 1 auto;min-width:0;'
            'max-width:100%;overflow-x:auto">'
            '<table class="async-dag-monitor-nodes" style="border-collapse:collapse;'
            f'margin:0"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
        )
        return (
            f'<div class="async-dag-monitor" style="{_PANEL}">{header}{self._render_bar()}'
            '<div style="display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start;'
            f'max-width:100%">{graph}{table}</div>{self._render_errors()}</div>'
        )

    def _badge(self) -> str:
        background, colour = BADGES.get(_kind(self.state), BADGES["failed"])
        return (
            f'<span data-field="state" data-state="{html.escape(_kind(self.state))}" '
            f'style="background:{background};color:{colour};border-radius:8px;'
            f'padding:0 8px;font-weight:600;white-space:nowrap">{html.escape(self.state)}</span>'
        )

    def _render_bar(self) -> str:
        progress = self.progress
        fraction = progress.fraction
        rate = f'<span data-field="rate">{progress.rate:,.0f} inputs/s</span>'
        eta = progress.eta
        eta_html = (
            f'<span data-field="eta">ETA {format_duration(eta)}</span>' if eta is not None else ""
        )
        if fraction is None:
            return (
                '<div class="async-dag-monitor-progress" style="margin-bottom:4px">'
                f'<span data-field="progress">{progress.done:,}</span> inputs done · {rate}</div>'
            )
        colour = BARS.get(_kind(self.state), BARS["failed"])
        return (
            '<div class="async-dag-monitor-progress" style="display:flex;flex-wrap:wrap;'
            'align-items:center;gap:2px 10px;margin-bottom:4px">'
            '<div class="async-dag-bar" role="progressbar" '
            f'aria-valuenow="{fraction * 100:.0f}" aria-valuemin="0" aria-valuemax="100" '
            'style="flex:1 1 160px;max-width:480px;min-width:80px;height:10px;border-radius:5px;'
            'background:var(--jp-layout-color3);overflow:hidden">'
            f'<div style="width:{fraction * 100:.1f}%;height:100%;background:{colour}"></div></div>'
            f'<span data-field="progress">{progress.done:,}/{progress.total:,}</span>'
            f'<span data-field="percent">{fraction:.0%}</span>{rate}{eta_html}</div>'
        )

    def _render_errors(self) -> str:
        stats = self.stats
        if stats is None or not stats.recent_errors:
            return ""
        rows = []
        for node, data_id, message in reversed(stats.recent_errors[-ERRORS_SHOWN:]):
            node_text, id_text, message_text = (
                printable(node),
                printable(data_id),
                printable(message),
            )
            rows.append(
                "<tr>"
                f'<td style="{_LEFT}" title="{html.escape(node_text)}">'
                f"<code{_NOWRAP}>{html.escape(shorten(node_text, 24))}</code></td>"
                f'<td style="{_LEFT}" title="{html.escape(id_text)}">'
                f"<code{_NOWRAP}>{html.escape(shorten(id_text, 24))}</code></td>"
                f'<td style="padding:1px 5px;color:var(--jp-error-color1);overflow-wrap:anywhere"'
                f' title="{html.escape(message_text)}">'
                f"{html.escape(shorten(message_text, 160))}</td>"
                "</tr>"
            )
        return (
            '<div class="async-dag-monitor-errors" style="margin-top:4px;max-width:100%;'
            'overflow-x:auto"><div style="font-weight:600">last errors</div>'
            '<table style="border-collapse:collapse;table-layout:auto;width:100%">'
            f"{''.join(rows)}</table></div>"
        )

    @staticmethod
    def _columns(stats: RunStats) -> set[str]:
        """The table's columns: retried, unrouted and throttled only when some node has any."""
        optional = ("retried", "unrouted", "throttled")
        columns = {name for name, _, _ in COLUMNS} - set(optional)
        for field in optional:
            if any(getattr(node, field) for node in stats.nodes.values()):
                columns.add(field)
        return columns

    def _render_row(self, node: NodeStats, columns: set[str]) -> str:
        row = self._row(node)
        depth, bound = row["queue"]
        ident = printable(node.node)
        state = row["node_state"]
        fill, border, _ = STATE_STYLE[state]
        share = min(depth / bound, 1.0) * 100 if bound > 0 else 0.0
        cells = [
            f'<td data-field="node" style="{_LEFT}" title="{html.escape(ident)}">'
            f"<code{_NOWRAP}>{html.escape(shorten(ident, 24))}</code></td>",
            f'<td data-field="node_state" style="{_LEFT}">'
            f'<span style="display:inline-block;width:0.7em;height:0.7em;border-radius:50%;'
            f'background:{fill};border:1px solid {border};margin-right:4px"></span>'
            f"{html.escape(state)}</td>",
            f'<td data-field="queue" style="{_CELL}">'
            '<span style="display:inline-block;width:3em;height:0.6em;vertical-align:middle;'
            'background:var(--jp-layout-color3);border-radius:3px;overflow:hidden;margin-right:4px">'
            f'<span style="display:block;width:{share:.0f}%;height:100%;background:{border}">'
            f"</span></span>{depth:,}/{bound:,}</td>",
        ]
        for field in ("in_flight", "done", "emitted", "failed", "retried", "unrouted"):
            if field in columns:
                cells.append(f'<td data-field="{field}" style="{_CELL}">{row[field]:,}</td>')
        if "throttled" in columns:
            cells.append(
                f'<td data-field="throttled" style="{_CELL}">{row["throttled"]:,.1f} s</td>'
            )
        cells.append(f'<td data-field="rate" style="{_CELL}">{row["rate"]:,.0f}</td>')
        return f'<tr data-node="{html.escape(ident)}">{"".join(cells)}</tr>'

    # -- plain text ---------------------------------------------------------------------

    def plain_text(self) -> str:
        """The panel as plain text: the repr, progress, one line per node, last errors."""
        lines = [repr(self)]
        stats = self.stats
        if stats is None:
            return lines[0]
        lines.append(f"  progress: {self.progress.summary().replace('/s', ' inputs/s')}")
        views = self._views()
        if self._graph is not None:
            lines.extend(f"  {line}" for line in self._graph.text(views))
        else:
            for node_id in stats.nodes:
                view = views[node_id]
                lines.append(f"  {shorten(node_id)} [{view.state}] {view.counts}")
        for node, data_id, message in reversed(stats.recent_errors[-ERRORS_SHOWN:]):
            lines.append(f"  error at {shorten(node)} {shorten(data_id)}: {shorten(message, 120)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        stats = self.stats
        if stats is None:
            return f"<PipelineMonitor {self.state}>"
        return (
            f"<PipelineMonitor {printable(stats.name)!r} {self.state}: {stats.inputs} in, "
            f"{stats.outputs} out, {stats.errors} errors>"
        )

    # -- display ----------------------------------------------------------------------

    def _live_bundle(self) -> dict[str, Any]:
        bundle: dict[str, Any] = self._root._repr_mimebundle_()
        bundle["text/plain"] = self.plain_text()
        return bundle

    def _static_bundle(self) -> dict[str, Any]:
        return {"text/html": self.panel_html, "text/plain": self.plain_text()}

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return self._live_bundle()

    def _ipython_display_(self) -> None:
        """Display the live panel under this monitor's display id (so it can be updated
        to the final state when a run ends)."""
        from IPython.display import display

        if self._display_id is None:
            self._display_id = f"async-dag-monitor-{uuid.uuid4().hex}"
        ended = self.state not in ("idle", "running")
        bundle = self._static_bundle() if ended else self._live_bundle()
        self._live_shown = not ended
        self.shown_in = current_cell()
        display(bundle, raw=True, display_id=self._display_id)  # type: ignore[no-untyped-call]

    def _update_display(self, *, live: bool) -> None:
        from IPython.display import update_display

        bundle = self._live_bundle() if live else self._static_bundle()
        self._live_shown = live
        # A background run ends in its own task, whose context still names the cell that
        # started it as the parent of what it sends; nbclient (nbconvert, papermill) keeps
        # only messages of the cell executing now, so the final update was lost. In an
        # empty context ipykernel falls back to the current cell's header.
        contextvars.Context().run(
            update_display,
            bundle,
            raw=True,
            display_id=self._display_id,
        )
