"""PipelineMonitor: the widget's numbers, its states, and its message rate in a real kernel."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import ipywidgets
import pytest
from _util import kernel_manager

from async_dag import NodeStats, PipelineBuilder, RunStats, run_function_pipeline
from async_dag.notebook import PipelineMonitor, livegraph

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


async def inc(ctx, x):
    return x + 1


async def parse(ctx, x):
    return x * 2


def even(ctx, value):
    return value % 4 == 0


def pipeline(name: str = "refresh"):
    return (
        PipelineBuilder(name)
        .add_task("fetch", inc, concurrency=4)
        .add_task("parse", parse, queue_size=3)
        .add_task("store", inc)
        .add_edge("fetch", "parse")
        .add_edge("parse", "store", when=even)
        .build()
    )


def field(html: str, node: str | None, name: str) -> str:
    """The text of a data-field element (of a node row, or of the header)."""
    scope = html
    if node is not None:
        match = re.search(rf'<tr data-node="{re.escape(node)}">(.*?)</tr>', html)
        assert match, f"no row for {node!r}"
        scope = match.group(1)
    match = re.search(rf'data-field="{name}"[^>]*>(?:<[^>]+>)*([^<]*)<', scope)
    assert match, f"no field {name!r}"
    return match.group(1)


def test_import_is_light():
    """Importing async_dag.notebook loads neither ipywidgets, pandas nor graphviz."""
    code = (
        "import sys, async_dag, async_dag.notebook\n"
        "heavy = {'ipywidgets', 'pandas', 'graphviz', 'IPython'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "async_dag.notebook.PipelineMonitor\n"
        "assert 'ipywidgets' not in sys.modules\n"
        "async_dag.notebook.PipelineMonitor()\n"
        "assert 'ipywidgets' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_numbers_after_a_run_equal_the_stats():
    """After a run the widget shows exactly result.stats, in state done."""
    monitor = PipelineMonitor()
    result = await pipeline().run_stream(range(200), monitor=monitor, run_id="run-1")
    stats = result.stats
    assert monitor.stats == stats
    assert monitor.state == "done"
    rows = monitor.rows()
    assert list(rows) == ["fetch", "parse", "store"]
    for node_id, node in stats.nodes.items():
        row = rows[node_id]
        assert row["done"] == node.received - node.in_flight
        assert (row["emitted"], row["failed"], row["unrouted"]) == (
            node.emitted,
            node.failed,
            node.unrouted,
        )
        assert row["queue"] == (node.queue_depth, node.queue_size)
        html = monitor.panel_html
        assert field(html, node_id, "done") == f"{row['done']:,}"
        assert field(html, node_id, "emitted") == f"{node.emitted:,}"
        assert field(html, node_id, "unrouted") == f"{node.unrouted:,}"
    assert rows["parse"]["unrouted"] == 100 and rows["store"]["emitted"] == 100
    html = monitor.panel_html
    assert field(html, None, "state") == "done"
    assert field(html, None, "run_id") == "run-1"
    assert field(html, None, "inputs") == "200"
    assert field(html, None, "outputs") == "100"
    assert field(html, None, "errors") == "0"


async def test_reused_for_another_pipeline():
    """A monitor follows a later run of another pipeline, rows rebuilt for its nodes."""
    monitor = PipelineMonitor()
    await pipeline().run_stream(range(10), monitor=monitor)
    result = await run_function_pipeline(range(7), inc, monitor=monitor)
    assert list(monitor.rows()) == ["inc"]
    assert monitor.stats == result.stats
    assert 'data-node="fetch"' not in monitor.panel_html
    assert field(monitor.panel_html, "inc", "emitted") == "7"


async def test_failed_and_cancelled_states():
    """The header ends as 'failed: ExcType' after an error and 'cancelled' after a cancel."""

    async def boom(ctx, x):
        raise KeyError(x)

    monitor = PipelineMonitor()
    with pytest.raises(KeyError):
        await run_function_pipeline([1], boom, monitor=monitor)
    assert monitor.state == "failed: KeyError"
    assert field(monitor.panel_html, None, "state") == "failed: KeyError"

    started = asyncio.Event()

    async def wait(ctx, x):
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(run_function_pipeline([1], wait, monitor=monitor))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert monitor.state == "cancelled"
    assert field(monitor.panel_html, None, "inputs") == "1"


async def test_live_numbers_while_running():
    """During a run the panel says running and shows the payloads in flight."""
    release = asyncio.Event()
    entered = asyncio.Event()

    async def hold(ctx, x):
        entered.set()
        await release.wait()
        return x

    monitor = PipelineMonitor()
    task = asyncio.ensure_future(
        run_function_pipeline(range(3), hold, concurrency=3, monitor=monitor)
    )
    await entered.wait()
    while monitor.stats is None or monitor.stats.nodes["hold"].in_flight < 3:
        await asyncio.sleep(0.02)  # the sampler refreshes every monitor.interval
    assert monitor.state == "running"
    assert field(monitor.panel_html, "hold", "in_flight") == "3"
    release.set()
    await task
    assert field(monitor.panel_html, "hold", "done") == "3"


def test_hostile_ids_are_escaped():
    """Node ids and the pipeline name cannot inject markup into the panel."""
    from async_dag import NodeStats, RunStats

    evil = '<img src=x onerror="alert(1)">'
    monitor = PipelineMonitor()
    nodes = {evil: NodeStats(node=evil, concurrency=1, queue_size=2)}
    monitor.start(
        RunStats(run_id="<r>", name=evil, elapsed=0, inputs=0, outputs=0, errors=0, nodes=nodes)
    )
    html = monitor.panel_html
    assert "<img" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert field(html, None, "run_id") == "&lt;r&gt;"


def test_displays_as_its_widget():
    """Its display bundle is the root widget's view plus a readable text/plain."""
    monitor = PipelineMonitor()
    bundle = monitor._repr_mimebundle_()
    assert isinstance(monitor.widget, ipywidgets.VBox)
    assert bundle[WIDGET_VIEW]["model_id"] == monitor.widget.model_id
    assert bundle["text/plain"] == "<PipelineMonitor idle>"


# -- synthetic snapshots: progress, graph, errors, display ------------------------------

HOSTILE = [
    "<script>alert('x')</script>",
    "quote\"and'apostrophe & amp",
    "a-very-long-node-identifier-that-goes-on-and-on-for-ever-52",
    "ünïcødé-✓-節點",
    "ctrl\x1b[2J\x07bell",
]


def snapshot(
    nodes: dict[str, dict[str, int]],
    *,
    elapsed: float = 1.0,
    inputs: int = 0,
    total: int | None = None,
    state: str = "running",
    errors: tuple[tuple[str, str, str], ...] = (),
    name: str = "synthetic",
    cut_off: int = 0,
) -> RunStats:
    """A RunStats built by hand: ``nodes`` maps ids to NodeStats counters."""
    built = {
        node_id: NodeStats(
            node=node_id, concurrency=2, queue_size=counters.pop("size", 8), **counters
        )
        for node_id, counters in ((k, dict(v)) for k, v in nodes.items())
    }
    return RunStats(
        run_id="run-x",
        name=name,
        elapsed=elapsed,
        inputs=inputs,
        outputs=0,
        errors=len(errors),
        nodes=built,
        total=total,
        cut_off=cut_off,
        state=state,
        recent_errors=errors,
    )


def chain(ids: list[str], name: str = "chain"):
    """A pipeline whose tasks follow one another in the order given."""
    builder = PipelineBuilder(name)
    for node_id in ids:
        builder.add_task(node_id, inc)
    for a, b in itertools.pairwise(ids):
        builder.add_edge(a, b)
    return builder.build()


def test_overall_bar_counts_percent_rate_and_eta():
    """With a total: count/total, percent and rate; the ETA waits until it means something."""
    monitor = PipelineMonitor()
    monitor.start(snapshot({"a": {}}, elapsed=0.0, total=1000))
    assert field(monitor.panel_html, None, "progress") == "0/1,000"
    assert 'data-field="eta"' not in monitor.panel_html
    monitor.update(
        snapshot(
            {"a": {"received": 100, "in_flight": 2, "queue_depth": 8}},
            elapsed=0.5,
            inputs=110,
            total=1000,
        )
    )
    assert field(monitor.panel_html, None, "progress") == "100/1,000"  # 110 in, 10 still inside
    assert 'data-field="eta"' not in monitor.panel_html  # too early to say
    monitor.update(snapshot({"a": {"received": 500}}, elapsed=2.5, inputs=500, total=1000))
    html = monitor.panel_html
    assert field(html, None, "percent") == "50%"
    assert field(html, None, "rate") == "200 inputs/s"  # (500 - 0) / (2.5 - 0)
    assert field(html, None, "eta") == "ETA 0:03"  # 500 left at 200/s, rounded up
    monitor.finish(snapshot({"a": {"received": 1000}}, elapsed=5.0, inputs=1000, total=1000), None)
    html = monitor.panel_html
    assert field(html, None, "progress") == "1,000/1,000" and field(html, None, "percent") == "100%"
    assert 'data-field="eta"' not in html


def test_no_total_means_no_bar():
    """Without a known total the panel says how many inputs are done, with no bar or ETA."""
    monitor = PipelineMonitor()
    monitor.start(snapshot({"a": {}}, elapsed=0.0))
    monitor.update(snapshot({"a": {"received": 40}}, elapsed=3.0, inputs=40))
    html = monitor.panel_html
    assert field(html, None, "progress") == "40"
    assert "async-dag-bar" not in html and 'data-field="eta"' not in html


def test_cut_off_inputs_are_not_done_after_a_cancel():
    """After a cancel the done count stays at what was really finished, not the inputs."""
    monitor = PipelineMonitor()
    monitor.start(snapshot({"a": {}}, elapsed=0.0, total=100))
    monitor.update(
        snapshot(
            {"a": {"received": 60, "in_flight": 4, "queue_depth": 6}},
            elapsed=1.0,
            inputs=60,
            total=100,
        )
    )
    # the engine empties the queue counters when it cancels; 10 inputs were cut off
    monitor.finish(
        snapshot(
            {"a": {"received": 60}},
            elapsed=1.1,
            inputs=60,
            total=100,
            state="cancelled",
            cut_off=10,
        ),
        asyncio.CancelledError(),
    )
    assert monitor.state == "cancelled"
    assert field(monitor.panel_html, None, "progress") == "50/100"
    assert field(monitor.panel_html, "a", "queue") == "0/8"


def test_badges_have_their_own_colours():
    """done, failed and cancelled each end with a badge of its own colour."""
    colours = {}
    for error, expected in [
        (None, "done"),
        (KeyError("k"), "failed: KeyError"),
        (asyncio.CancelledError(), "cancelled"),
    ]:
        monitor = PipelineMonitor()
        monitor.start(snapshot({"a": {}}))
        monitor.finish(snapshot({"a": {}}, elapsed=2.0), error)
        assert monitor.state == expected
        badge = re.search(
            r'<span data-field="state"[^>]*style="background:([^;]+);', monitor.panel_html
        )
        assert badge
        colours[expected] = badge.group(1)
    assert len(set(colours.values())) == 3, colours


def test_engine_state_wins_over_the_error():
    """When the engine fills stats.state, the badge shows it (a collected failure is 'done')."""
    monitor = PipelineMonitor()
    monitor.start(snapshot({"a": {}}))
    monitor.finish(snapshot({"a": {"failed": 3}}, state="cancelled"), None)
    assert monitor.state == "cancelled"


def test_live_graph_is_laid_out_once_and_recoloured():
    """dot runs once per pipeline; each refresh recolours the nodes by state with counts."""
    p = chain(["fetch", "parse", "store", "report"], name="recolour")
    calls = []
    real_run = livegraph.subprocess.run

    def counting_run(*args, **kwargs):
        calls.append(args)
        return real_run(*args, **kwargs)

    livegraph._LAYOUTS.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(livegraph.subprocess, "run", counting_run)
        monitor = PipelineMonitor()
        for _ in range(2):  # two runs of the same pipeline
            monitor.attach(p, None)
            monitor.start(snapshot({n: {} for n in p.tasks}, elapsed=0.0))
            for i in range(5):
                monitor.update(
                    snapshot(
                        {
                            "fetch": {"received": 10 + i, "in_flight": 2},
                            "parse": {"received": 5, "queue_depth": 8, "size": 8},
                            "store": {"received": 3, "failed": 1 + i},
                            "report": {},
                        },
                        elapsed=1.0 + i,
                    )
                )
        PipelineMonitor().attach(p, None)  # another monitor, same pipeline: cached too
    assert len(calls) == 1
    assert monitor.node_states() == {
        "fetch": "busy",
        "parse": "backed up",
        "store": "failing",
        "report": "idle",
    }
    svg = monitor.panel_html[monitor.panel_html.index("<svg") :]
    for node_id, colour in [
        ("fetch", "brand"),
        ("parse", "warn"),
        ("store", "error"),
        ("report", "layout"),
    ]:
        group = re.search(rf"<title>{node_id} \((?:[a-z ]+)\)</title>(.*?)</g>", svg, re.S)
        assert group, node_id
        assert f"var(--jp-{colour}-color" in group.group(1)
    assert "done 12 · busy 2" in svg and "failed 5" in svg
    assert 'width="' in svg and "max-width:100%;height:auto" in svg


def test_static_drawing_sits_on_any_theme():
    """The pipeline's own SVG has no white background box and scales to its output."""
    from async_dag.notebook.graph import render_svg

    svg = render_svg(pipeline())
    assert 'fill="white"' not in svg and "max-width:100%;height:auto" in svg
    ET.fromstring(svg[svg.index("<svg") :])


def test_graph_follows_the_pipeline_attached():
    """A run of another pipeline drops the old drawing; attaching the first again brings it back."""
    first, second = chain(["a", "b"], name="first"), chain(["x"], name="second")
    monitor = PipelineMonitor()
    monitor.attach(first, None)
    monitor.start(snapshot({"a": {}, "b": {}}))
    assert "<svg" in monitor.panel_html
    monitor.finish(snapshot({"a": {}, "b": {}}), None)
    monitor.start(snapshot({"x": {}}))  # a run whose attach never came
    assert "<svg" not in monitor.panel_html
    monitor.finish(snapshot({"x": {}}), None)
    monitor.attach(first, None)
    monitor.start(snapshot({"a": {}, "b": {}}))
    assert "<svg" in monitor.panel_html and "<title>a (idle)</title>" in monitor.panel_html
    monitor.attach(second, None)
    monitor.start(snapshot({"x": {}}))
    assert "<title>x (idle)</title>" in monitor.panel_html


def test_deep_graphs_go_top_to_bottom():
    """A long chain is laid out top to bottom, a short one left to right."""
    assert 'rankdir="TB"' in livegraph.live_dot(chain([f"s{i}" for i in range(12)]))
    assert 'rankdir="LR"' in livegraph.live_dot(chain(["a", "b"]))


def test_hostile_ids_are_escaped_everywhere():
    """Markup, quotes, long, unicode and control-character ids are escaped in SVG, HTML and text."""
    livegraph._LAYOUTS.clear()
    p = chain(HOSTILE, name="<b>evil</b> & co")
    monitor = PipelineMonitor()
    monitor.attach(p, None)
    errors = tuple((HOSTILE[0], HOSTILE[1], f"ValueError: {HOSTILE[0]}") for _ in range(2))
    monitor.start(snapshot({n: {} for n in HOSTILE}, name=p.name))
    monitor.update(snapshot({n: {"received": 1} for n in HOSTILE}, name=p.name, errors=errors))
    html = monitor.panel_html
    assert "<script" not in html and "<b>evil" not in html and "\x1b" not in html
    assert "&lt;script&gt;" in html
    long_id = HOSTILE[2]
    assert f'title="{long_id}"' in html  # the whole id on hover
    visible = re.sub(r"<[^>]*>", "", re.sub(r"<title>.*?</title>", "", html))
    assert long_id not in visible and livegraph.shorten(long_id, 24) in visible
    assert "ünïcødé-✓-節點" in html
    ET.fromstring(html[html.index("<svg") : html.index("</svg>") + 6])  # well-formed SVG
    text = monitor._static_bundle()["text/plain"]
    assert "\x1b" not in text and "ctrl\\x1b[2J\\x07bell" in text
    assert "error at" in text


def test_last_errors_newest_first():
    """The last few errors show node, data_id and exception, newest first."""
    monitor = PipelineMonitor()
    errors = tuple(("parse", f"id-{i}", f"ValueError: bad {i}") for i in range(8))
    monitor.start(snapshot({"parse": {}}))
    monitor.update(snapshot({"parse": {"failed": 8}}, errors=errors))
    block = monitor.panel_html[monitor.panel_html.index("async-dag-monitor-errors") :]
    shown = re.findall(r"ValueError: bad (\d)", block)
    assert shown[::2] == ["7", "6", "5", "4", "3"]  # each message is in the text and its title


def test_fallback_without_dot_still_shows_state(monkeypatch):
    """Without the dot program the panel shows a coloured box per node, with its state."""
    livegraph._LAYOUTS.clear()
    monkeypatch.setattr(livegraph.shutil, "which", lambda name: None)
    monitor = PipelineMonitor()
    monitor.attach(chain(["a", "b"], name="nodot"), None)
    monitor.start(snapshot({"a": {}, "b": {}}))
    monitor.update(snapshot({"a": {"in_flight": 1}, "b": {"failed": 1}}))
    html = monitor.panel_html
    assert "<svg" not in html
    assert 'data-state="busy" title="a"' in html and 'data-state="failing" title="b"' in html
    livegraph._LAYOUTS.clear()


def test_stop_button_cancels_just_that_run():
    """The stop button shows only while a cancellable run goes on, and calls its cancel."""
    cancelled = []
    monitor = PipelineMonitor()
    assert monitor.stop_button.layout.display == "none"
    monitor.attach(None, lambda: cancelled.append(True))
    monitor.start(snapshot({"a": {}}))
    assert monitor.stop_button.layout.display == ""
    monitor.stop_button.click()
    assert cancelled == [True] and monitor.stop_button.disabled
    monitor.finish(snapshot({"a": {}}, state="cancelled"), asyncio.CancelledError())
    assert monitor.stop_button.layout.display == "none"
    monitor.attach(None, None)  # a run that cannot be cancelled: no button
    monitor.start(snapshot({"a": {}}))
    assert monitor.stop_button.layout.display == "none"


async def test_stop_button_on_a_real_run():
    """A cancel function given to attach stops the run it belongs to when clicked."""
    started = asyncio.Event()

    async def wait(ctx, x):
        started.set()
        await asyncio.Event().wait()

    monitor = PipelineMonitor()
    task = asyncio.ensure_future(run_function_pipeline([1, 2], wait, monitor=monitor))
    monitor.attach(None, task.cancel)  # what the engine does before start
    await started.wait()
    monitor.stop_button.click()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert monitor.state == "cancelled"


def test_display_is_updated_to_the_final_state(monkeypatch):
    """Displayed with a display_id; at the end the output becomes the final HTML and text."""
    import IPython.display

    shown = []
    monkeypatch.setattr(
        IPython.display, "display", lambda obj, **kw: shown.append(("display", obj, kw))
    )
    monkeypatch.setattr(
        IPython.display, "update_display", lambda obj, **kw: shown.append(("update", obj, kw))
    )
    monitor = PipelineMonitor(display_on_start=True)
    monitor.start(snapshot({"a": {}}, elapsed=0.0, total=4))
    monitor.finish(
        snapshot({"a": {"received": 4, "emitted": 4}}, elapsed=1.0, inputs=4, total=4), None
    )
    (kind, live, kw), (kind2, final, kw2) = shown
    assert kind == "display" and kind2 == "update" and kw["display_id"] == kw2["display_id"]
    assert WIDGET_VIEW in live and WIDGET_VIEW not in final
    assert final["text/plain"].startswith("<PipelineMonitor 'synthetic' done: 4 in")
    assert "4/4 100%" in final["text/plain"]
    assert field(final["text/html"], None, "state") == "done"
    monitor.start(snapshot({"a": {}}, elapsed=0.0))  # a later run brings the widget back
    assert shown[-1][0] == "update" and WIDGET_VIEW in shown[-1][1]


# -- a real kernel ---------------------------------------------------------------------

KERNEL_CODE = """
import json, time
import async_dag

async def inc(ctx, x):
    return x + 1

t0 = time.perf_counter()
result = await async_dag.run_function_pipeline(range(200_000), inc, concurrency=4, monitor=True)
elapsed = time.perf_counter() - t0
node = result.stats.nodes["inc"]
print(json.dumps({"elapsed": elapsed, "inputs": result.stats.inputs,
                  "outputs": result.stats.outputs, "done": node.received - node.in_flight}))
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A real ipykernel running this interpreter; shut down afterwards."""
    tmp_path = tmp_path_factory.mktemp("kernel")
    manager = kernel_manager(tmp_path, "async-dag-test")
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run_cell(client, code: str, timeout: float = 60) -> list[dict]:
    """Execute code and return every iopub message it caused, until the kernel is idle."""
    msg_id = client.execute(code)
    messages = []
    deadline = time.monotonic() + timeout
    while True:
        msg = client.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages


@pytest.mark.slow
def test_kernel_run_of_200k_items_sends_a_few_messages_a_second(kernel):
    """In a kernel, monitor=True over 200,000 items sends a few comm messages a second."""
    messages = run_cell(kernel, KERNEL_CODE, timeout=120)
    errors = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert errors == []
    printed = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    final = json.loads(printed.strip().splitlines()[-1])
    assert final["outputs"] == final["done"] == final["inputs"] == 200_000

    shown = [m for m in messages if m["msg_type"] == "display_data"]
    assert len(shown) == 1 and WIDGET_VIEW in shown[0]["content"]["data"]
    display_id = shown[0]["content"]["transient"]["display_id"]
    updates = [m for m in messages if m["msg_type"] == "comm_msg"]
    per_second = len(updates) / final["elapsed"]
    print(f"{len(updates)} comm messages in {final['elapsed']:.1f} s: {per_second:.1f}/s")
    assert len(updates) <= 5 * final["elapsed"] + 10, (len(updates), final["elapsed"])

    values = [
        m["content"]["data"]["state"]["value"]
        for m in updates
        if "value" in m["content"]["data"].get("state", {})
    ]
    assert len(values) >= 2, "the panel never changed"
    last = values[-1]
    assert field(last, None, "state") == "done"
    assert field(last, None, "inputs") == field(last, None, "outputs") == "200,000"
    assert field(last, "inc", "done") == field(last, "inc", "emitted") == "200,000"
    assert field(last, None, "progress") == "200,000/200,000"

    # the displayed output is replaced by the final state, for saved notebooks
    (ending,) = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert ending["content"]["transient"]["display_id"] == display_id
    data = ending["content"]["data"]
    assert WIDGET_VIEW not in data
    assert data["text/plain"].startswith("<PipelineMonitor 'inc' done: 200000 in, 200000 out")
    assert field(data["text/html"], None, "state") == "done"


def test_kernel_monitor_displayed_in_one_cell_fed_from_another(kernel):
    """A PipelineMonitor shown by one cell is updated by a run started in a later cell."""
    shown = run_cell(
        kernel,
        "from async_dag.notebook import PipelineMonitor\nmonitor = PipelineMonitor()\nmonitor",
    )
    results = [m for m in shown if m["msg_type"] == "display_data"]
    assert len(results) == 1
    data = results[0]["content"]["data"]
    display_id = results[0]["content"]["transient"]["display_id"]
    assert data["text/plain"] == "<PipelineMonitor idle>"
    model_id = data[WIDGET_VIEW]["model_id"]

    code = (
        "import async_dag\n"
        "async def double(ctx, x):\n"
        "    return 2 * x\n"
        "result = await async_dag.run_function_pipeline(range(500), double, monitor=monitor)\n"
        "print(monitor.stats == result.stats, result.stats.outputs)"
    )
    messages = run_cell(kernel, code)
    assert not [m for m in messages if m["msg_type"] in ("error", "display_data")]
    ends = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert [m["content"]["transient"]["display_id"] for m in ends] == [display_id]
    assert "done: 500 in, 500 out" in ends[0]["content"]["data"]["text/plain"]
    printed = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    assert printed.split() == ["True", "500"]
    ids = run_cell(kernel, "print(monitor.widget.model_id, monitor.widget.children[0].model_id)")
    root_model, html_model = "".join(
        m["content"]["text"] for m in ids if m["msg_type"] == "stream"
    ).split()
    assert root_model == model_id  # the view shown by the first cell is the root widget
    updates = [
        m["content"]["data"]["state"]["value"]
        for m in messages
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == html_model
    ]
    assert updates, "the displayed panel was not updated"
    assert field(updates[-1], None, "state") == "done"
    assert field(updates[-1], "double", "emitted") == "500"


@pytest.mark.slow
def test_saved_notebook_shows_the_final_state(tmp_path):
    """A notebook executed and saved by nbclient keeps the monitor's final text and HTML."""
    import nbclient
    import nbformat

    cells = [
        "import async_dag\nasync def inc(ctx, x):\n    return x + 1",
        "r = await async_dag.run_function_pipeline(range(300), inc, monitor=True, run_id='r1')",
        "from async_dag.notebook import PipelineMonitor\nm = PipelineMonitor()\nm",
        "r2 = await async_dag.run_function_pipeline(range(7), inc, monitor=m, total=7)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    manager = kernel_manager(tmp_path, "async-dag-save")
    client = nbclient.NotebookClient(nb, km=manager, timeout=120)
    try:
        client.execute()
    finally:  # nbclient leaves a kernel it was given running
        if client.kc is not None:
            client.kc.stop_channels()
        manager.shutdown_kernel(now=True)
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    saved = nbformat.read(path, as_version=4)
    for index, expected in [(1, "done: 300 in, 300 out"), (2, "done: 7 in, 7 out")]:
        (output,) = saved.cells[index].outputs
        assert expected in output["data"]["text/plain"], output
        assert "running" not in output["data"]["text/plain"]
        assert field(output["data"]["text/html"], None, "state") == "done"
    assert "7/7 100%" in saved.cells[2].outputs[0]["data"]["text/plain"]


@pytest.mark.slow
def test_saved_notebook_shows_a_background_runs_final_state(tmp_path):
    """A background run shown in one cell and stopped in a later one: the saved output of
    the first cell is its final state (the update is sent under the cell running then)."""
    import nbclient
    import nbformat

    cells = [
        "import asyncio, async_dag\n"
        "async def slow(ctx, x):\n    await asyncio.sleep(0.05)\n    return x\n"
        "run = async_dag.start_function_pipeline(range(400), slow, run_id='bg')\nrun",
        "await asyncio.sleep(0.5)\nrun.cancel()\ntry:\n    await run\n"
        "except asyncio.CancelledError:\n    print(run.stats.state)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    manager = kernel_manager(tmp_path, "async-dag-save-bg")
    client = nbclient.NotebookClient(nb, km=manager, timeout=120)
    try:
        client.execute()
    finally:
        if client.kc is not None:
            client.kc.stop_channels()
        manager.shutdown_kernel(now=True)
    (output,) = nb.cells[0].outputs
    text = output["data"]["text/plain"]
    assert text.startswith("<PipelineMonitor 'slow' cancelled:"), text
    assert field(output["data"]["text/html"], None, "state") == "cancelled"
    assert nb.cells[1].outputs[0]["text"].strip() == "cancelled"


STOP_SETUP = """
import asyncio, async_dag
from async_dag.notebook import PipelineMonitor

async def slow(ctx, x):
    await asyncio.sleep(0.5)
    return x

stoppable = PipelineMonitor(display_on_start=True)
print(stoppable.stop_button.model_id)
"""

STOP_RUN = """
run = asyncio.ensure_future(async_dag.run_function_pipeline(range(40), slow, monitor=stoppable))
stoppable.attach(None, run.cancel)  # the engine gives its own cancel once its rewrite lands
try:
    await run
except asyncio.CancelledError:
    print("cancelled", stoppable.state)
"""


@pytest.mark.slow
def test_kernel_stop_button_cancels_an_awaited_run(kernel):
    """A click on the stop button reaches the kernel while the cell awaits, and stops the run."""
    printed = run_cell(kernel, STOP_SETUP)
    (button,) = [m["content"]["text"].strip() for m in printed if m["msg_type"] == "stream"]
    msg_id = kernel.execute(STOP_RUN)
    seen: list[dict] = []
    clicked = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        msg = kernel.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append(msg)
        if not clicked and msg["msg_type"] == "comm_msg":  # the run has started
            click = {"method": "custom", "content": {"event": "click"}}
            kernel.shell_channel.send(
                kernel.session.msg("comm_msg", {"comm_id": button, "data": click})
            )
            clicked = True
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    text = "".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream")
    assert text.strip() == "cancelled cancelled", text


def test_the_table_shows_throttled_seconds_only_when_a_node_waited():
    """A rate-limited node's waiting time gets a column; without waits there is none."""
    from async_dag import NodeStats, RunStats
    from async_dag.notebook import PipelineMonitor

    def panel(throttled: float) -> str:
        monitor = PipelineMonitor()
        node = NodeStats("api", 4, 64, received=10, emitted=10, throttled=throttled)
        stats = RunStats("r", "p", 3.0, 10, 10, 0, {"api": node}, total=10)
        monitor.start(stats)
        monitor.finish(stats, None)
        return monitor.panel_html

    assert 'data-field="throttled"' in panel(2.5) and "2.5 s" in panel(2.5)
    assert 'data-field="throttled"' not in panel(0.0)
