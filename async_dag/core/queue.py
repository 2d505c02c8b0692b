"""The bounded FIFO in front of each node: asyncio.Queue's contract, trimmed for the hot path.

Compared with ``asyncio.Queue`` it drops task accounting (the run counts work in flight
itself), remembers the deepest it has been, and has ``force_put`` for loop-backs, which
must never wait on a queue that only the waiting worker could drain.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class NodeQueue:
    """A bounded FIFO queue for one event loop.

    The hot path may touch ``items`` directly: after taking an item it calls
    ``wake_putter`` if ``putters`` is non-empty, and after appending one (only while
    ``len(items) < maxsize``) it updates ``max_depth`` and calls ``wake_getter`` if
    ``getters`` is non-empty. Everything else goes through the methods."""

    __slots__ = ("getters", "items", "max_depth", "maxsize", "putters")

    def __init__(self, maxsize: int) -> None:
        self.items: deque[Any] = deque()
        self.maxsize = maxsize
        self.max_depth = 0
        self.getters: deque[asyncio.Future[None]] = deque()
        self.putters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"<NodeQueue {len(self.items)}/{self.maxsize}>"

    @staticmethod
    def _wake(waiters: deque[asyncio.Future[None]]) -> None:
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_putter(self) -> None:
        """Let one blocked ``put`` go on (call after taking an item from ``items``)."""
        self._wake(self.putters)

    def wake_getter(self) -> None:
        """Let one blocked ``get`` go on (call after appending to ``items``)."""
        self._wake(self.getters)

    def force_put(self, item: Any) -> None:
        """Append even when full: for loop-backs only; the run's budget bounds them."""
        items = self.items
        items.append(item)
        if len(items) > self.max_depth:
            self.max_depth = len(items)
        if self.getters:
            self._wake(self.getters)

    async def put(self, item: Any) -> None:
        """Append ``item``, first waiting while the queue is full."""
        items = self.items
        while len(items) >= self.maxsize:
            waiter = asyncio.get_running_loop().create_future()
            self.putters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                if waiter in self.putters:
                    self.putters.remove(waiter)
                elif len(items) < self.maxsize:
                    self._wake(self.putters)  # pass on the wake-up we were given
                raise
        self.force_put(item)

    async def get(self) -> Any:
        """Take the oldest item, first waiting while the queue is empty."""
        items = self.items
        while not items:
            waiter = asyncio.get_running_loop().create_future()
            self.getters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                if waiter in self.getters:
                    self.getters.remove(waiter)
                elif items:
                    self._wake(self.getters)
                raise
        item = items.popleft()
        if self.putters:
            self._wake(self.putters)
        return item
