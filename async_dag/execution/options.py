"""Check the run options of batched runs in this process, before any worker starts."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..core.definition import DagPipeline
from ..core.function import run_function_pipeline
from ..core.options import RunOptions, check_function_options
from .worker import FUNCTION


def _keyword_options(fn: Callable[..., Any]) -> set[str]:
    parameters = inspect.signature(fn).parameters.values()
    return {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_run_options(kind: str, options: dict[str, Any]) -> None:
    """Raise TypeError for unknown names, ValueError/TypeError for bad values.

    The checks are the engine's own, run here on an empty input so that a mistake
    surfaces at once rather than in every worker.
    """
    runner = run_function_pipeline if kind == FUNCTION else DagPipeline.run_stream
    allowed = _keyword_options(runner)
    unknown = sorted(set(options) - allowed)
    if unknown:
        where = "run_function_pipeline" if kind == FUNCTION else "DagPipeline.run_stream"
        raise TypeError(
            f"unknown run option(s) {', '.join(unknown)}: the options are those of "
            f"{where} ({', '.join(sorted(allowed))})"
        )
    if options.get("monitor") not in (None, False):
        raise ValueError(
            "monitor= cannot follow runs in other processes: leave it out here, or try "
            "one batch with `await run_function_pipeline(batch, fn, monitor=True)` "
            "(or `pipeline.run_stream`) in this process"
        )
    if kind == FUNCTION:
        check_function_options(
            concurrency=options.get("concurrency", 1),
            retries=options.get("retries", 0),
            timeout=options.get("timeout"),
        )
    shared = _keyword_options(RunOptions.check) - {"monitor"}
    RunOptions.check([], **{name: options[name] for name in shared if name in options})
