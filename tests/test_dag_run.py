"""DAG runs: routing, fan-out/fan-in, loops, sinks, back-pressure and concurrency."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from _util import settle

from async_dag import PipelineBuilder, RunResult


async def inc(ctx, x):
    return x + 1


async def double(ctx, x):
    return x * 2


async def ident(ctx, x):
    return x


def is_even(ctx, x):
    return x % 2 == 0


def is_odd(ctx, x):
    return x % 2 == 1


async def test_chain_returns_sink_outputs_in_a_run_result():
    """A linear chain gives one output per input; the result acts as a list."""
    p = PipelineBuilder("chain").add_task("a", inc).add_task("b", double).add_edge("a", "b").build()
    result = await p.run_stream(range(5))
    assert isinstance(result, RunResult)
    assert sorted(result) == [2, 4, 6, 8, 10]
    assert len(result) == 5
    assert sorted(result) == sorted(list(result))
    rec = {r.ctx.data_id: r for r in result.records}
    assert rec["3"].value == 8 and rec["3"].node == "b" and rec["3"].ctx.path == ("a", "b")
    assert result.stats.nodes["a"].received == 5 and result.stats.nodes["b"].emitted == 5
    assert result.stats.elapsed > 0
    assert result.run_id == rec["0"].ctx.run_id


async def test_single_worker_chain_keeps_input_order():
    """With one worker per node, outputs come out in input order (FIFO queues)."""
    p = PipelineBuilder().add_task("a", inc).add_task("b", inc).add_edge("a", "b").build()
    assert await p.run_stream(range(100)) == [x + 2 for x in range(100)]


async def test_if_else_branches_and_data_ids():
    """Two complementary predicates route each output to exactly one branch."""
    p = (
        PipelineBuilder("branch")
        .add_task("src", ident)
        .add_task("even", double)
        .add_task("odd", inc)
        .add_edge("src", "even", when=is_even)
        .add_edge("src", "odd", when=is_odd)
        .build()
    )
    result = await p.run_stream([10, 11, 12, 13])
    by_id = {r.ctx.data_id: (r.node, r.value, r.ctx.path) for r in result.records}
    assert by_id == {
        "0": ("even", 20, ("src", "even")),
        "1": ("odd", 12, ("src", "odd")),
        "2": ("even", 24, ("src", "even")),
        "3": ("odd", 14, ("src", "odd")),
    }


async def test_fan_out_and_fan_in_keep_the_data_id():
    """An output goes down every edge that holds; a node with several inputs merges them."""
    p = (
        PipelineBuilder("diamond")
        .add_task("src", ident)
        .add_task("left", inc)
        .add_task("right", double)
        .add_task("join", ident)
        .add_edge("src", "left")
        .add_edge("src", "right")
        .add_edge("left", "join")
        .add_edge("right", "join")
        .build()
    )
    result = await p.run_stream([5, 7])
    got = sorted((r.ctx.data_id, r.value, r.ctx.path) for r in result.records)
    assert got == [
        ("0", 6, ("src", "left", "join")),
        ("0", 10, ("src", "right", "join")),
        ("1", 8, ("src", "left", "join")),
        ("1", 14, ("src", "right", "join")),
    ]
    assert result.stats.nodes["join"].received == 4


async def test_fan_out_waits_for_a_full_branch_and_loses_nothing():
    """With one-slot queues and a slow branch, every output still goes down every edge,
    in input order per branch, and the run's count ends at zero (it returns)."""
    gate = asyncio.Event()

    async def slow(ctx, x):
        if x == 0:
            await gate.wait()  # the branch's queue fills up behind the first input
        return x

    async def fast(ctx, x):
        if x == 1:  # src has sent 1 on and may now wait for room in slow's queue
            gate.set()
        return x

    p = (
        PipelineBuilder("fan")
        .add_task("src", ident, queue_size=1)
        .add_task("slow", slow, queue_size=1)
        .add_task("fast", fast, queue_size=1)
        .add_task("third", ident, queue_size=1)
        .add_task("sink", ident, queue_size=1)
        .add_edge("src", "slow")
        .add_edge("src", "fast")
        .add_edge("src", "third")
        .add_edge("slow", "sink")
        .add_edge("fast", "sink")
        .add_edge("third", "sink")
        .build()
    )
    result = await p.run_stream(range(20))
    by_branch: dict[str, list[int]] = {}
    for r in result.records:
        by_branch.setdefault(r.ctx.path[1], []).append(r.value)
    assert by_branch == {b: list(range(20)) for b in ("slow", "fast", "third")}
    assert result.stats.nodes["src"].emitted == 20
    assert result.stats.nodes["sink"].received == 60


async def test_every_input_goes_to_every_source_and_sinks_collect():
    """Two sources both receive each input; both sinks' outputs are results."""
    p = PipelineBuilder().add_task("a", inc).add_task("b", double).build()
    result = await p.run_stream([1, 2])
    assert sorted((r.node, r.value) for r in result.records) == [
        ("a", 2),
        ("a", 3),
        ("b", 2),
        ("b", 4),
    ]


async def test_unrouted_outputs_are_counted():
    """An output for which no edge holds is counted as unrouted, not lost silently."""
    p = (
        PipelineBuilder()
        .add_task("a", ident)
        .add_task("b", ident)
        .add_edge("a", "b", when=lambda ctx, x: x > 2)
        .build()
    )
    result = await p.run_stream(range(5))
    assert sorted(result) == [3, 4]
    assert result.stats.nodes["a"].unrouted == 3


async def test_generators_stream_zero_or_more_outputs():
    """Generator handlers yield several outputs or none (filtered), sync or async."""

    async def explode(ctx, x):
        for i in range(x):
            yield (x, i)

    def evens_only(ctx, pair):
        if pair[1] % 2 == 0:
            yield pair

    p = (
        PipelineBuilder()
        .add_task("explode", explode)
        .add_task("evens", evens_only)
        .add_edge("explode", "evens")
        .build()
    )
    result = await p.run_stream([0, 3])
    assert sorted(result) == [(3, 0), (3, 2)]
    stats = result.stats.nodes
    assert stats["explode"].filtered == 1  # the input 0 yielded nothing
    assert stats["explode"].emitted == 3
    assert stats["evens"].filtered == 1
    assert all(r.ctx.data_id == "1" for r in result.records)


async def test_bounded_loop_takes_the_edge_at_most_max_loops_times():
    """A payload loops back while its predicate holds, and the path records each pass."""

    async def bump(ctx, x):
        return x + 1

    p = (
        PipelineBuilder()
        .add_task("work", bump)
        .add_task("check", ident)
        .add_task("done", ident)
        .add_edge("work", "check")
        .add_edge("check", "work", when=lambda ctx, x: x < 3, max_loops=5)
        .add_edge("check", "done", when=lambda ctx, x: x >= 3)
        .build()
    )
    result = await p.run_stream([0, 2, 10])
    by_id = {r.ctx.data_id: r for r in result.records}
    assert by_id["0"].value == 3
    assert by_id["0"].ctx.path == ("work", "check", "work", "check", "work", "check", "done")
    assert by_id["1"].ctx.path == ("work", "check", "done")
    assert by_id["2"].value == 11


async def test_loop_with_tiny_queues_over_many_inputs_completes():
    """The contract's case: queue_size=1, concurrency=1, a loop, 10,000 inputs: no deadlock."""
    p = (
        PipelineBuilder()
        .add_task("a", inc, queue_size=1)
        .add_task("b", ident, queue_size=1)
        .add_edge("a", "b")
        .add_edge("b", "a", when=lambda ctx, x: x % 3 != 0, max_loops=2)
        .add_task("out", ident, queue_size=1)
        .add_edge("b", "out", when=lambda ctx, x: x % 3 == 0)
        .build()
    )
    # 10,000 inputs through one-slot queues make some 100,000 futures, and debug mode takes
    # a stack trace for each: 20x slower (over 30 s). This test is about deadlocks, so it
    # runs with debug mode off; every other test keeps it on.
    asyncio.get_running_loop().set_debug(False)
    result = await asyncio.wait_for(p.run_stream(range(10_000), on_error="collect"), 60)
    assert len(result) + result.stats.nodes["b"].unrouted + len(result.errors) == 10_000
    assert len(result) > 0


async def test_per_node_concurrency_is_exact():
    """Never more workers busy than configured, and all of them are used."""
    busy = {"n": 0, "max": 0}

    async def slow(ctx, x):
        busy["n"] += 1
        busy["max"] = max(busy["max"], busy["n"])
        await asyncio.sleep(0.001)
        busy["n"] -= 1
        return x

    p = PipelineBuilder().add_task("s", slow, concurrency=3).build()
    await p.run_stream(range(60))
    assert busy["max"] == 3


async def test_endless_input_with_slow_sink_pulls_a_bounded_number_ahead():
    """Back-pressure: with a slow sink, the feeder stays a bounded distance ahead."""
    pulled = 0
    handled = 0

    def endless():
        nonlocal pulled
        for i in itertools.count():
            pulled = i + 1
            yield i

    enough = asyncio.Event()

    async def slow_sink(ctx, x):
        nonlocal handled
        await asyncio.sleep(0)
        handled += 1
        if handled == 2000:
            enough.set()
        return x

    p = (
        PipelineBuilder()
        .add_task("a", inc, queue_size=4)
        .add_task("b", slow_sink, queue_size=4)
        .add_edge("a", "b")
        .build()
    )
    ahead = []

    async def watch(ctx, value):
        ahead.append(pulled - handled)

    task = asyncio.ensure_future(p.run_stream(endless(), result_handler=watch))
    waiter = asyncio.ensure_future(enough.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    assert not task.done(), task  # an endless run ends only when cancelled
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # queues of 4 + one payload in each worker + the feeder's pending put
    assert max(ahead) <= 4 + 4 + 2 + 1


async def test_result_handler_sync_and_async_keep_nothing():
    """With a result_handler, each output is handed over and none is kept."""
    seen = []

    def sync_handler(ctx, value):
        seen.append((ctx.data_id, value))

    p = PipelineBuilder().add_task("a", inc).build()
    result = await p.run_stream([1, 2, 3], result_handler=sync_handler)
    assert list(result) == [] and result.stats.outputs == 3
    assert seen == [("0", 2), ("1", 3), ("2", 4)]

    got = []

    async def async_handler(ctx, value):
        await asyncio.sleep(0)
        got.append(value)

    await p.run_stream([5], result_handler=async_handler)
    assert got == [6]


async def test_stream_yields_context_and_value(no_leftover_tasks):
    """pipeline.stream(...) yields (ctx, value) as outputs arrive."""
    p = PipelineBuilder().add_task("a", inc).add_task("b", inc).add_edge("a", "b").build()
    out = [(ctx.data_id, ctx.node, v) async for ctx, v in p.stream([1, 2], run_id="r1")]
    assert out == [("0", "b", 3), ("1", "b", 4)]


async def test_breaking_out_of_stream_stops_the_run(no_leftover_tasks):
    """Leaving `async for` early stops the run and leaves no task behind."""
    p = PipelineBuilder().add_task("a", inc).build()
    async for _ctx, v in p.stream(itertools.count()):
        if v > 10:
            break
    for _ in range(10):
        await asyncio.sleep(0)


async def test_key_run_id_and_metadata_reach_the_context():
    """key= gives data ids; run_id= and metadata= are visible on every context."""
    seen = []

    async def look(ctx, x):
        seen.append(ctx)
        return x

    p = PipelineBuilder().add_task("a", look).build()
    result = await p.run_stream(
        [{"id": "u1"}, {"id": "u2"}],
        key=lambda d: d["id"],
        run_id="nightly",
        metadata={"env": "test"},
    )
    assert [c.data_id for c in seen] == ["u1", "u2"]
    assert {c.run_id for c in seen} == {"nightly"} and result.run_id == "nightly"
    assert seen[0].metadata["env"] == "test"
    with pytest.raises(TypeError):
        seen[0].metadata["env"] = "x"  # read-only
    assert seen[0].attempt == 0 and seen[0].node == "a"


async def test_sync_handlers_run_in_threads_unless_inline():
    """A plain def runs in a worker thread by default, on the loop's thread with inline=True."""
    main = threading.get_ident()

    def where(ctx, x):
        return threading.get_ident()

    threaded = PipelineBuilder().add_task("t", where).build()
    inline = PipelineBuilder().add_task("t", where, inline=True).build()
    assert all(t != main for t in await threaded.run_stream(range(3)))
    assert all(t == main for t in await inline.run_stream(range(3)))


async def test_blocking_sync_handlers_do_not_stall_the_loop():
    """Blocking calls in a threaded sync task overlap with each other (concurrency=4)."""
    started = threading.Barrier(4, timeout=10)

    def blocking(ctx, x):
        started.wait()  # only passes if 4 calls run at the same time
        return x

    p = PipelineBuilder().add_task("b", blocking, concurrency=4).build()
    assert sorted(await p.run_stream(range(8))) == list(range(8))


async def test_two_runs_of_one_pipeline_at_once_stay_independent():
    """Runs share nothing: each gets its own outputs, ids and counters."""

    async def slow_inc(ctx, x):
        await asyncio.sleep(0.001)
        return x + 1

    p = (
        PipelineBuilder()
        .add_task("a", slow_inc, concurrency=2)
        .add_task("b", inc)
        .add_edge("a", "b")
        .build()
    )
    r1, r2 = await asyncio.gather(p.run_stream(range(50)), p.run_stream(range(100, 130)))
    assert sorted(r1) == [x + 2 for x in range(50)]
    assert sorted(r2) == [x + 2 for x in range(100, 130)]
    assert r1.run_id != r2.run_id
    assert r1.stats.nodes["a"].received == 50 and r2.stats.nodes["a"].received == 30


async def test_async_iterable_inputs():
    """Inputs may be an async iterable."""

    async def numbers():
        for i in range(4):
            await asyncio.sleep(0)
            yield i

    p = PipelineBuilder().add_task("a", inc).build()
    assert await p.run_stream(numbers()) == [1, 2, 3, 4]


async def test_max_queue_depth_is_reported_and_bounded():
    """max_queue_depth never exceeds the forward bound."""
    gate = asyncio.Event()

    async def wait_gate(ctx, x):
        await gate.wait()
        return x

    full = asyncio.Event()

    def inputs():
        for i in range(20):
            if i == 2:  # the feeder pulls a queueful (0-2) before the worker takes any
                full.set()
            yield i

    p = PipelineBuilder().add_task("a", wait_gate, queue_size=3).build()
    task = asyncio.ensure_future(p.run_stream(inputs()))
    await full.wait()
    gate.set()
    result = await task
    assert result.stats.nodes["a"].max_queue_depth == 3


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"on_error": "maybe"}, ValueError, "on_error"),
        ({"result_handler": 3}, TypeError, "result_handler"),
        ({"key": "id"}, TypeError, "key"),
        ({"run_id": ""}, ValueError, "run_id"),
        ({"metadata": [1]}, TypeError, "metadata"),
        ({"monitor": "yes"}, TypeError, "monitor"),
    ],
)
async def test_bad_run_arguments_raise_before_anything_runs(kwargs, exc, match):
    """Bad run arguments raise ValueError/TypeError and nothing runs."""
    called = []

    async def record(ctx, x):
        called.append(x)
        return x

    p = PipelineBuilder().add_task("a", record).build()
    with pytest.raises(exc, match=match):
        await p.run_stream([1], **kwargs)
    assert called == []


async def test_non_iterable_inputs_raise_type_error():
    """Inputs that are not iterable raise TypeError naming the type."""
    p = PipelineBuilder().add_task("a", inc).build()
    with pytest.raises(TypeError, match="int"):
        await p.run_stream(42)
    with pytest.raises(TypeError):
        p.stream(42)


# -- the suite's own guards (tests/conftest.py) ------------------------------------------


async def test_test_loops_run_in_asyncio_debug_mode():
    """Every test's event loop has asyncio's debug mode on."""
    assert asyncio.get_running_loop().get_debug()


def test_an_error_logged_by_the_loop_fails_the_test(tmp_path):
    """A task whose exception nobody retrieves makes its test fail, naming the exception; a
    callback that blocks the loop is listed at the end."""
    tests = Path(__file__).parent
    for name in ("conftest.py", "_util.py"):
        shutil.copy(tests / name, tmp_path / name)
    (tmp_path / "test_forgotten.py").write_text(
        "import asyncio, gc\n"
        "async def test_forgotten_task():\n"
        "    async def boom():\n"
        "        raise ValueError('nobody looked')\n"
        "    task = asyncio.ensure_future(boom())\n"
        "    await asyncio.sleep(0)\n"
        "    del task\n"
        "    gc.collect()\n"
        "async def test_blocking():\n"
        "    __import__('time').sleep(0.15)\n"
        "async def test_fine():\n"
        "    await asyncio.sleep(0)\n"
    )
    options = ["-p", "no:cacheprovider", "-p", "pytest_asyncio.plugin", "-o", "asyncio_mode=auto"]
    options += ["-o", "asyncio_debug=true", "-o", "asyncio_default_fixture_loop_scope=function"]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *options, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},  # no slow plugin start-up
        timeout=60,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "3 passed, 1 error" in out.stdout  # the failing check is the teardown's
    assert "the event loop reported 1 error" in out.stdout and "nobody looked" in out.stdout
    listed = out.stdout.split("asyncio debug mode: slow callbacks")[1]
    assert "test_forgotten.py::test_blocking: Executing <Task" in listed


@pytest.mark.slow
def test_slow_tests_get_the_longer_hang_guard(request):
    """A test marked slow, with no timeout marker of its own, gets 120 s instead of 30 s."""
    assert request.node.get_closest_marker("timeout").args == (120,)
    assert request.config.getini("timeout") == "30"


def busy(run, *nodes: str) -> dict[str, tuple[int, int, int]]:
    """(received, emitted, in_flight) per node, read from a running run's live stats."""
    stats = run.stats.nodes
    return {n: (stats[n].received, stats[n].emitted, stats[n].in_flight) for n in nodes}


async def test_in_flight_counts_a_waiting_handler_and_a_waiting_put():
    """Read while the run is going, ``in_flight`` counts the payload whose handler waits
    and the one whose output waits for room downstream; a worker with nothing counts 0."""
    gate = asyncio.Event()

    async def stuck(ctx, x):
        if x == 0:
            await gate.wait()
        return x

    p = (
        PipelineBuilder("busy")
        .add_task("a", ident, queue_size=1)
        .add_task("b", stuck, queue_size=1)
        .add_task("c", ident, queue_size=1)
        .add_edge("a", "b")
        .add_edge("b", "c")
        .build()
    )
    run = p.start(range(4))
    await settle(50)
    # b waits in its handler for 0 with 1 queued; a has sent 0 and 1 and waits to put 2
    assert busy(run, "a", "b", "c") == {"a": (3, 3, 1), "b": (1, 0, 1), "c": (0, 0, 0)}
    gate.set()
    result = await run
    assert sorted(result) == [0, 1, 2, 3]
    assert busy(run, "a", "b", "c") == {n: (4, 4, 0) for n in "abc"}


async def test_in_flight_is_zero_for_workers_waiting_for_input_mid_run():
    """Between inputs every worker is idle, and the stats say so (and no payload is lost
    or counted twice on either side of the pause)."""
    more = asyncio.Event()

    async def inputs():
        yield 0
        yield 1
        await more.wait()
        yield 2

    p = (
        PipelineBuilder("idle")
        .add_task("a", ident, concurrency=2)
        .add_task("b", inc, concurrency=2)
        .add_task("c", inc, concurrency=2)
        .add_task("sink", ident, concurrency=2)
        .add_edge("a", "b")
        .add_edge("a", "c")
        .add_edge("b", "sink")
        .add_edge("c", "sink")
        .build()
    )
    run = p.start(inputs())
    await settle(50)
    nodes = ("a", "b", "c", "sink")
    assert busy(run, *nodes) == {"a": (2, 2, 0), "b": (2, 2, 0), "c": (2, 2, 0), "sink": (4, 4, 0)}
    more.set()
    assert sorted(await run) == [1, 1, 2, 2, 3, 3]
    assert busy(run, *nodes) == {"a": (3, 3, 0), "b": (3, 3, 0), "c": (3, 3, 0), "sink": (6, 6, 0)}


async def test_contexts_along_hops_and_fan_out_are_exact():
    """Every hop (a retried source, a plain fan-out, single edges into a fan-in) gives the
    next handler the run's id, the input's data_id and metadata, the path one longer and
    attempt 0; the sink's handler and the result handler see the same context."""
    seen: list[tuple[str, object]] = []
    tries: dict[int, int] = {}

    async def flaky(ctx, x):
        tries[x] = tries.get(x, 0) + 1
        if tries[x] == 1:
            raise ValueError("first try")
        return x

    async def look(ctx, x):
        seen.append((ctx.node, ctx))
        return x

    p = (
        PipelineBuilder("contexts")
        .add_task("src", flaky, retries=1, queue_size=1)
        .add_task("left", look, queue_size=1)
        .add_task("right", look, queue_size=1)
        .add_task("sink", look, queue_size=1)
        .add_edge("src", "left")
        .add_edge("src", "right")
        .add_edge("left", "sink")
        .add_edge("right", "sink")
        .build()
    )
    handed: list[object] = []
    await p.run_stream(
        range(3),
        run_id="r1",
        metadata={"k": "v"},
        result_handler=lambda ctx, value: handed.append(ctx),
    )
    paths = {
        "left": ("src", "left"),
        "right": ("src", "right"),
    }
    assert len(seen) == 12 and len(handed) == 6
    for node, ctx in seen:
        assert (ctx.run_id, ctx.attempt, dict(ctx.metadata)) == ("r1", 0, {"k": "v"})
        assert ctx.node == node and ctx.data_id in {"0", "1", "2"}
        if node != "sink":
            assert ctx.path == paths[node]
        else:
            assert ctx.path in {(*paths["left"], "sink"), (*paths["right"], "sink")}
    sink_contexts = [ctx for node, ctx in seen if node == "sink"]
    assert sorted(handed, key=repr) == sorted(sink_contexts, key=repr)
    assert sorted((c.data_id, c.path[1]) for c in handed) == sorted(
        (str(i), b) for i in range(3) for b in ("left", "right")
    )


async def test_fan_out_stats_exact_with_a_raising_result_handler_under_collect():
    """A result handler that raises for some outputs of a fan-in sink fails just those
    outputs: the others are handed over, the errors are collected, and every node's
    counts add up with nothing left in flight."""
    handed: list[tuple[str, int]] = []

    def handler(ctx, value):
        if value % 3 == 0:
            raise KeyError(value)
        handed.append((ctx.path[1], value))

    p = (
        PipelineBuilder("fan")
        .add_task("src", ident, queue_size=2)
        .add_task("b0", inc, queue_size=1)
        .add_task("b1", inc, queue_size=1)
        .add_task("b2", inc, queue_size=2)
        .add_task("sink", ident, queue_size=1)
        .add_edge("src", "b0")
        .add_edge("src", "b1")
        .add_edge("src", "b2")
        .add_edge("b0", "sink")
        .add_edge("b1", "sink")
        .add_edge("b2", "sink")
        .build()
    )
    result = await p.run_stream(range(30), on_error="collect", result_handler=handler)
    failing = [v for v in range(1, 31) if v % 3 == 0]
    assert sorted(handed) == sorted(
        (b, v) for b in ("b0", "b1", "b2") for v in range(1, 31) if v % 3
    )
    assert sorted(e.exception.args[0] for e in result.errors) == sorted(failing * 3)
    assert all(e.node == "sink" for e in result.errors)
    nodes = result.stats.nodes
    assert (nodes["src"].received, nodes["src"].emitted, nodes["src"].failed) == (30, 30, 0)
    for b in ("b0", "b1", "b2"):
        assert (nodes[b].received, nodes[b].emitted, nodes[b].failed) == (30, 30, 0)
    assert (nodes["sink"].received, nodes["sink"].failed) == (90, 30)
    assert result.stats.outputs == len(handed) == 60  # delivered: the refused ones are not
    assert all(n.in_flight == 0 and n.queue_depth == 0 for n in nodes.values())
