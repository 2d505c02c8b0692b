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

    @property
    def batch(self) -> tuple[PipelineContext, ...]:
        """In a batch task's call, the contexts of the batch's payloads; else ``()``."""
        return ()

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


class BatchContext(PipelineContext):
    """The context of one call of a batch task: the first payload's, plus ``batch``."""

    __slots__ = ()

    def __new__(
        cls, first: PipelineContext, batch: tuple[PipelineContext, ...] | LazyContexts
    ) -> BatchContext:
        return tuple.__new__(cls, (*first[:5], batch))

    @property
    def batch(self) -> tuple[PipelineContext, ...]:
        """The contexts of the batch's payloads: ``ctx.batch[i]`` belongs to ``batch[i]``."""
        batch = self[5]
        return batch if type(batch) is tuple else batch.contexts()

    def _replace(self, **changes: Any) -> PipelineContext:
        return BatchContext(PipelineContext._replace(self, **changes), self[5])

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (PipelineContext(*self[:5]), self.batch)


class InputSpan:
    """``count`` consecutive plain inputs numbered from ``first`` entering ``node``,
    standing for their contexts until one is needed: the feeder queues a chunk of inputs
    for a batch task as one span, so a sink that never reads ``ctx.batch`` costs no
    context per payload. :func:`input_contexts` builds the contexts, the same ones the
    feeder builds for any other source."""

    __slots__ = ("count", "first", "metadata", "node", "prefix", "run_id")

    def __init__(
        self,
        run_id: str,
        prefix: str,
        first: int,
        count: int,
        node: str,
        metadata: dict[str, Any] | None,
    ) -> None:
        self.run_id, self.prefix, self.first, self.count = run_id, prefix, first, count
        self.node, self.metadata = node, metadata

    def contexts(self) -> list[PipelineContext]:
        """The inputs' contexts, in order."""
        return input_contexts(
            self.run_id, self.prefix, self.first, self.count, self.node, self.metadata
        )

    def head(self) -> PipelineContext:
        """The first input's context."""
        return input_context(self.run_id, self.prefix + str(self.first), self.node, self.metadata)

    def split(self, count: int) -> tuple[InputSpan, InputSpan]:
        """The first ``count`` inputs and the rest, as two spans."""
        run_id, prefix, first, node, meta = (
            self.run_id,
            self.prefix,
            self.first,
            self.node,
            self.metadata,
        )
        return (
            InputSpan(run_id, prefix, first, count, node, meta),
            InputSpan(run_id, prefix, first + count, self.count - count, node, meta),
        )

    def __repr__(self) -> str:
        return f"<InputSpan {self.first}..{self.first + self.count - 1} at {self.node!r}>"


class LazyContexts:
    """A batch's contexts, built on first use from ``parts`` (contexts and spans, in
    payload order): what ``BatchContext.batch`` reads. Equal, hashed and pickled as
    the tuple of contexts it stands for."""

    __slots__ = ("_built", "_parts")

    def __init__(self, parts: list[PipelineContext | InputSpan]) -> None:
        self._parts = parts
        self._built: tuple[PipelineContext, ...] | None = None

    def contexts(self) -> tuple[PipelineContext, ...]:
        """The tuple of contexts (built once)."""
        built = self._built
        if built is None:
            out: list[PipelineContext] = []
            for part in self._parts:
                if type(part) is InputSpan:
                    out.extend(part.contexts())
                else:
                    out.append(part)  # type: ignore[arg-type]
            built = self._built = tuple(out)
        return built

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyContexts):
            other = other.contexts()
        return self.contexts() == other

    def __hash__(self) -> int:
        return hash(self.contexts())

    def __len__(self) -> int:
        return len(self.contexts())

    def __reduce__(self) -> tuple[Any, ...]:
        return (tuple, (self.contexts(),))

    def __repr__(self) -> str:
        return repr(self.contexts())


# The one place that knows the tuple's layout: (run_id, data_id, path, attempt, metadata).
_new = tuple.__new__


def input_context(
    run_id: str, data_id: str, node: str, metadata: dict[str, Any] | None
) -> PipelineContext:
    """The context of an input as it enters a source node."""
    return _new(PipelineContext, (run_id, data_id, (node,), 0, metadata))


def input_contexts(
    run_id: str, prefix: str, first: int, count: int, node: str, metadata: dict[str, Any] | None
) -> list[PipelineContext]:
    """The contexts of ``count`` inputs numbered from ``first`` (data_ids ``prefix + str(i)``),
    entering ``node``: what the feeder builds for a chunk of plain inputs."""
    path = (node,)
    return [
        _new(PipelineContext, (run_id, prefix + str(i), path, 0, metadata))
        for i in range(first, first + count)
    ]


def derive(ctx: PipelineContext, node: str) -> PipelineContext:
    """The context of an output of ``ctx``'s payload as it moves on to ``node``."""
    return _new(PipelineContext, (ctx[0], ctx[1], ctx[2] + (node,), 0, ctx[4]))


def with_attempt(ctx: PipelineContext, attempt: int) -> PipelineContext:
    """The same context for retry number ``attempt``."""
    if type(ctx) is BatchContext:
        return ctx._replace(attempt=attempt)
    return _new(PipelineContext, (ctx[0], ctx[1], ctx[2], attempt, ctx[4]))


def log_extra(ctx: PipelineContext) -> dict[str, Any]:
    """The context as log-record attributes, as ``log_with_context`` attaches them."""
    return {
        "run_id": ctx[0],
        "data_id": ctx[1],
        "node": ctx[2][-1] if ctx[2] else "-",
        "node_path": ">".join(ctx[2]),
    }


def freeze_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The caller's metadata as contexts store it: a private copy, or None when empty."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    return dict(metadata) or None
