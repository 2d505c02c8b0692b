"""The notebook layer: live widget monitor, graph drawing, DataFrames.

Example::

    from async_dag.notebook import PipelineMonitor

    monitor = PipelineMonitor()
    monitor                                   # shows the panel in this cell
    results = await pipeline.run_stream(items, monitor=monitor)   # in another cell

Importing this package loads nothing heavy: ipywidgets, graphviz and pandas load when a
helper that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .frames import errors_frame as errors_frame
    from .frames import records_frame as records_frame
    from .graph import to_graphviz as to_graphviz
    from .graph import to_mermaid as to_mermaid
    from .monitor import PipelineMonitor as PipelineMonitor

# public name -> the submodule that defines it
_LAZY = {
    "PipelineMonitor": "monitor",
    "errors_frame": "frames",
    "records_frame": "frames",
    "to_graphviz": "graph",
    "to_mermaid": "graph",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
