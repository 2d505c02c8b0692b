"""PipelineMonitor: the widget's numbers, its states, and its message rate in a real kernel."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time

import ipywidgets
import pytest
from _util import kernel_manager

from async_dag import PipelineBuilder, run_function_pipeline
from async_dag.notebook import PipelineMonitor

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
    """The text of a data-field cell (of a node row, or of the header)."""
    scope = html
    if node is not None:
        match = re.search(rf'<tr data-node="{re.escape(node)}">(.*?)</tr>', html)
        assert match, f"no row for {node!r}"
        scope = match.group(1)
    match = re.search(rf'data-field="{name}"[^>]*>(?:<code>)?([^<]*)<', scope)
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


# -- a real kernel ---------------------------------------------------------------------

KERNEL_CODE = """
import json, time
import async_dag
from async_dag.notebook import PipelineMonitor

async def inc(ctx, x):
    return x + 1

t0 = time.perf_counter()
result = await async_dag.run_function_pipeline(range(100_000), inc, concurrency=4, monitor=True)
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
def test_kernel_run_of_100k_items_does_not_flood(kernel):
    """In a kernel, monitor=True over 100,000 items sends few widget messages, ending right."""
    messages = run_cell(kernel, KERNEL_CODE)
    errors = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert errors == []
    printed = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    final = json.loads(printed.strip().splitlines()[-1])
    assert final["outputs"] == final["done"] == final["inputs"] == 100_000

    shown = [m for m in messages if m["msg_type"] == "display_data"]
    assert len(shown) == 1 and WIDGET_VIEW in shown[0]["content"]["data"]
    updates = [m for m in messages if m["msg_type"] == "comm_msg"]
    assert len(updates) < 15 * final["elapsed"] + 20, (len(updates), final["elapsed"])

    values = [
        m["content"]["data"]["state"]["value"]
        for m in updates
        if "value" in m["content"]["data"].get("state", {})
    ]
    assert values, "the panel never changed"
    last = values[-1]
    assert field(last, None, "state") == "done"
    assert field(last, None, "inputs") == field(last, None, "outputs") == "100,000"
    assert field(last, "inc", "done") == field(last, "inc", "emitted") == "100,000"


def test_kernel_monitor_displayed_in_one_cell_fed_from_another(kernel):
    """A PipelineMonitor shown by one cell is updated by a run started in a later cell."""
    shown = run_cell(
        kernel,
        "from async_dag.notebook import PipelineMonitor\nmonitor = PipelineMonitor()\nmonitor",
    )
    results = [m for m in shown if m["msg_type"] == "execute_result"]
    assert len(results) == 1
    data = results[0]["content"]["data"]
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
