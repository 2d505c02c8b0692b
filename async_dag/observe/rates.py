"""Items per second per node, from the snapshots a monitor receives."""

from __future__ import annotations

from collections import deque

from ..core.results import NodeStats, RunStats

#: seconds of history a live rate is computed over
RATE_WINDOW = 1.0


def node_done(node: NodeStats) -> int:
    """Payloads a node has finished: received minus those still in flight."""
    return node.received - node.in_flight


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
