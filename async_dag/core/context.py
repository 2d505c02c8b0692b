"""The context that travels with every payload through a run."""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter
from types import MappingProxyType
from typing import Any

EMPTY_METADATA: Mapping[str, Any] = MappingProxyType({})


class PipelineContext(tuple[Any, ...]):
    """Where a payload comes from and where it is: immutable, one small tuple per hop.

    Example::

        async def fetch(ctx: PipelineContext, url: str) -> bytes:
            log.info("fetching %s for input %s (attempt %d)", url, ctx.data_id, ctx.attempt)
            ...

    ``path`` lists every node the payload and its ancestors passed through, the
    current node last; ``node`` is that last entry. ``metadata`` is the read-only
    mapping the caller passed to the run.
    """

    __slots__ = ()
    _fields = ("run_id", "data_id", "path", "attempt", "metadata")

    # Stored as a plain tuple whose last item is the metadata dict, or None when empty:
    # a context holding only strings, ints and None is a tuple the garbage collector
    # can stop tracking, which keeps long runs that collect many records fast.
    def __new__(
        cls,
        run_id: str,
        data_id: str,
        path: tuple[str, ...],
        attempt: int = 0,
        metadata: Mapping[str, Any] | None = None,
    ) -> PipelineContext:
        meta = dict(metadata) if metadata else None
        return tuple.__new__(cls, (run_id, data_id, tuple(path), attempt, meta))

    run_id: str = property(itemgetter(0), doc="The run's id.")  # type: ignore[assignment]
    data_id: str = property(  # type: ignore[assignment]
        itemgetter(1), doc="The input's id: its position as a string, or str(key(item))."
    )
    path: tuple[str, ...] = property(  # type: ignore[assignment]
        itemgetter(2), doc="Every node passed through, the current one last."
    )
    attempt: int = property(  # type: ignore[assignment]
        itemgetter(3), doc="0 on the first call of a handler, 1 on the first retry, ..."
    )

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The caller's ``metadata=``, read-only (empty by default)."""
        meta = self[4]
        return EMPTY_METADATA if meta is None else MappingProxyType(meta)

    @property
    def node(self) -> str:
        """The id of the node handling the payload now (``path[-1]``)."""
        return self[2][-1]  # type: ignore[no-any-return]

    @property
    def node_path(self) -> str:
        """The path as one string, ``"fetch>parse"``, as the logs show it."""
        return ">".join(self[2])

    def _replace(self, **changes: Any) -> PipelineContext:
        """A copy with some fields changed (as for named tuples)."""
        fields = dict(zip(self._fields, (*self[:4], self[4]), strict=True))
        fields.update(changes)
        return PipelineContext(**fields)

    def _asdict(self) -> dict[str, Any]:
        """The fields as a dict."""
        return {
            "run_id": self[0],
            "data_id": self[1],
            "path": self[2],
            "attempt": self[3],
            "metadata": self.metadata,
        }

    def __getnewargs__(self) -> tuple[Any, ...]:
        return tuple(self)

    def __repr__(self) -> str:
        return (
            f"PipelineContext(run_id={self[0]!r}, data_id={self[1]!r}, "
            f"path={self.node_path!r}, attempt={self[3]})"
        )


def freeze_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The caller's metadata as contexts store it: a private copy, or None when empty."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    return dict(metadata) or None
