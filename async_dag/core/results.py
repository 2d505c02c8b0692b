"""What a run gives back: outputs with their contexts, errors, and stats."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, overload

from .context import PipelineContext
from .errors import ItemError

if TYPE_CHECKING:
    import pandas
    import polars
    import pyarrow


class Record(NamedTuple):
    """One sink output: ``value``, its ``ctx``, and the sink ``node`` that produced it."""

    ctx: PipelineContext
    value: Any
    node: str

    def __repr__(self) -> str:
        return f"Record(node={self.node!r}, data_id={self.ctx.data_id!r}, value={self.value!r})"


@dataclass(frozen=True, slots=True)
class NodeStats:
    """Counters of one node, as of a snapshot (ints unless said otherwise)."""

    node: str
    concurrency: int
    queue_size: int
    received: int = 0  # payloads taken in
    emitted: int = 0  # outputs produced
    failed: int = 0  # payloads that failed for good
    retried: int = 0  # retry calls
    unrouted: int = 0  # outputs no edge took
    filtered: int = 0  # payloads whose generator yielded nothing
    in_flight: int = 0  # payloads being handled right now
    queue_depth: int = 0  # payloads waiting in the input queue right now
    max_queue_depth: int = 0  # the most that ever waited
    batches: int = 0  # handler calls of a batch task (batch_size=)
    abandoned: int = 0  # threaded calls left running after their timeout or their run
    throttled: float = 0.0  # seconds workers spent waiting for a rate limit or RetryAfter


@dataclass(frozen=True, slots=True)
class RunStats:
    """A run's counters: ``elapsed`` seconds and ``nodes[node_id]`` -> :class:`NodeStats`."""

    run_id: str
    name: str
    elapsed: float
    inputs: int  # inputs pulled from the input stream
    outputs: int  # sink outputs delivered
    errors: int  # payloads that failed for good (all nodes)
    nodes: Mapping[str, NodeStats] = field(default_factory=dict)
    done: bool = False
    total: int | None = None  # the number of inputs, when known (len, length_hint, total=)
    skipped: int = 0  # inputs a checkpoint had already recorded (no handler called)
    state: str = "running"  # "running", then "done", "failed" or "cancelled"
    # the last few failures as (node, data_id, "ExcType: message"), newest last
    recent_errors: tuple[tuple[str, str, str], ...] = ()
    cut_off: int = 0  # payloads a cancel or a failure stopped before they were done

    @property
    def rate(self) -> float:
        """Inputs per second over the run so far."""
        return self.inputs / self.elapsed if self.elapsed > 0 else 0.0


class RunResult(Sequence[Any]):
    """The sink outputs of a run, as a sequence, plus their records, errors and stats.

    ``list(result)`` is the outputs; ``result == [...]`` compares them with a list.
    ``records`` pairs each output with its context and sink.
    """

    def __init__(
        self,
        run_id: str,
        values: list[Any],
        contexts: list[PipelineContext],
        errors: list[ItemError],
        stats: RunStats,
    ) -> None:
        self.run_id = run_id
        # Outputs and contexts are kept side by side and paired into Records on first
        # use: a run that collects millions of outputs allocates no Record for them.
        self._values = values
        self._contexts = contexts
        self._records: list[Record] | None = None
        self.errors = errors
        self.stats = stats

    @property
    def records(self) -> list[Record]:
        """The outputs with their contexts: ``.ctx``, ``.value``, ``.node`` (the sink)."""
        if self._records is None:
            self._records = [
                Record(ctx, value, ctx._path[-1])
                for ctx, value in zip(self._contexts, self._values, strict=True)
            ]
        return self._records

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self._values[index]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RunResult):
            return self._values == other._values
        if isinstance(other, list | tuple):
            return self._values == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"<RunResult {len(self._values)} outputs, {len(self.errors)} errors, "
            f"{self.stats.elapsed:.2f} s>"
        )

    @property
    def values(self) -> list[Any]:
        """The outputs as a plain list (a copy)."""
        return list(self._values)

    def to_pandas(self) -> pandas.DataFrame:
        """One row per record: ``run_id``, ``data_id``, ``node``, ``path`` (the ``ctx.path``
        tuple), then the value.

        Dicts, dataclasses and named tuples become one column per field; other values
        go to a ``value`` column. Needs pandas.
        """
        from ..notebook.frames import records_frame

        return records_frame(self)

    def to_arrow(self) -> pyarrow.Table:
        """The rows and columns of ``to_pandas()`` as a ``pyarrow.Table``.

        Needs pyarrow (``pip install 'async-dag[arrow]'``), imported on first use.
        """
        from ..notebook.frames import records_arrow

        return records_arrow(self)

    def to_polars(self) -> polars.DataFrame:
        """The rows and columns of ``to_pandas()`` as a ``polars.DataFrame``.

        Needs polars (``pip install 'async-dag[polars]'``), imported on first use.
        """
        from ..notebook.frames import records_polars

        return records_polars(self)

    def _repr_html_(self) -> str:
        """A notebook's view: outputs, errors, elapsed, a per-node table, first errors."""
        from ..notebook.frames import result_html

        return result_html(self)

    def errors_to_pandas(self) -> pandas.DataFrame:
        """One row per collected error: ``run_id``, ``data_id``, ``node``, ``path``,
        ``error`` (the exception type) and ``message``. Needs pandas."""
        from ..notebook.frames import errors_frame

        return errors_frame(self)
