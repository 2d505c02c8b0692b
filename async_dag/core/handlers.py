"""Classify user callables: how a handler is called decides how a worker drives it."""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable
from typing import Any


class HandlerKind(enum.Enum):
    """The four shapes of handler the engine knows how to drive."""

    ASYNC = "async"  # async def returning one value
    ASYNC_GEN = "async generator"  # async def with yield: zero or more values
    SYNC = "sync"  # plain def returning one value
    SYNC_GEN = "sync generator"  # plain def with yield


def _unwrap(fn: Any) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def handler_kind(fn: Callable[..., Any]) -> HandlerKind:
    """Tell how ``fn(ctx, payload)`` produces its outputs (functions, partials, callables)."""
    target = _unwrap(fn)
    candidates = [target]
    if not inspect.isfunction(target) and not inspect.ismethod(target):
        call = getattr(type(target), "__call__", None)  # noqa: B004 - callable instances
        if call is not None:
            candidates.append(call)
    for candidate in candidates:
        if inspect.isasyncgenfunction(candidate):
            return HandlerKind.ASYNC_GEN
        if inspect.iscoroutinefunction(candidate):
            return HandlerKind.ASYNC
        if inspect.isgeneratorfunction(candidate):
            return HandlerKind.SYNC_GEN
    return HandlerKind.SYNC


def callable_name(fn: Any) -> str:
    """A readable name for a handler or predicate (``__name__``, else the type's name)."""
    target = _unwrap(fn)
    name = getattr(target, "__name__", None)
    return name if isinstance(name, str) else type(target).__name__
