"""Batches across processes (placeholder: issue 4 fills this in)."""

from typing import Any


def run_function_pipeline_in_subprocess(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


def run_pipeline_in_subprocess(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError
