"""Check the run options of batched runs in this process, before any worker starts."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..core.definition import DagPipeline
from ..core.function import FUNCTION_OPTIONS, check_function_options, run_function_pipeline
from ..core.options import RunOptions
from .worker import FUNCTION


def _keyword_options(fn: Callable[..., Any]) -> set[str]:
    parameters = inspect.signature(fn).parameters.values()
    # private ones (``_id_prefix``) are set per batch here, never by the caller
    return {
        p.name
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY and not p.name.startswith("_")
    }


def check_run_options(kind: str, options: dict[str, Any]) -> None:
    """Raise TypeError for unknown names, ValueError/TypeError for bad values.

    The checks are the engine's own, run here on an empty input so that a mistake
    surfaces at once rather than in every worker. ``monitor`` is not checked here: the
    caller takes it out of ``options`` (it stays in this process, workers get none).
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
    if kind == FUNCTION:
        check_function_options(**{k: v for k, v in options.items() if k in FUNCTION_OPTIONS})
    shared = _keyword_options(RunOptions.check) - {"monitor"}
    RunOptions.check([], **{name: options[name] for name in shared if name in options})
