"""When to retry a failed call, and how long to wait first: :class:`RetryPolicy`."""

from __future__ import annotations

import asyncio
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from .errors import PipelineDefinitionError, RetryAfter

RetryOn: TypeAlias = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)

# Never retried whatever retry_on says: they end the run or the process, not a call.
_NEVER_RETRIED = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)
_LONGEST = sys.float_info.max  # a wait that overflowed (huge backoff ** k) and has no cap


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_exception_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A task's retry options, checked once at run start; says whether and when to retry.

    The worker asks :meth:`matches` whether a failure may be retried (while attempts
    remain) and :meth:`wait_before` how long to wait first. Example::

        policy = RetryPolicy.check("task 'fetch'", retries=3, retry_delay=0.5,
                                   retry_backoff=2, retry_max_delay=10, retry_jitter=0.1,
                                   retry_on=ConnectionError, definition=True)
        policy.wait_before(1, exc)  # about 0.5 s, then about 1 s, then about 2 s
    """

    retries: int = 0
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: float | None = None
    jitter: float = 0.0
    retry_on: RetryOn = Exception

    @classmethod
    def check(
        cls,
        where: str,
        *,
        retries: object = 0,
        retry_delay: object = 0.0,
        retry_backoff: object = 1.0,
        retry_max_delay: object = None,
        retry_jitter: object = 0.0,
        retry_on: object = Exception,
        definition: bool,
    ) -> RetryPolicy:
        """Validate the options and build the policy.

        ``where`` starts every message (``"task 'fetch'"``). With ``definition=True``
        (a task) every problem is a ``PipelineDefinitionError``; otherwise (a function
        pipeline) a bad value is a ``ValueError`` and a bad type a ``TypeError``.
        """

        def fail(option: str, wants: str, got: object, *, bad_type: bool) -> Exception:
            message = f"{where}: {option} must be {wants}, got {got!r}"
            if definition:
                return PipelineDefinitionError(message)
            return TypeError(message) if bad_type else ValueError(message)

        if not isinstance(retries, int) or isinstance(retries, bool):
            raise fail("retries", "an int >= 0", retries, bad_type=True)
        if retries < 0:
            raise fail("retries", "an int >= 0", retries, bad_type=False)

        def number(option: str, value: object, lowest: float, wants: str) -> float:
            if not _is_number(value):
                raise fail(option, wants, value, bad_type=True)
            assert isinstance(value, int | float)
            if not math.isfinite(value) or value < lowest:
                raise fail(option, wants, value, bad_type=False)
            return float(value)

        delay = number("retry_delay", retry_delay, 0, "a finite number >= 0")
        backoff = number("retry_backoff", retry_backoff, 1, "a number >= 1")
        max_delay = (
            None
            if retry_max_delay is None
            else number("retry_max_delay", retry_max_delay, 0, "None or a finite number >= 0")
        )
        jitter = number("retry_jitter", retry_jitter, 0, "a number between 0 and 1")
        if jitter > 1:
            raise fail("retry_jitter", "a number between 0 and 1", retry_jitter, bad_type=False)

        on_wants = "an exception class, a tuple of exception classes or a predicate exc -> bool"
        on: RetryOn
        if isinstance(retry_on, tuple):
            if not retry_on:
                raise fail("retry_on", on_wants, retry_on, bad_type=False)
            if not all(_is_exception_class(c) for c in retry_on):
                raise fail("retry_on", on_wants, retry_on, bad_type=True)
            on = retry_on
        elif isinstance(retry_on, type):
            if not issubclass(retry_on, BaseException):
                raise fail("retry_on", on_wants, retry_on, bad_type=True)
            on = retry_on
        elif callable(retry_on):
            on = retry_on
        else:
            raise fail("retry_on", on_wants, retry_on, bad_type=True)
        return cls(retries, delay, backoff, max_delay, jitter, on)

    @property
    def is_trivial(self) -> bool:
        """No retries at all: the worker can skip every retry step."""
        return self.retries == 0

    def matches(self, exc: BaseException) -> bool:
        """Whether ``retry_on`` allows retrying ``exc``; a ``RetryAfter`` always may be.

        Cancellation, ``KeyboardInterrupt``, ``SystemExit`` and ``GeneratorExit`` never
        match. A predicate that raises lets its exception through (the engine makes it the
        item's failure).
        """
        if isinstance(exc, RetryAfter):
            return True
        if isinstance(exc, _NEVER_RETRIED):
            return False
        if isinstance(self.retry_on, type | tuple):
            return isinstance(exc, self.retry_on)
        return bool(self.retry_on(exc))

    def wait_before(self, retry: int, exc: BaseException) -> float:
        """Seconds to wait before retry number ``retry`` (1 is the first) after ``exc``.

        A ``RetryAfter`` asks for its own ``seconds``, uncapped. Otherwise the wait is
        ``delay * backoff ** (retry - 1)`` times a random factor in ``[1 - jitter,
        1 + jitter]``, then capped at ``max_delay``. Never negative and never infinite.
        """
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry!r}")
        if isinstance(exc, RetryAfter):
            return exc.seconds
        if self.delay == 0:
            return 0.0
        try:
            wait = self.delay * self.backoff ** (retry - 1)
        except OverflowError:
            wait = math.inf
        if self.jitter:
            low, high = 1.0 - self.jitter, 1.0 + self.jitter
            wait *= min(max(random.uniform(low, high), low), high)
        if not math.isfinite(wait):  # inf, or inf * 0 with jitter 1
            wait = math.inf
        if self.max_delay is not None:
            wait = min(wait, self.max_delay)
        return min(max(wait, 0.0), _LONGEST)
