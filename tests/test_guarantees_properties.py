"""Property tests over random DAGs that use every feature at once.

A random graph mixes branches, fan-out, loops, batch tasks, joins, error edges, rate
limits, retries with back-off, timeouts, async/sync/generator handlers (threaded and
inline), predicates that raise and failing items. Each graph runs on the engine and
through a small synchronous reference interpreter of the contract (tests/test_properties.py's,
extended): records, errors, per-node counters and every join call must match exactly,
and the run's books must be empty at the end (no lineage tracked, nothing parked,
nothing active). The same graphs also run under on_error="raise", cancelled at random
moments, and twice on one checkpoint; function pipelines get a property of their own.

These tests run their own event loop with asyncio's debug mode off: debug mode makes
every task and callback some ten times slower, and the thousands of tiny examples here
would otherwise take minutes; every other test keeps it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from async_dag import DagPipeline, DagTask, ItemError, LoopLimitExceeded, TaskTransition
from async_dag.core.options import RunOptions
from async_dag.core.run import Run

M = 97  # every value lives in range(M)
EXAMPLES = int(os.environ.get("ASYNC_DAG_EXAMPLES", "2500"))
PLAIN = ("fn", "agen", "sync", "sync_inline", "sgen")
GENERATORS = ("agen", "sgen")
BATCH = ("batch_async", "batch_sync", "batch_inline")
JOIN = ("join_fn", "join_sync")


class Planned(Exception):
    """A permanent failure a node spec asks for."""


class Flake(Exception):
    """A failure of the first attempt only (the retry succeeds)."""


class Boom(Exception):
    """Raised by an edge predicate."""


def num(value: Any) -> int:
    """The number a handler works on: an int, a dead letter, or a join's parts."""
    if isinstance(value, ItemError):
        if isinstance(value.exception, ValueError):  # a join's duplicate part: which of
            return 31  # the two counts as the second one is timing, so ignore the payload
        return (num(value.payload) + 31) % M
    if isinstance(value, dict):
        return sum(value.values()) % M
    return value


@dataclass(frozen=True)
class NodeSpec:
    kind: str  # PLAIN, BATCH or JOIN
    mul: int
    add: int
    fail_mod: int  # a permanent failure when value % fail_mod == 0 (0: never)
    flake_mod: int  # the first attempt fails when value % flake_mod == 0 (0: never)
    fanout: int  # a generator yields value % (fanout + 1) outputs
    concurrency: int
    queue_size: int
    retries: int
    retry_delay: float
    rate_limit: float | None
    timeout: float | None  # generous: exercises the timeout path, never expires
    batch_size: int
    batch_none: bool  # a batch handler that returns None (its payloads are filtered)
    yields: bool  # sleep(0) inside async handlers, to shuffle scheduling


def outputs_of(spec: NodeSpec, value: int) -> tuple[list[int], bool]:
    """(outputs produced, whether the call then fails for good)."""
    fails = spec.fail_mod > 0 and value % spec.fail_mod == 0
    base = (value * spec.mul + spec.add) % M
    if spec.kind in BATCH:
        return ([] if spec.batch_none else [base]), False
    if spec.kind not in GENERATORS:
        return ([], True) if fails else ([base], False)
    outs = [(base + i) % M for i in range(value % (spec.fanout + 1))]
    return (outs[:1], True) if fails else (outs, False)


def flakes(spec: NodeSpec, value: int) -> bool:
    return spec.flake_mod > 0 and value % spec.flake_mod == 0


@dataclass
class Probe:
    """What the handlers saw: the most calls in flight per node, and every join call."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    now: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    joins: Counter[tuple[str, str, tuple[tuple[str, int], ...]]] = field(default_factory=Counter)

    def enter(self, node: str) -> None:
        with self.lock:
            self.now[node] += 1
            self.peak[node] = max(self.peak[node], self.now[node])

    def leave(self, node: str) -> None:
        with self.lock:
            self.now[node] -= 1


def make_handler(name: str, spec: NodeSpec, probe: Probe):
    kind = spec.kind

    def start(ctx, v) -> int:
        x = num(v)
        if kind in JOIN and ctx.attempt == 0:
            probe.joins[(name, ctx.data_id, tuple(sorted(v.items())))] += 1
        if ctx.attempt == 0 and flakes(spec, x):
            raise Flake(x)
        return x

    if kind in ("fn", "join_fn"):

        async def fn(ctx, v):
            probe.enter(name)
            try:
                if spec.yields:
                    await asyncio.sleep(0)
                outs, fails = outputs_of(spec, start(ctx, v))
                if fails:
                    raise Planned(v)
                return outs[0]
            finally:
                probe.leave(name)

        return fn
    if kind in ("sync", "sync_inline", "join_sync"):

        def sync(ctx, v):
            probe.enter(name)
            try:
                outs, fails = outputs_of(spec, start(ctx, v))
                if fails:
                    raise Planned(v)
                return outs[0]
            finally:
                probe.leave(name)

        return sync
    if kind == "agen":

        async def agen(ctx, v):
            probe.enter(name)
            try:
                outs, fails = outputs_of(spec, start(ctx, v))
                for o in outs:
                    if spec.yields:
                        await asyncio.sleep(0)
                    yield o
                if fails:
                    raise Planned(v)
            finally:
                probe.leave(name)

        return agen
    if kind == "sgen":

        def sgen(ctx, v):
            probe.enter(name)
            try:
                outs, fails = outputs_of(spec, start(ctx, v))
                yield from outs
                if fails:
                    raise Planned(v)
            finally:
                probe.leave(name)

        return sgen

    def batch_results(ctx, batch):
        assert len(ctx.batch) == len(batch) and 1 <= len(batch) <= spec.batch_size
        xs = [num(v) for v in batch]
        if ctx.attempt == 0 and any(flakes(spec, x) for x in xs):
            raise Flake(xs)
        if spec.batch_none:
            return None
        return [outputs_of(spec, x)[0][0] for x in xs]

    if kind == "batch_async":

        async def abatch(ctx, batch):
            probe.enter(name)
            try:
                if spec.yields:
                    await asyncio.sleep(0)
                return batch_results(ctx, batch)
            finally:
                probe.leave(name)

        return abatch

    def sbatch(ctx, batch):
        probe.enter(name)
        try:
            return batch_results(ctx, batch)
        finally:
            probe.leave(name)

    return sbatch


@dataclass(frozen=True)
class EdgeSpec:
    source: int
    target: int
    mod: int  # predicate: value % mod != rem (mod 0: always)
    rem: int
    max_loops: int | None = None
    on_error: bool = False
    boom: int = 0  # the predicate raises when value % boom == 0 (0: never)


def holds(edge: EdgeSpec, value: int) -> bool:
    return edge.mod == 0 or value % edge.mod != edge.rem


def predicate(edge: EdgeSpec):
    if edge.mod == 0 and not edge.boom:
        return None

    def when(ctx, value):
        if edge.boom and value % edge.boom == 0:
            raise Boom(value)
        return holds(edge, value)

    return when


def reach(n: int, edges: list[EdgeSpec]) -> list[set[int]]:
    """For each node, every node some path of edges leads to from it."""
    succ: dict[int, set[int]] = {i: set() for i in range(n)}
    for e in edges:
        succ[e.source].add(e.target)
    out = []
    for i in range(n):
        seen: set[int] = set()
        todo = list(succ[i])
        while todo:
            k = todo.pop()
            if k not in seen:
                seen.add(k)
                todo.extend(succ[k])
        out.append(seen)
    return out


@st.composite
def graphs(draw):
    n = draw(st.integers(1, 6))
    raw = []
    for _ in range(n):
        family = draw(st.sampled_from(["plain"] * 4 + ["batch", "join", "join"]))
        kind = draw(st.sampled_from({"plain": PLAIN, "batch": BATCH, "join": JOIN}[family]))
        retries = draw(st.integers(0, 2))
        threaded = kind in ("sync", "sgen", "batch_sync", "join_sync")
        timed = kind in ("fn", "agen", "join_fn", "batch_async") or threaded
        raw.append(
            NodeSpec(
                kind=kind,
                mul=draw(st.integers(1, 7)),
                add=draw(st.integers(0, 9)),
                fail_mod=0 if kind in BATCH else draw(st.sampled_from([0, 0, 5, 7, 11])),
                flake_mod=draw(st.sampled_from([0, 3, 4])) if retries else 0,
                fanout=draw(st.integers(0, 2)),
                concurrency=draw(st.integers(1, 3)),
                queue_size=draw(st.integers(1, 3)),
                retries=retries,
                retry_delay=draw(st.sampled_from([0.0, 0.0002])),
                rate_limit=draw(st.sampled_from([None, None, 20_000.0])),
                timeout=draw(st.sampled_from([None, 5.0])) if timed else None,
                batch_size=draw(st.integers(1, 4)),
                batch_none=draw(st.booleans()) and draw(st.booleans()),
                yields=draw(st.booleans()),
            )
        )
    edges: list[EdgeSpec] = []
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    for i, j in draw(st.lists(st.sampled_from(pairs), unique=True, max_size=7)) if pairs else []:
        mod = draw(st.sampled_from([0, 0, 2, 3]))
        boom = draw(st.sampled_from([0, 0, 0, 13]))
        edges.append(EdgeSpec(i, j, mod, draw(st.integers(0, max(mod - 1, 0))), boom=boom))
    for i, s in enumerate(raw):  # give most joins two incoming edges or more
        if s.kind in JOIN and i >= 2:
            for k in draw(st.lists(st.integers(0, i - 1), min_size=2, max_size=3, unique=True)):
                if not any(e.source == k and e.target == i for e in edges):
                    mod = draw(st.sampled_from([0, 0, 2, 3]))
                    edges.append(EdgeSpec(k, i, mod, draw(st.integers(0, max(mod - 1, 0)))))
    back = [(j, i) for i in range(n) for j in range(i, n)]  # loop edges point backwards
    for j, i in draw(st.lists(st.sampled_from(back), unique=True, max_size=2)):
        if any(e.source == j and e.target == i for e in edges):
            continue
        mod = draw(st.sampled_from([2, 3]))
        edges.append(EdgeSpec(j, i, mod, draw(st.integers(0, mod - 1)), draw(st.integers(1, 2))))
    for i in range(n - 1):  # an error edge (dead letters) to a later task
        if draw(st.integers(0, 2)) == 0:
            edges.append(EdgeSpec(i, draw(st.integers(i + 1, n - 1)), 0, 0, on_error=True))
    # a join needs two incoming edges, none of them an error edge, and may not lie on a
    # cycle; a node drawn as a join that is not one of those is a plain task
    after = reach(n, edges)
    dead_ends = {e.target for e in edges if e.on_error}
    specs = []
    for i, s in enumerate(raw):
        if s.kind in JOIN:
            incoming = sum(1 for e in edges if e.target == i)
            forward = sum(1 for e in edges if e.target == i and e.max_loops is None)
            if incoming < 2 or not forward or i in after[i] or i in dead_ends:
                s = NodeSpec(**{**s.__dict__, "kind": "fn" if s.kind == "join_fn" else "sync"})
        specs.append(s)
    inputs = draw(st.lists(st.integers(0, M - 1), max_size=12))
    return specs, edges, inputs


def build(specs: list[NodeSpec], edges: list[EdgeSpec], probe: Probe) -> DagPipeline:
    tasks = []
    for i, s in enumerate(specs):
        batch = s.kind in BATCH
        tasks.append(
            DagTask(
                f"n{i}",
                make_handler(f"n{i}", s, probe),
                concurrency=s.concurrency,
                queue_size=s.queue_size,
                inline=s.kind in ("sync_inline", "batch_inline"),
                retries=s.retries,
                retry_delay=s.retry_delay,
                retry_backoff=2.0,
                retry_max_delay=0.001,
                retry_jitter=0.5,
                rate_limit=s.rate_limit,
                timeout=s.timeout,
                batch_size=s.batch_size if batch else None,
                join=s.kind in JOIN,
            )
        )
    transitions = [
        TaskTransition(
            f"n{e.source}",
            f"n{e.target}",
            when=predicate(e),
            max_loops=e.max_loops,
            on_error=e.on_error,
        )
        for e in edges
    ]
    return DagPipeline(tasks, transitions, name="random")


def normal(path: tuple[str, ...], joins: set[str]) -> tuple[str, ...]:
    """A path from its last join on: what came before a join depends on which part came
    last, which is timing."""
    for k in range(len(path) - 1, -1, -1):
        if path[k] in joins:
            return path[k:]
    return path


class Reference:
    """The contract's rules, interpreted synchronously one input at a time."""

    def __init__(self, specs: list[NodeSpec], edges: list[EdgeSpec]) -> None:
        self.specs = specs
        n = len(specs)
        fed = {e.target for e in edges if e.max_loops is None}
        self.sources = [i for i in range(n) if i not in fed]
        self.out = {i: [e for e in edges if e.source == i and not e.on_error] for i in range(n)}
        self.dead = {e.source: e.target for e in edges if e.on_error}
        self.joins = [i for i in range(n) if specs[i].kind in JOIN]
        after = reach(n, edges)
        self.upstream = {j: {i for i in range(n) if j in after[i]} for j in self.joins}
        self.records: Counter[Any] = Counter()
        self.errors: Counter[Any] = Counter()
        self.calls: Counter[Any] = Counter()
        self.stats = {i: Counter() for i in range(n)}
        self.failed_ids: set[str] = set()  # inputs with a failure anywhere (dead letters too)

    def run(self, inputs: list[int]) -> None:
        for k, v in enumerate(inputs):
            self.one(str(k), v)

    def one(self, data_id: str, value: int) -> None:
        work = [(s, (f"n{s}",), value) for s in self.sources]
        held: dict[int, list[tuple[int, tuple[str, ...], int]]] = {}
        while True:
            while work:
                node, path, v = work.pop()
                if node in self.joins:
                    self.stats[node]["received"] += 1
                    held.setdefault(node, []).append((int(path[-2][1:]), path, v))
                else:
                    self.step(node, path, v, data_id, work)
            ready = [j for j in held if not any(k in held for k in self.upstream[j])]
            if not ready:
                assert not held
                return
            self.fire(ready[0], held.pop(ready[0]), data_id, work)

    def fire(self, j: int, parts, data_id: str, work) -> None:
        seen: set[int] = set()
        for source, _, _ in parts:
            if source in seen:  # a second part from one source fails the data_id
                self.failure(j, (f"n{j}",), 0, data_id, "ValueError", work)
                return
            seen.add(source)
        got = {f"n{s}": v for s, _, v in parts}
        self.calls[(f"n{j}", data_id, tuple(sorted(got.items())))] += 1
        self.step(j, (f"n{j}",), sum(got.values()) % M, data_id, work, counted=True)

    def failure(self, node: int, path, payload: int, data_id: str, kind: str, work) -> None:
        self.failed_ids.add(data_id)
        self.stats[node]["failed"] += 1
        target = self.dead.get(node)
        if target is None:
            self.errors[(f"n{node}", data_id, kind)] += 1
        else:
            work.append((target, (*path, f"n{target}"), (payload + 31) % M))

    def step(self, node: int, path, x: int, data_id: str, work, counted=False) -> None:
        spec = self.specs[node]
        stats = self.stats[node]
        if not counted:
            stats["received"] += 1
        outs, fails = outputs_of(spec, x)
        if fails and not outs:
            stats["retried"] += spec.retries
        elif flakes(spec, x):
            stats["retried"] += 1
        stats["emitted"] += len(outs)
        if fails:
            self.failure(node, path, x, data_id, "Planned", work)
        elif not outs and (spec.kind in GENERATORS or spec.kind in BATCH):
            stats["filtered"] += 1
        for out in outs:
            if not self.out[node]:  # a sink (an error edge is no outgoing edge)
                self.records[(data_id, f"n{node}", out, path)] += 1
                continue
            chosen, failed = [], None
            for e in self.out[node]:  # in edge order: the first failure stops routing
                if e.boom and out % e.boom == 0:
                    failed = "Boom"
                    break
                if not holds(e, out):
                    continue
                taken = sum(
                    1
                    for a, b in itertools.pairwise(path)
                    if (a, b) == (f"n{e.source}", f"n{e.target}")
                )
                if e.max_loops is not None and taken >= e.max_loops:
                    failed = "LoopLimitExceeded"
                    break
                chosen.append(e)
            if failed is not None:  # the output went down no edge: the node failed it
                stats["emitted"] -= 1
                self.failure(node, path, out, data_id, failed, work)
            elif not chosen:
                stats["unrouted"] += 1
            else:
                for e in chosen:
                    work.append((e.target, (*path, f"n{e.target}"), out))


def check(specs: list[NodeSpec], edges: list[EdgeSpec], inputs: list[int]) -> None:
    probe = Probe()
    pipeline = build(specs, edges, probe)
    run = Run(pipeline, RunOptions.check(inputs, on_error="collect"))

    async def main():
        return await asyncio.wait_for(run.collect(), 30)

    result = asyncio.run(main(), debug=False)
    ref = Reference(specs, edges)
    ref.run(inputs)
    joins = {f"n{j}" for j in ref.joins}
    got = Counter(
        (r.ctx.data_id, r.node, r.value, normal(r.ctx.path, joins)) for r in result.records
    )
    want = Counter({(d, n, v, normal(p, joins)): c for (d, n, v, p), c in ref.records.items()})
    assert got == want
    errors = Counter((e.node, e.ctx.data_id, type(e.exception).__name__) for e in result.errors)
    assert errors == ref.errors
    for e in result.errors:
        assert isinstance(e.exception, Planned | LoopLimitExceeded | ValueError | Boom)
    assert probe.joins == ref.calls
    for i, spec in enumerate(specs):
        s = result.stats.nodes[f"n{i}"]
        keys = ["received", "emitted", "failed", "unrouted", "filtered"]
        if spec.kind not in BATCH:  # which payloads share a batch, and so retry, is timing
            keys.append("retried")
        assert {k: getattr(s, k) for k in keys} == {k: ref.stats[i][k] for k in keys}, f"n{i}"
        assert s.in_flight == 0 and s.queue_depth == 0 and s.abandoned == 0
        assert probe.peak[f"n{i}"] <= spec.concurrency, f"n{i} ran too many calls at once"
    assert result.stats.inputs == len(inputs)
    # the books: nothing tracked, parked, active or held once the run is over
    assert run.tracker is None or len(run.tracker) == 0
    assert run.parked == 0 and run.active == 0
    assert all(len(j) == 0 for j in run.joiners)
    assert all(not b.open for b in run.batchers)


@pytest.mark.timeout(240)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(graphs())
def test_random_dags_with_every_feature_match_the_reference(graph):
    """Random DAGs with every feature match the reference interpreter and end with empty books."""
    check(*graph)


def test_a_join_fed_only_by_loop_edges_is_refused():
    """A join reached only by loop edges would be a source: the definition refuses it."""
    from async_dag import PipelineDefinitionError

    async def f(ctx, v):
        return v

    tasks = [DagTask("j", f, join=True), DagTask("a", f), DagTask("b", f)]
    edges = [TaskTransition("a", "j", max_loops=1), TaskTransition("b", "j", max_loops=1)]
    with pytest.raises(PipelineDefinitionError, match="'j' is fed only by loop edges"):
        DagPipeline(tasks, edges)


# -- timeouts that expire --------------------------------------------------------------

# long enough that a call that does not sleep never reaches it, even on a busy machine
TIMEOUT = 0.25


@st.composite
def slow_chains(draw):
    kinds = draw(st.lists(st.sampled_from(["fn", "agen", "sync", "sgen"]), min_size=1, max_size=3))
    slow = [draw(st.sampled_from([0, 2, 3])) for _ in kinds]
    inputs = draw(st.lists(st.integers(0, M - 1), max_size=6))
    return kinds, slow, inputs


def slow_handler(kind: str, slow_mod: int):
    def late(ctx, x) -> bool:
        return ctx.attempt == 0 and slow_mod > 0 and x % slow_mod == 0

    if kind == "fn":

        async def fn(ctx, v):
            if late(ctx, v):
                await asyncio.sleep(30)
            return (v + 1) % M

        return fn
    if kind == "agen":

        async def agen(ctx, v):
            if late(ctx, v):
                await asyncio.sleep(30)
            yield (v + 1) % M

        return agen
    if kind == "sync":

        def sync(ctx, v):
            if late(ctx, v):
                time.sleep(3 * TIMEOUT)
            return (v + 1) % M

        return sync

    def sgen(ctx, v):
        if late(ctx, v):
            time.sleep(3 * TIMEOUT)
        yield (v + 1) % M

    return sgen


@pytest.mark.timeout(120)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(slow_chains())
def test_timed_out_first_attempts_are_retried_and_nothing_else_fails(chain):
    """A call past its timeout fails only its own attempt; the retry delivers every item."""
    kinds, slow, inputs = chain
    tasks = [
        DagTask(f"n{i}", slow_handler(k, s), concurrency=2, timeout=TIMEOUT, retries=1)
        for i, (k, s) in enumerate(zip(kinds, slow, strict=True))
    ]
    edges = [TaskTransition(f"n{i}", f"n{i + 1}") for i in range(len(kinds) - 1)]
    pipeline = DagPipeline(tasks, edges)

    async def main():
        return await asyncio.wait_for(pipeline.run_stream(inputs, on_error="collect"), 60)

    result = asyncio.run(main(), debug=False)
    assert not result.errors
    values = list(inputs)
    for i, s in enumerate(slow):
        stats = result.stats.nodes[f"n{i}"]
        want = sum(1 for v in values if s and v % s == 0)
        assert stats.retried == want and stats.failed == 0
        if kinds[i] in ("sync", "sgen"):
            assert stats.abandoned == want
        values = [(v + 1) % M for v in values]
    assert sorted(result) == sorted(values)


# -- the same graphs under on_error="raise" ----------------------------------------------


@pytest.mark.timeout(120)
@settings(max_examples=EXAMPLES // 5, deadline=None, suppress_health_check=list(HealthCheck))
@given(graphs())
def test_random_dags_under_raise_stop_with_a_failure_or_match_the_reference(graph):
    """Under on_error="raise" a random DAG raises a planned failure exactly when the
    reference has an error nobody handled, else returns the reference's records; either
    way no task of the run is left."""
    specs, edges, inputs = graph
    probe = Probe()
    pipeline = build(specs, edges, probe)
    ref = Reference(specs, edges)
    ref.run(inputs)

    async def main():
        try:
            return await asyncio.wait_for(pipeline.run_stream(inputs), 30)
        finally:
            left = [t for t in asyncio.all_tasks() if t.get_name().startswith("async_dag")]
            assert left == []

    if ref.errors:
        with pytest.raises((Planned, LoopLimitExceeded, ValueError, Boom)) as caught:
            asyncio.run(main(), debug=False)
        assert any("async_dag: in node" in n for n in caught.value.__notes__)
    else:
        result = asyncio.run(main(), debug=False)
        assert len(result) == sum(ref.records.values())


# -- function pipelines -------------------------------------------------------------------


@st.composite
def function_runs(draw):
    spec = NodeSpec(
        kind=draw(st.sampled_from(["fn", "agen"])),
        mul=draw(st.integers(1, 7)),
        add=draw(st.integers(0, 9)),
        fail_mod=draw(st.sampled_from([0, 0, 5, 7])),
        flake_mod=draw(st.sampled_from([0, 3])),
        fanout=draw(st.integers(0, 2)),
        concurrency=draw(st.integers(1, 4)),
        queue_size=1,
        retries=1,
        retry_delay=draw(st.sampled_from([0.0, 0.0002])),
        rate_limit=draw(st.sampled_from([None, 20_000.0])),
        timeout=draw(st.sampled_from([None, 5.0])),
        batch_size=1,
        batch_none=False,
        yields=draw(st.booleans()),
    )
    inputs = draw(st.lists(st.integers(0, M - 1), max_size=15))
    return spec, inputs, draw(st.booleans())


@pytest.mark.timeout(120)
@settings(max_examples=EXAMPLES // 5, deadline=None, suppress_health_check=list(HealthCheck))
@given(function_runs())
def test_random_function_pipelines_match_the_reference(run):
    """A function pipeline with retries, rate limit, timeout and failures gives exactly the
    reference's outputs (in input order when ordered) and errors, through both forms."""
    from async_dag import iter_function_pipeline, run_function_pipeline

    spec, inputs, ordered = run
    probe = Probe()
    fn = make_handler("f", spec, probe)
    options = {
        "concurrency": spec.concurrency,
        "ordered": ordered,
        "retries": spec.retries,
        "retry_delay": spec.retry_delay,
        "rate_limit": spec.rate_limit,
        "timeout": spec.timeout,
        "on_error": "collect",
    }
    want = [(str(k), o) for k, v in enumerate(inputs) for o in outputs_of(spec, v)[0]]
    failed = sorted(str(k) for k, v in enumerate(inputs) if outputs_of(spec, v)[1])

    async def main():
        result = await run_function_pipeline(inputs, fn, **options)
        streamed = [(c.data_id, v) async for c, v in iter_function_pipeline(inputs, fn, **options)]
        return result, streamed

    result, streamed = asyncio.run(main(), debug=False)
    got = [(r.ctx.data_id, r.value) for r in result.records]
    if ordered:
        assert got == want
    else:
        assert sorted(got) == sorted(want)
    assert sorted(got) == sorted(streamed)
    assert sorted(e.ctx.data_id for e in result.errors) == failed
    assert probe.peak["f"] <= spec.concurrency


# -- the same graphs, cancelled at random points ----------------------------------------


class _Finishes:
    """A monitor that counts finish calls (a plain Monitor subclass, made lazily)."""

    @staticmethod
    def make():
        from async_dag import Monitor

        class Finishes(Monitor):
            interval = 0.001

            def __init__(self) -> None:
                self.finished: list[BaseException | None] = []

            def finish(self, stats, error):
                self.finished.append(error)

        return Finishes()


@pytest.mark.timeout(120)
@settings(max_examples=EXAMPLES // 10, deadline=None, suppress_health_check=list(HealthCheck))
@given(graphs(), st.floats(0.0, 0.004), st.booleans())
def test_random_dags_cancelled_at_random_points_leave_nothing(graph, delay, twice):
    """A random DAG cancelled at a random moment (once or twice) ends cancelled, its
    monitor finished once, with no task of it left and its queues shown empty."""
    specs, edges, inputs = graph
    pipeline = build(specs, edges, Probe())
    monitor = _Finishes.make()
    run = Run(pipeline, RunOptions.check(inputs * 20, on_error="collect", monitor=monitor))

    async def main():
        task = asyncio.ensure_future(run.collect())
        await asyncio.sleep(delay)
        task.cancel()
        if twice:
            await asyncio.sleep(0)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), 30)
        for _ in range(3):
            await asyncio.sleep(0)
        return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("async_dag")]

    left = asyncio.run(main(), debug=False)
    assert left == []
    assert len(monitor.finished) == 1
    deadline = time.monotonic() + 2.0  # a cancelled threaded call ends on its own, soon
    while time.monotonic() < deadline and any(
        t.name.startswith("async_dag") for t in threading.enumerate()
    ):
        time.sleep(0.001)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("async_dag")]
    stats = run.snapshot()
    assert stats.state in ("cancelled", "done")
    for s in stats.nodes.values():
        assert s.in_flight == 0 and s.queue_depth == 0


# -- the same graphs with a checkpoint ----------------------------------------------------


@pytest.mark.timeout(120)
@settings(max_examples=EXAMPLES // 10, deadline=None, suppress_health_check=list(HealthCheck))
@given(graphs())
def test_random_dags_checkpoint_exactly_the_inputs_that_succeeded(tmp_path_factory, graph):
    """With a checkpoint, a random DAG records exactly the inputs with no failure
    anywhere (a dead letter is a failure), and a rerun skips just those and redoes the
    others with the same outcome."""
    import sqlite3

    specs, edges, inputs = graph
    path = tmp_path_factory.mktemp("ckpt") / "ckpt.db"
    ref = Reference(specs, edges)
    ref.run(inputs)
    done = {str(k) for k in range(len(inputs))} - ref.failed_ids
    joins = {f"n{j}" for j in ref.joins}

    async def main():
        pipeline = build(specs, edges, Probe())
        first = await asyncio.wait_for(
            pipeline.run_stream(inputs, on_error="collect", checkpoint=path), 30
        )
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            recorded = {d for (d,) in db.execute("SELECT data_id FROM async_dag_checkpoint")}
        again = await asyncio.wait_for(
            pipeline.run_stream(inputs, on_error="collect", checkpoint=path), 30
        )
        return first, recorded, again

    first, recorded, again = asyncio.run(main(), debug=False)
    assert recorded == done
    assert again.stats.skipped == len(done)
    got = Counter(
        (r.ctx.data_id, r.node, r.value, normal(r.ctx.path, joins)) for r in again.records
    )
    want = Counter(
        {(d, n, v, normal(p, joins)): c for (d, n, v, p), c in ref.records.items() if d not in done}
    )
    assert got == want
    assert len(first.errors) == sum(ref.errors.values())
