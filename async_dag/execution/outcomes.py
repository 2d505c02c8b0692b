"""What a batch's outcome means in the caller: a RunResult, or an exception to raise."""

from __future__ import annotations

from ..core.results import RunResult
from .shipping import ShippingError, loads
from .worker import (
    OK,
    RAISED,
    RAISED_UNPICKLABLE,
    RESULT_UNPICKLABLE,
    UNLOADABLE,
    RemoteTraceback,
)


def with_batch_note(exc: BaseException, index: int, count: int) -> BaseException:
    """``exc`` with a note naming its batch; a SystemExit or the like becomes a
    RuntimeError, so that a batch cannot end the calling program."""
    if not isinstance(exc, Exception):
        wrapper = RuntimeError(f"batch {index} raised {type(exc).__name__}({exc}) in a worker")
        wrapper.__cause__ = exc
        exc = wrapper
    exc.add_note(batch_note(index, count))
    return exc


def in_batch_order(results: list[RunResult | None]) -> list[RunResult]:
    """The results, once every batch has one."""
    done = [result for result in results if result is not None]
    assert len(done) == len(results), "every batch has a result"
    return done


def batch_note(index: int, count: int) -> str:
    """The note added to an exception raised by batch ``index``."""
    return f"raised in batch {index} (of {count} batches) run in a worker"


def decode(index: int, count: int, data: bytes) -> RunResult:
    """The RunResult a worker shipped back, or raise what went wrong there."""
    try:
        outcome = loads(data)
    except Exception as exc:
        raise ShippingError(
            f"the result of batch {index} could not be unpickled in this process: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    tag = outcome[0]
    if tag == OK:
        result: RunResult = outcome[1]
        return result
    if tag == RAISED:
        error: BaseException = outcome[1]
        error.__cause__ = RemoteTraceback(outcome[2])
        raise with_batch_note(error, index, count)
    if tag == RAISED_UNPICKLABLE:
        _, name, message, notes, text, why = outcome
        stand_in = RuntimeError(
            f"batch {index} raised {name}: {message} (the exception itself could not be "
            f"pickled back from the worker: {why})"
        )
        for note in notes:
            stand_in.add_note(note)
        stand_in.add_note(batch_note(index, count))
        raise stand_in from RemoteTraceback(text)
    if tag == RESULT_UNPICKLABLE:
        raise ShippingError(
            f"the result of batch {index} cannot be pickled back from the worker: {outcome[1]}"
        )
    if tag == UNLOADABLE:
        _, what, why, text = outcome
        raise ShippingError(
            f"{what} could not be unpickled in the worker for batch {index}: {why} (is "
            f"everything it refers to importable there? cloudpickle ships functions of "
            f"__main__ by value, those of importable modules by reference)"
        ) from RemoteTraceback(text)
    raise AssertionError(f"unknown outcome {tag!r} from batch {index}")
