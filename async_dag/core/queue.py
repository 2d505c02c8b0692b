"""The bounded FIFO in front of each node, owning its fast path.

Compared with ``asyncio.Queue`` it drops task accounting (the run counts work in flight
itself), remembers the deepest it has been, has ``force_put`` for loop-backs (which must
never wait on a queue that only the waiting worker could drain), and can be closed when
a run winds down. As trio's channels do, the work is in the non-waiting methods
(``offer``, ``offer_many``, ``take``, ``drain``); ``put``, ``get``, ``wait_items``
and ``wait_refill`` only wait.

A worker iterates ``drain()`` and waits with ``wait_items()`` when it runs dry: resuming
a generator costs about half a method call on CPython 3.11, and the consumer's side is
taken once per item per node, so this is where the queue's fast path pays most.

A batch task's queue is a :class:`BatchQueue`, which also holds spans (a chunk of plain
inputs as one entry) and counts payloads rather than entries.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from typing import Any

from .context import InputSpan

EMPTY: Any = object()  # what ``take`` returns when there is nothing to take


class QueueClosed(BaseException):
    """The run is winding down: the queue takes and gives nothing more."""


class NodeQueue:
    """A bounded FIFO queue for one event loop."""

    __slots__ = ("_getters", "_items", "_putters", "_refillers", "closed", "max_depth", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self._items: deque[Any] = deque()
        self.maxsize = maxsize
        self.max_depth = 0
        self.closed = False
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._refillers: deque[asyncio.Future[None]] = deque()  # see ``wait_refill``

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<NodeQueue {len(self._items)}/{self.maxsize}>"

    # -- the fast path -------------------------------------------------------------

    def offer(self, item: Any) -> bool:
        """Append ``item`` if there is room; False (nothing done) when full."""
        items = self._items
        depth = len(items)
        if depth >= self.maxsize:
            return False
        items.append(item)
        if depth >= self.max_depth:
            self.max_depth = depth + 1
        if self._getters:
            _wake(self._getters)
        return True

    def offer_many(self, batch: list[Any]) -> None:
        """Append every item of ``batch``, which the caller made fit (see ``room``)."""
        items = self._items
        items.extend(batch)
        if len(items) > self.max_depth:
            self.max_depth = len(items)
        getters, woken = self._getters, len(batch)
        while getters and woken:
            _wake(getters)
            woken -= 1

    def room(self) -> int:
        """How many items ``offer`` would accept now."""
        room = self.maxsize - len(self._items)
        return room if room > 0 else 0  # (max() would parse keywords: dearer than this)

    def take(self) -> Any:
        """The oldest item, or ``EMPTY`` when there is none."""
        if not self._items:
            return EMPTY
        items = self._items
        item = items.popleft()
        if self._putters:
            _wake(self._putters)
        if self._refillers and len(items) <= self.maxsize // 2:
            _wake(self._refillers)
        return item

    def drain(self) -> Iterator[Any]:
        """Take the oldest item, one at a time, while there is one."""
        items, putters, refillers = self._items, self._putters, self._refillers
        half = self.maxsize // 2
        while items:
            item = items.popleft()
            if putters:
                _wake(putters)
            if refillers and len(items) <= half:
                _wake(refillers)
            yield item

    def force_put(self, item: Any) -> None:
        """Append even when full: loop-backs and markers, which the run's budget bounds."""
        if self.closed:
            raise QueueClosed
        items = self._items
        items.append(item)
        if len(items) > self.max_depth:
            self.max_depth = len(items)
        if self._getters:
            _wake(self._getters)

    # -- waiting -------------------------------------------------------------------

    async def put(self, item: Any) -> None:
        """Append ``item``, first waiting while the queue is full."""
        while not self.offer(item):
            await self._wait(self._putters)

    async def get(self) -> Any:
        """Take the oldest item, first waiting while the queue is empty."""
        while True:
            item = self.take()
            if item is not EMPTY:
                return item
            await self._wait(self._getters)

    async def wait_items(self) -> None:
        """Return once the queue has an item (at once if it has one already)."""
        while not self._items:
            await self._wait(self._getters)

    async def wait_refill(self) -> None:
        """Return once the queue holds at most half its size: the feeder refills its
        sources half a queue or more at a time, rather than waking for every slot.
        Raises :class:`QueueClosed` on a closed queue (which has no room, ever)."""
        if self.closed:
            raise QueueClosed
        while len(self) > self.maxsize // 2:
            await self._wait(self._refillers)

    async def _wait(self, waiters: deque[asyncio.Future[None]]) -> None:
        if self.closed:
            raise QueueClosed
        waiter = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter in waiters:
                waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                _wake(waiters)  # pass on the wake-up we were given
            raise
        if self.closed:
            raise QueueClosed

    def close(self) -> int:
        """Drop what is queued and make every waiting and later ``put``/``get`` raise
        :class:`QueueClosed`; returns how many items were dropped."""
        self.closed = True
        self.maxsize = 0  # ``offer`` now refuses, and ``put`` raises
        dropped = len(self._items)
        self._items.clear()
        for waiters in (self._getters, self._putters, self._refillers):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
        return dropped


class BatchQueue(NodeQueue):
    """A batch task's queue: besides ``(ctx, payload)`` items it holds spans, a chunk of
    consecutive inputs as one entry ``(InputSpan, payloads)`` (``offer_span``), which a
    worker takes into its batch whole or in part. Length, bound, depth and wake-ups
    count payloads, so a span takes as much room as its payloads would one by one."""

    __slots__ = ("size", "spans")

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.size = 0  # payloads queued
        self.spans = 0  # span entries queued

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"<BatchQueue {self.size}/{self.maxsize}>"

    def offer(self, item: Any) -> bool:
        if self.size >= self.maxsize:
            return False
        self._items.append(item)
        self._grew(1)
        return True

    def offer_many(self, batch: list[Any]) -> None:
        self._items.extend(batch)
        self._grew(len(batch))

    def offer_span(self, span: InputSpan, payloads: list[Any]) -> None:
        """Append a span, which the caller made fit (see ``room``)."""
        self._items.append((span, payloads))
        self.spans += 1
        self._grew(span.count)

    def put_back(self, span: InputSpan, payloads: list[Any]) -> None:
        """Return the rest of a span taken in part to the head of the queue."""
        self._items.appendleft((span, payloads))
        self.spans += 1
        self._grew(span.count)  # another worker may take it while this one is busy

    def force_put(self, item: Any) -> None:
        if self.closed:
            raise QueueClosed
        self._items.append(item)
        self._grew(1)

    def room(self) -> int:
        return max(self.maxsize - self.size, 0)

    def take(self) -> Any:
        if not self._items:
            return EMPTY
        item = self._items.popleft()
        self._shrank(self._weight(item))
        return item

    def take_many(self, most: int) -> tuple[list[Any], int]:
        """The oldest items holding at most ``most`` payloads (a span split if need be),
        oldest first, and how many payloads they hold: a batch task's worker fills its
        batch with list operations, not a step per payload."""
        items = self._items
        if not self.spans:
            if most >= len(items):
                taken = list(items)
                items.clear()
            else:
                popleft = items.popleft
                taken = [popleft() for _ in range(most)]
            weight = len(taken)
        else:
            taken, weight = [], 0
            while items and weight < most:
                item = items.popleft()
                span = item[0]
                if type(span) is InputSpan:
                    self.spans -= 1
                    fits = most - weight
                    if span.count > fits:
                        span, rest = span.split(fits)
                        payloads = item[1]
                        items.appendleft((rest, payloads[fits:]))
                        self.spans += 1
                        item = (span, payloads[:fits])
                    weight += span.count
                else:
                    weight += 1
                taken.append(item)
        self._shrank(weight)
        return taken, weight

    def drain(self) -> Iterator[Any]:
        items = self._items
        while items:
            item = items.popleft()
            self._shrank(self._weight(item))
            yield item

    def close(self) -> int:
        dropped = self.size
        self.size = self.spans = 0
        super().close()
        return dropped

    def _weight(self, item: Any) -> int:
        span = item[0]
        if type(span) is InputSpan:
            self.spans -= 1
            return span.count
        return 1

    def _grew(self, count: int) -> None:
        self.size += count
        if self.size > self.max_depth:
            self.max_depth = self.size
        getters = self._getters
        while getters and count:
            _wake(getters)
            count -= 1

    def _shrank(self, count: int) -> None:
        self.size -= count
        putters = self._putters
        while putters and count:
            _wake(putters)
            count -= 1
        if self._refillers and self.size <= self.maxsize // 2:
            _wake(self._refillers)


def _wake(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return
