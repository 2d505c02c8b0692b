"""The context that travels with every payload through a run."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

EMPTY_METADATA: Mapping[str, Any] = MappingProxyType({})


class PipelineContext(NamedTuple):
    """Where a payload comes from and where it is: immutable, one small tuple per hop.

    Example::

        async def fetch(ctx: PipelineContext, url: str) -> bytes:
            log.info("fetching %s for input %s (attempt %d)", url, ctx.data_id, ctx.attempt)
            ...

    ``path`` lists every node the payload and its ancestors passed through, the
    current node last; ``node`` is that last entry.
    """

    run_id: str
    data_id: str
    path: tuple[str, ...]
    attempt: int = 0
    metadata: Mapping[str, Any] = EMPTY_METADATA

    @property
    def node(self) -> str:
        """The id of the node handling the payload now (``path[-1]``)."""
        return self.path[-1]

    @property
    def node_path(self) -> str:
        """The path as one string, ``"fetch>parse"``, as the logs show it."""
        return ">".join(self.path)

    def __repr__(self) -> str:
        return (
            f"PipelineContext(run_id={self.run_id!r}, data_id={self.data_id!r}, "
            f"path={self.node_path!r}, attempt={self.attempt})"
        )


def freeze_metadata(metadata: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only copy of the caller's metadata (the shared empty mapping for None)."""
    if metadata is None:
        return EMPTY_METADATA
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    return MappingProxyType(dict(metadata))
