"""The public face: the export list, and an import that stays light."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import async_dag

CONTRACT = {
    "DagPipeline",
    "DagTask",
    "ItemError",
    "LoopLimitExceeded",
    "PipelineBuilder",
    "PipelineContext",
    "PipelineDefinitionError",
    "PipelineMonitor",
    "RunResult",
    "TaskTransition",
    "Checkpoint",
    "Monitor",
    "PipelineRun",
    "RateLimit",
    "RetryAfter",
    "ShippingError",
    "WorkerDied",
    "CheckpointError",
    "arun_function_pipeline_in_subprocess",
    "arun_pipeline_in_subprocess",
    "start_function_pipeline",
    "iter_function_pipeline",
    "log_with_context",
    "run_function_pipeline",
    "run_function_pipeline_in_subprocess",
    "run_pipeline_in_subprocess",
    "setup_logging",
}


def test_all_is_exactly_the_public_names():
    """__all__ lists every public name of the package and nothing else; dir() adds the lazy ones."""
    public = {
        name
        for name, value in vars(async_dag).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(async_dag.__all__) == public | {"PipelineMonitor"}
    assert set(async_dag.__all__) <= set(dir(async_dag))


def test_all_is_sorted_and_covers_the_contract():
    """__all__ is sorted, complete for the contract, and every name resolves."""
    assert async_dag.__all__ == sorted(async_dag.__all__)
    assert set(async_dag.__all__) >= CONTRACT
    for name in async_dag.__all__:
        assert getattr(async_dag, name) is not None


def test_importing_async_dag_loads_no_heavy_library():
    """`import async_dag` loads neither ipywidgets, graphviz, pandas, IPython nor dask."""
    code = (
        "import sys, async_dag\n"
        "heavy = {'ipywidgets', 'graphviz', 'pandas', 'IPython', 'dask', 'distributed',\n"
        "         'cloudpickle'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_errors_subclass_builtins():
    """Definition errors are ValueErrors; loop limits are RuntimeErrors."""
    assert issubclass(async_dag.PipelineDefinitionError, ValueError)
    assert issubclass(async_dag.LoopLimitExceeded, RuntimeError)


def test_context_is_immutable_and_cheap():
    """PipelineContext refuses assignment and has no per-instance dict."""
    ctx = async_dag.PipelineContext("r", "0", ("a",))
    with pytest.raises(AttributeError):
        ctx.run_id = "x"  # type: ignore[misc]
    assert not hasattr(ctx, "__dict__")
    assert ctx.node == "a" and ctx.attempt == 0 and dict(ctx.metadata) == {}
