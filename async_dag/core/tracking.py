"""Per-input completion: knowing when all the work one input caused has ended.

Kept only when a run needs it (joins or a checkpoint). For each data_id in flight a
:class:`Lineage` counts its payloads alive anywhere (queued, being handled, waiting in
a batch or a join) and, per join, how many of them sit upstream of that join. Routing
calls ``enter`` for every payload it creates; a payload's end calls ``leave``. When a
join's upstream count reaches zero, nothing more of that input can reach the join, so
the join fires; when ``live`` reaches zero the input is done, and the lineage is
dropped, so memory holds only the inputs in flight.

A run with a checkpoint and no join keeps only the count (:class:`Counts`): then an
output that takes its payload's place (a worker's hop) leaves the count alone, and a
finished input with no failure is recorded in the checkpoint session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


class Counts:
    """Per-input completion without joins: how many payloads of each data_id are alive.

    The same calls as :class:`Tracker`, and ``begin_many`` for a chunk of inputs with
    distinct data_ids not yet in flight (the feeder's plain inputs). ``live`` holds, per
    data_id, its payloads alive *less one*, and a data_id it does not hold has one (or
    is not in flight): so an input that enters as part of a chunk with one source and
    has one payload at a time (a chain, where each output takes its payload's place)
    costs one dictionary lookup in all, when it ends. An input entered on its own
    (``begin``) is held from the start, so a duplicate data_id (from ``key=``) finds
    the first one in flight and shares its count.

    An input that ends with no failure is recorded as the checkpoint session's
    ``record`` would, into its ``pending`` list and, when data_ids come from ``key=``
    (one may come again and must then be skipped), into its ``done`` set; data_ids by
    position never come twice, and adding each to a set that grows by one per input
    costs several percent of a chain's time (cache misses more than instructions)."""

    __slots__ = ("done", "failed", "live", "pending")

    def __init__(self, pending: list[str], done: set[str] | None) -> None:
        self.live: dict[str, int] = {}  # data_id: payloads alive less one
        self.failed: set[str] = set()  # live data_ids of which something failed
        self.pending = pending
        self.done = done

    def __len__(self) -> int:
        """The data_ids held: in flight, except those with one payload that entered
        in a chunk (so 0 once nothing is in flight)."""
        return len(self.live)

    def begin(self, data_id: str) -> None:
        """An input enters the run, with no payload yet (``enter`` follows for each
        source); a duplicate data_id in flight shares the first one's count."""
        self.live.setdefault(data_id, -1)

    def begin_many(self, data_ids: Iterable[str], payloads: int) -> None:
        """Inputs with new, distinct data_ids enter, each as ``payloads`` payloads
        (``data_ids`` is not even read when that is one)."""
        if payloads > 1:
            self.live.update(dict.fromkeys(data_ids, payloads - 1))

    def enter(self, data_id: str, node: NodeRuntime) -> None:
        """A payload of ``data_id`` is sent to ``node``."""
        live = self.live
        live[data_id] = live.get(data_id, 0) + 1

    def leave(self, data_id: str, node: NodeRuntime) -> None:
        """A payload of ``data_id`` has ended (its outputs already entered). While no
        data_id is held (a chain's inputs, entered in chunks), no lookup is made."""
        live = self.live
        if live:
            more = live.pop(data_id, 0)
            if more:
                live[data_id] = more - 1
                return
        failed = self.failed
        if failed and data_id in failed:
            failed.discard(data_id)
            return
        self.pending.append(data_id)  # recorded inputs are skipped: a data_id ends here once
        if self.done is not None:
            self.done.add(data_id)

    def fail(self, data_id: str) -> None:
        """Something of ``data_id`` failed (it is not recorded); a payload of it is alive."""
        self.failed.add(data_id)


class OneEach(Counts):
    """:class:`Counts` while no data_id is held and nothing failed: every input in
    flight has one payload (a chain's inputs, entered in chunks by position), so one
    ending ends its input, and ``leave`` is one append. The first call that would hold a
    data_id or a failure turns it into a plain ``Counts`` for the rest of the run."""

    __slots__ = ()

    def leave(self, data_id: str, node: NodeRuntime) -> None:
        self.pending.append(data_id)  # (``done`` is None: data_ids by position)

    def begin(self, data_id: str) -> None:
        self.__class__ = Counts  # type: ignore[assignment]
        self.begin(data_id)

    def begin_many(self, data_ids: Iterable[str], payloads: int) -> None:
        if payloads > 1:
            self.__class__ = Counts  # type: ignore[assignment]
            self.begin_many(data_ids, payloads)

    def enter(self, data_id: str, node: NodeRuntime) -> None:
        self.__class__ = Counts  # type: ignore[assignment]
        self.enter(data_id, node)

    def fail(self, data_id: str) -> None:
        self.__class__ = Counts  # type: ignore[assignment]
        self.fail(data_id)
