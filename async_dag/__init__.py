"""async_dag: asyncio-first streaming pipelines.

Write a pipeline as one async function (``run_function_pipeline``) or as a graph of
tasks (``PipelineBuilder``); both stream through bounded queues, so memory stays flat
however long the input. Importing this package loads only the standard library: the
notebook helpers (widgets, graphs, DataFrames) load on first use.
"""

import logging
import typing

from .core.background import PipelineRun as PipelineRun
from .core.checkpoint import Checkpoint as Checkpoint
from .core.context import PipelineContext as PipelineContext
from .core.definition import DagPipeline as DagPipeline
from .core.definition import DagTask as DagTask
from .core.definition import PipelineBuilder as PipelineBuilder
from .core.definition import TaskTransition as TaskTransition
from .core.errors import CheckpointError as CheckpointError
from .core.errors import ItemError as ItemError
from .core.errors import LoopLimitExceeded as LoopLimitExceeded
from .core.errors import PipelineDefinitionError as PipelineDefinitionError
from .core.errors import RetryAfter as RetryAfter
from .core.errors import ShippingError as ShippingError
from .core.errors import WorkerDied as WorkerDied
from .core.function import iter_function_pipeline as iter_function_pipeline
from .core.function import run_function_pipeline as run_function_pipeline
from .core.function import start_function_pipeline as start_function_pipeline
from .core.observer import Monitor as Monitor
from .core.ratelimit import RateLimit as RateLimit
from .core.results import NodeStats as NodeStats
from .core.results import Record as Record
from .core.results import RunResult as RunResult
from .core.results import RunStats as RunStats
from .execution.processes import (
    arun_function_pipeline_in_subprocess as arun_function_pipeline_in_subprocess,
)
from .execution.processes import arun_pipeline_in_subprocess as arun_pipeline_in_subprocess
from .execution.processes import (
    run_function_pipeline_in_subprocess as run_function_pipeline_in_subprocess,
)
from .execution.processes import run_pipeline_in_subprocess as run_pipeline_in_subprocess
from .observe.logs import log_with_context as log_with_context
from .observe.logs import setup_logging as setup_logging

if typing.TYPE_CHECKING:
    from .notebook.monitor import PipelineMonitor as PipelineMonitor

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "DagPipeline",
    "DagTask",
    "ItemError",
    "LoopLimitExceeded",
    "Monitor",
    "NodeStats",
    "PipelineBuilder",
    "PipelineContext",
    "PipelineDefinitionError",
    "PipelineMonitor",
    "PipelineRun",
    "RateLimit",
    "Record",
    "RetryAfter",
    "RunResult",
    "RunStats",
    "ShippingError",
    "TaskTransition",
    "WorkerDied",
    "arun_function_pipeline_in_subprocess",
    "arun_pipeline_in_subprocess",
    "iter_function_pipeline",
    "log_with_context",
    "run_function_pipeline",
    "run_function_pipeline_in_subprocess",
    "run_pipeline_in_subprocess",
    "setup_logging",
    "start_function_pipeline",
]

__version__ = "0.1.0"

# A library logs, the application decides where to: without setup_logging() (or the
# application's own configuration) nothing is printed.
logging.getLogger("async_dag").addHandler(logging.NullHandler())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str) -> object:
    # The notebook layer loads on first use, so `import async_dag` stays light.
    if name == "PipelineMonitor":
        from .notebook.monitor import PipelineMonitor

        return PipelineMonitor
    raise AttributeError(f"module 'async_dag' has no attribute {name!r}")
