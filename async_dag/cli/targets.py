"""Load a command line TARGET: ``module:attr`` or ``path/to/file.py:attr``.

A target is a :class:`~async_dag.DagPipeline`, a :class:`~async_dag.PipelineBuilder`
(built here), an async function or async generator function (run as a function
pipeline), or a zero-argument callable returning one of those. Anything else is a
:class:`UsageError` whose message says what was found and what could be meant.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import DagPipeline, DagTask, PipelineBuilder, PipelineDefinitionError


class UsageError(Exception):
    """Bad usage: the command line cannot be carried out (exit status 2)."""


@dataclass(frozen=True)
class Target:
    """What TARGET named: a graph, or an async function run as a function pipeline."""

    spec: str
    pipeline: DagPipeline | None = None
    function: Any = None

    @property
    def name(self) -> str:
        """The pipeline's name, or the function's."""
        if self.pipeline is not None:
            return self.pipeline.name
        return str(getattr(self.function, "__name__", "pipeline"))

    def as_graph(self) -> DagPipeline:
        """The graph to draw or list: a function pipeline is a one-task graph."""
        if self.pipeline is not None:
            return self.pipeline
        return DagPipeline([DagTask(self.name, self.function)], name=self.name)


def is_async_function(obj: object) -> bool:
    """Whether ``obj`` is an ``async def`` or async generator function (partials too)."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or inspect.isasyncgenfunction(obj)


def _runnable(obj: object) -> bool:
    return isinstance(obj, DagPipeline | PipelineBuilder) or is_async_function(obj)


def _where(exc: BaseException, origin: str) -> str:
    """`` (file.py, line 3)`` for the frame of the user's file the exception came from."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == origin]
    return f" ({Path(origin).name}, line {frames[-1].lineno})" if frames else ""


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    name = path.stem if path.stem.isidentifier() else "async_dag_target"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    # like `python path/to/file.py`: its folder is importable, and so is the module
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _import(module_part: str) -> tuple[ModuleType, str]:
    """Import the module of a target; return it and how to call it in messages."""
    is_file = module_part.endswith(".py") or os.sep in module_part or "/" in module_part
    label = module_part if is_file else f"module {module_part!r}"
    try:
        if is_file:
            path = Path(module_part)
            return _import_file(path), label
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # console scripts do not put . on the path
        return importlib.import_module(module_part), label
    except UsageError:
        raise
    except PipelineDefinitionError as exc:
        origin = str(Path(module_part).resolve()) if is_file else ""
        raise UsageError(f"invalid pipeline in {label}{_where(exc, origin)}: {exc}") from exc
    except Exception as exc:
        origin = str(Path(module_part).resolve()) if is_file else ""
        raise UsageError(
            f"cannot import {label}{_where(exc, origin)}: {type(exc).__name__}: {exc}"
        ) from exc


def _candidates(module: ModuleType) -> list[str]:
    """Names in ``module`` that could be a target: pipelines, builders, async functions."""
    return sorted(n for n, v in vars(module).items() if not n.startswith("_") and _runnable(v))


def _missing(module: ModuleType, label: str, attr: str) -> UsageError:
    names = _candidates(module)
    close = difflib.get_close_matches(attr, names, n=3)
    hint = f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""
    listing = (
        f" (it has: {', '.join(names)})" if names else " (it has no pipeline or async function)"
    )
    return UsageError(f"{label} has no attribute {attr!r}{hint}{listing}")


def _resolve(obj: Any, spec: str, *, called: bool = False) -> Target:
    if isinstance(obj, PipelineBuilder):
        try:
            return Target(spec, pipeline=obj.build())
        except PipelineDefinitionError as exc:
            raise UsageError(f"invalid pipeline {spec}: {exc}") from exc
    if isinstance(obj, DagPipeline):
        return Target(spec, pipeline=obj)
    if is_async_function(obj):
        return Target(spec, function=obj)
    kind = type(obj).__name__
    kind = f"an {kind}" if kind[:1].lower() in "aeiou" else f"a {kind}"
    if called or not callable(obj):
        made = "returned" if called else "is"
        raise UsageError(
            f"{spec} {made} {kind}, not a DagPipeline, a PipelineBuilder, an async "
            "function or a zero-argument factory of one"
        )
    try:
        inspect.signature(obj).bind()
    except TypeError:
        raise UsageError(
            f"{spec} is a plain function that takes arguments: a function pipeline must be "
            "`async def f(ctx, item)`, a factory must take no arguments"
        ) from None
    except ValueError:  # no signature to look at: try calling it
        pass
    try:
        made = obj()
    except PipelineDefinitionError as exc:
        raise UsageError(f"invalid pipeline {spec}: {exc}") from exc
    except Exception as exc:
        raise UsageError(f"calling {spec}() failed: {type(exc).__name__}: {exc}") from exc
    return _resolve(made, f"{spec}()", called=True)


def load_target(spec: str) -> Target:
    """Import and resolve TARGET; raise :class:`UsageError` saying what is wrong."""
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise UsageError(
            f"TARGET must be module:attr or path/to/file.py:attr (such as job.py:pipeline), "
            f"got {spec!r}"
        )
    module, label = _import(module_part)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _missing(module, label, attr) from None
    return _resolve(obj, spec)
