"""A progress display for scripts: a header and one line per node, redrawn in place.

``monitor=True`` outside a Jupyter kernel makes one. It writes to ``sys.stdout`` (or
the ``stream`` given) only when that is a terminal, at most ``1 / min_redraw`` times a
second plus a final redraw when the run ends; on a pipe or a file it writes nothing at
all, so logs and redirected output stay clean. Node ids are printed with control
characters escaped, so an id cannot send terminal escape sequences.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import TextIO

from ..core.results import RunStats
from .monitor import Monitor
from .rates import RateMeter, node_done

_CLEAR_LINE = "\x1b[2K"
_CLEAR_BELOW = "\x1b[J"


def describe_end(error: BaseException | None) -> str:
    """The final state shown for a run: ``done``, ``cancelled`` or ``failed: ExcType``."""
    if error is None:
        return "done"
    if isinstance(error, asyncio.CancelledError | KeyboardInterrupt):
        return "cancelled"
    return f"failed: {type(error).__name__}"


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), safe to print."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def is_terminal(stream: object) -> bool:
    """Whether ``stream`` is an open terminal."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # closed or detached
        return False


class TerminalMonitor(Monitor):
    """Redraws a compact progress block on a terminal; silent on anything else.

    ``stream=None`` means ``sys.stdout`` as it is when the run starts. The block shows
    the pipeline name, run id, state, elapsed seconds and totals, then per node the
    queue depth against its bound, payloads in flight, done, outputs, failures,
    unrouted outputs and the rate over the last second (the run's average at the
    end). ``lines`` holds the last block drawn (also kept when nothing is written).
    """

    interval = 0.2

    def __init__(self, stream: TextIO | None = None, *, min_redraw: float = 0.2) -> None:
        self.stream = stream
        self.min_redraw = min_redraw
        self.stats: RunStats | None = None
        self.state = "idle"
        self.lines: list[str] = []
        self._out: TextIO | None = None
        self._drawn = 0
        self._last_draw = float("-inf")
        self._rates = RateMeter()

    def start(self, stats: RunStats) -> None:
        """Pick the stream (only if it is a terminal) and draw the first block."""
        stream = self.stream if self.stream is not None else sys.stdout
        self._out = stream if is_terminal(stream) else None
        self._drawn = 0
        self._rates.reset()
        self.state = "running"
        self._show(stats, force=True)

    def update(self, stats: RunStats) -> None:
        """Redraw, unless the last redraw was less than ``min_redraw`` seconds ago."""
        self._show(stats, force=False)

    def finish(self, stats: RunStats, error: BaseException | None) -> None:
        """Draw the final numbers and state, and leave the cursor below them."""
        self.state = describe_end(error)
        self._show(stats, force=True)
        self._out = None

    def _show(self, stats: RunStats, *, force: bool) -> None:
        self.stats = stats
        self._rates.sample(stats)
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_redraw:
            return
        self._last_draw = now
        self.lines = self.render(stats)
        if self._out is not None:
            self._write(self.lines)

    def render(self, stats: RunStats) -> list[str]:
        """The block of lines for a snapshot (without cursor moves)."""
        lines = [
            f"{printable(stats.name)}  run {printable(stats.run_id)}  {self.state}  "
            f"{stats.elapsed:.1f} s  in {stats.inputs:,}  out {stats.outputs:,}  "
            f"errors {stats.errors:,}"
        ]
        names = {node_id: printable(node_id) for node_id in stats.nodes}
        width = min(max((len(n) for n in names.values()), default=4), 24)
        running = self.state == "running"
        for node_id, node in stats.nodes.items():
            name = names[node_id]
            rate = self._rates.rate(stats, node_id, running=running)
            if len(name) > width:
                name = name[: width - 1] + "…"
            lines.append(
                f"  {name:<{width}}  queue {node.queue_depth:>4}/{node.queue_size:<4} "
                f"in flight {node.in_flight:>4}  done {node_done(node):>8,}  "
                f"out {node.emitted:>8,}  failed {node.failed:>5,}  "
                f"unrouted {node.unrouted:>5,}  {rate:>8,.0f}/s"
            )
        return lines

    def _write(self, lines: list[str]) -> None:
        out = self._out
        assert out is not None
        try:
            columns = os.get_terminal_size(out.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 0
        columns = columns or 80  # a terminal that reports no size
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
