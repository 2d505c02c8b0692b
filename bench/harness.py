"""Measure implementations round by round and turn the timings into table rows.

Every workload hands :func:`compare` a list of :class:`Impl`: callables that process
``items`` inputs and return how many outputs they produced. ``compare`` runs them in
turn, round after round (A B C, A B C, ...), so that drift of the machine hits all of
them alike, checks each output count, and reports per implementation the median time,
the median throughput and the median of the paired per-round ratios to a reference
implementation measured in the same round.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

RunFn = Callable[[int], Awaitable[int]] | Callable[[int], int]


class CountMismatch(AssertionError):
    """An implementation produced a different number of outputs than expected."""


@dataclass(frozen=True)
class Target:
    """A goal from the issue: ``speed`` >= value (throughput ratio) or ``time`` <= value."""

    kind: str  # "speed" or "time"
    value: float

    def met(self, time_ratio: float) -> bool:
        """Whether a median time ratio (implementation / reference) meets the goal."""
        if self.kind == "speed":
            return 1.0 / time_ratio >= self.value
        return time_ratio <= self.value

    def __str__(self) -> str:
        if self.kind == "speed":
            return f"speed >= {self.value:g}x"
        return f"time <= {self.value:g}x"


@dataclass
class Impl:
    """One implementation of a workload: ``run(items)`` returns its output count."""

    name: str
    run: RunFn
    expected: Callable[[int], int] = lambda n: n
    target: Target | None = None
    items: int | None = None  # inputs for this one, when it is too slow for the full size
    note: str = ""
    versus: str | None = None  # judge the target against this impl instead of the reference
    versus_label: str = ""  # how the target names ``versus`` (default: its name)
    missing: str = ""  # why this one cannot run here (a peer that is not installed)


@dataclass
class Row:
    """One line of a result table (also what goes to the JSON file)."""

    workload: str
    impl: str
    items: int
    outputs: int
    expected: int
    value: str  # what the table shows in its measure column (e.g. items/s)
    seconds: list[float] = field(default_factory=list)
    items_per_s: float | None = None
    time_ratio: float | None = None  # median of paired (this / reference) per-item times
    reference: str = ""
    target: str = ""
    verdict: str = ""  # PASS, FAIL, or "" when there is no target
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The row as plain JSON-able data."""
        return asdict(self)


async def _timed_async(fn: Callable[[int], Awaitable[int]], items: int) -> tuple[float, int]:
    start = time.perf_counter()
    count = await fn(items)
    return time.perf_counter() - start, count


def time_once(fn: RunFn, items: int) -> tuple[float, int]:
    """Run ``fn(items)`` once (an async one on a fresh event loop); (seconds, count)."""
    gc.collect()
    if inspect.iscoroutinefunction(fn):
        return asyncio.run(_timed_async(fn, items))
    start = time.perf_counter()
    count = fn(items)
    assert isinstance(count, int)
    return time.perf_counter() - start, count


def compare(
    workload: str,
    impls: Sequence[Impl],
    *,
    items: int,
    rounds: int,
    reference: str,
    extra: Callable[[Impl, int, float], dict[str, Any]] | None = None,
) -> list[Row]:
    """Time every implementation ``rounds`` times, alternating, against ``reference``.

    Ratios are per item (so an implementation run on fewer ``items`` still compares), per
    round, and the row shows their median. ``extra(impl, items, median_seconds)`` adds
    workload-specific figures to a row.
    """
    missing = [impl for impl in impls if impl.missing]
    impls = [impl for impl in impls if not impl.missing]
    times: dict[str, list[float]] = {impl.name: [] for impl in impls}
    counts: dict[str, int] = {}
    sizes = {impl.name: impl.items or items for impl in impls}
    for _ in range(rounds):
        for impl in impls:
            n = sizes[impl.name]
            seconds, count = time_once(impl.run, n)
            want = impl.expected(n)
            if count != want:
                raise CountMismatch(f"{workload}/{impl.name}: {count} outputs, expected {want}")
            times[impl.name].append(seconds / n)
            counts[impl.name] = count
    ref_times = times[reference]
    rows = []
    for impl in impls:
        n = sizes[impl.name]
        per_item = times[impl.name]
        ratio = statistics.median(t / r for t, r in zip(per_item, ref_times, strict=True))
        judged = ratio
        if impl.versus is not None:
            judged = statistics.median(
                t / v for t, v in zip(per_item, times[impl.versus], strict=True)
            )
        median_s = statistics.median(per_item) * n
        rate = n / median_s
        row = Row(
            workload=workload,
            impl=impl.name,
            items=n,
            outputs=counts[impl.name],
            expected=impl.expected(n),
            value=format_rate(rate),
            seconds=[t * n for t in per_item],
            items_per_s=rate,
            time_ratio=ratio,
            reference=reference,
            target=_target_text(impl),
            verdict=verdict(impl.target, judged),
            note=impl.note,
        )
        if impl.versus is not None:
            row.extra["versus"] = impl.versus
            row.extra["versus_time_ratio"] = judged
            row.extra["note_versus"] = f"{1.0 / judged:.3f}x the speed of {impl.versus!r}"
        if extra is not None:
            row.extra.update(extra(impl, n, median_s))
        rows.append(row)
    rows.extend(unavailable(workload, impl) for impl in missing)
    return rows


def _target_text(impl: Impl) -> str:
    if impl.target is None:
        return ""
    return (
        f"{impl.target} vs {impl.versus_label or impl.versus}" if impl.versus else str(impl.target)
    )


def unavailable(workload: str, impl: Impl) -> Row:
    """The row of an implementation that cannot run here, saying why."""
    return Row(
        workload=workload,
        impl=impl.name,
        items=0,
        outputs=0,
        expected=0,
        value="n/a",
        verdict="",
        note=f"{impl.note}; {impl.missing}" if impl.note else impl.missing,
        extra={"missing": impl.missing},
    )


def verdict(target: Target | None, time_ratio: float) -> str:
    """PASS or FAIL against a target, "" without one."""
    if target is None:
        return ""
    return "PASS" if target.met(time_ratio) else "FAIL"


def format_rate(rate: float) -> str:
    """Items per second, short: 312k/s, 1.47M/s."""
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M/s"
    if rate >= 1e4:
        return f"{rate / 1e3:.0f}k/s"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f}k/s"
    return f"{rate:.1f}/s"


def format_ratio(row: Row) -> str:
    """The paired ratio as speed (throughput) relative to the reference: 0.62x."""
    if row.time_ratio is None:
        return ""
    if row.impl == row.reference:
        return "1.00x (ref)"
    return f"{1.0 / row.time_ratio:.2f}x"


def render_table(rows: Sequence[Row]) -> str:
    """A plain-text table of rows: workload, implementation, measure, ratio, target."""
    header = ("workload", "implementation", "median", "speed vs ref", "target", "result", "note")
    lines = [
        (
            r.workload,
            r.impl,
            r.value,
            format_ratio(r) if r.time_ratio is not None else r.extra.get("ratio_text", ""),
            r.target,
            r.verdict,
            _note(r),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = [
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    out.extend(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
    return "\n".join(out)


def render_markdown(rows: Sequence[Row]) -> str:
    """The same table in Markdown, for BENCHMARKS.md."""
    header = "| workload | implementation | median | speed vs ref | target | result | note |"
    out = [header, "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ratio = format_ratio(r) if r.time_ratio is not None else r.extra.get("ratio_text", "")
        out.append(
            f"| {r.workload} | {r.impl} | {r.value} | {ratio} | {r.target} | "
            f"{r.verdict} | {_note(r)} |"
        )
    return "\n".join(out)


def _note(row: Row) -> str:
    parts = [row.note] if row.note else []
    parts.extend(str(v) for k, v in row.extra.items() if k.startswith("note"))
    return "; ".join(parts)
