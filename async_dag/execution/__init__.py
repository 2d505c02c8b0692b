"""Execution across processes and clusters: batches shipped to any Executor.

``run_*_in_subprocess`` block the calling thread; ``arun_*_in_subprocess`` are their
awaitable forms, stopped (worker processes ended) when cancelled. ``monitor=`` on these
calls shows batch-level progress: workers run without a monitor, and the calling process
updates the view as batches finish (``progress``).
"""

from .pool import WorkerDied as WorkerDied
from .processes import (
    arun_function_pipeline_in_subprocess as arun_function_pipeline_in_subprocess,
)
from .processes import arun_pipeline_in_subprocess as arun_pipeline_in_subprocess
from .processes import (
    run_function_pipeline_in_subprocess as run_function_pipeline_in_subprocess,
)
from .processes import run_pipeline_in_subprocess as run_pipeline_in_subprocess
from .shipping import ShippingError as ShippingError

__all__ = [
    "ShippingError",
    "WorkerDied",
    "arun_function_pipeline_in_subprocess",
    "arun_pipeline_in_subprocess",
    "run_function_pipeline_in_subprocess",
    "run_pipeline_in_subprocess",
]
