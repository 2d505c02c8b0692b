"""Choosing a live display: what ``monitor=`` means, decided outside the engine.

The observer interface itself (``Monitor``, ``notify``) lives in the engine
(:mod:`async_dag.core.observer`) and is re-exported here. Batched runs in workers
(``run_*_in_subprocess``) are shown from the calling process instead, with one
``update`` per finished batch.
"""

from __future__ import annotations

import sys
from typing import Any

from ..core.observer import Monitor as Monitor
from ..core.observer import notify as notify


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
    display on stderr elsewhere (drawn on a terminal; off one, a line every 10 s and a
    summary). A :class:`Monitor` instance (a ``PipelineMonitor`` included) is
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
