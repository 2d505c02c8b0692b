"""Per-input completion: knowing when all the work one input caused has ended.

Kept only when a run needs it (joins or a checkpoint). For each data_id in flight a
:class:`Lineage` counts its payloads alive anywhere (queued, being handled, waiting in
a batch or a join) and, per join, how many of them sit upstream of that join. Routing
calls ``enter`` for every payload it creates; a payload's end calls ``leave``. When a
join's upstream count reaches zero, nothing more of that input can reach the join, so
the join fires; when ``live`` reaches zero the input is done, and the lineage is
dropped, so memory holds only the inputs in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .node import NodeRuntime


class Lineage:
    """The live payloads of one data_id: in all, and upstream of each join."""

    __slots__ = ("failed", "live", "queued", "upstream")

    def __init__(self, joins: int) -> None:
        self.live = 0
        self.failed = False
        self.upstream = [0] * joins  # per join: live payloads that can still reach it
        self.queued = [0] * joins  # per join: parts in its queue, not yet taken


class Tracker:
    """The lineages of the inputs in flight, and what to do when one ends."""

    def __init__(
        self,
        joins: int,
        on_upstream_done: Callable[[int, str, Lineage], None],
        on_done: Callable[[str, Lineage], None],
    ) -> None:
        self.lineages: dict[str, Lineage] = {}
        self._joins = joins
        self._on_upstream_done = on_upstream_done
        self._on_done = on_done

    def __len__(self) -> int:
        return len(self.lineages)

    def begin(self, data_id: str) -> None:
        """An input enters the run (a duplicate data_id shares the first one's lineage)."""
        if data_id not in self.lineages:
            self.lineages[data_id] = Lineage(self._joins)

    def enter(self, data_id: str, node: NodeRuntime) -> None:
        """A payload of ``data_id`` is sent to ``node``."""
        lineage = self.lineages[data_id]
        lineage.live += 1
        for j in node.joins_below:
            lineage.upstream[j] += 1
        if node.join_index is not None:
            lineage.queued[node.join_index] += 1

    def leave(self, data_id: str, node: NodeRuntime) -> None:
        """A payload of ``data_id`` at ``node`` has ended (its outputs already entered)."""
        lineage = self.lineages[data_id]
        lineage.live -= 1
        for j in node.joins_below:
            lineage.upstream[j] -= 1
            if not lineage.upstream[j]:
                self._on_upstream_done(j, data_id, lineage)
        if not lineage.live:
            del self.lineages[data_id]
            self._on_done(data_id, lineage)

    def fail(self, data_id: str) -> None:
        """Something of ``data_id`` failed (a checkpoint will not record it)."""
        lineage = self.lineages.get(data_id)
        if lineage is not None:
            lineage.failed = True
