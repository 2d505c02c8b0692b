"""Everything that can go wrong, and the record of a failed item.

The exceptions, each a subclass of the builtin it refines, so existing ``except``
clauses keep working::

    ValueError
    └── PipelineDefinitionError   a graph or task option that cannot run (at build time)
    RuntimeError
    └── LoopLimitExceeded         an output wanted a loop edge that is used up
    TypeError
    └── ShippingError             something could not be pickled to or from a worker
    OSError
    └── CheckpointError           a checkpoint file could not be opened, read or written
    RuntimeError
    └── concurrent.futures.process.BrokenProcessPool
        └── WorkerDied            a worker process died running a batch (which, and how)
    Exception
    └── RetryAfter                raised by a handler: retry this item after N seconds

``ItemError`` is not an exception: it is the record of one payload that failed for good,
kept in ``results.errors`` under ``on_error="collect"`` and sent down error edges.
"""

from __future__ import annotations

import math
import signal
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from .context import PipelineContext


class PipelineDefinitionError(ValueError):
    """A pipeline definition is invalid; the message names the task or edge and the fix."""


class LoopLimitExceeded(RuntimeError):
    """A loop edge's predicate held, but the lineage has taken it ``max_loops`` times."""

    def __init__(self, source: str, target: str, max_loops: int, data_id: str) -> None:
        super().__init__(
            f"loop edge {source} -> {target} already taken {max_loops} time(s) by data_id "
            f"{data_id!r} (max_loops={max_loops})"
        )
        self.source = source
        self.target = target
        self.max_loops = max_loops
        self.data_id = data_id

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.source, self.target, self.max_loops, self.data_id))


class ShippingError(TypeError):
    """Something could not be pickled on its way to or from a worker; says which."""


class CheckpointError(OSError):
    """A checkpoint file could not be opened, read or written; the message names it."""


class WorkerDied(BrokenProcessPool):
    """A worker process of the default pool ended while running a batch.

    ``batch`` is the index of that batch, ``pid`` the process, ``exitcode`` its exit code
    (negative: the number of the signal that ended it).
    """

    def __init__(self, batch: int, pid: int, exitcode: int | None) -> None:
        super().__init__(
            f"batch {batch} was running in worker pid {pid}, which {describe_exit(exitcode)}; "
            f"the call stopped its other batches"
        )
        self.batch = batch
        self.pid = pid
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.batch, self.pid, self.exitcode))


def describe_exit(exitcode: int | None) -> str:
    """How a process ended, e.g. "was killed by SIGKILL (signal 9)"."""
    if exitcode is None:
        return "ended in an unknown way"
    if exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            return f"was killed by signal {number}"
        hint = _SIGNAL_HINTS.get(name, "")
        return f"was killed by {name} (signal {number}){hint}"
    return f"exited with code {exitcode} (os._exit, or a crash)"


_SIGNAL_HINTS = {
    "SIGKILL": " (by someone, or by the system when out of memory)",
    "SIGSEGV": " (a crash in native code)",
    "SIGBUS": " (a crash in native code)",
    "SIGABRT": " (an abort in native code)",
}


class RetryAfter(Exception):
    """Raise from a handler to retry the item after ``seconds`` (an HTTP 429, say).

    The task, and every task sharing its ``RateLimit``, starts no call before then. It
    counts against ``retries`` whatever ``retry_on`` says; with no retry left the item
    fails with this exception.
    """

    def __init__(self, seconds: float, message: str | None = None) -> None:
        if (
            not isinstance(seconds, int | float)
            or isinstance(seconds, bool)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ValueError(f"RetryAfter needs a finite number of seconds >= 0, got {seconds!r}")
        super().__init__(message or f"retry after {seconds:g} s")
        self.seconds = float(seconds)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.seconds, str(self)))


@dataclass(frozen=True, slots=True)
class ItemError:
    """One payload that failed for good: where (``node``), with what (``ctx``), why
    (``exception``), and the ``payload`` itself."""

    ctx: PipelineContext
    node: str
    exception: BaseException
    payload: Any = None

    @property
    def data_id(self) -> str:
        """The failed payload's input id."""
        return self.ctx.data_id

    def __repr__(self) -> str:
        return (
            f"<ItemError node={self.node!r} data_id={self.ctx.data_id!r} "
            f"{type(self.exception).__name__}: {self.exception}>"
        )
