"""Every option check, in one place, with one message style.

Task options are checked when a task joins a ``DagPipeline`` and raise
``PipelineDefinitionError``; run options (and a function pipeline's options) are checked
when the run is called and raise ``ValueError`` for bad values and ``TypeError`` for bad
types. The same checkers serve both: :class:`Checks` carries where the option is and
which exceptions to raise.
"""

from __future__ import annotations

import math
import operator
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from .context import freeze_metadata
from .errors import PipelineDefinitionError

OnError = Literal["raise", "collect"]
ON_ERROR = ("raise", "collect")
DEFAULT_QUEUE_SIZE = 64  # measured: see BENCHMARKS.md ("default queue size")


def is_int(value: object) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Checks:
    """Option checks for one place: ``where`` prefixes messages (``"task 'fetch': "``);
    ``definition`` picks PipelineDefinitionError over ValueError/TypeError."""

    where: str = ""
    definition: bool = False

    def fail(self, message: str, *, wrong_type: bool = False) -> NoReturn:
        """Raise the error for this place."""
        text = f"{self.where}: {message}" if self.where else message
        if self.definition:
            raise PipelineDefinitionError(text)
        raise (TypeError if wrong_type else ValueError)(text)

    def int_at_least(self, name: str, value: object, low: int) -> int:
        """An int >= ``low``."""
        if not is_int(value):
            kind = "positive" if low == 1 else "non-negative"
            self.fail(f"{name} must be a {kind} int, got {value!r}", wrong_type=True)
        if value < low:  # type: ignore[operator]
            kind = "positive" if low == 1 else "non-negative"
            self.fail(f"{name} must be a {kind} int, got {value!r}")
        return value  # type: ignore[return-value]

    def number(
        self,
        name: str,
        value: object,
        *,
        low: float = 0.0,
        strict: bool = False,
        high: float = math.inf,
    ) -> float:
        """A finite number in ``[low, high]`` (``(low, high]`` when ``strict``)."""
        if not is_number(value):
            self.fail(f"{name} must be a number, got {value!r}", wrong_type=True)
        number = float(value)  # type: ignore[arg-type]
        if not math.isfinite(number) or number < low or (strict and number == low) or number > high:
            if strict:
                bound = f"> {low:g}"
            elif high < math.inf:
                bound = f"between {low:g} and {high:g}"
            else:
                bound = f">= {low:g}"
            self.fail(f"{name} must be a finite number {bound}, got {value!r}")
        return number

    def timeout(self, value: object, *, inline: bool = False) -> float | None:
        """None, or a positive finite number of seconds; refused for inline calls."""
        if value is None:
            return None
        seconds = self.number("timeout", value, strict=True)
        if inline:
            self.fail(
                "timeout cannot apply to an inline handler (an inline call cannot be "
                "interrupted); drop inline=True so it runs in a thread, or drop timeout"
            )
        return seconds

    def callable_or_none(self, name: str, value: object) -> None:
        """None or a callable."""
        if value is not None and not callable(value):
            self.fail(f"{name} must be callable or None, got {value!r}", wrong_type=True)

    def boolean(self, name: str, value: object) -> bool:
        """True or False."""
        if not isinstance(value, bool):
            self.fail(f"{name} must be True or False, got {value!r}", wrong_type=True)
        return value


RUN = Checks()


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
    try:
        hint = operator.length_hint(inputs, -1)
    except Exception:
        return None
    return hint if hint >= 0 else None


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
    checkpoint: Any = None  # a Checkpoint, or None

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
        checkpoint: Any = None,
    ) -> RunOptions:
        """Validate run arguments: ValueError for bad values, TypeError for bad types."""
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be 'raise' or 'collect', got {on_error!r}")
        RUN.callable_or_none("result_handler", result_handler)
        RUN.callable_or_none("key", key)
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
        RUN.boolean("ordered", ordered)
        if total is not None:
            RUN.int_at_least("total", total, 0)
        else:
            total = count_inputs(inputs)
        if not isinstance(id_prefix, str):
            raise TypeError(f"_id_prefix must be a string, got {id_prefix!r}")
        frozen = freeze_metadata(metadata)
        from .checkpoint import as_checkpoint

        store = as_checkpoint(checkpoint)
        monitor = check_monitor(monitor)
        return cls(
            inputs=open_inputs(inputs),
            result_handler=result_handler,
            key=key,
            collect_errors=on_error == "collect",
            monitor=monitor,
            run_id=run_id if run_id is not None else uuid.uuid4().hex[:12],
            metadata=frozen,
            ordered=ordered,
            total=total,
            id_prefix=id_prefix,
            checkpoint=store,
        )


def check_monitor(spec: Any) -> Any:
    """``monitor=`` as a Monitor or None (True picks a widget or a terminal display)."""
    from .observer import Monitor

    if spec is None or spec is False:
        return None
    if spec is True:
        from ..observe.monitor import resolve_monitor  # the display is chosen outside the engine

        return resolve_monitor(True)
    if isinstance(spec, Monitor):
        return spec
    raise TypeError(
        f"monitor must be None, True, False or a Monitor (such as PipelineMonitor()), got {spec!r}"
    )


def check_rate_limit(check: Checks, value: object) -> None:
    """``rate_limit=``: None, calls per second (a positive finite number) or a RateLimit."""
    from .ratelimit import RateLimit

    if value is None or isinstance(value, RateLimit):
        return
    if not is_number(value):
        check.fail(
            f"rate_limit must be calls per second (a number) or a RateLimit, got {value!r}",
            wrong_type=True,
        )
    check.number("rate_limit", value, strict=True)


def make_rate_limit(value: Any) -> Any:
    """The run's RateLimit for a task's ``rate_limit=`` (a number: one budget per run)."""
    if value is None:
        return None
    from .ratelimit import RateLimit

    return value if isinstance(value, RateLimit) else RateLimit(value)
