"""Rates, overall progress and ETA, computed from the snapshots a monitor receives."""

from __future__ import annotations

import asyncio
from collections import deque

from ..core.results import NodeStats, RunStats

#: seconds of history a live per-node rate is computed over
RATE_WINDOW = 1.0
#: seconds of history the overall rate (and so the ETA) is averaged over
ETA_WINDOW = 10.0
#: the ETA stays hidden until the run is this old and this many inputs are done
ETA_MIN_ELAPSED = 2.0
ETA_MIN_DONE = 1


def node_done(node: NodeStats) -> int:
    """Payloads a node has finished: received minus those still in flight."""
    return max(node.received - node.in_flight, 0)


def pending(stats: RunStats) -> int:
    """Payloads queued or in flight anywhere in the run right now."""
    return sum(node.in_flight + node.queue_depth for node in stats.nodes.values())


def run_state(stats: RunStats, error: BaseException | None = None, *, final: bool) -> str:
    """``running``, ``done``, ``failed`` or ``cancelled``: ``stats.state`` when the engine
    fills it, else derived from ``final`` (finish was called) and the error given."""
    if stats.state != "running" or not final:
        return stats.state if stats.state else "running"
    if error is None:
        return "done"
    if isinstance(error, asyncio.CancelledError | KeyboardInterrupt):
        return "cancelled"
    return "failed"


def format_duration(seconds: float) -> str:
    """``0:07``, ``12:05``, ``3:02:01``: seconds as a clock, rounded up."""
    whole = int(-(-seconds // 1)) if seconds > 0 else 0
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


class Progress:
    """How many inputs are done, out of how many, how fast, and when the rest will be.

    An input counts as done once nothing that came from it waits or runs: ``done`` is
    ``inputs`` minus the payloads queued or in flight in any node (for a chain that is
    exact; a fan-out holds several payloads per input, so it can only under-count),
    never going back during a run. At a successful end every input is done. After a
    cancel or a failure the engine empties the queues and reports how many payloads it
    cut off (``cut_off``): those are not done. Inputs a checkpoint
    skipped are among ``inputs`` (pulled, then skipped), so they count as done at once.
    ``rate`` is inputs done per second over the last ``ETA_WINDOW`` seconds (the run's
    average at the end); ``eta`` is None until it means something (a known total, at
    least ``ETA_MIN_ELAPSED`` seconds and ``ETA_MIN_DONE`` inputs done, a positive rate).
    """

    def __init__(self, window: float = ETA_WINDOW) -> None:
        self.window = window
        self.reset()

    def reset(self) -> None:
        """Forget the previous run."""
        self.done = 0
        self.total: int | None = None
        self.elapsed = 0.0
        self.state = "running"
        self._history: deque[tuple[float, int]] = deque()

    def sample(self, stats: RunStats, state: str = "running") -> None:
        """Take a snapshot; ``state`` is the run's state (see :func:`run_state`)."""
        self.state = state
        self.elapsed = stats.elapsed
        left = pending(stats)
        if state == "done":
            done = stats.inputs
        elif state == "running" or left:
            done = max(self.done, stats.inputs - left)
        else:  # stopped early: what the engine cut off (stats.cut_off) is not done
            done = stats.inputs - stats.cut_off
        done = max(min(done, stats.inputs), 0)
        self.total = stats.total
        if self.total is not None:
            done = min(done, self.total)
        self.done = done
        history = self._history
        if not history or history[-1][0] != stats.elapsed:
            history.append((stats.elapsed, done))
        while len(history) > 2 and history[1][0] <= stats.elapsed - self.window:
            history.popleft()

    @property
    def fraction(self) -> float | None:
        """Share of the total done (0..1), None when the total is unknown."""
        if self.total is None:
            return None
        return 1.0 if self.total == 0 else min(self.done / self.total, 1.0)

    @property
    def rate(self) -> float:
        """Inputs done per second: recent while running, the run's average at the end."""
        if self.state != "running":
            return self.done / self.elapsed if self.elapsed > 0 else 0.0
        history = self._history
        if len(history) < 2:
            return 0.0
        (t0, d0), (t1, d1) = history[0], history[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the recent rate, or None while it would be a guess."""
        if self.state != "running" or self.total is None:
            return None
        if self.elapsed < ETA_MIN_ELAPSED or self.done < ETA_MIN_DONE:
            return None
        rate = self.rate
        if rate <= 0:
            return None
        return max(self.total - self.done, 0) / rate

    def summary(self) -> str:
        """``3,896/12,000 32% · 1,234/s · ETA 0:07`` (or ``3,896 done · 1,234/s``)."""
        if self.total is None:
            parts = [f"{self.done:,} done"]
        else:
            parts = [f"{self.done:,}/{self.total:,} {self.fraction or 0:.0%}"]
        parts.append(f"{self.rate:,.0f}/s")
        eta = self.eta
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return " · ".join(parts)


class RateMeter:
    """Per-node rates of finished payloads: over the last ``window`` seconds while a run
    goes on, the run's average once it is over. Feed it every snapshot with ``sample``."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._history: dict[str, deque[tuple[float, int]]] = {}

    def reset(self) -> None:
        """Forget the previous run."""
        self._history = {}

    def sample(self, stats: RunStats) -> None:
        """Record a snapshot's done counts."""
        for node_id, node in stats.nodes.items():
            history = self._history.setdefault(node_id, deque())
            if history and history[-1][0] == stats.elapsed:
                continue
            history.append((stats.elapsed, node_done(node)))
            while len(history) > 2 and history[1][0] <= stats.elapsed - self.window:
                history.popleft()

    def rate(self, stats: RunStats, node_id: str, *, running: bool) -> float:
        """Payloads per second for ``node_id`` as of ``stats``."""
        node = stats.nodes[node_id]
        if not running:
            return node_done(node) / stats.elapsed if stats.elapsed > 0 else 0.0
        history = self._history.get(node_id)
        if not history or len(history) < 2:
            return 0.0
        (t0, d0), (t1, d1) = history[0], history[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0
