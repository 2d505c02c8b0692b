"""The observer interface every live display implements, and the one way to call it.

A run never calls a monitor per item. One sampler task per run takes a
:class:`~async_dag.core.results.RunStats` snapshot every ``interval`` seconds and calls
``update`` only when a counter changed; ``start`` comes before the first input and
``finish`` exactly once after the last output, also when the run fails or is cancelled.
Which display ``monitor=True`` means (widget or terminal) is decided outside the engine,
in :mod:`async_dag.observe.monitor`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .results import RunStats

if TYPE_CHECKING:
    from .definition import DagPipeline

log = logging.getLogger("async_dag")


class Monitor:
    """Base class of live displays: hooks that do nothing; subclasses pick what to show.

    Example::

        class Printer(Monitor):
            interval = 1.0

            def update(self, stats):
                print(stats.inputs, "in", stats.outputs, "out")
    """

    #: seconds between two samples (at most about 10 a second is kind to a frontend)
    interval: float = 0.1

    def attach(self, pipeline: DagPipeline | None, cancel: Callable[[], None] | None) -> None:
        """Called once before ``start``: the pipeline being run (a function pipeline is
        a one-node graph; None when unknown) and a function that cancels just this run
        (for a stop button; None when the run cannot be cancelled from here). The
        default ignores both."""

    def start(self, stats: RunStats) -> None:
        """A run begins; ``stats`` lists its nodes with zero counters."""

    def update(self, stats: RunStats) -> None:
        """Counters changed since the last call."""

    def finish(self, stats: RunStats, error: BaseException | None) -> None:
        """The run ended, normally (``error`` is None), by an exception or by cancellation."""


def notify(hook: Any, *args: Any) -> None:
    """Call a monitor hook; a broken display is logged, never the run's problem."""
    try:
        hook(*args)
    except Exception:
        log.warning(
            "monitor %s failed; the run goes on",
            getattr(hook, "__qualname__", hook),
            exc_info=True,
        )
