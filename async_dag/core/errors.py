"""What can go wrong, and the record of a failed item.

Exception hierarchy::

    ValueError
    └── PipelineDefinitionError   a graph that cannot run (raised at build time)
    RuntimeError
    └── LoopLimitExceeded         an output wanted a loop edge that is used up

``ItemError`` is not an exception: it is what ``on_error="collect"`` keeps for each
payload that failed for good.
"""

from __future__ import annotations

from dataclasses import dataclass

from .context import PipelineContext


class PipelineDefinitionError(ValueError):
    """A pipeline definition is invalid; the message names the task or edge and the fix."""


class LoopLimitExceeded(RuntimeError):
    """A loop edge's predicate held, but the lineage has taken it ``max_loops`` times."""

    def __init__(self, source: str, target: str, max_loops: int, data_id: str) -> None:
        super().__init__(
            f"loop edge {source} -> {target} already taken {max_loops} time(s) by data_id "
            f"{data_id!r} (max_loops={max_loops})"
        )
        self.source = source
        self.target = target
        self.max_loops = max_loops
        self.data_id = data_id

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.source, self.target, self.max_loops, self.data_id))


@dataclass(frozen=True, slots=True)
class ItemError:
    """One payload that failed for good: where (``node``), with what (``ctx``), and why."""

    ctx: PipelineContext
    node: str
    exception: BaseException

    @property
    def data_id(self) -> str:
        """The failed payload's input id."""
        return self.ctx.data_id

    def __repr__(self) -> str:
        return (
            f"<ItemError node={self.node!r} data_id={self.ctx.data_id!r} "
            f"{type(self.exception).__name__}: {self.exception}>"
        )
