"""Property tests: random DAGs terminate, and every payload is accounted for.

Each random pipeline is also run through a small synchronous reference interpreter of
the contract's routing rules; the engine must produce the same records, errors and
per-node counters, whatever the scheduling, queue sizes and concurrency.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from async_dag import DagPipeline, DagTask, LoopLimitExceeded, TaskTransition


class Planned(Exception):
    """The failure a node spec asks for."""


@dataclass(frozen=True)
class NodeSpec:
    kind: str  # "fn", "agen", "sync", "sync_inline", "sgen"
    mul: int
    add: int
    fail_mod: int  # fail when value % fail_mod == 0 (0: never)
    fanout: int  # outputs of a generator per payload: value % (fanout + 1)
    concurrency: int
    queue_size: int
    yields: bool  # sleep(0) inside async handlers, to shuffle scheduling


def outputs_of(spec: NodeSpec, value: int) -> tuple[list[int], bool]:
    """The reference behaviour: (outputs produced, whether the call then failed)."""
    fails = spec.fail_mod > 0 and value % spec.fail_mod == 0
    base = (value * spec.mul + spec.add) % 97
    if spec.kind in ("fn", "sync", "sync_inline"):
        return ([], True) if fails else ([base], False)
    outs = [(base + i) % 97 for i in range(value % (spec.fanout + 1))]
    # a failing generator fails after its first output (or before any, if it has none)
    return (outs[:1], True) if fails else (outs, False)


def make_handler(spec: NodeSpec):
    if spec.kind == "fn":

        async def fn(ctx, v):
            if spec.yields:
                await asyncio.sleep(0)
            outs, fails = outputs_of(spec, v)
            if fails:
                raise Planned(v)
            return outs[0]

        return fn
    if spec.kind in ("sync", "sync_inline"):

        def sync(ctx, v):
            outs, fails = outputs_of(spec, v)
            if fails:
                raise Planned(v)
            return outs[0]

        return sync
    if spec.kind == "agen":

        async def agen(ctx, v):
            outs, fails = outputs_of(spec, v)
            for o in outs:
                if spec.yields:
                    await asyncio.sleep(0)
                yield o
            if fails:
                raise Planned(v)

        return agen

    def sgen(ctx, v):
        outs, fails = outputs_of(spec, v)
        yield from outs
        if fails:
            raise Planned(v)

    return sgen


@dataclass(frozen=True)
class EdgeSpec:
    source: int
    target: int
    mod: int  # predicate: value % mod != rem (mod 0: always)
    rem: int
    max_loops: int | None


def holds(edge: EdgeSpec, value: int) -> bool:
    return edge.mod == 0 or value % edge.mod != edge.rem


@st.composite
def graphs(draw):
    n = draw(st.integers(1, 5))
    specs = [
        NodeSpec(
            kind=draw(st.sampled_from(["fn", "agen", "sync", "sync_inline", "sgen"])),
            mul=draw(st.integers(1, 7)),
            add=draw(st.integers(0, 9)),
            fail_mod=draw(st.sampled_from([0, 0, 5, 7, 11])),
            fanout=draw(st.integers(0, 2)),
            concurrency=draw(st.integers(1, 3)),
            queue_size=draw(st.integers(1, 3)),
            yields=draw(st.booleans()),
        )
        for _ in range(n)
    ]
    edges = []
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    for i, j in draw(st.lists(st.sampled_from(pairs), unique=True, max_size=6)) if pairs else []:
        mod = draw(st.sampled_from([0, 2, 3]))
        edges.append(EdgeSpec(i, j, mod, draw(st.integers(0, max(mod - 1, 0))), None))
    back = [(j, i) for i in range(n) for j in range(i, n)]  # loop edges point backwards
    for j, i in draw(st.lists(st.sampled_from(back), unique=True, max_size=2)):
        if any(e.source == j and e.target == i for e in edges):
            continue
        mod = draw(st.sampled_from([2, 3]))
        edges.append(EdgeSpec(j, i, mod, draw(st.integers(0, mod - 1)), draw(st.integers(1, 3))))
    inputs = draw(st.lists(st.integers(0, 50), max_size=25))
    return specs, edges, inputs


def build(specs, edges) -> DagPipeline:
    tasks = [
        DagTask(
            f"n{i}",
            make_handler(s),
            concurrency=s.concurrency,
            queue_size=s.queue_size,
            inline=s.kind == "sync_inline",
        )
        for i, s in enumerate(specs)
    ]
    transitions = [
        TaskTransition(
            f"n{e.source}",
            f"n{e.target}",
            when=None if e.mod == 0 else (lambda ctx, v, e=e: holds(e, v)),
            max_loops=e.max_loops,
        )
        for e in edges
    ]
    return DagPipeline(tasks, transitions, name="random")


def reference(specs, edges, inputs):
    """Interpret the contract's rules synchronously: records, errors, counters."""
    fed = {e.target for e in edges if e.max_loops is None}
    sources = [i for i in range(len(specs)) if i not in fed]
    out_edges = {i: [e for e in edges if e.source == i] for i in range(len(specs))}
    records, errors = Counter(), Counter()
    stats = {i: Counter() for i in range(len(specs))}
    work = [(s, (f"n{s}",), v, str(k)) for k, v in enumerate(inputs) for s in sources]
    while work:
        node, path, value, data_id = work.pop()
        st_ = stats[node]
        st_["received"] += 1
        outs, fails = outputs_of(specs[node], value)
        st_["emitted"] += len(outs)
        if fails:
            st_["failed"] += 1
            errors[(f"n{node}", data_id, "Planned")] += 1
        elif not outs and specs[node].kind in ("agen", "sgen"):
            st_["filtered"] += 1
        for out in outs:
            if not out_edges[node]:
                records[(data_id, f"n{node}", out, path)] += 1
                continue
            chosen = [e for e in out_edges[node] if holds(e, out)]
            exhausted = [
                e
                for e in chosen
                if e.max_loops is not None
                and sum(
                    1
                    for a, b in itertools.pairwise(path)
                    if (a, b) == (f"n{e.source}", f"n{e.target}")
                )
                >= e.max_loops
            ]
            if exhausted:  # the output never went on: counted once, as a failure
                st_["failed"] += 1
                st_["emitted"] -= 1
                errors[(f"n{node}", data_id, "LoopLimitExceeded")] += 1
            elif not chosen:
                st_["unrouted"] += 1
            else:
                for e in chosen:
                    work.append((e.target, (*path, f"n{e.target}"), out, data_id))
    return records, errors, stats


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_random_dags_terminate_and_balance_the_books(graph):
    """Every payload ends as an output passed on, a sink output, unrouted, filtered or an error."""
    specs, edges, inputs = graph
    pipeline = build(specs, edges)
    result = asyncio.run(asyncio.wait_for(pipeline.run_stream(inputs, on_error="collect"), 30))
    want_records, want_errors, want_stats = reference(specs, edges, inputs)
    got_records = Counter((r.ctx.data_id, r.node, r.value, r.ctx.path) for r in result.records)
    assert got_records == want_records
    got_errors = Counter((e.node, e.ctx.data_id, type(e.exception).__name__) for e in result.errors)
    assert got_errors == want_errors
    for e in result.errors:
        assert isinstance(e.exception, Planned | LoopLimitExceeded)
    for i in range(len(specs)):
        s = result.stats.nodes[f"n{i}"]
        want = want_stats[i]
        got = {k: getattr(s, k) for k in ("received", "emitted", "failed", "unrouted", "filtered")}
        assert got == {k: want[k] for k in got}, f"node n{i}"
        assert s.in_flight == 0 and s.queue_depth == 0
        assert s.max_queue_depth <= s.queue_size or any(
            e.target == i and e.max_loops for e in edges
        )
    assert result.stats.inputs == len(inputs)
