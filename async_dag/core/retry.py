"""Interim retry policy (replaced by the full module)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from .errors import RetryAfter


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a task retries."""

    retries: int = 0
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: float | None = None
    jitter: float = 0.0
    retry_on: Any = Exception

    @classmethod
    def check(cls, where: str, *, definition: bool, **options: Any) -> RetryPolicy:
        """Validate."""
        from .options import Checks

        check = Checks(where, definition=definition)
        check.int_at_least("retries", options["retries"], 0)
        check.number("retry_delay", options["retry_delay"])
        check.number("retry_backoff", options["retry_backoff"], low=1.0)
        if options["retry_max_delay"] is not None:
            check.number("retry_max_delay", options["retry_max_delay"])
        check.number("retry_jitter", options["retry_jitter"], high=1.0)
        return cls()

    def matches(self, exc: BaseException) -> bool:
        """Whether exc may be retried."""
        if isinstance(exc, RetryAfter):
            return True
        on = self.retry_on
        if isinstance(on, type) or isinstance(on, tuple):
            return isinstance(exc, on)
        return bool(on(exc))

    def wait_before(self, retry: int, exc: BaseException) -> float:
        """Seconds before retry number ``retry``."""
        if isinstance(exc, RetryAfter):
            return exc.seconds
        wait = self.delay * self.backoff ** (retry - 1)
        if self.jitter:
            wait *= random.uniform(1 - self.jitter, 1 + self.jitter)
        if self.max_delay is not None:
            wait = min(wait, self.max_delay)
        return wait
