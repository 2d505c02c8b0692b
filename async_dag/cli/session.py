"""Drive one run from the command line: its event loop, Ctrl-C, output and counters.

Ctrl-C (or SIGTERM, as ``timeout`` and service managers send) cancels the run: the
library stops every worker and closes the input; the output written so far is flushed
and closed, and the summary printed. A watchdog makes sure the process is gone within
:data:`GRACE` seconds of the signal even when a handler blocks the loop; a second
signal ends it at once. The exit status is 128 + the signal: 130 for Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .. import DagPipeline, Monitor, RunStats
from .outputs import OutputError, Writer

GRACE = 0.9  # seconds from Ctrl-C to a forced exit
FLUSH_EVERY = 0.5  # seconds between flushes of text output while a run goes on
INTERRUPTED = 128 + signal.SIGINT
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def hard_exit(status: int = INTERRUPTED) -> None:
    """End the process now: a handler that ignores cancellation cannot keep it alive."""
    try:
        os.write(2, b"async-dag: interrupted\n")
    finally:
        os._exit(status)


class Tap(Monitor):
    """Keeps the last counters of a run (for the summary), and feeds a display if any."""

    def __init__(self, display: Monitor | None) -> None:
        self.display = display
        self.interval = display.interval if display is not None else 1.0
        self.stats: RunStats | None = None

    def attach(self, pipeline: DagPipeline | None, cancel: Callable[[], None] | None) -> None:
        if self.display is not None:
            self.display.attach(pipeline, cancel)

    def start(self, stats: RunStats) -> None:
        self.stats = stats
        if self.display is not None:
            self.display.start(stats)

    def update(self, stats: RunStats) -> None:
        self.stats = stats
        if self.display is not None:
            self.display.update(stats)

    def finish(self, stats: RunStats, error: BaseException | None) -> None:
        self.stats = stats
        if self.display is not None:
            self.display.finish(stats, error)


@dataclass
class Outcome:
    """How a run ended: its result, or the exception, or an interrupt."""

    result: Any = None
    error: BaseException | None = None
    interrupted: bool = False
    status: int = INTERRUPTED  # when interrupted: 128 + the signal


class Session:
    """One run: the writer it feeds, the task it runs in, and how it was stopped."""

    def __init__(self, writer: Writer, tap: Tap) -> None:
        self.writer = writer
        self.tap = tap
        self.task: asyncio.Task[Any] | None = None
        self.interrupts = 0
        self.status = INTERRUPTED
        self.fatal: BaseException | None = None
        self._watchdog: threading.Timer | None = None

    # -- the result handler ----------------------------------------------------------

    def deliver(self, ctx: Any, value: Any) -> None:
        """Hand one output to the writer; a broken output stops the whole run."""
        try:
            self.writer(ctx, value)
        except (OSError, OutputError) as exc:
            self._stop(exc)
            raise

    def _stop(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
        if self.task is not None:
            self.task.cancel()

    # -- Ctrl-C --------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.interrupts += 1
        if self.interrupts == 1:
            self.status = 128 + signum
        task = self.task
        if self.interrupts > 1 or task is None:
            hard_exit(self.status)
            return
        task.cancel()
        task.get_loop().call_soon_threadsafe(lambda: None)  # wake the loop
        self._watchdog = threading.Timer(GRACE, hard_exit, (self.status,))
        self._watchdog.daemon = True
        self._watchdog.start()

    def _install(self) -> dict[int, Any]:
        """Take over the stop signals that are at their default; return the old handlers."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
        previous: dict[int, Any] = {}
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is defaults[signum]:  # ignored or taken: left alone
                previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def disarm(self) -> None:
        """The interrupted run has wound down: no forced exit needed."""
        if self._watchdog is not None:
            self._watchdog.cancel()

    # -- running -------------------------------------------------------------------------

    async def _main(self, start: Callable[[], Awaitable[Any]]) -> Outcome:
        self.task = asyncio.current_task()
        flusher = asyncio.get_running_loop().create_task(self._flush_now_and_then())
        outcome = Outcome()
        try:
            outcome.result = await start()
        except asyncio.CancelledError:
            if not self.interrupts and self.fatal is None:
                raise
            outcome.interrupted = self.interrupts > 0
            outcome.status = self.status
        except Exception as exc:
            outcome.error = exc
        finally:
            flusher.cancel()
            try:
                self.writer.close()
            except Exception as exc:
                self.fatal = self.fatal or exc
        if self.fatal is not None and not outcome.interrupted:
            outcome.error = self.fatal
        return outcome

    async def _flush_now_and_then(self) -> None:
        if not self.writer.timely:
            return
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            try:
                self.writer.flush()
            except (OSError, OutputError) as exc:
                self._stop(exc)
                return

    def run(self, start: Callable[[], Awaitable[Any]]) -> Outcome:
        """Run ``start()`` on a fresh event loop, with Ctrl-C handled as above."""
        previous = self._install()
        loop = asyncio.new_event_loop()
        try:
            asyncio.set_event_loop(loop)
            return loop.run_until_complete(self._main(start))
        except asyncio.CancelledError:  # Ctrl-C while the output was being closed
            if not self.interrupts:
                raise
            return Outcome(interrupted=True, status=self.status)
        finally:
            try:
                leftovers = asyncio.all_tasks(loop)
                for task in leftovers:
                    task.cancel()
                if leftovers:
                    loop.run_until_complete(asyncio.wait(leftovers))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                # threads of the default executor are not waited for: a blocked
                # to_thread call must not keep a finished (or interrupted) job alive
                asyncio.set_event_loop(None)
                loop.close()
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
