"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio


async def settle(turns: int = 5) -> None:
    """Let the loop run a few turns so cancelled tasks can finish."""
    for _ in range(turns):
        await asyncio.sleep(0)


def other_tasks() -> set[asyncio.Task[object]]:
    """Tasks of this loop other than the running test."""
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}
