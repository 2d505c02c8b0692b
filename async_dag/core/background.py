"""Background runs: start a run on the running loop and get a handle to it at once.

Example (in a notebook cell; the cell returns while the run goes on)::

    run = pipeline.start(urls, monitor=True)
    run                      # shows the live monitor, with a stop button
    run.results[:5]          # what has come so far, also after a cancel or a failure
    result = await run       # the RunResult (or the run's error)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from .results import RunResult, RunStats
from .run import Run

if TYPE_CHECKING:
    from .definition import DagPipeline
    from .options import RunOptions

log = logging.getLogger("async_dag")


def start_run(pipeline: DagPipeline, options: RunOptions) -> PipelineRun:
    """Create the run's task on the running loop; RuntimeError when there is none."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "start() needs a running event loop (as in a notebook cell or inside async "
            "code); in a plain script use `await pipeline.run_stream(...)` inside "
            "asyncio.run(...) instead"
        ) from None
    return PipelineRun(Run(pipeline, options), loop)


class PipelineRun:
    """A run going on in the background: await it, cancel it, read it while it runs."""

    def __init__(self, run: Run, loop: asyncio.AbstractEventLoop) -> None:
        self._run = run
        self._awaited = False
        self._task: asyncio.Task[RunResult] = loop.create_task(
            run.collect(), name=f"async_dag:{run.run_id}:background"
        )
        run.bind(self._task)
        run.begin_monitors()  # now, from the caller: a notebook shows the panel in its cell
        self._task.add_done_callback(self._ended)

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._run.run_id

    @property
    def stats(self) -> RunStats:
        """The live counters, as a RunStats snapshot taken now."""
        return self._run.snapshot()

    @property
    def results(self) -> RunResult:
        """A RunResult of what has come so far; readable after a cancel or a failure."""
        return self._run.result()

    def done(self) -> bool:
        """Whether the run has ended (normally, by an error, or cancelled)."""
        return self._task.done()

    def cancel(self) -> bool:
        """Stop the run cleanly; ``await run`` then raises CancelledError."""
        return self._task.cancel()

    def result(self) -> RunResult:
        """The RunResult once done; ``asyncio.InvalidStateError`` before, the run's error
        (or CancelledError) if it did not succeed."""
        self._awaited = True
        return self._task.result()

    def __await__(self) -> Generator[Any, None, RunResult]:
        self._awaited = True
        return self._task.__await__()

    def _ended(self, task: asyncio.Task[RunResult]) -> None:
        if task.cancelled() or self._awaited:
            return
        error = task.exception()  # retrieved here, so asyncio does not log it again
        if error is not None:
            log.error(
                "background run %s failed: %s: %s",
                self.run_id,
                type(error).__name__,
                error,
                exc_info=error,
                extra={"run_id": self.run_id},
            )

    def __repr__(self) -> str:
        stats = self._run.snapshot()
        return (
            f"<PipelineRun {stats.name!r} {stats.state}: {stats.inputs} in, "
            f"{stats.outputs} out, {stats.errors} errors>"
        )

    def _ipython_display_(self) -> None:
        """In a notebook: the run's live monitor (the ``monitor=`` widget, or a new one)."""
        from ..notebook.runs import display_run

        display_run(self._run)
