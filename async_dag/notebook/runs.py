"""A background run left last in a notebook cell shows its live monitor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .monitor import PipelineMonitor, current_cell

if TYPE_CHECKING:
    from ..core.run import Run


def run_monitor(run: Run) -> PipelineMonitor:
    """The run's widget monitor: the ``monitor=`` one, else a new one fed from now on
    (a run that has ended shows its final state)."""
    for monitor in run.monitors:
        if isinstance(monitor, PipelineMonitor):
            return monitor
    monitor = PipelineMonitor()
    run.add_monitor(monitor)
    return monitor


def display_run(run: Run) -> None:
    """Display the run's monitor in the current cell (under its own display id).

    A run started in this same cell has not begun yet: the panel then starts from the
    run's counters now (its name, graph and zeros) instead of an empty "idle" one.
    """
    monitor = run_monitor(run)
    if monitor.shown_in is not None and monitor.shown_in == current_cell():
        return  # monitor=True showed it in this very cell already
    if monitor.stats is None:
        on_start, monitor.display_on_start = monitor.display_on_start, False
        try:  # shown just below, once (monitor=True would show it at start too)
            monitor.attach(run.pipeline, run.cancel)
            monitor.start(run.snapshot())
        finally:
            monitor.display_on_start = on_start
    monitor._ipython_display_()
