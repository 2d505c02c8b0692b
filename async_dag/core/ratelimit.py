"""Interim rate limit (replaced by the full module)."""

from __future__ import annotations

import asyncio


class RateLimit:
    """Calls per second."""

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self._next = 0.0

    def pause(self, seconds: float) -> None:
        """Pause."""
        now = asyncio.get_running_loop().time()
        self._next = max(self._next, now + seconds)

    async def acquire(self) -> float:
        """Wait for a slot."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            now = loop.time()
            if now >= self._next:
                self._next = now + 1 / self.rate
                return now - start
            await asyncio.sleep(self._next - now)
