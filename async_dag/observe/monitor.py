"""The observer interface every live display implements.

A run never calls a monitor per item. One sampler task per run takes a
:class:`~async_dag.core.results.RunStats` snapshot every ``interval`` seconds and calls
``update`` only when a counter changed; ``start`` comes before the first input and
``finish`` after the last output, also when the run fails or is cancelled. Batched runs
in workers (``run_*_in_subprocess``) are shown from the calling process instead, with
one ``update`` per finished batch.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from ..core.results import RunStats

log = logging.getLogger("async_dag")


class Monitor:
    """Base class of live displays: hooks that do nothing; subclasses pick what to show."""

    #: seconds between two samples (at most about 10 a second is kind to a frontend)
    interval: float = 0.1

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
        log.warning("monitor %s failed; the run goes on", hook.__qualname__, exc_info=True)


def in_kernel() -> bool:
    """Whether this code runs inside a Jupyter kernel (checked without importing IPython)."""
    ipython_mod = sys.modules.get("IPython")
    if ipython_mod is None or "ipykernel" not in sys.modules:
        return False
    get_ipython = getattr(ipython_mod, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def resolve_monitor(spec: Any) -> Monitor | None:
    """Turn a run's ``monitor=`` argument into a Monitor, or None for no monitor.

    ``None``/``False``: none. ``True``: a widget panel inside a Jupyter kernel, a terminal
    display elsewhere. A :class:`Monitor` instance (a ``PipelineMonitor`` included) is
    used as it is.
    """
    if spec is None or spec is False:
        return None
    if spec is True:
        if in_kernel():
            try:
                from ..notebook.monitor import PipelineMonitor

                return PipelineMonitor(display_on_start=True)
            except ModuleNotFoundError as exc:
                raise ImportError(
                    f"monitor=True in Jupyter shows an ipywidgets panel, but {exc.name!r} "
                    "is not installed: pip install 'async-dag[notebook]'"
                ) from exc
        from .terminal import TerminalMonitor

        return TerminalMonitor()
    if isinstance(spec, Monitor):
        return spec
    raise TypeError(
        f"monitor must be None, True, False or a Monitor (such as PipelineMonitor()), got {spec!r}"
    )
