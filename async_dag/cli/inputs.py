"""Read INPUT files lazily: JSON Lines, CSV rows or plain lines, one item at a time.

Nothing is read before the run pulls it, so a file of any length streams in constant
memory. A line that is not JSON becomes a :class:`BadLine` item (``--on-error collect``:
that item fails, the rest goes on) or raises :class:`MalformedLine` at once.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import inspect
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import DagPipeline
from .targets import UsageError

FORMATS = ("jsonl", "csv", "lines")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


class MalformedLine(ValueError):
    """A JSON Lines input line that is not JSON; the message names the file and line."""


@dataclasses.dataclass(frozen=True, slots=True)
class BadLine:
    """Stands in for a line that is not JSON, so that it fails as its own item."""

    source: str
    line_no: int
    reason: str

    def error(self) -> MalformedLine:
        """The exception this item fails with."""
        return MalformedLine(f"{self.source}, line {self.line_no}: not JSON: {self.reason}")


def input_format(path: str, forced: str | None) -> str:
    """The format to read ``path`` in: ``--format``, else by suffix (stdin: JSON Lines)."""
    if forced is not None:
        return forced
    if path == "-":
        return "jsonl"
    return _SUFFIXES.get(Path(path).suffix.lower(), "lines")


def _open(path: str, encoding: str) -> Any:
    if path == "-":
        sys.stdin.reconfigure(encoding=encoding, newline="")  # type: ignore[union-attr]
        return sys.stdin
    return open(path, encoding=encoding, newline="")


def _read_jsonl(path: str, keep_bad: bool) -> Iterator[Any]:
    source = "<stdin>" if path == "-" else path
    stream = _open(path, "utf-8")
    loads = json.loads
    try:
        for line_no, line in enumerate(stream, start=1):
            try:
                yield loads(line)
            except ValueError as exc:
                if not line.strip():
                    continue  # blank lines separate nothing: skip them
                reason = getattr(exc, "msg", str(exc))
                bad = BadLine(source, line_no, reason)
                if not keep_bad:
                    raise bad.error() from None
                yield bad
    finally:
        if stream is not sys.stdin:
            stream.close()


def _read_csv(path: str) -> Iterator[Any]:
    stream = _open(path, "utf-8-sig")
    try:
        yield from csv.DictReader(stream)
    finally:
        if stream is not sys.stdin:
            stream.close()


def _read_lines(path: str) -> Iterator[Any]:
    stream = _open(path, "utf-8")
    try:
        for line in stream:
            yield line.rstrip("\r\n")
    finally:
        if stream is not sys.stdin:
            stream.close()


def check_inputs(paths: Sequence[str]) -> list[str]:
    """The inputs to read (``["-"]`` for none); UsageError for a file that is not there."""
    paths = list(paths) or ["-"]
    for path in paths:
        if path != "-" and not Path(path).is_file():
            raise UsageError(f"no such input file: {path}")
    if paths.count("-") > 1:
        raise UsageError("stdin (-) can be read only once")
    return paths


def read_inputs(
    paths: Sequence[str], forced: str | None, *, keep_bad: bool, limit: int | None
) -> Iterator[Any]:
    """All items of ``paths`` in order, read lazily, at most ``limit`` of them."""

    def chained() -> Iterator[Any]:
        for path in paths:
            fmt = input_format(path, forced)
            if fmt == "jsonl":
                yield from _read_jsonl(path, keep_bad)
            elif fmt == "csv":
                yield from _read_csv(path)
            else:
                yield from _read_lines(path)

    items = chained()
    return itertools.islice(items, limit) if limit is not None else items


class MissingField(KeyError):
    """``--key FIELD`` named a field an input does not have."""

    def __str__(self) -> str:
        return str(self.args[0])


def field_key(name: str) -> Callable[[Any], Any]:
    """``key=`` for ``--key FIELD``: the field of a dict input, a clear error otherwise."""

    def key(item: Any) -> Any:
        if isinstance(item, BadLine):
            return f"{item.source}:{item.line_no}"
        try:
            return item[name]
        except KeyError:
            raise MissingField(f"--key {name}: input has no field {name!r}") from None
        except (TypeError, IndexError):
            raise MissingField(
                f"--key {name}: input is a {type(item).__name__}, not an object with fields"
            ) from None

    return key


# -- failing bad lines as items ------------------------------------------------------------


def _unwrapped(fn: Any) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def guard(handler: Callable[..., Any], *, batch: bool = False) -> Callable[..., Any]:
    """``handler`` that first fails a :class:`BadLine` payload, of the same kind."""

    def check(payload: Any) -> None:
        items = payload if batch and isinstance(payload, list) else (payload,)
        for item in items:
            if isinstance(item, BadLine):
                raise item.error()

    target = _unwrapped(handler)
    if not inspect.isfunction(target) and not inspect.ismethod(target):
        target = getattr(type(target), "__call__", target)  # noqa: B004 - callable objects
    wrapper: Callable[..., Any]
    if inspect.isasyncgenfunction(target):

        async def wrapper(ctx: Any, payload: Any) -> Any:
            check(payload)
            async for value in handler(ctx, payload):
                yield value

    elif inspect.iscoroutinefunction(target):

        async def wrapper(ctx: Any, payload: Any) -> Any:
            check(payload)
            return await handler(ctx, payload)

    elif inspect.isgeneratorfunction(target):

        def wrapper(ctx: Any, payload: Any) -> Any:
            check(payload)
            yield from handler(ctx, payload)

    else:

        def wrapper(ctx: Any, payload: Any) -> Any:
            check(payload)
            return handler(ctx, payload)

    named = _unwrapped(handler)  # the node's name stays the handler's
    wrapper.__name__ = getattr(named, "__name__", type(named).__name__)
    wrapper.__qualname__ = getattr(named, "__qualname__", wrapper.__name__)
    return wrapper


def guard_sources(pipeline: DagPipeline) -> DagPipeline:
    """The same graph whose source tasks fail a :class:`BadLine` payload first."""
    tasks: Iterable[Any] = []
    try:
        tasks = [
            dataclasses.replace(
                task,
                handler=guard(task.handler, batch=bool(getattr(task, "batch_size", None))),
            )
            if task_id in pipeline.sources
            else task
            for task_id, task in pipeline.tasks.items()
        ]
    except TypeError:  # not a dataclass: leave the graph as it is
        return pipeline
    return DagPipeline(tasks, pipeline.transitions, name=pipeline.name)
