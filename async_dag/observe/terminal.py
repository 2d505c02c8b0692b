"""A progress display for scripts: a header, an overall bar and one line per node.

``monitor=True`` outside a Jupyter kernel makes one; it writes to ``sys.stderr`` (or
the ``stream`` given). On a terminal it redraws the block in place at most
``1 / min_redraw`` times a second, plus a final redraw when the run ends; every line
fits 80 columns (wider terminals get more columns), and lines are cut to the
terminal's width as a last resort so the cursor moves stay right. On anything else (a
pipe, a file: cron jobs, CI logs) it writes one progress line at most every
``log_interval`` seconds of the run and one summary line at the end. Ids are printed
with control characters escaped, so an id cannot send terminal escape sequences.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import TextIO

from ..core.results import RunStats
from .monitor import Monitor
from .rates import Progress, RateMeter, format_duration, node_done, run_state

_CLEAR_LINE = "\x1b[2K"
_CLEAR_BELOW = "\x1b[J"
#: columns the block is laid out for; from this width on, more columns are shown
NARROW = 80
WIDE = 110
#: node ids are shortened to this many characters in the node lines
NAME_WIDTH = 16
BAR_WIDTH = 20


def describe_end(error: BaseException | None) -> str:
    """The final state shown for a run: ``done``, ``cancelled`` or ``failed: ExcType``."""
    if error is None:
        return "done"
    if isinstance(error, asyncio.CancelledError | KeyboardInterrupt):
        return "cancelled"
    return f"failed: {type(error).__name__}"


def end_state(stats: RunStats, error: BaseException | None) -> str:
    """The final state: the engine's ``stats.state`` when it says, else from ``error``;
    ``failed`` carries the exception type when there is one (``failed: KeyError``)."""
    kind = run_state(stats, error, final=True)
    if kind == "failed":
        return (
            describe_end(error)
            if error is not None and describe_end(error) != "cancelled"
            else "failed"
        )
    return kind


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), safe to print."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def cut(text: str, width: int) -> str:
    """``text`` (printable) cut in the middle with ``…`` to at most ``width`` characters."""
    text = printable(text)
    if len(text) <= width:
        return text
    head = (width - 1) * 2 // 3
    return f"{text[:head]}…{text[len(text) - (width - 1 - head) :]}"


def is_terminal(stream: object) -> bool:
    """Whether ``stream`` is an open terminal."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # closed or detached
        return False


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``[#######.............]``: ``fraction`` (0..1) of ``width`` cells filled."""
    filled = min(max(round(fraction * width), 0), width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


class TerminalMonitor(Monitor):
    """Redraws a compact progress block on a terminal; logs sparse lines elsewhere.

    ``stream=None`` means ``sys.stderr`` as it is when the run starts. The block shows
    the pipeline name, run id, state and elapsed seconds; an overall bar with
    count/total, percent, rate and ETA when the number of inputs is known (see
    :class:`~async_dag.observe.rates.Progress`); the totals; then per node the queue
    depth against its bound, payloads in flight, done, failures and the rate over the
    last second (the run's average at the end), plus outputs and unrouted outputs on a
    terminal at least 110 columns wide. ``lines`` holds the last block (also kept when
    nothing is drawn). Off a terminal: a progress line every ``log_interval`` seconds
    of the run at most, and a summary line at the end; ``log_interval=None`` writes
    nothing there at all.
    """

    interval = 0.2

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        min_redraw: float = 0.2,
        log_interval: float | None = 10.0,
    ) -> None:
        self.stream = stream
        self.min_redraw = min_redraw
        self.log_interval = log_interval
        self.stats: RunStats | None = None
        self.state = "idle"
        self.lines: list[str] = []
        self.progress = Progress()
        self._out: TextIO | None = None
        self._log: TextIO | None = None
        self._drawn = 0
        self._last_draw = float("-inf")
        self._last_log = 0.0
        self._rates = RateMeter()

    def start(self, stats: RunStats) -> None:
        """Pick how to write (draw on a terminal, log lines elsewhere) and begin."""
        stream = self.stream if self.stream is not None else sys.stderr
        terminal = is_terminal(stream)
        self._out = stream if terminal else None
        self._log = stream if not terminal and self.log_interval is not None else None
        self._drawn = 0
        self._last_log = 0.0
        self._last_draw = float("-inf")
        self._rates.reset()
        self.progress.reset()
        self.state = "running"
        self._show(stats, force=True)

    def update(self, stats: RunStats) -> None:
        """Redraw, unless the last redraw was less than ``min_redraw`` seconds ago."""
        self._show(stats, force=False)

    def finish(self, stats: RunStats, error: BaseException | None) -> None:
        """Draw the final numbers and state (or log the summary line)."""
        self.state = end_state(stats, error)
        self._show(stats, force=True)
        if self._log is not None:
            self._emit(self.summary(stats))
        self._out = self._log = None

    # -- what is shown --------------------------------------------------------------

    def _show(self, stats: RunStats, *, force: bool) -> None:
        self.stats = stats
        self._rates.sample(stats)
        self.progress.sample(stats, self.state.split(":", 1)[0])
        if (
            self._log is not None
            and self.state == "running"
            and self.log_interval is not None
            and stats.elapsed - self._last_log >= self.log_interval
        ):
            self._last_log = stats.elapsed
            self._emit(self.progress_line(stats))
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_redraw:
            return
        self._last_draw = now
        columns = self._columns()
        self.lines = self.render(stats, columns=columns)
        if self._out is not None:
            self._write(self.lines, columns)

    def render(self, stats: RunStats, *, columns: int = NARROW) -> list[str]:
        """The block of lines for a snapshot (without cursor moves), laid out for
        ``columns`` (everything fits 80; from 110 on, outputs and unrouted too)."""
        header = (
            f"{cut(stats.name, 24)}  run {cut(stats.run_id, 14)}  {self.state}  "
            f"{stats.elapsed:.1f} s"
        )
        totals = f"in {stats.inputs:,}  out {stats.outputs:,}  errors {stats.errors:,}"
        if stats.skipped:
            totals += f"  skipped {stats.skipped:,}"
        lines = [header, f"  {self._progress_text()}", f"  {totals}"]
        wide = columns >= WIDE
        running = self.state == "running"
        for node_id, node in stats.nodes.items():
            rate = self._rates.rate(stats, node_id, running=running)
            line = (
                f"  {cut(node_id, NAME_WIDTH):<{NAME_WIDTH}} queue {node.queue_depth:>3}/"
                f"{node.queue_size:<3} busy {node.in_flight:>3} done {node_done(node):>9,} "
                f"failed {node.failed:>5,} {rate:>6,.0f}/s"
            )
            if wide:
                line += f"  out {node.emitted:>9,}  unrouted {node.unrouted:>5,}"
            waited = f"  throttled {node.throttled:.1f} s"
            if node.throttled >= 0.05 and len(line) + len(waited) <= columns:
                line += waited
                waited = ""
            lines.append(line)
            if node.throttled >= 0.05 and waited:  # no room on the line: one of its own
                lines.append(f"  {'':<{NAME_WIDTH}}{waited}")
        return lines

    def _progress_text(self) -> str:
        """``[####....] 3,896/12,000  32%  1,234 inputs/s  ETA 0:10`` (or without the
        bar and percent when the total is unknown)."""
        progress = self.progress
        rate = f"{progress.rate:,.0f} inputs/s"
        fraction = progress.fraction
        if fraction is None:
            return f"{progress.done:,} inputs done  {rate}"
        text = f"{bar(fraction)} {progress.done:,}/{progress.total:,}  {fraction:>4.0%}  {rate}"
        eta = progress.eta
        if eta is not None:
            text += f"  ETA {format_duration(eta)}"
        return text

    def progress_line(self, stats: RunStats) -> str:
        """The line logged off a terminal while the run goes on."""
        return (
            f"async-dag: {printable(stats.name)} run {printable(stats.run_id)}: "
            f"{self.progress.summary().replace('/s', ' inputs/s')}, in {stats.inputs}, "
            f"out {stats.outputs}, errors {stats.errors}, {stats.elapsed:.1f} s"
        )

    def summary(self, stats: RunStats) -> str:
        """The line logged off a terminal at the end of a run."""
        return (
            f"async-dag: {printable(stats.name)} run {printable(stats.run_id)} {self.state}: "
            f"{stats.inputs} inputs, {stats.outputs} outputs, {stats.errors} errors, "
            f"{stats.skipped} skipped in {stats.elapsed:.1f} s"
        )

    # -- writing ----------------------------------------------------------------------

    def _columns(self) -> int:
        out = self._out
        if out is None:
            return NARROW
        try:
            columns = os.get_terminal_size(out.fileno()).columns
        except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
            columns = 0
        return columns or NARROW  # a terminal that reports no size

    def _emit(self, line: str) -> None:
        out = self._log
        assert out is not None
        try:
            out.write(line + "\n")
            out.flush()
        except (OSError, ValueError):  # the stream went away: stop logging
            self._log = None

    def _write(self, lines: list[str], columns: int) -> None:
        out = self._out
        assert out is not None
        parts = [f"\r\x1b[{self._drawn}A" if self._drawn else "\r"]
        for line in lines:
            parts.append(f"{_CLEAR_LINE}{line[: max(columns - 1, 1)]}\n")
        parts.append(_CLEAR_BELOW)
        try:
            out.write("".join(parts))
            out.flush()
        except (OSError, ValueError):  # the terminal went away: stop drawing
            self._out = None
            return
        self._drawn = len(lines)
