"""How a run drives a monitor: hooks in order, only on change, and never to its harm."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from async_dag import Monitor, PipelineBuilder, RunStats
from async_dag.observe import monitor as monitor_module


class Recorder(Monitor):
    interval = 0.01

    def __init__(self) -> None:
        self.calls: list[tuple[str, RunStats, BaseException | None]] = []

    def start(self, stats):
        self.calls.append(("start", stats, None))

    def update(self, stats):
        self.calls.append(("update", stats, None))

    def finish(self, stats, error):
        self.calls.append(("finish", stats, error))


async def slow(ctx, x):
    await asyncio.sleep(0.005)
    return x


async def test_hooks_come_in_order_with_final_numbers():
    """start first, updates only with changed counters, finish last with the final stats."""
    rec = Recorder()
    p = PipelineBuilder("watched").add_task("s", slow).build()
    result = await p.run_stream(range(20), monitor=rec)
    kinds = [c[0] for c in rec.calls]
    assert kinds[0] == "start" and kinds[-1] == "finish" and "update" in kinds
    assert rec.calls[0][1].inputs == 0 and rec.calls[0][1].nodes["s"].received == 0
    final = rec.calls[-1][1]
    assert final.done and final.nodes["s"].emitted == 20 == result.stats.nodes["s"].emitted
    updates = [c[1] for c in rec.calls if c[0] == "update"]
    keys = [(u.inputs, u.outputs, u.nodes["s"].received, u.nodes["s"].in_flight) for u in updates]
    assert len(set(keys)) == len(keys)  # never the same counters twice in a row


async def test_finish_reports_the_error_or_cancellation():
    """finish gets the run's exception, or the CancelledError of an interrupt."""

    async def boom(ctx, x):
        raise KeyError(x)

    rec = Recorder()
    p = PipelineBuilder().add_task("b", boom).build()
    with pytest.raises(KeyError):
        await p.run_stream([1], monitor=rec)
    assert isinstance(rec.calls[-1][2], KeyError)

    rec2 = Recorder()
    running = asyncio.Event()

    async def first_sets(ctx, x):
        running.set()
        return await slow(ctx, x)

    task = asyncio.ensure_future(
        PipelineBuilder().add_task("s", first_sets).build().run_stream(range(10**6), monitor=rec2)
    )
    await running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert isinstance(rec2.calls[-1][2], asyncio.CancelledError)


class Broken(Recorder):
    def update(self, stats):
        raise RuntimeError("display broke")

    def finish(self, stats, error):
        raise RuntimeError("display broke at the end")


async def test_a_broken_monitor_never_breaks_the_run(caplog):
    """Exceptions from monitor hooks are logged; the run's result is untouched."""
    p = PipelineBuilder().add_task("s", slow).build()
    with caplog.at_level(logging.WARNING, logger="async_dag"):
        result = await p.run_stream(range(20), monitor=Broken())
    assert list(result) == list(range(20))
    assert any("monitor" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)


def test_monitor_true_in_a_kernel_without_ipywidgets_says_what_to_install(monkeypatch):
    """In a kernel with no ipywidgets, monitor=True raises ImportError naming the extra."""
    monkeypatch.setattr(monitor_module, "in_kernel", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets now fails
    monkeypatch.delitem(sys.modules, "async_dag.notebook.monitor", raising=False)
    with pytest.raises(ImportError, match=r"async-dag\[notebook\]"):
        monitor_module.resolve_monitor(True)


def test_monitor_true_outside_a_kernel_is_the_terminal_display():
    """Outside Jupyter, monitor=True gives the terminal display."""
    from async_dag.observe.terminal import TerminalMonitor

    assert isinstance(monitor_module.resolve_monitor(True), TerminalMonitor)
    assert monitor_module.resolve_monitor(False) is None
