"""What runs in a worker: load one shipped batch, run it on a fresh event loop, ship back.

Everything here is called by an executor, in a process (or thread) that has no running
event loop, so each batch gets its own ``asyncio.run``. The outcome travels back as
bytes: a tagged tuple the parent turns into a ``RunResult`` or a raised exception.
Workers run without a monitor (``monitor=`` stays in the parent, which shows progress
batch by batch).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from ..core.definition import DagPipeline
from ..core.function import run_function_pipeline
from ..core.results import RunResult
from .shipping import dumps, loads

FUNCTION = "function"  # the target is a pipeline function: run_function_pipeline
FACTORY = "factory"  # the target builds a DagPipeline: factory().run_stream

# Outcome tags (the first item of the tuple a worker ships back).
OK = "ok"  # (OK, RunResult)
RAISED = "raised"  # (RAISED, exception, traceback text)
RAISED_UNPICKLABLE = "raised-unpicklable"  # (tag, type name, message, notes, traceback, why)
RESULT_UNPICKLABLE = "result-unpicklable"  # (tag, why)
UNLOADABLE = "unloadable"  # (tag, what, why, traceback text)


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, attached as its ``__cause__``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def serve(conn: Connection, common: bytes, parent: int) -> None:
    """The loop of one of our own worker processes: run each batch sent, until told to stop.

    The parent sends ``(index, payload)`` and reads back the outcome's bytes; ``None`` or
    a closed pipe means stop. Ctrl-C is left to the parent (which ends this process), and
    the process ends itself if the parent is gone.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        index, payload = task
        conn.send_bytes(run_shipped(index, common, payload))


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def batch_options(index: int, options: dict[str, Any]) -> dict[str, Any]:
    """The run options of batch ``index``: without ``key=``, its data_ids are "index:j"."""
    if options.get("key") is None:
        return {**options, "_id_prefix": f"{index}:"}
    return options


def run_batch(
    kind: str, target: Any, batch: Any, options: dict[str, Any], index: int = 0
) -> RunResult:
    """Run batch ``index`` to its end on a new event loop in the calling thread."""
    options = batch_options(index, options)
    if kind == FUNCTION:
        return asyncio.run(run_function_pipeline(batch, target, **options))
    pipeline = target if isinstance(target, DagPipeline) else target()
    if not isinstance(pipeline, DagPipeline):
        raise TypeError(
            f"the pipeline factory returned {type(pipeline).__name__}, not a DagPipeline: "
            f"it should build one, e.g. return PipelineBuilder(...)....build()"
        )
    return asyncio.run(pipeline.run_stream(batch, **options))


def run_shipped(index: int, common: bytes, batch: bytes) -> bytes:
    """Load ``(kind, target, options)`` and batch ``index``, run it, return the outcome."""
    try:
        kind, target, options = loads(common)
    except BaseException as exc:
        return _unloadable("the pipeline and its run options", exc)
    try:
        items = loads(batch)
    except BaseException as exc:
        return _unloadable(f"batch {index}", exc)
    try:
        result = run_batch(kind, target, items, options, index)
    except BaseException as exc:
        return _raised(exc)
    _make_errors_portable(result)
    try:
        return dumps((OK, result))
    except BaseException as exc:
        return dumps((RESULT_UNPICKLABLE, f"{type(exc).__name__}: {exc}"))


def _unloadable(what: str, exc: BaseException) -> bytes:
    why = f"{type(exc).__name__}: {exc}"
    return dumps((UNLOADABLE, what, why, "".join(traceback.format_exception(exc))))


def _round_trips(obj: object) -> str | None:
    """None if ``obj`` survives pickling and unpickling, else why not."""
    try:
        loads(dumps(obj))
    except BaseException as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _raised(exc: BaseException) -> bytes:
    text = "".join(traceback.format_exception(exc))
    why = _round_trips(exc)
    if why is None:
        return dumps((RAISED, exc, text))
    notes = [str(note) for note in getattr(exc, "__notes__", ())]
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return dumps((RAISED_UNPICKLABLE, name, str(exc), notes, text, why))


def _make_errors_portable(result: RunResult) -> None:
    """Swap each collected exception that cannot travel for a RuntimeError describing it."""
    for position, error in enumerate(result.errors):
        why = _round_trips(error.exception)
        if why is not None:
            exc = error.exception
            stand_in = RuntimeError(
                f"{type(exc).__qualname__}: {exc} (the original exception could not be "
                f"pickled back from the worker: {why})"
            )
            for note in getattr(exc, "__notes__", ()):
                stand_in.add_note(str(note))
            result.errors[position] = dataclasses.replace(error, exception=stand_in)
