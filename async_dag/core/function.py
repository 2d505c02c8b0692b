"""Plain async function pipelines (placeholder until the engine lands)."""

from typing import Any


async def run_function_pipeline(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


def iter_function_pipeline(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError
