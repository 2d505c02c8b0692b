"""Run arguments, checked before anything runs."""

from __future__ import annotations

import operator
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .context import freeze_metadata

ON_ERROR = ("raise", "collect")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def open_inputs(inputs: Any) -> Iterator[Any] | AsyncIterator[Any]:
    """An iterator over ``inputs`` (sync or async); TypeError if it is neither."""
    if hasattr(inputs, "__aiter__"):
        aiter: AsyncIterator[Any] = inputs.__aiter__()
        return aiter
    if isinstance(inputs, str | bytes):
        raise TypeError(
            f"inputs must be an iterable of items, got a {type(inputs).__name__}; "
            "wrap a single item in a list"
        )
    try:
        iterator: Iterator[Any] = iter(inputs)
    except TypeError:
        raise TypeError(
            f"inputs must be an iterable or async iterable, got {type(inputs).__name__}"
        ) from None
    return iterator


def count_inputs(inputs: Any) -> int | None:
    """How many inputs there are, when that is known without consuming them."""
    if hasattr(inputs, "__len__"):
        try:
            return len(inputs)
        except TypeError:
            return None
    hint = operator.length_hint(inputs, -1)
    return hint if hint >= 0 else None


def _check_callable(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {value!r}")


@dataclass(slots=True)
class RunOptions:
    """Everything one run needs besides the graph, validated by :meth:`check`."""

    inputs: Iterator[Any] | AsyncIterator[Any]
    result_handler: Callable[..., Any] | None
    key: Callable[[Any], Any] | None
    collect_errors: bool
    monitor: Any
    run_id: str
    metadata: dict[str, Any] | None
    ordered: bool = False
    total: int | None = None  # the number of inputs, when known
    id_prefix: str = ""  # batched runs: data_ids are f"{batch}:{position}"

    @classmethod
    def check(
        cls,
        inputs: Any,
        *,
        result_handler: Callable[..., Any] | None = None,
        key: Callable[[Any], Any] | None = None,
        on_error: str = "raise",
        monitor: Any = None,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        ordered: bool = False,
        total: int | None = None,
        id_prefix: str = "",
    ) -> RunOptions:
        """Validate run arguments: ValueError for bad values, TypeError for bad types."""
        from ..observe.monitor import resolve_monitor

        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be 'raise' or 'collect', got {on_error!r}")
        _check_callable("result_handler", result_handler)
        _check_callable("key", key)
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
        if not isinstance(ordered, bool):
            raise TypeError(f"ordered must be True or False, got {ordered!r}")
        if total is not None and (not _is_int(total) or total < 0):
            raise ValueError(f"total must be a non-negative int or None, got {total!r}")
        if total is None:
            total = count_inputs(inputs)
        frozen = freeze_metadata(metadata)
        resolved = resolve_monitor(monitor)
        return cls(
            inputs=open_inputs(inputs),
            result_handler=result_handler,
            key=key,
            collect_errors=on_error == "collect",
            monitor=resolved,
            run_id=run_id if run_id is not None else uuid.uuid4().hex[:12],
            metadata=frozen,
            ordered=ordered,
            total=total,
            id_prefix=id_prefix,
        )


def check_function_options(
    *, concurrency: int, retries: int, timeout: float | None, ordered: bool = True
) -> None:
    """Validate the options only function pipelines have (ValueError/TypeError)."""
    if not isinstance(ordered, bool):
        raise TypeError(f"ordered must be True or False, got {ordered!r}")
    if not _is_int(concurrency):
        raise TypeError(f"concurrency must be an int, got {concurrency!r}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if not _is_int(retries):
        raise TypeError(f"retries must be an int, got {retries!r}")
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, got {retries}")
    if timeout is not None:
        if not isinstance(timeout, int | float) or isinstance(timeout, bool):
            raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
