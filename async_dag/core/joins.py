"""Join tasks: one call per data_id with the parts its incoming branches delivered.

A part arriving at the join waits, keyed by data_id and by the source it came from,
until no more work of that data_id can reach the join (the tracker's upstream count for
this join is zero and no part of it is still queued here). Then the join is called
once with ``{source: value}``: a branch not taken, filtered or failed is simply
absent. A second part from one source for one data_id fails that data_id at the join.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .context import PipelineContext

if TYPE_CHECKING:
    from .node import NodeRuntime
    from .run import Run
    from .tracking import Lineage, Tracker

FIRE: Any = object()  # the marker item's context: (FIRE, data_id)


class Joiner:
    """The parts held by one join task in one run."""

    def __init__(self, node: NodeRuntime, run: Run, tracker: Tracker) -> None:
        assert node.join_index is not None
        self.node = node
        self.run = run
        self.tracker = tracker
        self.index = node.join_index
        # data_id -> [(source, ctx, value)] in arrival order
        self.held: dict[str, list[tuple[str, PipelineContext, Any]]] = {}
        self.broken: set[str] = set()  # data_ids failed by a duplicate part
        self.firing: set[str] = set()  # data_ids with a fire marker on its way

    def __len__(self) -> int:
        return len(self.held)

    async def invoke(self, ctx: Any, payload: Any) -> None:
        """The join task's worker step: hold a part, or fire a data_id that is ready."""
        run = self.run
        if ctx is FIRE:
            self.firing.discard(payload)
            parts = self.held.pop(payload, None)
            if parts is not None:
                await self.fire(payload, parts)
            run.end_marker()
            return
        node = self.node
        node.received += 1
        data_id = ctx._data_id
        source = ctx._path[-2]
        lineage = self.tracker.lineages[data_id]
        lineage.queued[self.index] -= 1
        parts = self.held.setdefault(data_id, [])
        run.parked += 1
        if data_id not in self.broken and any(s == source for s, _, _ in parts):
            self.broken.add(data_id)
            error = ValueError(
                f"join {node.id!r} got a second output from {source!r} for data_id "
                f"{data_id!r}; a join takes one output per source per input (give inputs "
                "distinct data_ids)"
            )
            run.fail(node, ctx, error, payload)
        parts.append((source, ctx, payload))
        if self.ready(lineage) and data_id not in self.firing:
            await self.fire(data_id, self.held.pop(data_id))
        elif run.active == run.parked:
            run.idle()

    def ready(self, lineage: Lineage) -> bool:
        """Whether no more of this lineage can reach the join."""
        return not lineage.upstream[self.index] and not lineage.queued[self.index]

    def upstream_done(self, data_id: str, lineage: Lineage) -> None:
        """The tracker's signal: nothing upstream of the join is left for ``data_id``."""
        if data_id in self.held and not lineage.queued[self.index] and data_id not in self.firing:
            self.firing.add(data_id)
            self.run.send_marker(self.node, (FIRE, data_id))

    async def fire(self, data_id: str, parts: list[tuple[str, PipelineContext, Any]]) -> None:
        """Call the join once for ``data_id`` (unless a duplicate failed it), then end
        every part."""
        node, run = self.node, self.run
        run.parked -= len(parts)
        if data_id in self.broken:
            self.broken.discard(data_id)
        else:
            node.in_flight += 1
            last_ctx = parts[-1][1]
            await node.handle(last_ctx, {source: value for source, _, value in parts}, node.emit)
            node.in_flight -= 1
        for _, ctx, _ in parts:
            run.finish(ctx, node)
