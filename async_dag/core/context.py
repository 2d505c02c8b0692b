"""The context that travels with every payload through a run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import attrgetter
from types import MappingProxyType
from typing import Any

EMPTY_METADATA: Mapping[str, Any] = MappingProxyType({})


class PipelineContext:
    """Where a payload comes from and where it is: immutable, one small object per hop.

    Example::

        async def fetch(ctx: PipelineContext, url: str) -> bytes:
            log.info("fetching %s for input %s (attempt %d)", url, ctx.data_id, ctx.attempt)
            ...

    ``path`` lists every node the payload and its ancestors passed through, the
    current node last; ``node`` is that last entry. ``metadata`` is the read-only
    mapping the caller passed to the run. Contexts compare, hash and pickle by their
    fields.
    """

    # The fields live in private slots behind read-only properties. The engine makes a
    # context for every payload at every node, so it makes them the cheapest way CPython
    # allows (``EngineContext``) and reads the slots directly: 47 ns against 115 ns for
    # the tuple subclass this was before (``tuple.__new__``). ``_metadata`` is the run's
    # private dict, or None when empty.
    __slots__ = ("_attempt", "_data_id", "_metadata", "_path", "_run_id")
    _run_id: str
    _data_id: str
    _path: tuple[str, ...]
    _attempt: int
    _metadata: dict[str, Any] | None
    _fields = ("run_id", "data_id", "path", "attempt", "metadata")

    def __init__(
        self,
        run_id: str,
        data_id: str,
        path: tuple[str, ...],
        attempt: int = 0,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self._run_id, self._data_id, self._path = run_id, data_id, tuple(path)
        self._attempt, self._metadata = attempt, dict(metadata) if metadata else None

    run_id: str = property(attrgetter("_run_id"), doc="The run's id.")  # type: ignore[assignment]
    data_id: str = property(  # type: ignore[assignment]
        attrgetter("_data_id"),
        doc="The input's id: its position as a string, or str(key(item)).",
    )
    path: tuple[str, ...] = property(  # type: ignore[assignment]
        attrgetter("_path"), doc="Every node passed through, the current one last."
    )
    attempt: int = property(  # type: ignore[assignment]
        attrgetter("_attempt"), doc="0 on the first call of a handler, 1 on the first retry, ..."
    )

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The caller's ``metadata=``, read-only (empty by default)."""
        meta = self._metadata
        return EMPTY_METADATA if meta is None else MappingProxyType(meta)

    @property
    def node(self) -> str:
        """The id of the node handling the payload now (``path[-1]``)."""
        return self._path[-1]

    @property
    def node_path(self) -> str:
        """The path as one string, ``"fetch>parse"``, as the logs show it."""
        return ">".join(self._path)

    @property
    def batch(self) -> tuple[PipelineContext, ...]:
        """In a batch task's call, the contexts of the batch's payloads; else ``()``."""
        return ()

    def _key(self) -> tuple[Any, ...]:
        return (self._run_id, self._data_id, self._path, self._attempt, self._metadata)

    def _replace(self, **changes: Any) -> PipelineContext:
        """A copy with some fields changed (as for named tuples)."""
        fields = dict(zip(self._fields, self._key(), strict=True))
        fields.update(changes)
        return PipelineContext(**fields)

    def _asdict(self) -> dict[str, Any]:
        """The fields as a dict."""
        return {
            "run_id": self._run_id,
            "data_id": self._data_id,
            "path": self._path,
            "attempt": self._attempt,
            "metadata": self.metadata,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PipelineContext):
            return NotImplemented
        return self._key() == other._key() and self.batch == other.batch

    def __hash__(self) -> int:  # equal contexts have equal ids: the metadata need not count
        return hash((self._run_id, self._data_id, self._path, self._attempt))

    # ordered as the tuples of their fields, so records sort by context
    def __lt__(self, other: PipelineContext) -> bool:
        return self._key() < other._key()

    def __le__(self, other: PipelineContext) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: PipelineContext) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: PipelineContext) -> bool:
        return self._key() >= other._key()

    def __reduce__(self) -> tuple[Any, ...]:
        return (PipelineContext, self._key())

    def __repr__(self) -> str:
        return (
            f"PipelineContext(run_id={self._run_id!r}, data_id={self._data_id!r}, "
            f"path={self.node_path!r}, attempt={self._attempt})"
        )


class EngineContext(PipelineContext):
    """The contexts the engine makes: a :class:`PipelineContext` in every way, made by
    calling the class with no arguments and storing the slots (``made(...)``): with
    ``object.__init__`` as its ``__init__``, CPython makes one without running any Python
    code, the cheapest object there is to build. Besides :func:`made`, the hot paths make
    them in place (the worker's hop, a plain fan-out, ``derive_to``, ``input_contexts``),
    storing all five slots: a slot added must be stored there too."""

    __slots__ = ()
    __init__ = object.__init__


EngineContext.__name__ = EngineContext.__qualname__ = "PipelineContext"


def made(
    run_id: str, data_id: str, path: tuple[str, ...], attempt: int, metadata: dict[str, Any] | None
) -> PipelineContext:
    """A context from fields already checked and frozen (``metadata`` as the run keeps it)."""
    ctx: PipelineContext = EngineContext()
    ctx._run_id = run_id
    ctx._data_id = data_id
    ctx._path = path
    ctx._attempt = attempt
    ctx._metadata = metadata
    return ctx


class BatchContext(PipelineContext):
    """The context of one call of a batch task: the first payload's, plus ``batch``."""

    __slots__ = ("_batch",)

    def __init__(
        self, first: PipelineContext, batch: tuple[PipelineContext, ...] | LazyContexts
    ) -> None:
        self._run_id, self._data_id, self._path = first._run_id, first._data_id, first._path
        self._attempt, self._metadata, self._batch = first._attempt, first._metadata, batch

    @property
    def batch(self) -> tuple[PipelineContext, ...]:
        """The contexts of the batch's payloads: ``ctx.batch[i]`` belongs to ``batch[i]``."""
        batch = self._batch
        return batch if isinstance(batch, tuple) else batch.contexts()

    def _replace(self, **changes: Any) -> PipelineContext:
        return BatchContext(PipelineContext._replace(self, **changes), self._batch)

    def __reduce__(self) -> tuple[Any, ...]:
        return (BatchContext, (PipelineContext(*self._key()), self.batch))


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


def input_context(
    run_id: str, data_id: str, node: str, metadata: dict[str, Any] | None
) -> PipelineContext:
    """The context of an input as it enters a source node."""
    return made(run_id, data_id, (node,), 0, metadata)


def input_contexts(
    run_id: str, prefix: str, first: int, count: int, node: str, metadata: dict[str, Any] | None
) -> list[PipelineContext]:
    """The contexts of ``count`` inputs numbered from ``first`` (data_ids ``prefix + str(i)``),
    entering ``node``: what the feeder builds for a chunk of plain inputs."""
    path = (node,)
    out: list[PipelineContext] = []
    append = out.append
    for i in range(first, first + count):
        ctx = EngineContext()
        ctx._run_id = run_id
        ctx._data_id = prefix + str(i)
        ctx._path = path
        ctx._attempt = 0
        ctx._metadata = metadata
        append(ctx)
    return out


def derive(ctx: PipelineContext, node: str) -> PipelineContext:
    """The context of an output of ``ctx``'s payload as it moves on to ``node``."""
    return made(ctx._run_id, ctx._data_id, (*ctx._path, node), 0, ctx._metadata)


def derive_to(
    node: str, run_id: str, metadata: dict[str, Any] | None
) -> Callable[[PipelineContext], PipelineContext]:
    """``derive(ctx, node)`` for the contexts of one run, made once per edge. Every context
    of a run carries the run's id and metadata, so they are bound here; and the contexts
    that take an edge mostly share one path (every input of a source has the same one,
    and so, edge after edge, do their outputs), so the last path made is kept and reused
    while the next context's parent path is the same object."""
    step = (node,)
    parent: tuple[str, ...] | None = None
    path: tuple[str, ...] = step

    def to(ctx: PipelineContext) -> PipelineContext:
        nonlocal parent, path
        if ctx._path is not parent:
            parent = ctx._path
            path = parent + step
        child: PipelineContext = EngineContext()
        child._run_id = run_id
        child._data_id = ctx._data_id
        child._path = path
        child._attempt = 0
        child._metadata = metadata
        return child

    return to


def with_attempt(ctx: PipelineContext, attempt: int) -> PipelineContext:
    """The same context for retry number ``attempt``."""
    if type(ctx) is BatchContext:
        return ctx._replace(attempt=attempt)
    return made(ctx._run_id, ctx._data_id, ctx._path, attempt, ctx._metadata)


def log_extra(ctx: PipelineContext) -> dict[str, Any]:
    """The context as log-record attributes, as ``log_with_context`` attaches them."""
    path = ctx._path
    return {
        "run_id": ctx._run_id,
        "data_id": ctx._data_id,
        "node": path[-1] if path else "-",
        "node_path": ">".join(path),
    }


def freeze_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The caller's metadata as contexts store it: a private copy, or None when empty."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    return dict(metadata) or None
